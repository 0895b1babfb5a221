"""Injected misbehaviour: what the next requests get instead of a normal answer."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Fault:
    """One injected misbehaviour, for the next `count` requests or for `for_s` seconds."""

    status: int = 200
    code: int | None = None  # a TikTok body code to answer with (the events are not accepted)
    message: str = "injected fault"
    retry_after: str | None = None
    delay_s: float = 0.0  # answer this late (then normally, unless status/code say otherwise)
    close: bool = False  # drop the connection without answering
    count: int | None = None
    for_s: float | None = None
    until: float | None = field(default=None, repr=False)

    @property
    def answers_normally(self) -> bool:
        """Only a delay: the request is still processed."""
        return self.status == 200 and self.code is None and not self.close


class FaultQueue:
    """Faults applied in turn: each for its `count` requests or its `for_s` seconds."""

    def __init__(self) -> None:
        self.items: list[Fault] = []

    def __len__(self) -> int:
        return len(self.items)

    def clear(self) -> None:
        """Drop every queued fault."""
        self.items.clear()

    def add(self, faults: list[Fault]) -> None:
        """Queue faults; each applies in turn."""
        now = time.monotonic()
        for fault in faults:
            if fault.for_s is not None:
                fault.until = None  # the clock starts when the fault comes up
            self.items.append(fault)
        self._expire(now)

    def _expire(self, now: float) -> None:
        while self.items:
            head = self.items[0]
            if head.for_s is not None and head.until is None:
                head.until = now + head.for_s
            if (head.count is not None and head.count <= 0) or (
                head.until is not None and now >= head.until
            ):
                self.items.pop(0)
                continue
            return

    def next(self) -> Fault | None:
        """The fault for the request arriving now, if any."""
        self._expire(time.monotonic())
        if not self.items:
            return None
        head = self.items[0]
        if head.count is not None:
            head.count -= 1
        if head.count is None and head.for_s is None:
            self.items.pop(0)  # neither count nor duration: a single request
        return head


class PartnerFaults:
    """One fault queue per partner; `clear()` empties every queue (the partners stay)."""

    def __init__(self, partners: tuple[str, ...]) -> None:
        self._queues = {partner: FaultQueue() for partner in partners}

    def __getitem__(self, partner: str) -> FaultQueue:
        return self._queues[partner]

    def __contains__(self, partner: object) -> bool:
        return partner in self._queues

    def clear(self) -> None:
        """Drop every partner's queued faults."""
        for queue in self._queues.values():
            queue.clear()
