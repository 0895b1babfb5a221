"""Request pacing: spacing, throttling, Retry-After, recovery — on a fake clock."""

from __future__ import annotations

import asyncio
import itertools

from dispatcher.ratelimit import RequestPacer


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def send_times(pacer: RequestPacer, fake: FakeTime, count: int) -> list[float]:
    async def go() -> list[float]:
        times = []
        for _ in range(count):
            await pacer.acquire()
            times.append(fake.now)
        return times

    return asyncio.run(go())


def test_requests_are_spaced_by_the_ceiling() -> None:
    fake = FakeTime()
    pacer = RequestPacer(10, fake.clock, fake.sleep)
    times = send_times(pacer, fake, 5)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(abs(gap - 0.1) < 1e-9 for gap in gaps), gaps


def test_concurrent_waiters_never_beat_the_spacing() -> None:
    fake = FakeTime()
    pacer = RequestPacer(4, fake.clock, fake.sleep)
    times: list[float] = []

    async def one() -> None:
        await pacer.acquire()
        times.append(fake.now)

    async def go() -> None:
        await asyncio.gather(*(one() for _ in range(6)))

    asyncio.run(go())
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0.25 - 1e-9, gaps


def test_throttling_halves_the_rate_and_waits_out_retry_after() -> None:
    fake = FakeTime()
    pacer = RequestPacer(10, fake.clock, fake.sleep)
    send_times(pacer, fake, 1)
    start = fake.now
    pacer.throttled(retry_after_s=3)
    assert pacer.rate == 5
    [next_send] = send_times(pacer, fake, 1)
    assert next_send >= start + 3


def test_rate_has_a_floor_and_recovers_on_success() -> None:
    fake = FakeTime()
    pacer = RequestPacer(10, fake.clock, fake.sleep, min_rate=1)
    for _ in range(10):
        pacer.throttled(None)
    assert pacer.rate == 1
    for _ in range(20):
        pacer.succeeded()
    assert pacer.rate == 10


def test_a_later_retry_after_holds_back_waiters_already_sleeping() -> None:
    fake = FakeTime()
    pacer = RequestPacer(1, fake.clock, fake.sleep)
    send_times(pacer, fake, 1)
    times: list[float] = []

    async def go() -> None:
        waiter = asyncio.create_task(pacer.acquire())
        await asyncio.sleep(0)  # the waiter is asleep until its slot ...
        pacer.pause(10)  # ... when the partner asks for 10 s more
        await waiter
        times.append(fake.now)

    start = fake.now
    asyncio.run(go())
    assert times[0] >= start + 10
