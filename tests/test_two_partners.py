"""Both partners from one stream, on the real broker: TikTok postbacks and Ocean Engine
conversions, each only for its own attributed events, with the bodies `explain` computes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dispatcher.allocator import OPERATOR_VARIABLES, libc_mallopt
from dispatcher.config_loader import load_settings
from dispatcher.devtools.broker import LocalBroker
from dispatcher.devtools.samples import DEMO_APP, DEMO_APP_ALL, DEMO_TIKTOK_IDS, SampleGenerator
from dispatcher.devtools.sandbox import Fault, PartnerSandbox
from dispatcher.explain import explain
from schemas.config import TopicFormats
from tests.factories import app_dict, click_id_of, oe_app_dict, oe_partner_dict
from tests.pipeline import (
    TOKEN,
    Topics,
    WorkerProcess,
    produce,
    read_all,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.broker

NOW = datetime(2025, 11, 20, 12, 0, tzinfo=UTC)
FAST = {"backoff_initial_s": 0.05, "backoff_max_s": 0.5, "max_requests_per_s": 500, "timeout_s": 5}


def identity(conversion: dict[str, Any]) -> str:
    """How the sandbox names an Ocean Engine conversion (it has no event id)."""
    return f"{conversion['context']['ad']['callback']}|{conversion['event_type']}|" + str(
        conversion["timestamp"]
    )


def owed(
    messages: list[bytes], config: Path
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], dict[str, bytes]]:
    """What `explain` says each partner is owed: TikTok events by event id, Ocean Engine
    conversions by identity (and the message each came from)."""
    settings = load_settings(config, {"TIKTOK_ACCESS_TOKEN": TOKEN})
    tiktok: dict[str, dict[str, Any]] = {}
    ocean: dict[str, dict[str, Any]] = {}
    source: dict[str, bytes] = {}
    for message in messages:
        result = explain(
            message, settings.partners, settings.runtime.kafka.formats, NOW.timestamp()
        )
        for entry in result["decisions"]:
            if entry["decision"] != "send":
                continue
            body = entry["request"]["body"]
            if entry["partner"] == "tiktok":
                [event] = body["data"]
                tiktok[event["event_id"]] = event
            else:
                ocean[identity(body)] = body
                source[identity(body)] = message
    return tiktok, ocean, source


def test_one_stream_yields_tiktok_postbacks_and_ocean_engine_conversions(
    broker: LocalBroker, sandbox: PartnerSandbox, tmp_path: Path
) -> None:
    # Given one stream of AppsFlyer records: TikTok's, Ocean Engine's, others' and organic ones
    topics = Topics.create(broker, "two-partners")
    samples = [s for s in SampleGenerator(seed=13, now=NOW).generate(600) if s.case != "bad_input"]
    produce(broker, topics.installs, [s.value for s in samples if s.event_type == "install"])
    produce(broker, topics.in_app, [s.value for s in samples if s.event_type == "in-app-event"])
    tiktok_apps = [
        app_dict(app_id=DEMO_APP, tiktok_app_id=DEMO_TIKTOK_IDS[DEMO_APP]),
        app_dict(app_id=DEMO_APP_ALL, tiktok_app_id=DEMO_TIKTOK_IDS[DEMO_APP_ALL],
                 install_scope="all", in_app={"scope": "all", "window": "lifetime"}),
    ]  # fmt: skip
    ocean_file = oe_partner_dict(
        oe_app_dict(app_id=DEMO_APP, in_app={"window": "lifetime"}),
        endpoint=sandbox.oceanengine_url, delivery=FAST,
    )  # fmt: skip
    config = write_config(tmp_path, broker, topics, sandbox.url, apps=tiktok_apps,
                          partner_files=(ocean_file,))  # fmt: skip
    tiktok, ocean, source = owed([s.encode() for s in samples], config)
    by_click = {click_id_of(s.value): s for s in samples if s.value.get("original_url")}
    # (the sample holds what this test is about)
    cases = Counter(by_click[body["context"]["ad"]["callback"]].case for body in ocean.values())
    assert cases["install_oceanengine_click"] > 0
    assert cases["in_app_oceanengine_purchase"] > 0
    assert any("properties" not in b for b in ocean.values() if b["event_type"] == "active_pay")
    # Ocean Engine's own failures: two server errors, then one rejection
    sandbox.add_faults(
        [Fault(status=503, count=2), Fault(code=7, message="callback not found", count=1)],
        "oceanengine",
    )

    # When the worker reads the stream
    with WorkerProcess(config, tmp_path / "worker.log") as worker:
        wait_for(lambda: len(accepted(sandbox, "oceanengine")) >= len(ocean) - 1, 60, "conversions")
        wait_for(lambda: set(accepted(sandbox, "tiktok")) >= set(tiktok), 60, "TikTok postbacks")
        wait_for(lambda: worker.metric("dispatcher_inflight_events") == 0, 10, "nothing in flight")
        # Then the metrics say it per partner
        assert worker.metric("dispatcher_decisions_total", partner="oceanengine",
                             reason="no_click_id") > 0  # fmt: skip
        assert worker.metric("dispatcher_decisions_total", partner="tiktok",
                             reason="no_click_id") == 0  # fmt: skip
        unsent = sum(1 for b in ocean.values() if b["event_type"] == "active_pay"
                     and "properties" not in b)  # fmt: skip
        assert worker.metric("dispatcher_revenue_unsent_total", partner="oceanengine") == unsent
        assert worker.metric("dispatcher_postbacks_total", partner="oceanengine",
                             outcome="delivered") == len(ocean) - 1  # fmt: skip
        assert worker.metric("dispatcher_postbacks_total", partner="oceanengine",
                             outcome="rejected") == 1  # fmt: skip
        assert worker.metric("dispatcher_postbacks_total", partner="tiktok",
                             outcome="delivered") == len(tiktok)  # fmt: skip
        assert worker.stop() == 0
    # The log says where each partner's postbacks go (the host, never a token)
    host = sandbox.oceanengine_url.split("/")[2]
    assert f"partner oceanengine: postbacks to {host} (1 of 1 apps active)" in worker.log()
    assert f"partner tiktok: postbacks to {host} (2 of 2 apps active)" in worker.log()
    assert TOKEN not in worker.log()
    if libc_mallopt() and not set(OPERATOR_VARIABLES) & os.environ.keys():  # as CI runs it
        assert "memory allocator: buffers up to 32 MiB from the heap" in worker.log()

    # Then TikTok got exactly its bodies, and Ocean Engine exactly its own but the rejected one
    assert accepted(sandbox, "tiktok") == tiktok
    got = accepted(sandbox, "oceanengine")
    [missing] = set(ocean) - set(got)
    assert got == {key: body for key, body in ocean.items() if key != missing}
    # Each partner only for its own attributed events
    for body in ocean.values():
        assert by_click[body["context"]["ad"]["callback"]].value["media_source"] == "bytedance_int"
    assert all(body.get("ad", {}).get("callback") not in {b["context"]["ad"]["callback"]
               for b in ocean.values()} for body in tiktok.values())  # fmt: skip
    # And the rejection is a dead letter naming Ocean Engine, its code and its message
    [letter] = read_all(broker, topics.dead_letters, timeout_s=2)
    assert (letter["reason"], letter["partner"], letter["last_code"]) == (
        "partner_rejected", "oceanengine", 7,
    )  # fmt: skip
    assert "callback not found" in letter["detail"]
    assert letter["event"] == json.loads(source[missing])

    # When Ocean Engine's dead letters are replayed, it gets the conversion it missed
    result = subprocess.run(
        [sys.executable, "-m", "dispatcher", "replay-dead-letters", "--config", str(config),
         "--partner", "oceanengine"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("1 replayed")
    assert "partner oceanengine: 1" in result.stdout
    sandbox.events.clear()
    with WorkerProcess(config, tmp_path / "worker-2.log") as worker:
        wait_for(lambda: missing in accepted(sandbox, "oceanengine"), 60, "the replayed conversion")
        assert worker.stop() == 0
    assert accepted(sandbox, "oceanengine") == {missing: ocean[missing]}
    assert accepted(sandbox, "tiktok") == {}  # owed to Ocean Engine only


def accepted(sandbox: PartnerSandbox, partner: str) -> dict[str, Any]:
    """What one partner accepted, by event id (Ocean Engine: by identity)."""
    return {e.event_id: e.payload for e in list(sandbox.events) if e.partner == partner}


def test_explain_shows_both_partners_for_an_ocean_engine_record() -> None:
    """`explain` with the example config: Ocean Engine sends, TikTok says why not."""
    repo = Path(__file__).resolve().parent.parent
    settings = load_settings(repo / "config" / "dispatcher.yaml", {"TIKTOK_ACCESS_TOKEN": "t"})
    sample = SampleGenerator(seed=3, now=NOW).make("install_oceanengine_click")
    result = explain(sample.encode(), settings.partners, TopicFormats(), NOW.timestamp())
    decisions = {entry["partner"]: entry for entry in result["decisions"]}
    assert decisions["oceanengine"]["decision"] == "send"
    assert decisions["oceanengine"]["request"]["body"]["event_type"] == "active"
    assert decisions["tiktok"]["reason"] == "out_of_scope"
    assert "bytedance_int" in decisions["tiktok"]["detail"]
