"""The one owner of offsets: which offsets are final, and which may be committed.

An event is tracked when it is read, with the number of things that must finish before it is
final (one per owed postback, one for a dead letter; zero when nothing is owed). The committable
offset of a partition is the lowest offset that is not final yet, or one past the last event read
when everything is final. Committed offsets only move forward.

`Checkpoint` is the one place offsets are committed (quix-streams' shape): it asks the tracker
what may be committed, hands it to the commit function it was given (the Kafka edge's), records
what the broker accepted, never moves an offset backwards, and is forced on stop. No Kafka here.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping

from dispatcher.errors import CommitFailedError

log = logging.getLogger(__name__)

Partition = tuple[str, int]  # (topic, partition); kafka's TopicPartition is such a tuple


class PartitionOffsets:
    """The offsets of one partition that are read but not yet final."""

    __slots__ = ("_order", "_pending", "committed", "next_offset")

    def __init__(self, committed: int | None = None) -> None:
        self._pending: dict[int, int] = {}  # offset → work units still outstanding
        self._order: deque[int] = deque()  # pending offsets, in the order they were read
        self.next_offset: int | None = None  # one past the last offset read
        self.committed = committed  # the last offset committed (the next one to read)

    def track(self, offset: int, units: int) -> None:
        """Record an event read at `offset` with `units` things to finish (0: final already)."""
        if self.next_offset is not None and offset < self.next_offset:
            raise ValueError(f"offset {offset} read again below {self.next_offset}")
        self.next_offset = offset + 1
        if units > 0:
            self._pending[offset] = units
            self._order.append(offset)

    def has_seen(self, offset: int) -> bool:
        """True when `offset` was read before (a re-read after a rebalance or a seek)."""
        return self.next_offset is not None and offset < self.next_offset

    def complete(self, offset: int) -> bool:
        """One unit of `offset` finished; True when the event is now final."""
        units = self._pending.get(offset)
        if units is None:
            return False
        if units > 1:
            self._pending[offset] = units - 1
            return False
        del self._pending[offset]
        return True

    def rewind(self, offset: int) -> None:
        """Events from `offset` on were not handled after all (their postbacks were dropped,
        unsent, with the partition): they are forgotten, and handled again when read again."""
        for pending in [o for o in self._pending if o >= offset]:
            del self._pending[pending]
        if self.next_offset is not None and offset < self.next_offset:
            self.next_offset = offset

    def committable(self) -> int | None:
        """The offset to commit: everything below it is final. None when nothing was read."""
        order = self._order
        while order and order[0] not in self._pending:
            order.popleft()
        if order:
            return order[0]
        return self.next_offset

    def pending(self) -> int:
        """How many events of this partition are not final."""
        return len(self._pending)


class OffsetTracker:
    """Offsets of every assigned partition; the worker is its only user."""

    def __init__(self) -> None:
        self._partitions: dict[Partition, PartitionOffsets] = {}
        self._detached: dict[Partition, PartitionOffsets] = {}

    def partition(self, tp: Partition) -> PartitionOffsets:
        """The state of an assigned partition, created on first use."""
        state = self._partitions.get(tp)
        if state is None:
            state = self._partitions[tp] = PartitionOffsets()
        return state

    def complete(self, tp: Partition, offset: int) -> None:
        """One unit of work for an event finished (ignored for a partition no longer ours)."""
        state = self._state(tp)
        if state is not None:
            state.complete(offset)

    def pending(self) -> int:
        """Events read and not final, over every partition (assigned or being handed over)."""
        return sum(state.pending() for state in self._partitions.values()) + sum(
            state.pending() for state in self._detached.values()
        )

    def pending_in(self, tps: Iterable[Partition]) -> int:
        """Events not final in the given partitions."""
        return sum(state.pending() for tp in tps if (state := self._state(tp)) is not None)

    def to_commit(self, tps: Iterable[Partition] | None = None) -> dict[Partition, int]:
        """Partitions whose committable offset moved past what was committed."""
        selected = self._partitions if tps is None else self._select(tps)
        offsets: dict[Partition, int] = {}
        for tp, state in selected.items():
            offset = state.committable()
            if offset is not None and (state.committed is None or offset > state.committed):
                offsets[tp] = offset
        return offsets

    def mark_committed(self, offsets: Mapping[Partition, int]) -> None:
        """The broker accepted these commits; offsets only move forward."""
        for tp, offset in offsets.items():
            state = self._state(tp)
            if state is not None and (state.committed is None or offset > state.committed):
                state.committed = offset

    def committed(self, tp: Partition) -> int | None:
        """The last offset committed for a partition, if any."""
        state = self._state(tp)
        return state.committed if state else None

    def final_offset(self, tp: Partition) -> int | None:
        """Where a partition's final events end (what would be committed now)."""
        state = self._state(tp)
        return state.committable() if state else None

    def rewind(self, offsets: Mapping[Partition, int]) -> None:
        """Partitions whose events from an offset on were not handled after all (`rewind`)."""
        for tp, offset in offsets.items():
            state = self._state(tp)
            if state is not None:
                state.rewind(offset)

    def detach(self, tps: Iterable[Partition]) -> None:
        """Partitions revoked: keep their state until the new assignment is known."""
        for tp in tps:
            state = self._partitions.pop(tp, None)
            if state is not None:
                self._detached[tp] = state

    def reassign(self, tps: Iterable[Partition]) -> list[Partition]:
        """The new assignment: partitions we keep get their state back (so events already
        read are not sent again); the others are forgotten. Returns the forgotten ones."""
        for tp in tps:
            state = self._detached.pop(tp, None)
            if state is not None:
                self._partitions[tp] = state
        dropped = list(self._detached)
        self._detached.clear()
        return dropped

    def detached(self) -> list[Partition]:
        """Revoked partitions whose state is kept until the new assignment is known."""
        return list(self._detached)

    def assigned(self) -> list[Partition]:
        """The partitions currently tracked as ours."""
        return list(self._partitions)

    def _state(self, tp: Partition) -> PartitionOffsets | None:
        """An assigned partition's state, or a revoked one's still finishing its work."""
        return self._partitions.get(tp) or self._detached.get(tp)

    def _select(self, tps: Iterable[Partition]) -> dict[Partition, PartitionOffsets]:
        return {tp: state for tp in tps if (state := self._state(tp)) is not None}


