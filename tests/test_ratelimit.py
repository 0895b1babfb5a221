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


def state(pacer: RequestPacer) -> tuple[float, float, float]:
    return pacer.max_rate, pacer.min_rate, pacer.rate


@pytest.mark.parametrize(
    ("max_rate", "min_rate", "expected"),
    [
        pytest.param(64, None, (64, 1.0, 64), id="default-floor-a-64th-of-the-ceiling"),
        pytest.param(3, None, (3, 0.1, 3), id="default-floor-at-least-one-per-10-s"),
        pytest.param(0.05, None, (0.05, 0.05, 0.05), id="default-floor-never-above-the-ceiling"),
        pytest.param(10, 2, (10, 2, 10), id="given-floor"),
        pytest.param(10, 20, (10, 10, 10), id="given-floor-above-the-ceiling"),
    ],
)
def test_the_rate_starts_at_the_ceiling_above_its_floor(
    max_rate: float, min_rate: float | None, expected: tuple[float, float, float]
) -> None:
    fake = FakeTime()
    assert state(RequestPacer(max_rate, fake.clock, fake.sleep, min_rate)) == expected


def test_success_climbs_back_by_a_tenth_of_the_ceiling_and_says_when_it_moved() -> None:
    fake = FakeTime()
    pacer = RequestPacer(10, fake.clock, fake.sleep, min_rate=1)
    pacer.throttled(None)
    pacer.throttled(None)
    assert pacer.rate == 2.5
    steps = []
    for _ in range(10):
        moved = pacer.succeeded()
        steps.append((round(pacer.rate, 6), moved))
    assert steps == [(3.5, True), (4.5, True), (5.5, True), (6.5, True), (7.5, True),
                     (8.5, True), (9.5, True), (10, True), (10, False), (10, False)]  # fmt: skip


@pytest.mark.parametrize(
    ("new_max", "expected_before_recovery", "expected_after_recovery"),
    [
        pytest.param(4, (4, 1, 4), (4, 1, 4), id="lowered-below-the-rate"),
        pytest.param(0.5, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), id="lowered-below-the-floor"),
        pytest.param(20, (20, 1, 5), (20, 1, 7), id="raised-the-rate-climbs-to-it"),
    ],
)
def test_a_reloaded_ceiling_bounds_the_rate_and_its_floor(
    new_max: float,
    expected_before_recovery: tuple[float, float, float],
    expected_after_recovery: tuple[float, float, float],
) -> None:
    # Given a pacer throttled from 10/s down to 5/s
    fake = FakeTime()
    pacer = RequestPacer(10, fake.clock, fake.sleep, min_rate=1)
    pacer.throttled(None)
    # When the partner file is reloaded with another ceiling
    pacer.set_max_rate(new_max)
    assert state(pacer) == expected_before_recovery
    # Then the recovery climbs in steps of the new ceiling, up to it
    pacer.succeeded()
    assert state(pacer) == expected_after_recovery


def test_a_lowered_ceiling_paces_the_next_requests() -> None:
    fake = FakeTime()
    pacer = RequestPacer(10, fake.clock, fake.sleep)
    pacer.set_max_rate(2)
    times = send_times(pacer, fake, 7)
    assert most_in_any_window(times) == 2


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        pytest.param(10, (1.0, 10), id="ten-per-second"),
        pytest.param(2.5, (1.0, 2), id="a-fraction-rounds-down"),
        pytest.param(1, (1.0, 1), id="one-per-second"),
        pytest.param(0.5, (2.0, 1), id="below-one-the-window-lengthens"),
        pytest.param(0.3, (1 / 0.3, 1), id="one-in-each-longer-window"),
    ],
)
def test_the_window_and_what_it_allows(rate: float, expected: tuple[float, int]) -> None:
    fake = FakeTime()
    assert RequestPacer(rate, fake.clock, fake.sleep).window() == expected


@pytest.mark.parametrize(
    ("retry_after_s", "first_at"),
    [
        pytest.param(0.5, 1000.5, id="a-sub-second-pause-is-kept"),
        pytest.param(2, 1002.0, id="seconds"),
        pytest.param(0, 1000.0, id="zero-is-no-pause"),
        pytest.param(-3, 1000.0, id="a-negative-one-is-no-pause"),
        pytest.param(None, 1000.0, id="none"),
    ],
)
def test_a_pause_holds_the_next_request_for_exactly_its_length(
    retry_after_s: float | None, first_at: float
) -> None:
    fake = FakeTime()
    pacer = RequestPacer(10, fake.clock, fake.sleep)
    pacer.pause(retry_after_s)
    assert send_times(pacer, fake, 1) == [first_at]


def test_a_shorter_pause_does_not_cut_a_longer_one() -> None:
    fake = FakeTime()
    pacer = RequestPacer(10, fake.clock, fake.sleep)
    pacer.pause(3)
    pacer.throttled(0.5)
    assert send_times(pacer, fake, 1) == [1003.0]


def test_the_first_request_goes_at_once_whatever_the_clock_reads() -> None:
    fake = FakeTime()
    fake.now = 0.0  # a monotonic clock may start anywhere, zero included
    pacer = RequestPacer(10, fake.clock, fake.sleep)
    assert send_times(pacer, fake, 1) == [0.0]


@pytest.mark.parametrize(
    ("now", "window_s", "expected"),
    [
        pytest.param(1001.9, 1.0, 0.3, id="within-two-windows"),
        pytest.param(1002.0, 1.0, 0.3, id="exactly-two-windows-ago-still-counts"),
        pytest.param(1002.1, 1.0, 0.0, id="older-forgotten"),
        pytest.param(1003.5, 2.0, 0.3, id="two-long-windows"),
        pytest.param(1004.1, 2.0, 0.0, id="past-two-long-windows"),
    ],
)
def test_a_write_delay_counts_for_two_windows_of_any_length(
    now: float, window_s: float, expected: float
) -> None:
    fake = FakeTime()
    fake.now = 1000.3
    pacer = RequestPacer(10, fake.clock, fake.sleep)
    pacer.written(1000.0)  # its turn came at 1000.0, it reached the wire 0.3 s later
    assert pacer.write_delay(now, window_s) == pytest.approx(expected)
