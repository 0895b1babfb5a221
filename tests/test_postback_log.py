"""The postback log's records, and an event final only once its record is acknowledged: built
from settled batches (fields of the record model, the partner's request id, no token, no user
object unless asked), written after a dead letter is acknowledged, counted."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from dispatcher.delivery import Settled, WorkItem
from dispatcher.devtools.stub_kafka import StubProducer
from dispatcher.metrics import Metrics
from dispatcher.outcomes import AttemptKind, AttemptResult, BatchResult, Outcome
from dispatcher.postback_log import PostbackLog, iso, without_user
from dispatcher.settle import Acknowledged, Coordinates, Settlement
from schemas.config import PostbackLogConfig
from schemas.postback_log import PostbackRecord
from tests.factories import app_dict, event_dict
from tests.test_settle import HeldLetters
from tests.test_worker_stub import IN_APP, INSTALLS, LOG, Running, event_id_of, until

TIKTOK_PAYLOAD = {
    "event": "Purchase",
    "event_time": 1764583200,
    "event_id": "e-1",
    "user": {"idfa": "6D92078A-8246-4BA4-AE5B-76104861E7DC", "ip": "203.0.113.7",
             "att_status": "AUTHORIZED"},
    "properties": {"value": 9.99, "currency": "USD"},
    "app": {"app_id": "1234567890"},
}  # fmt: skip
OCEAN_PAYLOAD = {
    "event_type": "active_pay",
    "context": {"ad": {"callback": "cb-1"}, "device": {"idfa": "6D92078A-8246-4BA4-AE5B-76104861E7DC"}},
    "timestamp": 1764583200000,
}  # fmt: skip


def item(
    offset: int, partner: str = "tiktok", payload: Mapping[str, Any] = TIKTOK_PAYLOAD,
    replay: bool = False,
) -> WorkItem:  # fmt: skip
    return WorkItem(
        "in-app", 2, offset, b"k", b"{}", partner, "7300000000000000001", payload, "Purchase",
        1764583200.5, 0.0, f"e-{offset}", "id1234567890", "af-1", "af_purchase", replay,
    )  # fmt: skip


OK = AttemptResult(AttemptKind.OK, 200, 0, "OK", request_id="20261201abc")
REJECTED = AttemptResult(AttemptKind.FATAL, 200, 40002, "bad event", request_id="20261201def")


def records(
    items: list[WorkItem], result: BatchResult, include_user: bool = False
) -> list[tuple[bytes, dict[str, Any]]]:
    """(the Kafka record's key, each postback record) of a settled batch."""
    log = PostbackLog(PostbackLogConfig(include_user=include_user))
    return [(key, json.loads(line)) for key, value in log.records(items, result, 1764583300.25)
            for line in value.split(b"\n")]  # fmt: skip


def test_a_delivered_batch_gives_one_record_per_event_as_the_model_reads_it() -> None:
    result = BatchResult(Outcome.DELIVERED, 2, OK, first_attempt_at=1764583201.0)
    [(key, record), (_, second)] = records([item(7), item(8, replay=True)], result)
    assert key == b"tiktok/7300000000000000001/in-app/2"  # the partner app and the source
    assert record == {
        "event_id": "e-7", "partner": "tiktok", "destination": "7300000000000000001",
        "app_id": "id1234567890", "appsflyer_id": "af-1", "event": "Purchase",
        "sdk_event": "af_purchase", "event_time": "2025-12-01T10:00:00.500Z",
        "outcome": "delivered", "reason": None, "attempts": 2, "http_status": 200,
        "partner_code": 0, "partner_message": "OK", "partner_request_id": "20261201abc",
        "first_attempt_at": "2025-12-01T10:00:01.000Z", "final_at": "2025-12-01T10:01:40.250Z",
        "source": {"topic": "in-app", "partition": 2, "offset": 7}, "replay": False,
        "payload": {k: v for k, v in TIKTOK_PAYLOAD.items() if k != "user"},
    }  # fmt: skip
    assert second["replay"] is True
    assert PostbackRecord.model_validate(record).source.offset == 7


def test_the_user_object_is_left_out_unless_asked_for_and_the_payload_is_not_changed() -> None:
    result = BatchResult(Outcome.DELIVERED, 1, OK)
    [(_, tiktok)] = records([item(1)], result)
    [(_, ocean)] = records([item(2, "oceanengine", OCEAN_PAYLOAD)], result)
    assert "user" not in tiktok["payload"]
    assert ocean["payload"]["context"] == {"ad": {"callback": "cb-1"}}
    # the payload sent is untouched
    assert "user" in TIKTOK_PAYLOAD
    assert "device" in OCEAN_PAYLOAD["context"]
    [(_, with_user)] = records([item(1)], result, include_user=True)
    assert with_user["payload"]["user"] == TIKTOK_PAYLOAD["user"]


def test_without_user_follows_paths_and_ignores_what_is_not_there() -> None:
    payload = {"a": {"b": {"c": 1, "d": 2}}, "e": 3}
    assert without_user(payload, [("a", "b", "c"), ("x", "y"), ("e",)]) == {"a": {"b": {"d": 2}}}
    assert payload == {"a": {"b": {"c": 1, "d": 2}}, "e": 3}
    assert without_user({"a": 1}, [("a", "b")]) == {"a": 1}  # not an object on the way


def test_a_rejection_keeps_the_partners_code_message_and_request_id() -> None:
    [(_, record)] = records([item(3)], BatchResult(Outcome.REJECTED, 1, REJECTED, 1764583201.0))
    assert (record["outcome"], record["partner_code"], record["partner_message"],
            record["partner_request_id"]) == ("rejected", 40002, "bad event", "20261201def")  # fmt: skip


def test_no_token_ever() -> None:
    token = "tok-9f8e7d6c5b4a"
    result = BatchResult(Outcome.GAVE_UP, 3, AttemptResult(AttemptKind.RETRYABLE, 503, None, "x"))
    text = b"".join(v for _, v in PostbackLog(PostbackLogConfig(include_user=True)).records(
        [item(1)], result, time.time()))  # fmt: skip
    assert token.encode() not in text


def test_iso_times() -> None:
    assert iso(None) is None
    assert iso(0) == "1970-01-01T00:00:00.000Z"
    assert iso(1764583200.1234) == "2025-12-01T10:00:00.123Z"
    assert iso(1764583199.9999996) == "2025-12-01T10:00:00.000Z"  # rounds to the next second
    assert iso(-0.5) == "1969-12-31T23:59:59.500Z"


@given(st.floats(min_value=-2e9, max_value=4e9, allow_nan=False))
@example(3973448998.3429995)  # rounding `seconds * 1e6` whole gives .343: datetime says .342
@example(86399.9996)
def test_iso_writes_what_datetime_writes(seconds: float) -> None:
    """The fast formatter (each second formatted once) against the standard library's."""
    expected = datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
    assert iso(seconds) == expected[:-6] + "Z"


def test_a_batch_is_one_kafka_record_of_json_lines_cut_below_kafkas_message_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result = BatchResult(Outcome.DELIVERED, 1, OK)
    log = PostbackLog(PostbackLogConfig())
    [(_, value)] = log.records([item(n) for n in range(500)], result, 1.0)
    assert len(value.split(b"\n")) == 500
    # a batch whose records would pass the cap is cut in several Kafka records, none over it
    monkeypatch.setattr("dispatcher.postback_log.MAX_RECORD_BYTES", 20_000)
    cut = log.records([item(n) for n in range(500)], result, 1.0)
    assert len(cut) > 1
    assert all(len(value) <= 20_000 for _, value in cut)
    lines = [json.loads(line)["event_id"] for _, v in cut for line in v.split(b"\n")]
    assert lines == [f"e-{n}" for n in range(500)]


class HeldLog:
    """A log sink that acknowledges only when the test says so."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes | None, Callable[[], None], str]] = []

    def submit_value(
        self, value: bytes, key: bytes | None, on_ack: Callable[[], None], label: str,
        where: Mapping[str, Any], count: int = 1,
    ) -> None:  # fmt: skip
        self.records.append((value, key, on_ack, label))

    def acknowledge(self, n: int) -> None:
        self.records[n][2]()


def settlement_with_log() -> tuple[
    Settlement, HeldLetters, HeldLog, list[Acknowledged], list[Coordinates]
]:
    letters, sink, acks, final = HeldLetters(), HeldLog(), [], []
    settlement = Settlement(Metrics(), letters, final.extend, acks.append,
                            (PostbackLog(PostbackLogConfig()), sink))  # fmt: skip
    return settlement, letters, sink, acks, final


def test_a_delivered_batch_is_final_once_its_record_is_acknowledged() -> None:
    settlement, _, sink, acks, final = settlement_with_log()
    settlement.settle(Settled([item(1), item(2)], BatchResult(Outcome.DELIVERED, 1, OK), 1.0))
    assert final == []
    [(value, _, _, label)] = sink.records  # one Kafka record for the request's postbacks
    assert (label, len(value.split(b"\n"))) == ("delivered", 2)
    assert acks == []
    sink.acknowledge(0)
    assert acks == [Acknowledged([("in-app", 2, 1), ("in-app", 2, 2)])]


def test_failed_postbacks_are_logged_after_every_dead_letter_is_acknowledged() -> None:
    settlement, letters, sink, acks, _ = settlement_with_log()
    settlement.settle(Settled([item(5), item(6)], BatchResult(Outcome.REJECTED, 1, REJECTED), 1.0))
    # the dead letters first; the log record only once all of them are acknowledged
    assert len(letters.letters) == 2
    letters.letters[0][2]()
    assert sink.records == []
    letters.letters[1][2]()
    [(value, key, _, label)] = sink.records
    outcomes = [json.loads(line)["outcome"] for line in value.split(b"\n")]
    assert (key, label, outcomes) == (b"tiktok/7300000000000000001/in-app/2", "rejected",
                                      ["rejected", "rejected"])  # fmt: skip
    assert acks == []
    sink.acknowledge(0)
    assert acks == [Acknowledged([("in-app", 2, 5), ("in-app", 2, 6)])]


def log_records(producer: StubProducer) -> list[dict[str, Any]]:
    return [json.loads(line) for topic, value, _ in producer.sent if topic == LOG
            for line in value.split(b"\n")]  # fmt: skip


def test_the_worker_logs_every_owed_postback_and_commits_only_once_the_log_has_it(
    tmp_path: Path,
) -> None:
    # Given a log topic that has not acknowledged anything yet
    worker = Running(tmp_path, StubProducer(auto_ack=False), postback_log=True)
    worker.thread.start()
    owed = [event_dict("install") for _ in range(3)] + [
        event_dict("in-app-event") for _ in range(3)
    ]
    for record in owed:
        worker.produce(INSTALLS if record["event_type"] == "install" else IN_APP, record)
    until(lambda: len(worker.partner.event_ids) == 6, "delivered")
    until(lambda: len(log_records(worker.producer)) == 6, "logged")
    time.sleep(0.1)
    # Then the partner has them, but no offset is committed: the log has not acknowledged
    assert all(offset == 0 for offset in worker.committed().values())
    # When it acknowledges, everything is committed
    worker.producer.acknowledge()
    until(lambda: worker.committed() == worker.ends(), "every offset committed")
    worker.stop()
    logged = log_records(worker.producer)
    assert sorted(r["event_id"] for r in logged) == sorted(event_id_of(r) for r in owed)
    assert {r["outcome"] for r in logged} == {"delivered"}
    assert {r["partner_request_id"] for r in logged} == {"r"}  # the stub partner's request id
    assert {r["sdk_event"] for r in logged} >= {"install"}
    assert worker.metric("dispatcher_postback_log_records_total", outcome="delivered") == 6


@pytest.mark.parametrize("skips", [False, True])
def test_skips_are_logged_only_when_asked(tmp_path: Path, skips: bool) -> None:
    worker = Running(tmp_path, StubProducer(), postback_log=True, log_skips=skips)
    worker.thread.start()
    worker.produce(INSTALLS, event_dict("install", media_source="organic"))
    until(lambda: worker.committed() == worker.ends(), "committed")
    worker.stop()
    logged = log_records(worker.producer)
    if skips:
        [record] = logged
        assert (record["outcome"], record["reason"], record["payload"]) == (
            "skipped",
            "out_of_scope",
            None,
        )
        # where it would have gone, as plan and replay name it: the configured app's TikTok app
        assert record["destination"] == app_dict()["tiktok_app_id"]
    else:
        assert logged == []
