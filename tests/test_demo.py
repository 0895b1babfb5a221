"""`dispatcher demo` works on a fresh install with nothing else set up."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from dispatcher.devtools.broker import free_port
from dispatcher.devtools.demo import Snapshot, _summary
from dispatcher.devtools.samples import SampleGenerator

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
    # both partners: what each delivered is what its sandbox accepted
    for title in ("TikTok", "Ocean Engine"):
        sent = int(re.search(rf"{title}: postbacks sent \(delivered\)\s+(\d+)", out).group(1))  # type: ignore[union-attr]
        accepted = int(re.search(rf"the {title} sandbox accepted (\d+) events", out).group(1))  # type: ignore[union-attr]
        assert sent == accepted > 0, title
    assert re.search(r"events consumed\s+400", out)
    for reason in ["out_of_scope", "unmapped_event", "outside_window", "bad_input",
                   "not_a_new_install", "secondary_attribution", "no_click_id", "fraud_blocked",
                   "no_consent", "too_old"]:  # fmt: skip
        assert reason in out
    assert re.search(r"^\s+install \(active\)\s+\d+$", out, re.MULTILINE)  # Ocean Engine's installs
    assert re.search(r"^\s+Add_to_cart \(AddToCart\)\s+\d+$", out, re.MULTILINE)  # as configured
    assert "metrics:  http://127.0.0.1:" in out


def test_the_sample_covers_every_case_the_demo_promises() -> None:
    cases = Counter(sample.case for sample in SampleGenerator(seed=1).generate(2000))
    for case in ["install_tiktok_click", "install_organic", "install_other_partner",
                 "install_view_through_on", "install_view_through_off", "in_app_outside_window",
                 "in_app_unmapped_event", "bad_input", "install_reinstall", "install_re_engagement",
                 "install_restricted", "in_app_re_engagement_copies", "install_oceanengine_click",
                 "install_oceanengine_no_click_id", "in_app_oceanengine_purchase",
                 "in_app_oceanengine_registration", "install_blocked", "in_app_rejected",
                 "in_app_no_consent", "install_android_lat", "install_att_denied",
                 "in_app_too_old"]:  # fmt: skip
        assert cases[case] > 0, case


def test_the_sample_is_appsflyers_records_as_sent() -> None:
    """No event id, the click id in the link, both attribution copies, null or absent blanks."""
    samples = [s for s in SampleGenerator(seed=2).generate(3000) if isinstance(s.value, dict)]
    assert not any("event_id" in s.value or "click_id" in s.value for s in samples)
    with_link = [s for s in samples if s.value.get("original_url")]
    assert with_link
    assert all("clickid=" in s.value["original_url"] for s in with_link)
    assert any(None in s.value.values() for s in samples)  # older Push API: blanks as null
    assert any("af_sub1" not in s.value for s in samples)  # newer: blanks left out
    copies = [s.value for s in samples if s.case == "in_app_re_engagement_copies"]
    assert {c["is_primary_attribution"] for c in copies} == {True, False}


def test_the_summary_names_events_as_the_config_does() -> None:
    """An operator copies `partner_event` values from the summary: identifiers, not wire names."""
    # Given what the worker's metrics report (TikTok's wire names, Ocean Engine's event types)
    snap = Snapshot(consumed=11)
    snap.delivered.update({("tiktok", "AddToCart"): 3, ("tiktok", "Purchase"): 2,
                           ("tiktok", "InstallApp"): 4, ("oceanengine", "active_pay"): 1,
                           ("oceanengine", "active"): 1})  # fmt: skip
    lines: list[str] = []
    # When the demo prints its summary
    _summary(snap, 11, 1.0, Counter(tiktok=9, oceanengine=2), lines.append)
    rows = [line.split()[0:2] for line in lines if line.startswith("      ")]
    # Then each event reads as its identifier, with the name sent where that differs
    assert ["Add_to_cart", "(AddToCart)"] in rows
    assert ["Pay(Purchase)", "(Purchase)"] in rows
    assert ["install", "(InstallApp)"] in rows
    assert ["install", "(active)"] in rows
    assert ["active_pay", "1"] in rows
    assert not any(row[0] in {"AddToCart", "Purchase", "InstallApp"} for row in rows)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_the_demo_owns_its_children_and_leaves_no_folder(
    broker: object, tmp_path: Path, signum: int
) -> None:
    """`kill -TERM` or a closed terminal's SIGHUP to `demo --keep-running` stops the broker, the
    sandbox and the worker with it, and the demo's temporary folder goes too."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISPATCHER_", "TIKTOK_"))}
    metrics_port = free_port()
    with subprocess.Popen(
        [sys.executable, "-m", "dispatcher", "demo", "--events", "50", "--keep-running",
         "--metrics-port", str(metrics_port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env | {"TMPDIR": str(tmp_path)},
    ) as demo:  # fmt: skip
        assert demo.stdout is not None
        lines: list[str] = []
        for line in demo.stdout:
            lines.append(line)
            if "everything keeps running" in line:
                break
        out = "".join(lines)
        assert "everything keeps running" in out, out
        broker_port = int(re.search(r"broker on 127\.0\.0\.1:(\d+)", out).group(1))  # type: ignore[union-attr]
        assert _answers(metrics_port)
        assert _answers(broker_port)
        demo.send_signal(signum)
        assert demo.wait(timeout=60) == 0
        demo.stdout.read()
    assert not _answers(metrics_port), "the worker outlived the demo"
    assert not _answers(broker_port), "the broker outlived the demo"
    assert list(tmp_path.glob("dispatcher-demo-*")) == []


def _answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0
