"""The rules engine and the input decoders are pure: they import no I/O library and read no clock
(STYLE §2, §13)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "dispatcher"
PURE_MODULES = [
    "dispatcher.rules",
    "dispatcher.attribution",
    "dispatcher.revenue",
    "dispatcher.partners.tiktok",
    "dispatcher.partners.oceanengine",
    "dispatcher.links",
    "dispatcher.inputs",
    "dispatcher.inputs.appsflyer",
    "schemas.events",
]
# pydantic itself loads `socket` and `threading`; these are the ones a rule could reach for.
IO_LIBRARIES = [
    "kafka", "httpx", "httpcore", "h11", "tenacity", "prometheus_client", "yaml", "ssl",
    "asyncio", "subprocess", "urllib.request", "http.client", "logging", "sqlite3",
]  # fmt: skip
# ... and none of our pure modules may import these directly either.
DIRECT_IMPORTS_FORBIDDEN = {"socket", "threading", "time", "os", "random", "io", "pathlib"}


def test_rules_modules_import_no_io_library() -> None:
    # Run in a fresh interpreter so nothing imported by the test session hides a dependency.
    script = (
        "import importlib, json, sys\n"
        f"for name in {PURE_MODULES!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    loaded = set(json.loads(output))
    offenders = [lib for lib in IO_LIBRARIES if lib in loaded]
    assert offenders == [], f"the rules engine pulls in I/O: {offenders}"


def test_the_io_check_can_fail() -> None:
    script = "import json, sys, dispatcher.logs\nprint(json.dumps(sorted(sys.modules)))\n"
    output = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert "logging" in json.loads(output)


CLOCK_CALLS = {"now", "utcnow", "time", "monotonic", "perf_counter", "today"}


PURE_FILES = [
    "rules.py", "attribution.py", "revenue.py", "partners/base.py", "partners/registry.py",
    "partners/tiktok/__init__.py", "partners/tiktok/adapter.py", "partners/tiktok/config.py",
    "partners/tiktok/wire.py",
    "inputs/__init__.py", "inputs/base.py", "inputs/appsflyer.py", "../schemas/events.py",
]  # fmt: skip


def test_rules_modules_read_no_clock_and_import_no_io_directly() -> None:
    for name in PURE_FILES:
        tree = ast.parse((PACKAGE / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                assert node.func.attr not in CLOCK_CALLS, f"{name}:{node.lineno} reads a clock"
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not roots & DIRECT_IMPORTS_FORBIDDEN, f"{name}:{node.lineno} imports {roots}"
