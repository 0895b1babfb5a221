"""The worker end to end: real broker (Tansu), real HTTP sandbox, `dispatcher run` as a process."""

from __future__ import annotations

import dataclasses
import json
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kafka import KafkaAdminClient, KafkaConsumer

from dispatcher.config_loader import load_settings
from dispatcher.devtools.broker import LocalBroker
from dispatcher.devtools.samples import DEMO_APP, DEMO_APP_ALL, DEMO_TIKTOK_IDS, SampleGenerator
from dispatcher.devtools.sandbox import Fault, PartnerSandbox
from dispatcher.explain import explain
from tests.factories import (
    AD_ID,
    ADSET_ID,
    CAMPAIGN_ID,
    INSTALL_TIME,
    app_dict,
    click_id_of,
    event_dict,
    event_id_of,
)
from tests.pipeline import (
    TOKEN,
    Topics,
    WorkerProcess,
    committed_offsets,
    end_offsets,
    produce,
    read_all,
    retry_after_violations,
    sandbox_ids,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.broker
NOW = datetime(2025, 11, 20, 12, 0, tzinfo=UTC)

SECOND_APP = app_dict(
    app_id="com.example.app", tiktok_app_id="7300000000000000002", install_scope="all",
    in_app={"scope": "all", "window": "lifetime"},
)  # fmt: skip
INACTIVE_APP = app_dict(
    app_id="com.example.inactive", tiktok_app_id="7300000000000000003", active=False
)


def labelled_events() -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, str]]:
    """(installs, in-app events, event_id → expected outcome) covering every rule."""
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("send", "install", {}),
        ("send", "install", {"media_source": "tiktokglobal_int"}),
        ("out_of_scope", "install", {"media_source": "organic"}),
        ("out_of_scope", "install", {"media_source": "googleadwords_int"}),
        ("out_of_scope", "install", {"attributed_touch_type": "impression"}),
        ("out_of_scope", "install", {"attributed_touch_time": INSTALL_TIME - timedelta(days=8)}),
        ("send", "install", {"app_id": "com.example.app", "media_source": "organic"}),
        ("out_of_scope", "install", {"media_source": "restricted", "original_url": None}),
        (
            "not_a_new_install",
            "install",
            {"event_type": "reinstall", "event_name": "reinstall", "conversion_type": "reinstall"},
        ),
        (
            "not_a_new_install",
            "install",
            {"event_type": "re-engagement", "is_retargeting": True, "app_id": "com.example.app"},
        ),
        ("unknown_app", "install", {"app_id": "com.unknown.app"}),
        ("partner_inactive", "install", {"app_id": "com.example.inactive"}),
        ("send", "in-app-event", {"event_name": "af_purchase"}),
        ("send", "in-app-event", {"event_name": "af_complete_registration"}),
        ("unmapped_event", "in-app-event", {"event_name": "af_tutorial"}),
        ("outside_window", "in-app-event", {"event_time": INSTALL_TIME + timedelta(days=181)}),
        ("out_of_scope", "in-app-event", {"media_source": "organic"}),
        ("send", "in-app-event", {"app_id": "com.example.app", "media_source": None}),
        (
            "secondary_attribution",
            "in-app-event",
            {
                "app_id": "com.example.app",
                "media_source": "googleadwords_int",
                "is_primary_attribution": "false",
            },
        ),
        ("send", "in-app-event", {"app_id": "com.example.app", "is_primary_attribution": False}),
    ]
    installs, in_app, expected = [], [], {}
    for outcome, event_type, overrides in cases:
        event = event_dict(event_type, **overrides)
        expected[event_id_of(event)] = outcome
        (installs if event_type == "install" else in_app).append(event)
    return installs, in_app, expected


BAD_INPUTS: list[tuple[str, bytes]] = [
    ("installs", b"this is not json"),
    ("installs", b"[1, 2, 3]"),
    (
        "installs",
        json.dumps(
            {k: v for k, v in event_dict("install").items() if k != "appsflyer_id"}
        ).encode(),
    ),
    ("in_app", json.dumps(event_dict("in-app-event", event_time=1763632800)).encode()),
    ("in_app", json.dumps(event_dict("install")).encode()),  # an install on the in-app topic
]


