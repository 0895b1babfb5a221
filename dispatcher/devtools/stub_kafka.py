"""In-memory stand-ins for the parts of kafka-python's consumer and producer the worker uses, for
fast in-process worker tests (as dramatiq ships a stub broker). The real-broker tests stay: these
stubs know nothing of the wire, group coordination or timing."""

from __future__ import annotations

import inspect
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from kafka import TopicPartition
from kafka.errors import CommitFailedError, KafkaTimeoutError
from kafka.future import Future
from kafka.structs import OffsetAndMetadata


class StubRecord(NamedTuple):
    """A record as `poll()` hands it out (the attributes the worker reads)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()


class StubConsumer:
    """One consumer of an in-memory log; the group is this consumer alone."""

    def __init__(self, partitions: dict[str, int]) -> None:
        self.logs: dict[TopicPartition, list[StubRecord]] = {
            TopicPartition(topic, p): []
            for topic, count in partitions.items()
            for p in range(count)
        }
        self.committed_offsets: dict[TopicPartition, int] = {}
        self.commit_calls = 0
        self.commit_history: list[dict[TopicPartition, int]] = []  # every accepted commit
        self.fail_commits = 0  # the next N commits fail as a broker in a rebalance answers
        self.closed = False
        self._positions: dict[TopicPartition, int] = {}
        self._assigned: set[TopicPartition] = set()
        self._paused: set[TopicPartition] = set()
        self._listener: Any = None
        self._pending_assignment: list[TopicPartition] | None = None
        self._reread = False
        self._skipped = 0
        self._meanwhile: Callable[[], None] | None = None
        self._coordinator = _StubCoordinator()  # the group's generation, where kafka-python has it
        self.topic_ids = {tp.topic: str(uuid.uuid4()) for tp in self.logs}
        self.deleted_topics: set[str] = set()
        self.metadata_gaps: set[str] = set()  # topics a metadata answer leaves out, yet exist
        self._cluster = _StubCluster(self)

    # --- the test's side --------------------------------------------------------------------

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> int:
        """Append a record (partitioned by key, as Kafka's default partitioner would spread
        them); return its offset."""
        count = sum(1 for tp in self.logs if tp.topic == topic)
        partition = zlib.crc32(key) % count if key else 0
        tp = TopicPartition(topic, partition)
        log = self.logs[tp]
        log.append(StubRecord(topic, partition, len(log), key, value, headers))
        return len(log) - 1

    def reassign(
        self, partitions: Iterable[TopicPartition], *, reread: bool = False, skipped: int = 0,
        meanwhile: Callable[[], None] | None = None,
    ) -> None:  # fmt: skip
        """A rebalance at the next poll: every partition revoked, then `partitions` assigned. A
        partition that stays keeps its position, as kafka-python 3 keeps it; with `reread`,
        every one resumes where the group committed (as when it went to another member and
        came back). `skipped` generations pass between the revocation and the assignment (a
        join answered late, as Tansu can: another member owns the partitions meanwhile, and
        `meanwhile` does what it did, such as producing and committing), and kafka-python
        keeps the old positions all the same."""
        self._pending_assignment = list(partitions)
        self._reread = reread
        self._skipped = skipped
        self._meanwhile = meanwhile

    def delete_topic(self, topic: str) -> None:
        """The topic is deleted (as Apache Kafka does it: gone, not recreated); the group loses
        its partitions at the next poll."""
        self.deleted_topics.add(topic)
        self.reassign(tp for tp in self._assigned if tp.topic != topic)

    # --- what the worker calls ----------------------------------------------------------------

    def topics(self) -> set[str]:
        return {tp.topic for tp in self.logs} - self.deleted_topics

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        self._listener = listener
        self._pending_assignment = [tp for tp in self.logs if tp.topic in topics]

    def poll(
        self, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[StubRecord]]:
        self._rebalance()
        budget = max_records if max_records is not None else 500
        batch: dict[TopicPartition, list[StubRecord]] = {}
        for tp in sorted(self._assigned - self._paused):
            if budget <= 0:
                break
            position = self._positions[tp]
            records = self.logs[tp][position : position + budget]
            if records:
                batch[tp] = records
                self._positions[tp] = position + len(records)
                budget -= len(records)
        if not batch:
            time.sleep(min(timeout_ms, 5) / 1000)
        return batch

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        self.commit_calls += 1
        if self.fail_commits:
            self.fail_commits -= 1
            raise CommitFailedError("stub: the group is rebalancing")
        for tp, meta in offsets.items():
            self.committed_offsets[tp] = meta.offset
        self.commit_history.append({tp: meta.offset for tp, meta in offsets.items()})

    def commit_async(
        self,
        offsets: dict[TopicPartition, OffsetAndMetadata],
        callback: Callable[[object, object], None] | None = None,
    ) -> Future:
        """As kafka-python: the outcome goes to `callback` (here at once) and to the returned
        future (done already), never raised."""
        future = Future()
        try:
            self.commit(offsets)
        except CommitFailedError as exc:
            if callback is not None:
                callback(offsets, exc)
            return future.failure(exc)
        if callback is not None:
            callback(offsets, None)
        return future.success(None)

    def committed(self, tp: TopicPartition, timeout_ms: int | None = None) -> int | None:
        return self.committed_offsets.get(tp)

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    def pause(self, *tps: TopicPartition) -> None:
        self._paused |= set(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self._paused -= set(tps)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._positions[tp] = offset

    def highwater(self, tp: TopicPartition) -> int | None:
        return len(self.logs[tp]) if tp in self._assigned else None

    def close(self, autocommit: bool = False) -> None:
        self.closed = True

    def _rebalance(self) -> None:
        assignment, self._pending_assignment = self._pending_assignment, None
        if assignment is None:
            return
        if self._assigned and self._listener is not None:
            _call(self._listener.on_partitions_revoked, sorted(self._assigned))
        self._coordinator._generation.generation_id += 1 + self._skipped
        self._skipped = 0
        meanwhile, self._meanwhile = self._meanwhile, None
        if meanwhile is not None:
            meanwhile()
        stayed = set() if self._reread else self._assigned & set(assignment)
        self._assigned = set(assignment)
        self._paused &= self._assigned
        for tp in assignment:  # a new one resumes where the group committed
            if tp not in stayed:
                self._positions[tp] = self.committed_offsets.get(tp, 0)
        if self._listener is not None:
            _call(self._listener.on_partitions_assigned, sorted(assignment))


class _StubGeneration:
    def __init__(self) -> None:
        self.generation_id = 0


class _StubCoordinator:
    """Where kafka-python keeps the group's generation (`kafka_clients.group_generation`)."""

    def __init__(self) -> None:
        self._generation = _StubGeneration()


