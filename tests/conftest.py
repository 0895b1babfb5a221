"""Shared fixtures: the real broker (Tansu) and the local TikTok sandbox.

A test that needs the broker skips when it cannot start — except in CI (`CI` set), where a
missing broker is a failure: a suite that silently skips its integration tests proves nothing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from dispatcher.devtools.broker import LocalBroker
from dispatcher.devtools.sandbox import PartnerSandbox, SandboxThread
from dispatcher.errors import BrokerUnavailableError
from tests.pipeline import TOKEN

IN_CI = bool(os.environ.get("CI"))

# scripts/mutation runs with `--hypothesis-profile=mutation`: the same examples on every run (and
# no example database), so a mutant's fate does not depend on the luck of the draw.
settings.register_profile("mutation", derandomize=True, database=None)
# Files whose tests take a second or more each (an in-process worker, a delivery service, a corpus
# walk): run last in a mutation run, after the unit tables and the property tests.
_SLOW_FILES = ("test_corpus.py", "test_fuzz.py", "test_delivery.py", "test_worker_stub.py")


@pytest.hookimpl(trylast=True)  # after Hypothesis has marked its tests
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a mutation run (which stops at the first failure), fast tests first: a mutant is
    caught by a unit table in milliseconds instead of after a property test's hundreds of
    examples. A normal run keeps the files' order."""
    if config.getoption("hypothesis_profile", None) != "mutation":
        return
    items.sort(key=lambda item: (item.path.name in _SLOW_FILES,
                                 item.get_closest_marker("hypothesis") is not None))  # fmt: skip


def missing(what: str) -> None:
    """Fail in CI, skip elsewhere."""
    if IN_CI:
        pytest.fail(f"{what} — required in CI", pytrace=False)
    pytest.skip(what)


def required_binary(name: str) -> str:
    """The path of a program from Debian's `prometheus` package; missing: fail in CI, else skip."""
    path = shutil.which(name)
    if path is None:
        missing(f"{name} not found on PATH (Debian/Ubuntu: apt-get install prometheus)")
        raise AssertionError("unreachable: missing() raises")
    return path


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """One Tansu broker for the session; tests use their own topics and groups."""
    log_path = Path(tmp_path_factory.mktemp("broker")) / "tansu.log"
    try:
        local = LocalBroker(log_path=log_path).start()
    except BrokerUnavailableError as exc:
        missing(f"Kafka-compatible broker unavailable: {exc}")
        raise  # unreachable: missing() raises
    yield local
    local.stop()


@pytest.fixture
def sandbox() -> Iterator[PartnerSandbox]:
    """A TikTok sandbox on free loopback ports, requiring the test token."""
    thread = SandboxThread(PartnerSandbox(token=TOKEN))
    yield thread.start()
    thread.stop()