def test_owed_postbacks_arrive_and_nothing_else(
    broker: LocalBroker, sandbox: PartnerSandbox, tmp_path: Path
) -> None:
    # Given events covering every rule, and bad input mixed in
    topics = Topics.create(broker, "owed")
    installs, in_app, expected = labelled_events()
    produce(broker, topics.installs, installs)
    produce(broker, topics.in_app, in_app)
    for topic, raw in BAD_INPUTS:
        produce(broker, getattr(topics, topic), [raw])
    config = write_config(
        tmp_path, broker, topics, sandbox.url, apps=[app_dict(), SECOND_APP, INACTIVE_APP]
    )
    owed = {event_id for event_id, outcome in expected.items() if outcome == "send"}
    # When the worker runs
    with WorkerProcess(config, tmp_path / "worker.log") as worker:
        wait_for(lambda: set(sandbox_ids(sandbox)) >= owed, 60, "every owed postback")
        wait_for(
            lambda: (
                worker.metric("dispatcher_dead_letters_total", reason="bad_input")
                == len(BAD_INPUTS)
            ),
            30,
            "bad input dead-lettered",
        )
        wait_for(lambda: worker.metric("dispatcher_inflight_events") == 0, 10, "nothing in flight")
        time.sleep(1)  # anything wrongly sent would have arrived by now
        # Then exactly the owed postbacks arrived, once each
        assert sorted(sandbox_ids(sandbox)) == sorted(owed)
        # And each skip was counted under its rule's reason
        for reason in (
            "out_of_scope",
            "unknown_app",
            "partner_inactive",
            "unmapped_event",
            "outside_window",
            "not_a_new_install",
            "secondary_attribution",
        ):
            count = sum(1 for outcome in expected.values() if outcome == reason)
            assert (
                worker.metric("dispatcher_decisions_total", decision="skip", reason=reason) == count
            ), reason
        assert worker.metric("dispatcher_decisions_total", decision="send") == len(owed)
        assert worker.metric("dispatcher_postbacks_total", outcome="delivered") == len(owed)
        assert worker.stop() == 0
    # And the payloads are TikTok's wire format
    received = {event.event_id: event for event in sandbox.events}
    purchase = next(e for e in in_app if e["event_name"] == "af_purchase")
    assert received[event_id_of(purchase)].payload == {
        "event": "Purchase",
        "event_time": int(INSTALL_TIME.timestamp()) + 86400,
        "event_id": event_id_of(purchase),
        "user": {"idfa": purchase["idfa"].upper(), "idfv": purchase["idfv"], "ip": purchase["ip"],
                 "user_agent": purchase["user_agent"]},
        "app": {"app_id": "1234567890", "app_version": "1.2.3"},  # the App Store id's digits
        "ad": {"callback": click_id_of(purchase), "campaign_id": CAMPAIGN_ID, "ad_id": ADSET_ID,
               "creative_id": AD_ID, "is_retargeting": False, "attributed": True},
        "properties": {"af_revenue": "9.99", "af_currency": "USD",
                       "contents": [{"content_id": "sku-1"}], "value": 9.99, "currency": "USD"},
    }  # fmt: skip
    registration = next(e for e in in_app if e["event_name"] == "af_complete_registration")
    assert received[event_id_of(registration)].payload["properties"] == {
        "af_currency": "USD", "contents": [{"content_id": "sku-1"}],
    }  # fmt: skip
    organic_all = next(e for e in installs if e["app_id"] == "com.example.app")
    assert received[event_id_of(organic_all)].event_source_id == "7300000000000000002"
    # an organic user: TikTok is told it is not its own, and given no click or campaign id
    assert received[event_id_of(organic_all)].payload["ad"] == {
        "is_retargeting": False, "attributed": False,
    }  # fmt: skip
    # And each bad input is in the dead-letter topic once, with its reason and raw bytes
    letters = read_all(broker, topics.dead_letters)
    assert len(letters) == len(BAD_INPUTS)
    assert {letter["reason"] for letter in letters} == {"bad_input"}
    assert sorted(letter["raw"] for letter in letters) == sorted(
        raw.decode() for _, raw in BAD_INPUTS
    )
    details = " | ".join(letter["detail"] for letter in letters)
    for fragment in ["not valid JSON", "not a JSON object", "missing required field appsflyer_id",
                     "event_time: must be a timestamp", "does not match its topic"]:  # fmt: skip
        assert fragment in details


