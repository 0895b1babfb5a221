"""A partner app held on a setup answer: a bad token, no permission, not allowlisted.

Nothing the events can fix, so nothing is dead-lettered and nothing is given up: the batch that
got the answer waits and is sent again, as the one probe, every `setup_retry_s`; every other batch
of the destination waits for the hold to end. It ends on an answer that shows the request was
read (delivered, or rejected for its events), and is probed at once on SIGHUP or a new token.
Past `hold_max_s` it expires: the held batch, and every batch answered "setup" after it, is
settled `partner_setup` (dead-lettered) at once, so Kafka's retention cannot take the events
silently; an expired hold still ends on the first answer that is not "setup".
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from dispatcher.outcomes import AttemptKind, AttemptResult


def ends_hold(result: AttemptResult) -> bool:
    """True when an answer shows the partner read the request: the setup is fine again. A
    transient answer (5xx, timeout, throttling) says nothing either way."""
    return result.kind is AttemptKind.OK or result.kind is AttemptKind.FATAL


@dataclass(eq=False)
class Hold:
    """One held destination: since when (the channel's clock), the answer that held it, which
    batch probes it, and when."""

    since: float
    code: int | None
    status: int | None
    message: str
    next_probe_at: float
    prober: object | None = None  # the batch that sends the probe; None until one claims it
    woken: bool = False  # probe now (SIGHUP, a new token), without waiting for next_probe_at
    expired: bool = False  # held past hold_max_s: setup answers are dead-lettered at once
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self) -> None:
        """Wake every batch waiting on this hold, to look at it again."""
        self.changed.set()
        self.changed = asyncio.Event()

    def wake(self) -> None:
        """Probe at once (an operator acted: SIGHUP, or a new token)."""
        if not self.expired:
            self.woken = True
            self.notify()

    def claim_probe(self, batch: object, now: float, interval_s: float) -> bool:
        """`batch` takes the probe if nobody holds it; True when its probe is due now (which
        schedules the next one `interval_s` later)."""
        if self.prober is None:
            self.prober = batch
        if self.prober is not batch:
            return False
        if self.woken or now >= self.next_probe_at:
            self.woken = False
            self.next_probe_at = now + interval_s
            return True
        return False

    def leave(self, batch: object) -> None:
        """`batch` is done with the hold: if it held the probe, another waiting batch takes it."""
        if self.prober is batch:
            self.prober = None
            self.notify()
