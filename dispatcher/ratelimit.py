"""Request pacing for one partner: never more than the operator's ceiling in any second, fewer
while the partner says "too many requests", and nothing before a `Retry-After` has passed.

A sliding window: at most `floor(rate * window)` requests in any window of one second (longer
for rates below one per second). A fixed spacing would be stricter but drifts below the ceiling
whenever a request leaves a little late. The rate halves on each throttle answer (down to a
floor) and climbs back by a tenth of the ceiling on each success.

The ceiling must hold where the partner counts: at the wire, not where the worker decides to send.
A request leaves some milliseconds after its turn (the event loop serves other requests first, the
main thread holds the GIL, the collector runs); after a burst those delays differ, and twenty
requests sent within one second by the turns can reach the partner within less than a second of
the next twenty. So the client reports when each request was written (`written`), and the window
is lengthened by the largest such delay of the last two windows: the k-th request after another
then reaches the wire at least one full window after it.
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
        # (turn time, write delay) of recent requests, delays decreasing: a sliding maximum
        self._delays: deque[tuple[float, float]] = deque()
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

    async def acquire(self) -> float:
        """Wait for this request's turn; requests leave in the order they asked (FIFO lock).
        Returns the turn's time, for `written`."""
        async with self._lock:
            sent = self._sent
            while True:
                now = self._clock()
                window_s, allowed = self.window()
                window_s += self.write_delay(now, window_s)
                while sent and sent[0] <= now - window_s:
                    sent.popleft()
                at = self._not_before
                if len(sent) >= allowed:
                    at = max(at, sent[-allowed] + window_s)
                if at <= now:
                    sent.append(now)
                    return now
                await self._sleep(at - now)

    def written(self, turn_at: float) -> None:
        """The request whose turn came at `turn_at` is on the wire now."""
        delay = self._clock() - turn_at
        delays = self._delays
        while delays and delays[-1][1] <= delay:
            delays.pop()
        delays.append((turn_at, delay))

    def write_delay(self, now: float, window_s: float) -> float:
        """The largest turn-to-wire delay of requests whose turn came in the last two windows."""
        delays = self._delays
        while delays and delays[0][0] < now - 2 * window_s:
            delays.popleft()
        return delays[0][1] if delays else 0.0

    def throttled(self, retry_after_s: float | None) -> None:
        """The partner answered 429 or 40100: slow down, and wait out any `Retry-After`."""
        self.rate = max(self.min_rate, self.rate / 2)
        self.pause(retry_after_s)

    def pause(self, retry_after_s: float | None) -> None:
        """Send nothing to this partner for `retry_after_s` seconds."""
        if retry_after_s is not None and retry_after_s > 0:
            self._not_before = max(self._not_before, self._clock() + retry_after_s)

    def succeeded(self) -> bool:
        """A request went through: recover towards the ceiling. True when the rate changed."""
        if self.rate >= self.max_rate:
            return False
        self.rate = min(self.max_rate, self.rate + self.max_rate / 10)
        return True