def test_appsflyer_records_as_sent_reach_tiktok_and_a_re_read_sends_the_same_ids(
    broker: LocalBroker, sandbox: PartnerSandbox, tmp_path: Path
) -> None:
    """Push API V2 records as the demo writes them (the whole field list, nulls or absent keys,
    no event id, the click id in `original_url`, `af_*` campaign ids, both copies of
    re-engagement events) are read as they come."""
    # Given AppsFlyer's records, every case the demo makes but malformed ones
    topics = Topics.create(broker, "appsflyer")
    samples = [s for s in SampleGenerator(seed=11, now=NOW).generate(400) if s.case != "bad_input"]
    installs = [s.value for s in samples if s.event_type == "install"]
    in_app = [s.value for s in samples if s.event_type == "in-app-event"]
    produce(broker, topics.installs, installs)
    produce(broker, topics.in_app, in_app)
    apps = [app_dict(app_id=DEMO_APP, tiktok_app_id=DEMO_TIKTOK_IDS[DEMO_APP]),
            app_dict(app_id=DEMO_APP_ALL, tiktok_app_id=DEMO_TIKTOK_IDS[DEMO_APP_ALL],
                     view_through=True, install_scope="all",
                     in_app={"scope": "all", "window": "lifetime"})]  # fmt: skip
    config = write_config(tmp_path, broker, topics, sandbox.url, apps=apps)
    # The owed postbacks, worked out offline as `dispatcher explain` does
    settings = load_settings(config, {"TIKTOK_ACCESS_TOKEN": TOKEN})
    expected: dict[str, dict[str, Any]] = {}
    for sample in samples:
        explained = explain(
            sample.encode(), settings.partners, settings.runtime.kafka.formats, NOW.timestamp()
        )
        for entry in explained["decisions"]:
            if entry["decision"] == "send":
                [body] = entry["request"]["body"]["data"]
                expected[body["event_id"]] = body
    owed_cases = {s.case for s in samples if event_id_of(s.value) in expected}
    assert {"install_tiktok_click", "in_app_purchase_attributed", "in_app_re_engagement_copies",
            "install_organic_scope_all"} <= owed_cases  # fmt: skip
    # When the worker reads them
    with WorkerProcess(config, tmp_path / "worker.log") as worker:
        wait_for(lambda: set(sandbox_ids(sandbox)) >= set(expected), 60, "every owed postback")
        wait_for(lambda: worker.metric("dispatcher_inflight_events") == 0, 10, "nothing in flight")
        assert worker.metric("dispatcher_dead_letters_total") == 0
        for reason in ("not_a_new_install", "secondary_attribution", "out_of_scope"):
            assert worker.metric("dispatcher_decisions_total", reason=reason) > 0, reason
        assert worker.stop() == 0
    # Then TikTok got exactly the owed bodies, once each
    first_read = {event.event_id: event.payload for event in sandbox.events}
    assert len(sandbox.events) == len(first_read) == len(expected)
    assert first_read == expected
    assert read_all(broker, topics.dead_letters, timeout_s=2) == []
    # And each carries the derived id, the click id of its link and its af_* campaign ids
    by_id = {event_id_of(record): record for record in installs + in_app}
    for event_id, payload in first_read.items():
        record = by_id[event_id]
        assert payload is not None
        assert len(event_id) == 32
        if record.get("original_url") and payload["ad"]["attributed"]:
            assert payload["ad"] == {
                "callback": click_id_of(record), "campaign_id": record["af_c_id"],
                "ad_id": record["af_adset_id"], "creative_id": record["af_ad_id"],
                "is_retargeting": payload["ad"]["is_retargeting"], "attributed": True,
            }  # fmt: skip
    assert any("callback" in (p or {}).get("ad", {}) for p in first_read.values())

    # When the same records are read again by a new consumer group (without the postback log,
    # which would show them delivered: the point here is the ids)
    sandbox.events.clear()
    again = write_config(tmp_path / "again", broker, dataclasses.replace(topics, group="again"),
                         sandbox.url, apps=apps, kafka={"postback_log_topic": None})  # fmt: skip
    with WorkerProcess(again, tmp_path / "worker-2.log") as worker:
        wait_for(lambda: set(sandbox_ids(sandbox)) >= set(expected), 60, "re-read postbacks")
        assert worker.stop() == 0
    # Then the same events go out under the same ids
    assert {event.event_id: event.payload for event in sandbox.events} == first_read


