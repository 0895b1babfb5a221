"""Request pacing for one partner: never faster than the operator's ceiling, slower while the
partner says "too many requests", and never before a `Retry-After` has passed.

Requests are spaced at least `1 / rate` seconds apart. The rate halves on each throttle answer
(down to a floor) and climbs back by a tenth of the ceiling on each success.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class RequestPacer:
    """Adaptive spacing of requests to one partner (asyncio; one event loop)."""

    def __init__(
        self, max_rate: float, clock: Clock, sleep: Sleep, min_rate: float | None = None
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._next_at = 0.0
        self._not_before = 0.0
        self.max_rate = max_rate
        self.min_rate = min(max_rate, min_rate if min_rate is not None else max(0.1, max_rate / 64))
        self.rate = max_rate

    def set_max_rate(self, max_rate: float) -> None:
        """A config reload changed the ceiling."""
        self.max_rate = max_rate
        self.min_rate = min(self.min_rate, max_rate)
        self.rate = min(self.rate, max_rate)

    async def acquire(self) -> None:
        """Wait for this request's turn; requests leave in the order they asked (FIFO lock)."""
        async with self._lock:
            while True:
                now = self._clock()
                at = max(self._next_at, self._not_before)
                if at <= now:
                    self._next_at = now + 1.0 / self.rate
                    return
                await self._sleep(at - now)

    def throttled(self, retry_after_s: float | None) -> None:
        """The partner answered 429 or 40100: slow down, and wait out any `Retry-After`."""
        self.rate = max(self.min_rate, self.rate / 2)
        self.pause(retry_after_s)

    def pause(self, retry_after_s: float | None) -> None:
        """Send nothing to this partner for `retry_after_s` seconds."""
        if retry_after_s is not None and retry_after_s > 0:
            self._not_before = max(self._not_before, self._clock() + retry_after_s)

    def succeeded(self) -> None:
        """A request went through: recover towards the ceiling."""
        if self.rate < self.max_rate:
            self.rate = min(self.max_rate, self.rate + self.max_rate / 10)

    @property
    def paused_until(self) -> float:
        """Clock time before which nothing is sent."""
        return self._not_before
