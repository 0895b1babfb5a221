"""A lane: the items of one source partition bound for one destination, sent one batch at a time,
so one partition's events reach a partner app in offset order and a failing batch holds back the
ones behind it instead of being overtaken.

When a lane's request can leave with room to spare, it also carries what other lanes of the same
destination have queued, if they have nothing in flight (a *joined* batch): a few full requests
instead of one small request per partition, so the partner's request ceiling does not make
events wait at moderate load. A lane whose items ride in another lane's request is *held* until
that request is settled, so each partition still has one request in flight at a time."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING

from dispatcher.delivery.items import WorkItem
from dispatcher.offsets import Partition

if TYPE_CHECKING:
    from dispatcher.delivery.channel import PartnerChannel

log = logging.getLogger(__name__)


class Lane:
    """Items of one source partition bound for one destination, sent one batch at a time."""

    def __init__(self, channel: PartnerChannel, destination: str, partition: Partition) -> None:
        self.channel = channel
        self.destination = destination
        self.partition = partition
        self.items: deque[WorkItem] = deque()
        self.busy = False
        self.held = False  # its first items ride in another lane's request: it waits for that
        self._taken: list[WorkItem] = []  # own part of the batch in flight, put back on a defect
        self._joined: list[tuple[Lane, list[WorkItem]]] = []  # the other lanes' parts of it
        self._wake = asyncio.Event()
        self._flush = False
        self.task = asyncio.get_running_loop().create_task(self._run())

    def put(self, items: list[WorkItem]) -> None:
        """Queue items (in offset order)."""
        self.items.extend(items)
        self._wake.set()

    def flush(self) -> None:
        """Stop lingering: send what is queued now."""
        self._flush = True
        self._wake.set()

    def discard(self) -> int:
        """Drop queued items; return how many."""
        count = len(self.items)
        self.items.clear()
        return count

    def is_idle(self) -> bool:
        """Nothing queued and nothing in flight."""
        return not self.items and not self.busy

    def release(self) -> None:
        """The request that carried this lane's items is settled: it may send again."""
        self.held = False
        self._wake.set()

    async def _run(self) -> None:
        channel = self.channel
        while True:
            if not self.items:
                self._flush = False
            if not self.items or self.held:
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._linger()
            if not self.items or self.held:
                continue  # joined into another lane's request while it lingered
            self.busy = True
            try:
                if not await channel.deliver(self._take, self.destination):
                    # Nothing settled: nothing was queued, or, stopping, the batch was given up;
                    # what queued behind it would only be sent again after the restart as well.
                    self.discard()
                    for lane, _ in self._joined:
                        lane.discard()
                self._taken = []
                self._release_joined()
                continue
            except Exception:
                log.exception("lane for %s failed; retrying its batch", self.destination)
            finally:
                self.busy = False
            # A defect: put the batch back where it came from (nothing is lost), try again later.
            self.items.extendleft(reversed(self._taken))
            self._taken = []
            for lane, items in self._joined:
                lane.items.extendleft(reversed(items))
            self._release_joined()
            await channel.sleep(1.0)

    def _release_joined(self) -> None:
        joined, self._joined = self._joined, []
        for lane, _ in joined:
            lane.release()

    def _take(self) -> list[WorkItem]:
        """The batch, formed once its request can leave: while the lane waits for its turn
        (pacing, concurrency) the batch keeps growing, up to batch_max_events. Room left is
        filled from the other lanes of this destination that have nothing in flight, each
        lane's items in offset order; those lanes are held until this request is settled."""
        limit = self.channel.delivery.batch_max_events
        size = min(len(self.items), limit)
        self._taken = [self.items.popleft() for _ in range(size)]
        batch = list(self._taken)
        room = limit - size
        if size and room:
            for lane in self.channel.lanes_after(self):
                if lane.busy or lane.held or not lane.items:
                    continue
                count = min(room, len(lane.items))
                part = [lane.items.popleft() for _ in range(count)]
                lane.held = True
                self._joined.append((lane, part))
                batch.extend(part)
                room -= count
                if not room:
                    break
        return batch

    async def _linger(self) -> None:
        """Wait until the batch is full, the linger has passed since the oldest item, or flush."""
        channel = self.channel
        linger_s = channel.delivery.batch_linger_ms / 1000
        while (
            self.items and len(self.items) < channel.delivery.batch_max_events and not self._flush
        ):
            remaining = self.items[0].queued_at + linger_s - channel.clock()
            if remaining <= 0:
                return
            self._wake.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._wake.wait()
            except TimeoutError:
                return
