"""What one partner app (a destination) has to send: each source partition's items in offset
order, which partitions have a batch in flight, and the order in which partitions lend each other
room in a request. Pure bookkeeping: no clock, no loop, no I/O, so its rules are tested alone.

The rules:
- a partition has at most one batch in flight: its items leave in offset order, and a failing
  batch holds back the ones behind it instead of being overtaken;
- a batch is led by the partition whose lane claimed it, with that partition's items first; room
  left is lent to the other partitions with nothing in flight, in turn starting after the leader
  (wrapping round), so each partition fills its spare room from its neighbours in turn rather
  than from the first partitions ever seen; every partition carried is in flight until the batch
  is settled or put back;
- what is put back goes back at the front of its own partition, in order: nothing is lost.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from dispatcher.delivery.items import WorkItem
from dispatcher.offsets import Partition


@dataclass(slots=True, eq=False)
class Batch:
    """Items taken for one request: the leading partition's, then each lent partition's."""

    leader: Partition
    parts: list[tuple[Partition, list[WorkItem]]] = field(default_factory=list)

    @property
    def items(self) -> list[WorkItem]:
        """Every part's items in order (the one part's own list when nothing was lent: the
        channel never changes a batch's list in place)."""
        parts = self.parts
        if len(parts) == 1:
            return parts[0][1]
        return [item for _, items in parts for item in items]

    @property
    def partitions(self) -> list[Partition]:
        """Every partition this batch keeps in flight, the leader first."""
        return [self.leader, *(p for p, _ in self.parts if p != self.leader)]


class DestinationQueue:
    """The queued items of one destination, by source partition, and which are in flight."""

    __slots__ = ("_busy", "_flying", "_items")

    def __init__(self) -> None:
        self._items: dict[Partition, deque[WorkItem]] = {}  # in order of first use
        self._busy: set[Partition] = set()  # a batch carrying (or about to carry) it is out
        self._flying: dict[Partition, int] = {}  # items taken into a batch not yet settled

    def put(self, partition: Partition, items: list[WorkItem]) -> None:
        """Queue `items` of `partition`, in offset order, behind what it has queued."""
        queue = self._items.get(partition)
        if queue is None:
            queue = self._items[partition] = deque()
        queue.extend(items)

    def claim(self, partition: Partition) -> bool:
        """`partition`'s lane starts a batch: True, and the partition is in flight, when it has
        items and no batch out; False otherwise (nothing changes)."""
        if partition in self._busy or not self._items.get(partition):
            return False
        self._busy.add(partition)
        return True

    def take(self, partition: Partition, limit: int) -> Batch:
        """The batch of a claimed `partition`, formed now: up to `limit` of its own items, then
        room lent to the partitions after it that have items and nothing in flight (each then in
        flight). Empty when its items were discarded since the claim; it stays in flight until
        `settled` or `put_back`."""
        if partition not in self._busy:
            raise ValueError(f"take from {partition} without a claim")
        batch = Batch(partition)
        own = self._items.get(partition)
        size = min(len(own), limit) if own else 0
        if not size:
            return batch
        assert own is not None
        batch.parts.append((partition, [own.popleft() for _ in range(size)]))
        self._flying[partition] = size
        room = limit - size
        if room:
            for other in self._after(partition):
                queue = self._items[other]
                if other in self._busy or not queue:
                    continue
                count = min(room, len(queue))
                batch.parts.append((other, [queue.popleft() for _ in range(count)]))
                self._busy.add(other)
                self._flying[other] = count
                room -= count
                if not room:
                    break
        return batch

    def settled(self, batch: Batch) -> list[Partition]:
        """The batch's request is done with (delivered, rejected, given up): its partitions may
        send again. Returns them."""
        partitions = batch.partitions
        self._busy.difference_update(partitions)
        for partition in partitions:
            self._flying.pop(partition, None)
        return partitions

    def put_back(self, batch: Batch) -> list[Partition]:
        """The batch was not sent after all: each part back at the front of its partition, in
        order, and its partitions free. Returns them."""
        for partition, items in batch.parts:
            queue = self._items.get(partition)
            if queue is None:
                queue = self._items[partition] = deque()
            queue.extendleft(reversed(items))
        return self.settled(batch)

    def discard(self, partitions: set[Partition] | list[Partition] | None = None) -> int:
        """Drop the queued (not in-flight) items of `partitions` (all when None); how many."""
        count = 0
        for partition, queue in self._items.items():
            if partitions is None or partition in partitions:
                count += len(queue)
                queue.clear()
        return count

    def drop(self, partitions: set[Partition]) -> dict[Partition, int]:
        """Drop the queued items of `partitions` (their partitions are being let go); the
        lowest offset dropped of each partition that had any."""
        dropped: dict[Partition, int] = {}
        for partition in partitions:
            queue = self._items.get(partition)
            if queue:
                dropped[partition] = min(item.offset for item in queue)
                queue.clear()
        return dropped

    def ready(self, partition: Partition) -> bool:
        """`partition` has items queued and no batch out: its lane may claim."""
        return partition not in self._busy and bool(self._items.get(partition))

    def in_flight(self, partition: Partition) -> bool:
        return partition in self._busy

    def flying(self, partition: Partition) -> int:
        """How many of `partition`'s items are in a batch not yet settled."""
        return self._flying.get(partition, 0)

    def queued(self, partition: Partition) -> int:
        queue = self._items.get(partition)
        return len(queue) if queue else 0

    def oldest(self, partition: Partition) -> WorkItem | None:
        """The first queued item of `partition` (the one a linger is measured from)."""
        queue = self._items.get(partition)
        return queue[0] if queue else None

    def is_idle(self) -> bool:
        """Nothing queued and nothing in flight."""
        return not self._busy and not any(self._items.values())

    def _after(self, partition: Partition) -> list[Partition]:
        order = list(self._items)
        at = order.index(partition)
        return order[at + 1 :] + order[:at]
