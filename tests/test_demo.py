"""`dispatcher demo` works on a fresh install with nothing else set up."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter

import pytest

from dispatcher.broker import free_port
from dispatcher.samples import SampleGenerator

pytestmark = pytest.mark.broker


def test_demo_runs_end_to_end_and_summarises(
    broker: object,
) -> None:  # broker: fail in CI if absent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISPATCHER_", "TIKTOK_"))}
    result = subprocess.run(
        [sys.executable, "-m", "dispatcher", "demo", "--events", "400", "--metrics-port", str(free_port())],
        capture_output=True, text=True, env=env, timeout=240, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    sent = int(re.search(r"postbacks sent \(delivered\)\s+(\d+)", out).group(1))  # type: ignore[union-attr]
    accepted = int(re.search(r"the TikTok sandbox accepted (\d+) events", out).group(1))  # type: ignore[union-attr]
    assert sent == accepted > 0
    assert re.search(r"events consumed\s+400", out)
    for reason in ["out_of_scope", "unmapped_event", "outside_window", "bad_input"]:
        assert reason in out
    assert "metrics:  http://127.0.0.1:" in out


def test_the_sample_covers_every_case_the_demo_promises() -> None:
    cases = Counter(sample.case for sample in SampleGenerator(seed=1).generate(2000))
    for case in ["install_tiktok_click", "install_organic", "install_other_partner",
                 "install_view_through_on", "install_view_through_off", "in_app_outside_window",
                 "in_app_unmapped_event", "bad_input"]:  # fmt: skip
        assert cases[case] > 0, case
