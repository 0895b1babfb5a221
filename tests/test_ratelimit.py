"""Request pacing: the ceiling per second, throttling, Retry-After, recovery — on a fake clock."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from dispatcher.ratelimit import RequestPacer
from tests.pipeline import most_in_any_window


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def send_times(
    pacer: RequestPacer, fake: FakeTime, count: int, concurrent: bool = False
) -> list[float]:
    times: list[float] = []

    async def one() -> None:
        await pacer.acquire()
        times.append(fake.now)

    async def go() -> None:
        if concurrent:
            await asyncio.gather(*(one() for _ in range(count)))
        else:
            for _ in range(count):
                await one()

    asyncio.run(go())
    return times


def test_never_more_than_the_ceiling_in_any_second() -> None:
    fake = FakeTime()
    pacer = RequestPacer(10, fake.clock, fake.sleep)
    times = send_times(pacer, fake, 55)
    assert most_in_any_window(times) == 10
    assert times[-1] - times[0] >= 5.0  # 55 requests at 10/s take five seconds at least
    assert times[-1] - times[0] < 5.5  # ... and not much more: the ceiling is reached


def test_concurrent_waiters_respect_the_ceiling() -> None:
    fake = FakeTime()
    pacer = RequestPacer(4, fake.clock, fake.sleep)
    times = send_times(pacer, fake, 13, concurrent=True)
    assert most_in_any_window(times) == 4


def test_a_slow_rate_is_one_request_per_interval() -> None:
    fake = FakeTime()
    pacer = RequestPacer(0.5, fake.clock, fake.sleep)
    times = send_times(pacer, fake, 3)
    assert [round(b - a, 6) for a, b in itertools.pairwise(times)] == [2.0, 2.0]


def test_throttling_halves_the_rate_and_waits_out_retry_after() -> None:
    fake = FakeTime()
    pacer = RequestPacer(10, fake.clock, fake.sleep)
    send_times(pacer, fake, 1)
    start = fake.now
    pacer.throttled(retry_after_s=3)
    assert pacer.rate == 5
    times = send_times(pacer, fake, 12)
    assert times[0] >= start + 3
    assert most_in_any_window(times) == 5


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


def test_the_ceiling_holds_at_the_wire_when_requests_leave_late() -> None:
    """A burst whose requests reach the wire one after another (10 ms apart), then a burst that
    leaves at once: by turn times both fit the ceiling, but without allowing for the first burst's
    write delays, the second would land within a second of most of the first."""
    fake = FakeTime()
    pacer = RequestPacer(10, fake.clock, fake.sleep)
    wire: list[float] = []

    async def burst(write_gap_s: float) -> None:
        turns = [await pacer.acquire() for _ in range(10)]
        for turn_at in turns:
            fake.now += write_gap_s  # the event loop writes them one at a time
            pacer.written(turn_at)
            wire.append(fake.now)

    asyncio.run(burst(0.01))
    asyncio.run(burst(0.0))
    assert most_in_any_window(wire) <= 10
    assert wire[-1] - wire[0] < 1.2  # the longer window costs only the delay


def test_write_delays_are_forgotten_after_two_windows() -> None:
    fake = FakeTime()
    pacer = RequestPacer(10, fake.clock, fake.sleep)
    pacer.written(fake.now - 0.3)
    assert pacer.write_delay(fake.now, 1.0) == pytest.approx(0.3)
    fake.now += 1.5
    pacer.written(fake.now - 0.1)
    assert pacer.write_delay(fake.now, 1.0) == pytest.approx(0.3)
    fake.now += 1.0
    assert pacer.write_delay(fake.now, 1.0) == pytest.approx(0.1)
    fake.now += 2.0
    assert pacer.write_delay(fake.now, 1.0) == 0.0
