"""A lane: the task that sends one source partition's items to one destination, one batch at a
time. It waits for items, lingers until its batch is full or the oldest item has waited
`batch_linger_ms` (or it is told to flush), claims its partition in the destination's queue and
hands the channel a `take` that forms the batch when its request can leave, so the batch keeps
growing while it waits for its turn (pacing, concurrency). What the queue lends it from other
partitions rides along (a *joined* batch); those partitions wait for the batch as its own does.

The lane knows the queue and the channel's `deliver` as a function, not the channel itself."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from dispatcher.delivery.items import WorkItem
from dispatcher.delivery.queue import Batch, DestinationQueue
from dispatcher.offsets import Partition
from dispatcher.ratelimit import Clock
from schemas.config import DeliveryConfig

log = logging.getLogger(__name__)

Take = Callable[[], list[WorkItem]]  # forms a batch at the moment its request can leave
# Sends what `take` forms and reports each part's final word; False when nothing was settled.
Deliver = Callable[[Take, str], Awaitable[bool]]
DEFECT_PAUSE_S = 1.0  # after a defect, before this lane tries again


class Lane:
    """The task sending one partition's items to one destination."""

    __slots__ = (
        "_clock", "_deliver", "_flush", "_limit", "_on_free", "_queue", "_settings", "_sleep",
        "_wake", "destination", "partition", "task",
    )  # fmt: skip

    def __init__(
        self,
        queue: DestinationQueue,
        destination: str,
        partition: Partition,
        deliver: Deliver,
        settings: Callable[[], DeliveryConfig],
        limit: Callable[[str], int],
        on_free: Callable[[str, list[Partition]], None],
        clock: Clock,
        sleep: Callable[[float], Any],
    ) -> None:
        self.destination = destination
        self.partition = partition
        self._queue = queue
        self._deliver = deliver
        self._settings = settings  # read per batch: a reload applies to the next one
        self._limit = limit  # the destination's batch size now (smaller after timeouts)
        self._on_free = on_free  # partitions a batch no longer keeps in flight
        self._clock = clock
        self._sleep = sleep
        self._wake = asyncio.Event()
        self._flush = False
        self.task = asyncio.get_running_loop().create_task(self._run())

    def wake(self) -> None:
        """Look at the queue again: items were queued, or the partition is free."""
        self._wake.set()

    def flush(self) -> None:
        """Stop lingering: send what is queued now."""
        self._flush = True
        self._wake.set()

    async def _run(self) -> None:
        queue, partition, destination = self._queue, self.partition, self.destination
        while True:
            if not queue.queued(partition):
                self._flush = False
            if not queue.ready(partition):
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._linger()
            if not queue.claim(partition):
                continue  # its items rode in another lane's request while it lingered
            batch = Batch(partition)

            def take() -> list[WorkItem]:
                nonlocal batch
                batch = queue.take(partition, self._limit(destination))
                return batch.items

            try:
                settled = await self._deliver(take, destination)
            except Exception:
                log.exception("lane for %s failed; retrying its batch", destination)
                # A defect: the batch goes back where it came from (nothing is lost).
                self._on_free(destination, queue.put_back(batch))
                await self._sleep(DEFECT_PAUSE_S)
                continue
            if not settled:
                # Nothing settled: nothing was queued, or, stopping, the batch was given up;
                # what queued behind it would only be sent again after the restart as well.
                queue.discard(batch.partitions)
            self._on_free(destination, queue.settled(batch))

    async def _linger(self) -> None:
        """Wait until the batch is full, the linger has passed since the oldest item, or flush."""
        queue, partition = self._queue, self.partition
        linger_s = self._settings().batch_linger_ms / 1000
        full = self._limit(self.destination)
        while not self._flush:
            oldest = queue.oldest(partition)
            if oldest is None or queue.queued(partition) >= full:
                return
            remaining = oldest.queued_at + linger_s - self._clock()
            if remaining <= 0:
                return
            self._wake.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._wake.wait()
            except TimeoutError:
                return