def _call(method: Callable[[list[TopicPartition]], Any], partitions: list[TopicPartition]) -> None:
    """Call a rebalance listener's method, driving it to its end when it is a coroutine (as
    kafka-python's loop would; everything it may await on the stub is answered already)."""
    result = method(partitions)
    if not inspect.iscoroutine(result):
        return
    try:
        result.send(None)
    except StopIteration:
        return
    result.close()
    raise RuntimeError("stub: a rebalance listener waited for something the stub cannot answer")


class _StubCluster:
    """The part of kafka-python's metadata cache (`consumer._cluster`) the worker reads."""

    def __init__(self, consumer: StubConsumer) -> None:
        self._consumer = consumer

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        consumer = self._consumer
        if topic in consumer.deleted_topics or topic in consumer.metadata_gaps:
            return None
        return {tp.partition for tp in consumer.logs if tp.topic == topic} or None

    def topic_id(self, topic: str) -> uuid.UUID | None:
        found = self._consumer.topic_ids.get(topic)
        return uuid.UUID(found) if found else None


class _Sent:
    """A send's future: settled at once (`done`), or later by the stub producer."""

    def __init__(self, done: bool = False, error: BaseException | None = None) -> None:
        self._done, self._error = done, error
        self._callbacks: list[Callable[[Any], None]] = []
        self._errbacks: list[Callable[[BaseException], None]] = []

    def add_callback(self, callback: Callable[[Any], None]) -> None:
        if self._done and self._error is None:
            callback(None)
        else:
            self._callbacks.append(callback)

    def add_errback(self, errback: Callable[[BaseException], None]) -> None:
        if self._done and self._error is not None:
            errback(self._error)
        else:
            self._errbacks.append(errback)

    def settle(self, error: BaseException | None) -> None:
        self._done, self._error = True, error
        if error is None:
            for callback in self._callbacks:
                callback(None)
        else:
            for errback in self._errbacks:
                errback(error)


class StubProducer:
    """Records what is sent; acknowledges at once (`auto_ack`) or on `acknowledge()`, and
    refuses the next `fail_sends` sends as an unreachable broker would."""

    def __init__(self, auto_ack: bool = True) -> None:
        self.sent: list[tuple[str, bytes, bytes | None]] = []
        self.auto_ack = auto_ack
        self.fail_sends = 0
        self._waiting: list[_Sent] = []

    def partitions_for(self, topic: str) -> set[int] | None:
        return {0, 1}

    def send(
        self, topic: str, value: bytes, key: bytes | None = None, partition: int | None = None
    ) -> _Sent:
        if self.fail_sends:
            self.fail_sends -= 1
            return _Sent(done=True, error=KafkaTimeoutError("stub: not acknowledged"))
        self.sent.append((topic, value, key))
        if self.auto_ack:
            return _Sent(done=True)
        future = _Sent()
        self._waiting.append(future)
        return future

    def flush(self, timeout: float | None = None) -> None:
        if self.auto_ack:
            self.acknowledge()

    def acknowledge(self) -> None:
        """The broker took everything sent so far."""
        waiting, self._waiting = self._waiting, []
        for future in waiting:
            future.settle(None)
