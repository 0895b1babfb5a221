"""Dead letters: the record, and a publisher that retries until the broker acknowledges (the
postback log's records are written by the same publisher).

An event that is dead-lettered is final only once the dead-letter topic acknowledged it: until
then its offset is not committed. One thread (the worker's) calls the producer; other threads
hand records over through a queue.
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from dispatcher.inputs import BadInput
from dispatcher.metrics import Metrics
from dispatcher.outcomes import BatchResult, Outcome
from schemas.dead_letter import DeadLetter

log = logging.getLogger(__name__)

# Kafka's default message.max.bytes is about 1 MB; a record must fit with room for its envelope.
MAX_RECORD_BYTES = 900_000
RETRY_AFTER_FAILURE_S = 2.0


def utc_now_iso() -> str:
    """The current time as an ISO 8601 string (the `failed_at` of a record)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def bad_input_letter(topic: str, partition: int, offset: int, bad: BadInput) -> DeadLetter:
    """The record of a message that is not a valid event."""
    raw = bad.raw or b""
    try:
        text, exact = raw.decode("utf-8"), None
    except UnicodeDecodeError:
        text = raw.decode("utf-8", "backslashreplace")
        exact = base64.b64encode(raw).decode("ascii")
    return DeadLetter(
        reason="bad_input",
        detail=bad.detail,
        partner=None,
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        event=bad.parsed,
        raw=text if bad.raw is not None else None,
        raw_base64=exact,
        attempts=0,
        failed_at=utc_now_iso(),
    )


def delivery_letter(
    partner: str, topic: str, partition: int, offset: int, raw: bytes | None, result: BatchResult
) -> DeadLetter:
    """The record of a postback the partner rejected, or that ran out of attempts."""
    reason = result.dead_letter_reason
    assert reason is not None, "only rejected and gave-up batches are dead-lettered"
    last = result.last
    try:
        event = json.loads(raw) if raw is not None else None
    except ValueError:
        event = None
    detail = last.message or "no message"
    if last.code is not None:
        detail = f"code {last.code}: {detail}"
    elif last.status is not None:
        detail = f"HTTP {last.status}: {detail}"
    if result.outcome is Outcome.TOO_OLD:
        detail = f"older than {partner}'s max_event_age while retrying; last answer {detail}"
    return DeadLetter(
        reason=reason,
        detail=detail,
        partner=partner,
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        event=event if isinstance(event, dict) else None,
        attempts=result.attempts,
        last_status=last.status,
        last_code=last.code,
        failed_at=utc_now_iso(),
    )


def encode(letter: DeadLetter) -> bytes:
    """The JSON of a record, shortened to fit a Kafka message when the raw input is huge."""
    value = letter.model_dump_json().encode()
    if len(value) <= MAX_RECORD_BYTES:
        return value
    # Keep the reason, the detail and the source coordinates; cut the copies of the input.
    trimmed = letter.model_copy(update={"event": None, "raw_base64": None, "raw_truncated": True})
    overhead = len(trimmed.model_copy(update={"raw": ""}).model_dump_json().encode())
    room = max(0, MAX_RECORD_BYTES - overhead) // 2  # JSON escaping may double a character
    raw = (trimmed.raw or "")[:room]
    return trimmed.model_copy(update={"raw": raw}).model_dump_json().encode()


class Producer(Protocol):
    """What the publisher needs of a KafkaProducer."""

    def send(
        self, topic: str, value: bytes, key: bytes | None = None, partition: int | None = None
    ) -> Any: ...

    def partitions_for(self, topic: str) -> set[int] | None: ...

    def flush(self, timeout: float | None = None) -> None: ...


@dataclass(slots=True)
class _Pending:
    value: bytes
    key: bytes | None
    on_ack: Callable[[], None]
    label: str  # what the record is (a dead letter's reason, a logged outcome), for metrics
    where: Mapping[str, Any]  # what to name when writing it fails
    count: int = 1  # what the record counts as (a log record holds a request's postbacks)
    not_before: float = 0.0