Committer = Callable[[dict[Partition, int]], None]  # commits, or raises CommitFailedError


AsyncCommitter = Callable[
    [dict[Partition, int], Callable[[dict[Partition, int], Exception | None], None]], None
]
# An asynchronous commit unanswered this long is given up (and its offsets tried again).
ASYNC_COMMIT_TIMEOUT_S = 15.0
# While commits keep failing (a broker outage fails one per commit interval), a warning at most
# this often; the first failure and the first success after failures are always logged.
COMMIT_WARNING_INTERVAL_S = 60.0


class Checkpoint:
    """Commits what is final: only forward, only what the tracker allows, forced on stop.

    While the worker runs, `commit_soon` commits asynchronously whatever moved past what was
    committed or already sent, without waiting for earlier commits to be answered (Java's
    `commitAsync` does the same): the client learns of an answer only when it next polls, so
    waiting for it would leave what became final meanwhile uncommitted for a turn or two of a
    busy loop, to be sent again after a crash. Order is kept by the client (one connection to
    the coordinator, requests answered in the order sent), and an answer only ever moves an
    offset forward. `commit` commits synchronously (rebalance, stop). A refused commit changes
    nothing: the same offsets, or later ones, go with the next.
    """

    def __init__(
        self,
        tracker: OffsetTracker,
        commit: Committer,
        on_result: Callable[[bool], None] = lambda ok: None,
        commit_async: AsyncCommitter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tracker = tracker
        self._commit = commit
        self._commit_async = commit_async
        self._on_result = on_result
        self._clock = clock
        self._answers: queue.SimpleQueue[tuple[dict[Partition, int], Exception | None]] = (
            queue.SimpleQueue()
        )
        # Per partition, the last offset sent in an asynchronous commit not yet answered, and
        # when: it is not sent again while its answer may still come.
        self._unanswered: dict[Partition, tuple[int, float]] = {}
        self._failures = 0  # commits refused in a row
        self._warned_at = 0.0

    def commit_soon(self) -> None:
        """Start an asynchronous commit of what became final since the last one was sent."""
        self.take_commit_answers()
        if self._commit_async is None:
            self.commit()
            return
        now = self._clock()
        unanswered = self._unanswered
        expired = [
            tp for tp, (_, sent_at) in unanswered.items() if now - sent_at >= ASYNC_COMMIT_TIMEOUT_S
        ]
        if expired:
            log.warning("an offset commit was not answered in %.0f s; trying again",
                        ASYNC_COMMIT_TIMEOUT_S)  # fmt: skip
            for tp in expired:
                del unanswered[tp]
            self._on_result(False)
        offsets = {
            tp: offset
            for tp, offset in self._tracker.to_commit().items()
            if tp not in unanswered or offset > unanswered[tp][0]
        }
        if not offsets:
            return
        for tp, offset in offsets.items():
            unanswered[tp] = (offset, now)
        self._commit_async(offsets, self._answered)

    def _answered(self, offsets: dict[Partition, int], error: Exception | None) -> None:
        # Any thread (the client's network thread): only hand the answer over.
        self._answers.put((offsets, error))

    def take_commit_answers(self) -> None:
        """Take in the answers to asynchronous commits (on the loop's thread)."""
        while True:
            try:
                offsets, error = self._answers.get_nowait()
            except queue.Empty:
                return
            for tp, offset in offsets.items():
                sent = self._unanswered.get(tp)
                if sent is not None and sent[0] == offset:
                    del self._unanswered[tp]  # the last one sent: answered (or refused: resend)
            if error is None:
                self._tracker.mark_committed(offsets)
                self._succeeded()
            else:
                where = ", ".join(f"{topic}[{partition}]" for topic, partition in sorted(offsets))
                self._failed(f"offset commit of {where} failed: {error}")

    def _succeeded(self) -> None:
        self._on_result(True)
        if self._failures:
            log.info("offset commits succeed again after %d failed", self._failures)
            self._failures = 0

    def _failed(self, message: str) -> None:
        """Warn of the first refusal at once, then at most every COMMIT_WARNING_INTERVAL_S with
        the count: one line per state change, not one per commit interval."""
        self._on_result(False)
        self._failures += 1
        now = self._clock()
        if self._failures == 1:
            log.warning("%s; will try again", message)
        elif now - self._warned_at >= COMMIT_WARNING_INTERVAL_S:
            log.warning("%s; will try again (%d failed in a row)", message, self._failures)
        else:
            return
        self._warned_at = now

    def commit(self, tps: Iterable[Partition] | None = None) -> bool:
        """Commit every partition (or those of `tps`) whose final offset moved forward, and wait;
        False when the broker refused, in which case the same offsets are tried again next
        time."""
        self.take_commit_answers()
        offsets = self._tracker.to_commit(tps)
        if not offsets:
            return True
        try:
            self._commit(offsets)
        except CommitFailedError as exc:
            self._failed(str(exc))
            return False
        self._tracker.mark_committed(offsets)
        self._succeeded()
        return True

    def offsets_to_commit(self, tps: Iterable[Partition]) -> dict[Partition, int]:
        """What `commit(tps)` would commit now, for a caller that must commit it itself (inside
        the Kafka client's own loop, where `commit` cannot wait) and then calls `answered`."""
        self.take_commit_answers()
        return self._tracker.to_commit(tps)

    def answered(self, offsets: dict[Partition, int], error: Exception | None) -> bool:
        """The answer to a commit of `offsets_to_commit`'s offsets, taken in at once; True when
        the broker accepted them."""
        self._answers.put((offsets, error))
        self.take_commit_answers()
        return error is None

    def close(self) -> bool:
        """The final commit on stop: everything final is committed, or it says it was not."""
        return self.commit()