def test_faults_delay_but_lose_nothing(
    broker: LocalBroker, sandbox: PartnerSandbox, tmp_path: Path
) -> None:
    # Given TikTok answers 5xx, then 429 with Retry-After, then body code 40100 on HTTP 200
    topics = Topics.create(broker, "faults")
    sandbox.add_faults([
        Fault(status=503, count=3),
        Fault(status=429, retry_after="1", count=2),
        Fault(code=40100, message="Too many requests", count=2),
        Fault(status=500, code=50000, message="internal", count=1),
    ])  # fmt: skip
    events = [event_dict("install") for _ in range(300)]
    produce(broker, topics.installs, events)
    config = write_config(tmp_path, broker, topics, sandbox.url, delivery={"batch_max_events": 50})
    with WorkerProcess(config, tmp_path / "worker.log") as worker:
        # Then every event still arrives, and nothing is dead-lettered
        wait_for(
            lambda: set(sandbox_ids(sandbox)) >= {event_id_of(e) for e in events}, 60, "all events"
        )
        assert worker.metric("dispatcher_delivery_attempts_total", result="retryable") == 4
        assert worker.metric("dispatcher_delivery_attempts_total", result="throttled") == 4
        assert worker.metric("dispatcher_dead_letters_total") == 0
        assert worker.stop() == 0
    assert read_all(broker, topics.dead_letters) == []
    # And nothing was sent while a Retry-After was running (requests already on the wire when
    # the 429 left the sandbox, within IN_FLIGHT_S of it, cannot be called back)
    assert retry_after_violations(sandbox.requests) == []


def test_rejections_are_dead_lettered_with_code_and_message_and_no_token(
    broker: LocalBroker, sandbox: PartnerSandbox, tmp_path: Path
) -> None:
    topics = Topics.create(broker, "rejected")
    # (a parameter error: the event is bad; a permission error would hold the app instead)
    sandbox.add_faults(
        [Fault(code=40002, message="Batch.0.app.app_id: Not a valid string", count=1)]
    )
    events = [event_dict("install") for _ in range(3)]
    produce(broker, topics.installs, events[:1])
    config = write_config(tmp_path, broker, topics, sandbox.url)
    with WorkerProcess(config, tmp_path / "worker.log") as worker:
        wait_for(
            lambda: len(read_all(broker, topics.dead_letters, timeout_s=2)) == 1,
            60,
            "one dead letter",
        )
        produce(broker, topics.installs, events[1:])
        wait_for(lambda: len(sandbox_ids(sandbox)) == 2, 30, "later events delivered")
        metrics_text = worker.scrape()
        assert worker.stop() == 0
    [letter] = read_all(broker, topics.dead_letters)
    assert letter["reason"] == "partner_rejected"
    assert letter["partner"] == "tiktok"
    assert (letter["last_code"], letter["last_status"], letter["attempts"]) == (40002, 200, 1)
    assert letter["detail"] == "code 40002: Batch.0.app.app_id: Not a valid string"
    assert letter["event"] == events[0]  # the record as it arrived, for a replay
    for text in [json.dumps(letter), worker.log(), metrics_text]:
        assert TOKEN not in text


def test_kill_9_mid_stream_then_restart_loses_nothing(
    broker: LocalBroker, sandbox: PartnerSandbox, tmp_path: Path
) -> None:
    # Given a slow partner, so the kill lands with deliveries in flight
    topics = Topics.create(broker, "kill")
    sandbox.add_faults([Fault(delay_s=0.05, for_s=3600)])
    events = [event_dict("install") for _ in range(3000)]
    produce(broker, topics.installs, events)
    config = write_config(tmp_path, broker, topics, sandbox.url, delivery={"batch_max_events": 50})
    worker = WorkerProcess(config, tmp_path / "worker.log").start()
    wait_for(lambda: len(sandbox_ids(sandbox)) >= 500, 60, "some deliveries")
    # When the worker is killed with no chance to commit
    worker.kill()
    delivered_before = set(sandbox_ids(sandbox))
    assert len(delivered_before) < len(events)
    sandbox.faults.clear()
    # And a new worker starts
    with WorkerProcess(config, tmp_path / "worker-2.log") as again:
        wait_for(
            lambda: set(sandbox_ids(sandbox)) >= {event_id_of(e) for e in events}, 90, "every event"
        )
        # Then every event arrived; the uncommitted tail came again with the same event_id
        ids = sandbox_ids(sandbox)
        duplicates = len(ids) - len(set(ids))
        assert duplicates <= 1000, duplicates  # bounded by what was in flight, not the stream
        assert again.stop() == 0


