"""Request pacing for one partner: never more than the operator's ceiling in any second, fewer
while the partner says "too many requests", and nothing before a `Retry-After` has passed.

A sliding window: at most `floor(rate * window)` requests in any window of one second (longer
for rates below one per second). A fixed spacing would be stricter but drifts below the ceiling
whenever a request leaves a little late. The rate halves on each throttle answer (down to a
floor) and climbs back by a tenth of the ceiling on each success.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class RequestPacer:
    """Adaptive request ceiling for one partner (asyncio; one event loop)."""

    def __init__(
        self, max_rate: float, clock: Clock, sleep: Sleep, min_rate: float | None = None
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._sent: deque[float] = deque()
        self._not_before = 0.0
        self.max_rate = max_rate
        self.min_rate = min(max_rate, min_rate if min_rate is not None else max(0.1, max_rate / 64))
        self.rate = max_rate

    def set_max_rate(self, max_rate: float) -> None:
        """A config reload changed the ceiling."""
        self.max_rate = max_rate
        self.min_rate = min(self.min_rate, max_rate)
        self.rate = min(self.rate, max_rate)

    def window(self) -> tuple[float, int]:
        """(window length in seconds, requests allowed in it) at the current rate."""
        window_s = max(1.0, 1.0 / self.rate)
        return window_s, max(1, math.floor(self.rate * window_s + 1e-9))

    async def acquire(self) -> None:
        """Wait for this request's turn; requests leave in the order they asked (FIFO lock)."""
        async with self._lock:
            sent = self._sent
            while True:
                now = self._clock()
                window_s, allowed = self.window()
                while sent and sent[0] <= now - window_s:
                    sent.popleft()
                at = self._not_before
                if len(sent) >= allowed:
                    at = max(at, sent[-allowed] + window_s)
                if at <= now:
                    sent.append(now)
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
