"""Dead-letter records and the publisher that retries until the broker acknowledges."""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Callable
from typing import Any

from dispatcher.dead_letters import (
    MAX_RECORD_BYTES,
    AckedPublisher,
    DeadLetterPublisher,
    bad_input_letter,
    delivery_letter,
    encode,
)
from dispatcher.inputs import BadInput
from dispatcher.metrics import Metrics
from dispatcher.outcomes import AttemptKind, AttemptResult, BatchResult, Outcome
from schemas.dead_letter import DeadLetter
from tests.factories import decode


def test_bad_input_keeps_the_raw_text() -> None:
    bad = decode(b'{"event_id": 1', "install")
    assert isinstance(bad, BadInput)
    letter = bad_input_letter("installs", 2, 41, bad)
    record = json.loads(encode(letter))
    assert record["reason"] == "bad_input"
    assert record["raw"] == '{"event_id": 1'
    assert record["raw_base64"] is None
    assert (record["source_topic"], record["source_partition"], record["source_offset"]) == (
        "installs",
        2,
        41,
    )
    assert record["partner"] is None
    assert record["failed_at"].endswith("Z")
    for key in ["detail", "event", "attempts", "last_status", "last_code"]:
        assert key in record


def test_bytes_that_are_not_utf8_survive_exactly() -> None:
    raw = b"\xff\xfe\x00garbage"
    bad = decode(raw, "install")
    assert isinstance(bad, BadInput)
    record = json.loads(encode(bad_input_letter("installs", 0, 0, bad)))
    assert base64.b64decode(record["raw_base64"]) == raw
    assert "garbage" in record["raw"]


def test_a_huge_input_is_cut_to_fit_a_kafka_message() -> None:
    raw = json.dumps({"event_id": "x", "junk": "\u0001" * 2_000_000}).encode()
    bad = decode(raw, "install")
    assert isinstance(bad, BadInput)
    value = encode(bad_input_letter("installs", 0, 0, bad))
    assert len(value) <= MAX_RECORD_BYTES
    record = json.loads(value)
    assert record["raw_truncated"] is True
    assert record["detail"] == bad.detail


def test_delivery_letter_carries_the_partners_answer() -> None:
    result = BatchResult(
        Outcome.REJECTED, 1, AttemptResult(AttemptKind.FATAL, 200, 40001, "No permission")
    )
    letter = delivery_letter("tiktok", "in-app", 1, 7, b'{"event_id": "e"}', result)
    assert (letter.reason, letter.detail, letter.last_code, letter.last_status) == (
        "partner_rejected", "code 40001: No permission", 40001, 200,
    )  # fmt: skip
    assert letter.event == {"event_id": "e"}
    gave_up = BatchResult(
        Outcome.GAVE_UP,
        10,
        AttemptResult(AttemptKind.RETRYABLE, None, None, "timeout: ReadTimeout"),
    )
    assert delivery_letter("tiktok", "t", 0, 0, None, gave_up).reason == "retries_exhausted"


class FakeFuture:
    def __init__(self) -> None:
        self.callbacks: list[Callable[[Any], None]] = []
        self.errbacks: list[Callable[[BaseException], None]] = []

    def add_callback(self, fn: Callable[[Any], None]) -> None:
        self.callbacks.append(fn)

    def add_errback(self, fn: Callable[[BaseException], None]) -> None:
        self.errbacks.append(fn)


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None, FakeFuture]] = []
        self.fail_next_send = False

    def send(self, topic: str, value: bytes, key: bytes | None = None) -> FakeFuture:
        if self.fail_next_send:
            self.fail_next_send = False
            raise TimeoutError("metadata not available")
        future = FakeFuture()
        self.sent.append((topic, value, key, future))
        return future

    def flush(self, timeout: float | None = None) -> None:
        return None


def letter() -> DeadLetter:
    return DeadLetter(
        reason="bad_input",
        detail="d",
        source_topic="t",
        source_partition=0,
        source_offset=0,
        failed_at="now",
    )


def test_acknowledged_only_when_the_broker_says_so() -> None:
    now = [0.0]
    producer = FakeProducer()
    metrics = Metrics()
    publisher = DeadLetterPublisher(producer, "dlq", metrics, clock=lambda: now[0])
    acks: list[int] = []
    publisher.submit(letter(), b"k", lambda: acks.append(1))
    publisher.pump()
    assert acks == []
    assert publisher.outstanding == 1
    topic, _, key, future = producer.sent[0]
    assert (topic, key) == ("dlq", b"k")
    # Given the broker refuses the write
    future.errbacks[0](RuntimeError("not enough replicas"))
    publisher.pump()
    assert len(producer.sent) == 1  # waits before trying again
    now[0] += 5
    publisher.pump()
    assert len(producer.sent) == 2
    # When the retry is acknowledged, the event becomes final once
    producer.sent[1][3].callbacks[0](None)
    assert acks == [1]
    assert publisher.outstanding == 0
    assert (
        metrics.registry.get_sample_value("dispatcher_dead_letters_total", {"reason": "bad_input"})
        == 1
    )
    assert metrics.registry.get_sample_value("dispatcher_dead_letter_publish_errors_total") == 1


def test_a_send_that_raises_is_retried() -> None:
    now = [0.0]
    producer = FakeProducer()
    producer.fail_next_send = True
    publisher = DeadLetterPublisher(producer, "dlq", Metrics(), clock=lambda: now[0])
    publisher.submit(letter(), None, lambda: None)
    publisher.pump()
    assert producer.sent == []
    now[0] += 5
    publisher.pump()
    assert len(producer.sent) == 1


def test_log_records_are_partitioned_by_their_key_without_kafka_pythons_partitioner() -> None:
    """The postback log's partition of a key is chosen here (CRC-32, in C), the same every
    time: what compaction needs; kafka-python's own partitioner hashes in pure Python."""
    sent: list[tuple[bytes | None, int | None]] = []

    class Producer:
        def send(
            self, topic: str, value: bytes, key: bytes | None = None, partition: int | None = None
        ) -> Any:
            sent.append((key, partition))
            return FakeFuture()

        def partitions_for(self, topic: str) -> set[int]:
            return {0, 1, 2, 3, 4, 5}

        def flush(self, timeout: float | None = None) -> None:
            pass

    metrics = Metrics()
    publisher = AckedPublisher(Producer(), "log", "log", metrics.logged, metrics.log_failed,
                               partition_by_key=True)  # fmt: skip
    for key in (b"tiktok/1/e-1", b"tiktok/1/e-2", b"tiktok/1/e-1"):
        publisher.submit_value(b"{}", key, lambda: None, "delivered", {})
    publisher.pump()
    assert [p for _, p in sent] == [zlib.crc32(k) % 6 for k, _ in sent]
    assert sent[0][1] == sent[2][1]  # one key, one partition