def test_clean_stop_commits_every_offset(
    broker: LocalBroker, sandbox: PartnerSandbox, tmp_path: Path
) -> None:
    topics = Topics.create(broker, "stop")
    installs, in_app, _ = labelled_events()
    produce(broker, topics.installs, installs * 20)
    produce(broker, topics.in_app, in_app * 20)
    produce(broker, topics.installs, [b"bad"])
    config = write_config(tmp_path, broker, topics, sandbox.url)
    with WorkerProcess(config, tmp_path / "worker.log") as worker:
        total = (len(installs) + len(in_app)) * 20 + 1
        wait_for(
            lambda: worker.metric("dispatcher_events_consumed_total") == total, 60, "all consumed"
        )
        wait_for(lambda: worker.metric("dispatcher_inflight_events") == 0, 30, "all final")
        started = time.monotonic()
        assert worker.stop() == 0
        assert time.monotonic() - started < 15
    ends = end_offsets(broker, [topics.installs, topics.in_app])
    assert committed_offsets(broker, topics) == {tp: end for tp, end in ends.items() if end > 0}
    assert "stopped" in worker.log()


def test_stop_while_partner_is_down_exits_0_and_restart_delivers(
    broker: LocalBroker, sandbox: PartnerSandbox, tmp_path: Path
) -> None:
    topics = Topics.create(broker, "stopdown")
    events = [event_dict("install") for _ in range(200)]
    produce(broker, topics.installs, events)
    # retries never run out while it is down (else exhausted batches become final: dead letters)
    config = write_config(
        tmp_path, broker, topics, sandbox.url, worker={"shutdown_timeout_s": 2},
        delivery={"max_attempts": 1000},
    )  # fmt: skip
    sandbox.add_faults([Fault(status=503, for_s=3600)])
    with WorkerProcess(config, tmp_path / "worker.log") as worker:
        wait_for(lambda: worker.metric("dispatcher_inflight_events") > 0, 30, "events in flight")
        started = time.monotonic()
        assert worker.stop() == 0  # gives up the in-flight deliveries within the bound
        assert time.monotonic() - started < 10
    assert set(committed_offsets(broker, topics).values()) <= {0}  # nothing was final
    sandbox.faults.clear()
    with WorkerProcess(config, tmp_path / "worker-2.log") as again:
        wait_for(
            lambda: set(sandbox_ids(sandbox)) >= {event_id_of(e) for e in events}, 60, "every event"
        )
        assert again.stop() == 0


def test_back_pressure_pauses_instead_of_buffering(
    broker: LocalBroker, sandbox: PartnerSandbox, tmp_path: Path
) -> None:
    # Given TikTok refuses connections and the in-flight bound is small
    topics = Topics.create(broker, "pressure")
    events = [event_dict("install") for _ in range(3000)]
    produce(broker, topics.installs, events)
    config = write_config(
        tmp_path, broker, topics, sandbox.url, worker={"max_inflight_events": 200},
        delivery={"backoff_max_s": 0.2, "max_attempts": 1000},
    )  # fmt: skip
    httpx.post(f"http://127.0.0.1:{sandbox.control_port}/listener", json={"down_for_s": 3600})
    with WorkerProcess(config, tmp_path / "worker.log") as worker:
        # Then consumption pauses near the bound
        wait_for(lambda: worker.metric("dispatcher_paused_partitions") > 0, 30, "paused partitions")
        time.sleep(2)
        consumed = worker.metric("dispatcher_events_consumed_total")
        assert consumed < 1000, consumed
        # the poll budget never takes in more than the bound (at least one record when full)
        assert worker.metric("dispatcher_inflight_events") <= 200 + 1
        assert worker.get("/healthz").status_code == 200
        # When TikTok comes back, the backlog drains
        httpx.post(f"http://127.0.0.1:{sandbox.control_port}/listener", json={"up": True})
        wait_for(
            lambda: set(sandbox_ids(sandbox)) >= {event_id_of(e) for e in events},
            90,
            "backlog drained",
        )
        wait_for(lambda: worker.metric("dispatcher_paused_partitions") == 0, 10, "resumed")
        assert worker.metric("dispatcher_dead_letters_total") == 0
        assert worker.stop() == 0


