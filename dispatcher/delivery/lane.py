"""A lane: the items of one source partition bound for one destination, sent one batch at a time,
so one partition's events reach a partner app in offset order and a failing batch holds back the
ones behind it instead of being overtaken."""

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
        self._taken: list[WorkItem] = []  # the batch in flight, put back should a defect strike
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

    async def _run(self) -> None:
        channel = self.channel
        while True:
            if not self.items:
                self._flush = False
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._linger()
            self.busy = True
            try:
                if not await channel.deliver(self._take, self.destination):
                    # Nothing settled: nothing was queued, or, stopping, the batch was given up;
                    # what queued behind it would only be sent again after the restart as well.
                    self.discard()
                self._taken = []
                continue
            except Exception:
                log.exception("lane for %s failed; retrying its batch", self.destination)
            finally:
                self.busy = False
            # A defect: put the batch back (nothing is lost) and try again after a pause.
            self.items.extendleft(reversed(self._taken))
            self._taken = []
            await channel.sleep(1.0)

    def _take(self) -> list[WorkItem]:
        """The batch, formed once its request can leave: while the lane waits for its turn
        (pacing, concurrency) the batch keeps growing, up to batch_max_events."""
        size = min(len(self.items), self.channel.delivery.batch_max_events)
        self._taken = [self.items.popleft() for _ in range(size)]
        return self._taken

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
