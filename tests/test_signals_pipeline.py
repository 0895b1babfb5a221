"""Fraud, consent and age end to end: real broker (Tansu), real HTTP sandbox, `dispatcher run` as
a process. A stream mixing blocked, rejected, no-consent, limited-ad-tracking and old records, as
AppsFlyer writes them, yields exactly the owed postbacks, each carrying only what may be sent."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dispatcher.devtools.broker import LocalBroker
from dispatcher.devtools.sandbox import PartnerSandbox
from tests.factories import app_dict, event_dict, event_id_of
from tests.pipeline import (
    Topics,
    WorkerProcess,
    produce,
    read_all,
    sandbox_ids,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.broker

ZERO_ID = "00000000-0000-0000-0000-000000000000"
GAID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
LIMITED_APP = app_dict(
    app_id="com.example.limited", tiktok_app_id="7300000000000000002", send_rejected=True,
    consent={"without_consent": "limited"},
)  # fmt: skip


def mixed_stream(
    now: datetime,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, str]]:
    """(installs, in-app events, event_id → expected decision) around `now`."""
    install_time = now - timedelta(days=2)
    recent = {
        "install_time": install_time,
        "attributed_touch_time": install_time - timedelta(hours=1),
    }
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("send", "install", {"event_time": install_time}),
        ("fraud_blocked", "install", {"event_time": install_time, "blocked_reason": "click_flood",
                                      "blocked_reason_value": "12"}),
        ("fraud_blocked", "in-app-event", {"blocked_reason": "bots", "event_time": now}),
        ("fraud_rejected", "in-app-event", {"rejected_reason": "validation_rule", "event_time": now}),
        ("send", "in-app-event", {"app_id": "com.example.limited", "event_time": now,
                                  "rejected_reason": "validation_rule"}),
        ("no_consent", "in-app-event", {"gdpr_applies": True, "ad_user_data_enabled": False,
                                        "event_time": now}),
        ("no_consent", "install", {"gdpr_applies": "true", "event_time": install_time}),
        ("send", "in-app-event", {"gdpr_applies": True, "ad_user_data_enabled": True,
                                  "event_time": now}),
        ("send:limited", "in-app-event", {"app_id": "com.example.limited", "gdpr_applies": True,
                                          "ad_user_data_enabled": "false", "event_time": now}),
        ("send:no-gaid", "in-app-event", {"platform": "android", "idfa": None, "idfv": None,
                                          "advertising_id": GAID, "is_lat": True, "event_time": now}),
        ("send:gaid", "in-app-event", {"platform": "android", "idfa": None, "idfv": None,
                                       "advertising_id": GAID, "is_lat": False, "event_time": now}),
        ("send:no-idfa", "in-app-event", {"idfa": ZERO_ID, "att": "denied", "event_time": now}),
        ("too_old", "in-app-event", {"event_time": now - timedelta(days=40),
                                     "install_time": now - timedelta(days=41),
                                     "attributed_touch_time": now - timedelta(days=42)}),
        ("send", "in-app-event", {"event_time": now - timedelta(days=27),
                                  "install_time": now - timedelta(days=28),
                                  "attributed_touch_time": now - timedelta(days=29)}),
    ]  # fmt: skip
    installs, in_app, expected = [], [], {}
    for outcome, kind, overrides in cases:
        record = event_dict(kind, **(recent | overrides))
        expected[event_id_of(record)] = outcome
        (installs if kind == "install" else in_app).append(record)
    return installs, in_app, expected


def test_a_stream_of_signals_yields_exactly_the_owed_postbacks(
    broker: LocalBroker, sandbox: PartnerSandbox, tmp_path: Path
) -> None:
    # Given AppsFlyer's records with every signal, around the real time (the worker decides now)
    topics = Topics.create(broker, "signals")
    installs, in_app, expected = mixed_stream(datetime.now(UTC))
    produce(broker, topics.installs, installs)
    produce(broker, topics.in_app, in_app)
    config = write_config(tmp_path, broker, topics, sandbox.url, apps=[app_dict(), LIMITED_APP],
                          delivery={"max_event_age": "28d"})  # fmt: skip
    owed = {event_id for event_id, outcome in expected.items() if outcome.startswith("send")}
    # When the worker runs
    with WorkerProcess(config, tmp_path / "worker.log") as worker:
        wait_for(lambda: set(sandbox_ids(sandbox)) >= owed, 60, "every owed postback")
        wait_for(lambda: worker.metric("dispatcher_inflight_events") == 0, 10, "nothing in flight")
        time.sleep(1)  # anything wrongly sent would have arrived by now
        # Then exactly the owed postbacks arrived, once each
        assert sorted(sandbox_ids(sandbox)) == sorted(owed)
        # And each skip was counted under its rule's reason
        for reason in ("fraud_blocked", "fraud_rejected", "no_consent", "too_old"):
            count = sum(1 for outcome in expected.values() if outcome == reason)
            assert count
            assert (
                worker.metric("dispatcher_decisions_total", decision="skip", reason=reason) == count
            ), reason
        assert worker.stop() == 0
    # And each carries only what may be sent
    received = {event.event_id: event.payload for event in sandbox.events}
    for event_id, outcome in expected.items():
        payload = received.get(event_id)
        if payload is None:
            continue
        user = payload.get("user", {})
        if outcome == "send:limited":
            assert payload["limited_data_use"] is True
            assert "user" not in payload
        else:
            assert "limited_data_use" not in payload
        if outcome == "send:no-gaid":
            assert "gaid" not in user
        if outcome == "send:gaid":
            assert user["gaid"] == GAID
        if outcome == "send:no-idfa":
            assert "idfa" not in user
            assert user["idfv"]
    # And nothing was dead-lettered: skipping is a decision, not a failure
    assert read_all(broker, topics.dead_letters, timeout_s=3) == []


def test_a_replayed_dead_letter_is_decided_again_and_an_old_one_is_too_old(
    broker: LocalBroker, sandbox: PartnerSandbox, tmp_path: Path
) -> None:
    # Given dead letters of a recent and of a 40-day-old purchase
    from tests.test_replay import letter, replay, write_letters

    topics = Topics.create(broker, "signals-replay")
    now = datetime.now(UTC)
    recent = event_dict("in-app-event", event_time=now, install_time=now - timedelta(days=1),
                        attributed_touch_time=now - timedelta(days=1, hours=1))  # fmt: skip
    old = event_dict("in-app-event", event_time=now - timedelta(days=40),
                     install_time=now - timedelta(days=41),
                     attributed_touch_time=now - timedelta(days=41, hours=1))  # fmt: skip
    too_old = letter("too_old", topics, old).model_copy(update={"source_topic": topics.in_app})
    exhausted = letter("retries_exhausted", topics, recent).model_copy(
        update={"source_topic": topics.in_app}
    )
    write_letters(broker, topics.dead_letters, [too_old, exhausted])
    config = write_config(tmp_path, broker, topics, sandbox.url, delivery={"max_event_age": "28d"})
    # When both are replayed
    result = replay(config, "--reason", "too_old", "--reason", "retries_exhausted")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("2 replayed"), result.stdout
    # Then the worker decides them again: the recent one is sent, the old one is too old
    with WorkerProcess(config, tmp_path / "worker.log") as worker:
        wait_for(lambda: sandbox_ids(sandbox) == [event_id_of(recent)], 60, "the recent one sent")
        wait_for(
            lambda: worker.metric("dispatcher_decisions_total", reason="too_old") == 1,
            30,
            "the old one decided too old",
        )
        time.sleep(0.5)
        assert sandbox_ids(sandbox) == [event_id_of(recent)]
        assert worker.stop() == 0