def test_sighup_reloads_partner_files(
    broker: LocalBroker, sandbox: PartnerSandbox, tmp_path: Path
) -> None:
    topics = Topics.create(broker, "reload")
    config = write_config(tmp_path, broker, topics, sandbox.url)
    partner_file = tmp_path / "partners" / "tiktok.yaml"
    with WorkerProcess(config, tmp_path / "worker.log") as worker:
        wait_for(worker.is_ready, 30, "ready")
        first = event_dict("install")
        produce(broker, topics.installs, [first])
        wait_for(lambda: event_id_of(first) in sandbox_ids(sandbox), 30, "first event")
        # When a broken file is reloaded, the running config stays
        good = partner_file.read_text()
        partner_file.write_text(good.replace("click_lookback: 7d", "click_lookback: 90d"))
        worker.signal(signal.SIGHUP)
        wait_for(
            lambda: worker.metric("dispatcher_config_reloads_total", result="error") == 1,
            10,
            "failed reload",
        )
        second = event_dict("install")
        produce(broker, topics.installs, [second])
        wait_for(
            lambda: event_id_of(second) in sandbox_ids(sandbox), 30, "second event, old config"
        )
        assert "apps[0].click_lookback: 90d is out of range" in worker.log()
        # When a good change is reloaded, it takes effect without a restart
        data = yaml.safe_load(good)
        data["apps"][0]["active"] = False
        partner_file.write_text(yaml.safe_dump(data))
        worker.signal(signal.SIGHUP)
        wait_for(
            lambda: worker.metric("dispatcher_config_reloads_total", result="success") == 1,
            10,
            "reload",
        )
        third = event_dict("install")
        produce(broker, topics.installs, [third])
        wait_for(
            lambda: worker.metric("dispatcher_decisions_total", reason="partner_inactive") == 1,
            30,
            "inactive",
        )
        assert worker.metric("dispatcher_config_info", app_id="id1234567890", active="false") == 1
        assert event_id_of(third) not in sandbox_ids(sandbox)
        assert worker.stop() == 0


def test_start_up_refuses_a_broken_config_and_a_missing_dead_letter_topic(
    broker: LocalBroker, sandbox: PartnerSandbox, tmp_path: Path
) -> None:
    topics = Topics.create(broker, "startup")
    config = write_config(
        tmp_path, broker, topics, sandbox.url, apps=[app_dict(click_lookback="45d")]
    )
    worker = WorkerProcess(config, tmp_path / "worker.log").start()
    assert worker.wait(30) == 2
    assert (
        "tiktok.yaml: apps[0].click_lookback: 45d is out of range; allowed: 1h to 30d"
        in worker.log()
    )
    config = write_config(tmp_path, broker, topics, sandbox.url)
    data = yaml.safe_load(config.read_text())
    data["kafka"]["dead_letter_topic"] = "no-such-topic"
    config.write_text(yaml.safe_dump(data))
    worker = WorkerProcess(config, tmp_path / "worker-2.log").start()
    assert worker.wait(60) == 1
    assert (
        "topic 'no-such-topic' does not exist; create them with `dispatcher topics " in worker.log()
    )
    # A typo'd source topic stops start-up too, named with every other missing one and the
    # command that creates them, and is not created by asking for it
    data["kafka"]["topics"]["installs"] = "instals-typo"
    config.write_text(yaml.safe_dump(data))
    worker = WorkerProcess(config, tmp_path / "worker-3.log").start()
    assert worker.wait(60) == 1
    assert (
        f"topics 'instals-typo', 'no-such-topic' do not exist; create them with `dispatcher "
        f"topics create --config {config}`" in worker.log()
    )
    admin = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    try:
        assert "instals-typo" not in admin.topics()
    finally:
        admin.close()