class AckedPublisher:
    """Writes records to one topic and calls each one's `on_ack` once the broker has it;
    retries failures. Records are handed over from any thread and written on the worker's
    (`pump`); acknowledgements arrive on the producer's thread."""

    def __init__(
        self,
        producer: Producer,
        topic: str,
        what: str,
        on_written: Callable[[str, int], None],
        on_failed: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
        *,
        partition_by_key: bool = False,
    ) -> None:
        self._producer = producer
        self._topic = topic
        # Each key's partition chosen here (CRC-32 of the key, in C): kafka-python's default
        # partitioner hashes every key in pure Python, which costs about as much as the rest of
        # a send.
        self._partition_by_key = partition_by_key
        self._partitions: int | None = None
        self._what = what  # "dead letter", "postback log record": for the log
        self._on_written = on_written
        self._on_failed = on_failed
        self._clock = clock
        self._incoming: queue.SimpleQueue[_Pending] = queue.SimpleQueue()
        self._retry: deque[_Pending] = deque()
        self._lock = threading.Lock()
        self._unacknowledged = 0

    @property
    def topic(self) -> str:
        return self._topic

    def submit_value(
        self, value: bytes, key: bytes | None, on_ack: Callable[[], None], label: str,
        where: Mapping[str, Any], count: int = 1,
    ) -> None:  # fmt: skip
        """Queue a record (any thread); it is written by the next `pump()`."""
        self._incoming.put(_Pending(value, key, on_ack, label, where, count))

    def pump(self) -> None:
        """Write queued records and retry failed ones whose wait is over (worker thread)."""
        now = self._clock()
        for _ in range(len(self._retry)):
            pending = self._retry.popleft()
            if pending.not_before <= now:
                self._send(pending)
            else:
                self._retry.append(pending)
        while True:
            try:
                pending = self._incoming.get_nowait()
            except queue.Empty:
                break
            if pending.not_before > now:
                self._retry.append(pending)
            else:
                self._send(pending)

    @property
    def outstanding(self) -> int:
        """Records handed to the producer and not yet acknowledged, plus those waiting to retry."""
        return self._unacknowledged + len(self._retry) + self._incoming.qsize()

    def flush(self, timeout_s: float) -> None:
        """Push queued records out and wait up to `timeout_s` for the broker to acknowledge."""
        self.pump()
        try:
            self._producer.flush(timeout=timeout_s)
        except Exception:
            log.warning("%s flush did not complete", self._what, exc_info=True)

    def _send(self, pending: _Pending) -> None:
        try:
            key = pending.key
            partitions = self._partitions or (self._partition_by_key and self._partition_count())
            if partitions and key is not None:
                future = self._producer.send(
                    self._topic, value=pending.value, key=key,
                    partition=zlib.crc32(key) % partitions,
                )  # fmt: skip
            else:
                future = self._producer.send(self._topic, value=pending.value, key=key)
        except Exception as exc:
            self._failed(pending, exc)
            return
        with self._lock:
            self._unacknowledged += 1
        future.add_callback(lambda _metadata: self._acknowledged(pending))
        future.add_errback(lambda exc: self._errored(pending, exc))

    def _partition_count(self) -> int:
        """The topic's partition count, from the producer's metadata (once it is known; 0
        until then: kafka-python's partitioner decides meanwhile)."""
        partitions = self._producer.partitions_for(self._topic)
        self._partitions = len(partitions) if partitions else None
        return self._partitions or 0

    def _acknowledged(self, pending: _Pending) -> None:
        with self._lock:
            self._unacknowledged -= 1
        self._on_written(pending.label, pending.count)
        pending.on_ack()

    def _errored(self, pending: _Pending, exc: BaseException) -> None:
        with self._lock:
            self._unacknowledged -= 1
        self._failed(pending, exc)

    def _failed(self, pending: _Pending, exc: BaseException) -> None:
        log.warning(
            "%s not written, will retry: %s", self._what, exc,
            extra={"label": pending.label, **pending.where},
        )  # fmt: skip
        self._on_failed()
        pending.not_before = self._clock() + RETRY_AFTER_FAILURE_S
        # From the producer's thread: hand back through the queue; pump() picks it up.
        self._incoming.put(pending)


class DeadLetterPublisher(AckedPublisher):
    """Writes dead letters and calls `on_ack` once the broker has them; retries failures."""

    def __init__(
        self,
        producer: Producer,
        topic: str,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            producer, topic, "dead letter", metrics.dead_lettered, metrics.dead_letter_failed,
            clock,
        )  # fmt: skip

    def submit(self, letter: DeadLetter, key: bytes | None, on_ack: Callable[[], None]) -> None:
        """Queue a dead letter (any thread); it is written by the next `pump()`."""
        where = {
            "reason": letter.reason,
            "source_topic": letter.source_topic,
            "source_partition": letter.source_partition,
            "source_offset": letter.source_offset,
        }
        self.submit_value(encode(letter), key, on_ack, letter.reason, where)
