"""Injected misbehaviour: what the next requests get instead of a normal answer."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Fault:
    """One injected misbehaviour, for the next `count` requests, for `for_s` seconds, or (with
    `until_reset`) until the faults are cleared; with none of them, for the next request alone.

    With `event_ids` it is a bad event instead: every request carrying one of those events is
    answered with it (nothing accepted), the others normally, until the faults are cleared."""

    status: int = 200
    code: int | None = None  # a TikTok body code to answer with (the events are not accepted)
    message: str = "injected fault"
    retry_after: str | None = None
    delay_s: float = 0.0  # answer this late (then normally, unless status/code say otherwise)
    close: bool = False  # drop the connection without answering
    count: int | None = None
    for_s: float | None = None
    until_reset: bool = False
    event_ids: list[str] | None = None
    until: float | None = field(default=None, repr=False)

    def describe(self) -> dict[str, Any]:
        """What `GET /faults` shows of it (what is left of its count, not its deadline)."""
        described = asdict(self)
        described.pop("until")
        if self.until is not None:
            described["remaining_s"] = max(0.0, round(self.until - time.monotonic(), 3))
        return described

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
        if head.count is None and head.for_s is None and not head.until_reset:
            self.items.pop(0)  # neither count nor duration: a single request
        return head

    def describe(self) -> list[dict[str, Any]]:
        """The faults still queued, the one applying now first."""
        self._expire(time.monotonic())
        return [fault.describe() for fault in self.items]


class PartnerFaults:
    """One fault queue and one table of bad events per partner; `clear()` empties them all (the
    partners stay)."""

    def __init__(self, partners: tuple[str, ...]) -> None:
        self._queues = {partner: FaultQueue() for partner in partners}
        self.bad_events: dict[str, dict[str, Fault]] = {partner: {} for partner in partners}

    def add(self, partner: str, faults: list[Fault]) -> None:
        """Queue faults for a partner's requests; bad events go to its table."""
        for fault in faults:
            for event_id in fault.event_ids or ():
                self.bad_events[partner][event_id] = fault
        self._queues[partner].add([fault for fault in faults if fault.event_ids is None])

    def bad_event(self, partner: str, event_ids: list[str]) -> Fault | None:
        """The fault of the first bad event among `event_ids`, if any."""
        table = self.bad_events[partner]
        if not table:
            return None
        return next((table[i] for i in event_ids if i in table), None)

    def describe(self) -> dict[str, dict[str, Any]]:
        """Every partner's queued faults and bad events (`GET /faults`)."""
        return {
            partner: {
                "queued": queue.describe(),
                "bad_events": {i: f.describe() for i, f in self.bad_events[partner].items()},
            }
            for partner, queue in self._queues.items()
        }

    def __getitem__(self, partner: str) -> FaultQueue:
        return self._queues[partner]

    def __contains__(self, partner: object) -> bool:
        return partner in self._queues

    def clear(self) -> None:
        """Drop every partner's queued faults."""
        for queue in self._queues.values():
            queue.clear()
        for table in self.bad_events.values():
            table.clear()
