"""The destination queue's rules, alone: Hypothesis drives put, claim, take, settled, put_back
and discard in any order against a plain model of what each partition has sent, has in flight
and has queued, and checks the rules after every step."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
)

from dispatcher.delivery.items import WorkItem
from dispatcher.delivery.queue import Batch, DestinationQueue
from dispatcher.offsets import Partition

PARTITIONS: list[Partition] = [("in-app", n) for n in range(4)] + [("installs", 0)]


def work(partition: Partition, offset: int) -> WorkItem:
    topic, number = partition
    return WorkItem(
        topic, number, offset, None, None, "tiktok", "dest", {}, "Purchase", 0.0, float(offset)
    )


class QueueRules(RuleBasedStateMachine):
    """The model: per partition, the offsets put (in order), the ones gone for good (settled or
    discarded), and which batch has it in flight."""

    batches = Bundle("batches")

    def __init__(self) -> None:
        super().__init__()
        self.queue = DestinationQueue()
        self.next_offset = {p: 0 for p in PARTITIONS}
        self.put_offsets: dict[Partition, list[int]] = {p: [] for p in PARTITIONS}
        self.gone: dict[Partition, list[int]] = {p: [] for p in PARTITIONS}  # settled, discarded
        self.sent: dict[Partition, list[int]] = {p: [] for p in PARTITIONS}  # settled, in order
        self.out: dict[Partition, Batch] = {}
        self.first_use: list[Partition] = []

    @initialize()
    def nothing_yet(self) -> None:
        assert self.queue.is_idle()

    @rule(partition=st.sampled_from(PARTITIONS), count=st.integers(1, 6))
    def put(self, partition: Partition, count: int) -> None:
        start = self.next_offset[partition]
        self.next_offset[partition] = start + count
        self.queue.put(partition, [work(partition, start + n) for n in range(count)])
        self.put_offsets[partition].extend(range(start, start + count))
        if partition not in self.first_use:
            self.first_use.append(partition)

    def queued(self, partition: Partition) -> list[int]:
        """What the model says is queued: put, not gone, not in flight."""
        in_flight = {i.offset for b in self.out.values() for p, items in b.parts if p == partition
                     for i in items}  # fmt: skip
        gone = set(self.gone[partition])
        return [o for o in self.put_offsets[partition] if o not in gone and o not in in_flight]

    @rule(target=batches, partition=st.sampled_from(PARTITIONS), limit=st.integers(1, 12))
    def claim_and_take(self, partition: Partition, limit: int) -> Any:
        free_with_items = [p for p in self.first_use if p not in self.out and self.queued(p)]
        claimed = self.queue.claim(partition)
        # A claim succeeds exactly when the partition has items and nothing in flight
        assert claimed == (partition in free_with_items)
        if not claimed:
            return None
        before = {p: self.queued(p) for p in self.first_use}
        batch = self.queue.take(partition, limit)
        taken = batch.items
        assert 0 < len(taken) <= limit
        # The leader's own items first: as many as fit, its oldest first
        assert batch.parts[0][0] == partition
        own = [i.offset for i in batch.parts[0][1]]
        assert own == before[partition][: min(limit, len(before[partition]))]
        # Lent room goes to free partitions in turn after the leader, each its oldest first
        order = (
            self.first_use[self.first_use.index(partition) + 1 :]
            + self.first_use[: self.first_use.index(partition)]
        )
        lent = [p for p, _ in batch.parts[1:]]
        assert lent == [p for p in order if p in lent]
        for p, items in batch.parts[1:]:
            assert p in free_with_items
            assert p != partition
            assert items  # a partition lends something, or is not kept in flight
            assert [i.offset for i in items] == before[p][: len(items)]
        if len(taken) < limit:  # room left: no free partition kept items back
            assert all(p in lent or not before[p] for p in free_with_items if p != partition)
        for p in batch.partitions:
            assert p not in self.out
            self.out[p] = batch
        return batch

    @rule(batch=consumes(batches))
    def settle(self, batch: Batch | None) -> None:
        if batch is None:
            return
        freed = self.queue.settled(batch)
        assert freed == batch.partitions
        for p, items in batch.parts:
            self.gone[p].extend(i.offset for i in items)
            self.sent[p].extend(i.offset for i in items)
        for p in freed:
            del self.out[p]

    @rule(batch=consumes(batches))
    def put_back(self, batch: Batch | None) -> None:
        if batch is None:
            return
        freed = self.queue.put_back(batch)
        assert freed == batch.partitions
        for p in freed:
            del self.out[p]

    @rule(partitions=st.sets(st.sampled_from(PARTITIONS)) | st.none())
    def discard(self, partitions: set[Partition] | None) -> None:
        chosen = self.first_use if partitions is None else [p for p in self.first_use
                                                            if p in partitions]  # fmt: skip
        expected = {p: self.queued(p) for p in chosen}
        assert self.queue.discard(partitions) == sum(len(v) for v in expected.values())
        for p, offsets in expected.items():
            self.gone[p].extend(offsets)

    @invariant()
    def agrees_with_the_model(self) -> None:
        for p in PARTITIONS:
            queued = self.queued(p)
            assert self.queue.queued(p) == len(queued)
            oldest = self.queue.oldest(p)
            assert (oldest.offset if oldest else None) == (queued[0] if queued else None)
            assert self.queue.in_flight(p) == (p in self.out)
            carried = [i for q, items in self.out[p].parts if q == p for i in items] if (
                p in self.out) else []  # fmt: skip
            assert self.queue.flying(p) == len(carried)
            assert self.queue.ready(p) == (p not in self.out and bool(queued))
        assert self.queue.is_idle() == (not self.out and not any(map(self.queued, PARTITIONS)))

    @invariant()
    def nothing_lost_or_doubled_and_in_order(self) -> None:
        for p in PARTITIONS:
            gone = self.gone[p]
            in_flight = [i.offset for q, items in self.out[p].parts if q == p
                         for i in items] if p in self.out else []  # fmt: skip
            # Each offset put is in exactly one place: gone, in flight or queued
            assert len(gone) + len(in_flight) + self.queue.queued(p) == len(self.put_offsets[p])
            assert len({*gone, *in_flight}) == len(gone) + len(in_flight)
            # What a partition sent left in offset order, batch after batch
            assert self.sent[p] == sorted(self.sent[p])


QueueRules.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
test_destination_queue_rules = QueueRules.TestCase


def test_a_partition_leaves_in_offset_order_across_joined_batches() -> None:
    """What leaves a partition, batch after batch, led by it or lent to another, is its offsets
    in order; a batch put back leaves again first."""
    queue = DestinationQueue()
    a, b = PARTITIONS[0], PARTITIONS[1]
    queue.put(a, [work(a, n) for n in range(3)])
    queue.put(b, [work(b, n) for n in range(5)])
    assert queue.claim(a)
    first = queue.take(a, 5)  # a's three, then two of b's
    assert [(p, i.offset) for p, items in first.parts for i in items] == [
        (a, 0), (a, 1), (a, 2), (b, 0), (b, 1),
    ]  # fmt: skip
    assert not queue.claim(b)  # b is in flight in a's batch
    queue.put_back(first)
    assert queue.claim(b)
    second = queue.take(b, 10)  # b leads now, with its own from the oldest, then a's
    assert [(p, i.offset) for p, items in second.parts for i in items] == [
        *((b, n) for n in range(5)), *((a, n) for n in range(3)),
    ]  # fmt: skip
    assert queue.settled(second) == [b, a]
    assert queue.is_idle()


def test_take_needs_a_claim() -> None:
    queue = DestinationQueue()
    queue.put(PARTITIONS[0], [work(PARTITIONS[0], 0)])
    with pytest.raises(ValueError, match="without a claim"):
        queue.take(PARTITIONS[0], 1)