def test_a_source_topic_deleted_while_running_is_reported(
    broker: LocalBroker, sandbox: PartnerSandbox, tmp_path: Path
) -> None:
    # Given a worker consuming both source topics, re-reading metadata every second
    topics = Topics.create(broker, "deleted")
    installs, _, _ = labelled_events()
    produce(broker, topics.installs, installs)
    config = write_config(tmp_path, broker, topics, sandbox.url)
    data = yaml.safe_load(config.read_text())
    data["kafka"]["metadata_max_age_ms"] = 1000
    config.write_text(yaml.safe_dump(data))
    with WorkerProcess(config, tmp_path / "worker.log") as worker:
        wait_for(worker.is_ready, 60, "the worker ready")
        wait_for(
            lambda: worker.metric("dispatcher_events_consumed_total") == len(installs),
            60, "the installs consumed",
        )  # fmt: skip
        assert worker.metric("dispatcher_source_topic_deleted", topic=topics.installs) == 0
        # When the installs topic is deleted under it
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        try:
            admin.delete_topics([topics.installs])
        finally:
            admin.close()
        # Then it is reported: the metric, not ready naming the topic, an error in the log
        wait_for(
            lambda: worker.metric("dispatcher_source_topic_deleted", topic=topics.installs) == 1,
            30, "the deletion reported",
        )  # fmt: skip
        ready = worker.get("/readyz")
        assert ready.status_code == 503
        assert f"source topic {topics.installs!r} was deleted" in ready.text
        assert worker.metric("dispatcher_source_topic_deleted", topic=topics.in_app) == 0
        assert f"source topic {topics.installs!r} was deleted" in worker.log()
        # And the worker keeps running (other topics, other partners), then stops cleanly
        time.sleep(2)
        assert not worker.exited()
        assert worker.get("/readyz").status_code == 503
        assert worker.stop() == 0


def test_a_second_worker_joining_rebalances_without_a_crash_or_a_loss(
    broker: LocalBroker, sandbox: PartnerSandbox, tmp_path: Path
) -> None:
    """kafka-python 3 runs rebalance listeners on its own network thread, where a blocking
    commit raises: the revocation must commit without blocking, or every rebalance (a replica
    added, another restarted) crashes the workers that hold partitions."""
    # Given one worker delivering a stream to a partner that answers in 0.2 s (at most about
    # 400 events/s: 8 requests of 10 at a time), so that deliveries are in flight at the
    # rebalance
    topics = Topics.create(broker, "rebalance", partitions=4)
    sandbox.add_faults([Fault(delay_s=0.2, for_s=3600)])
    events = [event_dict("install") for _ in range(6000)]
    produce(broker, topics.installs, events[:4000])
    delivery = {"batch_max_events": 10}
    config = write_config(tmp_path, broker, topics, sandbox.url, delivery=delivery)
    with WorkerProcess(config, tmp_path / "first.log") as first:
        wait_for(lambda: len(sandbox_ids(sandbox)) >= 300, 60, "deliveries under way")
        # When a second worker joins the group mid-stream, and the stream goes on
        (tmp_path / "second").mkdir()
        other = write_config(
            tmp_path / "second", broker, topics, sandbox.url, delivery=delivery
        )  # the same group, its own metrics port
        with WorkerProcess(other, tmp_path / "second.log") as second:
            wait_for(
                lambda: "partitions assigned" in second.log(), 60, "the second worker assigned"
            )
            assert len(set(sandbox_ids(sandbox))) < 4000  # the rebalance came mid-stream
            produce(broker, topics.installs, events[4000:])
            # Then neither crashed, both took part, and every event arrived
            wait_for(
                lambda: set(sandbox_ids(sandbox)) >= {event_id_of(e) for e in events}, 120,
                "every event",
            )  # fmt: skip
            assert not first.exited(), first.log()[-3000:]
            assert "User rebalance callback throws an error" not in first.log()
            assert first.metric("dispatcher_events_consumed_total") > 0
            assert second.metric("dispatcher_events_consumed_total") > 0
            wait_for(lambda: first.is_ready() and second.is_ready(), 30, "both ready")
            assert second.stop() == 0
        assert first.stop() == 0
    # And what was final is committed, to the end of every partition
    ends = end_offsets(broker, [topics.installs])
    assert committed_offsets(broker, topics) == {tp: end for tp, end in ends.items() if end > 0}
