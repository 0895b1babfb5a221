"""The retry policy: tenacity strategies composed; Retry-After overrides the backoff."""

from __future__ import annotations

import asyncio

import pytest
from tenacity import Future, RetryCallState, wait_fixed

from dispatcher.outcomes import AttemptKind, AttemptResult
from dispatcher.retry import RetryPolicy, backoff, wait_retry_after
from schemas.config import DeliveryConfig

RETRY = AttemptResult(AttemptKind.RETRYABLE, 503, None, "unavailable")
OK = AttemptResult(AttemptKind.OK, 200, 0, "OK")
FATAL = AttemptResult(AttemptKind.FATAL, 200, 40001, "no permission")


def make_retry_state(
    attempt_number: int, result: AttemptResult, elapsed_s: float = 0.0
) -> RetryCallState:
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt_number
    future = Future(attempt_number)
    future.set_result(result)
    state.outcome = future
    state.outcome_timestamp = state.start_time + elapsed_s
    return state


@pytest.mark.parametrize("attempt", [1, 2, 3, 6, 12])
def test_backoff_is_exponential_with_jitter_and_capped(attempt: int) -> None:
    delivery = DeliveryConfig(backoff_initial_s=0.5, backoff_max_s=8)
    wait = backoff(delivery)
    waits = [wait(make_retry_state(attempt, RETRY)) for _ in range(200)]
    exponential = min(8.0, 0.5 * 2 ** (attempt - 1))
    assert min(waits) >= exponential / 2 - 1e-9
    assert max(waits) <= exponential + 1e-9
    assert len(set(waits)) > 1  # jitter


def test_retry_after_overrides_the_backoff() -> None:
    wait = wait_retry_after(backoff(DeliveryConfig()))
    asked = AttemptResult(AttemptKind.RETRYABLE, 429, None, "slow down", retry_after_s=7.0)
    assert wait(make_retry_state(1, asked)) == 7.0
    assert wait(make_retry_state(1, RETRY)) < 1.0


def run_policy(
    delivery: DeliveryConfig, answers: list[AttemptResult]
) -> tuple[AttemptResult, int, list[float]]:
    sleeps: list[float] = []
    calls = 0
    told: list[tuple[int, float]] = []  # (attempt, upcoming sleep) as before_sleep saw them

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def attempt() -> AttemptResult:
        nonlocal calls
        calls += 1
        return answers[min(calls, len(answers)) - 1]

    def before_sleep(state: RetryCallState) -> None:
        told.append((state.attempt_number, state.upcoming_sleep))

    result, attempts = asyncio.run(RetryPolicy(delivery).run(attempt, sleep, before_sleep))
    assert attempts == calls  # the policy counts every attempt, the first one included
    assert told == [(n + 1, wait) for n, wait in enumerate(sleeps)]
    return result, calls, sleeps


def test_retries_until_success() -> None:
    result, calls, sleeps = run_policy(DeliveryConfig(), [RETRY, RETRY, OK])
    assert (result, calls, len(sleeps)) == (OK, 3, 2)


def test_no_retry_on_a_fatal_answer() -> None:
    result, calls, sleeps = run_policy(DeliveryConfig(), [FATAL])
    assert (result, calls, sleeps) == (FATAL, 1, [])


def test_stops_after_max_attempts_with_the_last_answer() -> None:
    result, calls, _ = run_policy(DeliveryConfig(max_attempts=4), [RETRY])
    assert (result, calls) == (RETRY, 4)


def test_stops_before_a_wait_would_pass_give_up_after() -> None:
    asked = AttemptResult(AttemptKind.RETRYABLE, 429, None, "later", retry_after_s=120.0)
    result, calls, sleeps = run_policy(DeliveryConfig(give_up_after_s=60, timeout_s=5), [asked])
    assert (result, calls, sleeps) == (asked, 1, [])


def test_the_first_attempt_is_attempt_one_of_the_policy() -> None:
    result, calls, sleeps = run_policy(DeliveryConfig(max_attempts=1), [RETRY, OK])
    assert (result, calls, sleeps) == (RETRY, 1, [])


def test_retry_after_is_what_the_loop_sleeps() -> None:
    asked = AttemptResult(AttemptKind.RETRYABLE, 429, None, "later", retry_after_s=3.0)
    result, calls, sleeps = run_policy(DeliveryConfig(), [asked, OK])
    assert (result, calls, sleeps) == (OK, 2, [3.0])


def test_give_up_after_counts_from_before_the_first_attempt() -> None:
    """The first attempt's own time counts: after a 0.8 s answer, a 0.3 s wait would pass the
    1 s budget, so the policy stops (counted from the loop's start, it would try again)."""
    delivery = DeliveryConfig(give_up_after_s=1.0, timeout_s=0.5)
    slow = AttemptResult(AttemptKind.RETRYABLE, 503, None, "busy", retry_after_s=0.3)
    waited: list[float] = []

    async def attempt() -> AttemptResult:
        await asyncio.sleep(0.8)
        return slow

    async def sleep(seconds: float) -> None:
        waited.append(seconds)

    assert asyncio.run(RetryPolicy(delivery).run(attempt, sleep)) == (slow, 1)
    assert waited == []


def test_give_up_after_is_counted_on_the_injected_clock() -> None:
    """Time is built, not waited for: a clock that moves 400 s an attempt gives up after
    `give_up_after_s` (1,000 s) in three attempts, with no real time passing."""
    now = [0.0]
    delivery = DeliveryConfig(give_up_after_s=1000, timeout_s=5, max_attempts=100,
                              backoff_initial_s=1, backoff_max_s=1)  # fmt: skip
    waited: list[float] = []

    async def attempt() -> AttemptResult:
        now[0] += 400.0  # each answer takes 400 s of the injected clock
        return RETRY

    async def sleep(seconds: float) -> None:
        waited.append(seconds)
        now[0] += seconds

    policy = RetryPolicy(delivery, clock=lambda: now[0])
    assert asyncio.run(policy.run(attempt, sleep)) == (RETRY, 3)
    assert len(waited) == 2
    assert now[0] == pytest.approx(1200 + sum(waited))


def state_with(outcome: Future | None) -> RetryCallState:
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.outcome = outcome
    return state


def finished(value: object = None, error: BaseException | None = None) -> Future:
    future = Future(1)
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
    return future


@pytest.mark.parametrize(
    ("outcome", "wait_s"),
    [
        pytest.param(finished(AttemptResult(AttemptKind.RETRYABLE, 429, None, "x", 7.0)), 7.0,
                     id="retry-after-asked"),
        pytest.param(finished(AttemptResult(AttemptKind.RETRYABLE, 429, None, "x", 0.0)), 0.0,
                     id="retry-after-zero-is-asked-too"),
        pytest.param(finished(RETRY), 1.5, id="nothing-asked"),
        pytest.param(finished("not an attempt result"), 1.5, id="another-result"),
        pytest.param(finished(error=TimeoutError("read")), 1.5, id="an-exception"),
        pytest.param(None, 1.5, id="no-outcome-yet"),
    ],
)  # fmt: skip
def test_retry_after_wins_else_the_fallback(outcome: Future | None, wait_s: float) -> None:
    assert wait_retry_after(wait_fixed(1.5))(state_with(outcome)) == wait_s
