"""glibc's allocator thresholds (dispatcher/allocator.py): the calls made, when they are not, and
their effect on a real glibc: a thread that builds and frees megabyte buffers, as kafka-python's
network thread does with fetch answers, stops faulting their pages in again."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest

from dispatcher.allocator import (
    M_MMAP_THRESHOLD,
    M_TRIM_THRESHOLD,
    MMAP_THRESHOLD_BYTES,
    OPERATOR_VARIABLES,
    keep_freed_memory,
    libc_mallopt,
)


class RecordingMallopt:
    def __init__(self, answers: tuple[int, ...] = (1, 1)) -> None:
        self.calls: list[tuple[int, int]] = []
        self.answers = list(answers)

    def __call__(self, parameter: int, value: int) -> int:
        self.calls.append((parameter, value))
        return self.answers.pop(0)


def test_sets_the_mmap_threshold_then_the_trim_threshold(caplog: pytest.LogCaptureFixture) -> None:
    mallopt = RecordingMallopt()
    with caplog.at_level(logging.INFO, logger="dispatcher.allocator"):
        assert keep_freed_memory({"PATH": "/bin"}, mallopt) == "set"
    assert mallopt.calls == [
        (M_MMAP_THRESHOLD, 32 * 1024 * 1024),
        (M_TRIM_THRESHOLD, 64 * 1024 * 1024),
    ]
    assert "up to 32 MiB from the heap, up to 64 MiB of freed memory kept" in caplog.text


@pytest.mark.parametrize("variable", OPERATOR_VARIABLES)
def test_an_operators_allocator_setting_stands(variable: str) -> None:
    mallopt = RecordingMallopt()
    assert keep_freed_memory({variable: "1"}, mallopt) == f"left to {variable}"
    assert mallopt.calls == []


def test_without_glibc_nothing_is_called() -> None:
    assert keep_freed_memory({}, None) == "unavailable"


def test_a_refused_mmap_threshold_leaves_the_trim_threshold_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given glibc refuses the first value (glibc's dynamic thresholds then stay on)
    mallopt = RecordingMallopt(answers=(0,))
    # When the thresholds are set, Then the second is not, and the log says so
    assert keep_freed_memory({}, mallopt) == "unavailable"
    assert mallopt.calls == [(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)]
    assert "glibc refused the thresholds" in caplog.text


# Run in a fresh interpreter: a thread builds and frees buffers of 8, 6, 4, 7 and 3 MiB, twelve
# rounds, and prints the page faults of each round (RUSAGE_THREAD: that thread's alone).
_ROUNDS = """
import json, resource, sys, threading
from dispatcher.allocator import keep_freed_memory, libc_mallopt
if sys.argv[1] == "kept":
    assert keep_freed_memory({}, libc_mallopt()) == "set"
faults = []
def answers():
    for _ in range(12):
        start = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        buffers = [bytes(bytearray(size << 20)) for size in (8, 6, 4, 7, 3)]
        del buffers
        faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - start)
thread = threading.Thread(target=answers)
thread.start()
thread.join()
print(json.dumps(faults))
"""


def faults_per_round(mode: str) -> list[int]:
    env = {k: v for k, v in os.environ.items() if k not in OPERATOR_VARIABLES}
    output = subprocess.run(
        [sys.executable, "-c", _ROUNDS, mode],
        capture_output=True, text=True, check=True, timeout=60, env=env,
    ).stdout  # fmt: skip
    return list(json.loads(output))


@pytest.mark.skipif(libc_mallopt() is None, reason="glibc's allocator only")
def test_on_glibc_freed_buffers_are_kept_instead_of_faulted_in_again() -> None:
    # Given glibc's defaults: after the first rounds every round faults its pages in again
    # (~33 MiB: 8,000+ faults); this is the behaviour the setting is for
    default = faults_per_round("default")
    assert min(default[2:]) > 4_000, default
    # When the thresholds are set: after the first round, next to none
    kept = faults_per_round("kept")
    assert max(kept[1:]) < 200, kept
