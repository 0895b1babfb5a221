"""A point in time by which a bounded wait must end (a rebalance's drain, the shutdown)."""

from __future__ import annotations

import time
from collections.abc import Callable


class Deadline:
    """`seconds` from now on `clock`; shared by every wait of one bounded operation."""

    __slots__ = ("_clock", "_end")

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._end = clock() + seconds

    def remaining_s(self) -> float:
        """Seconds left, never below zero."""
        return max(0.0, self._end - self._clock())

    def expired(self) -> bool:
        """True once the deadline has passed."""
        return self._clock() >= self._end
