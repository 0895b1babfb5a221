"""The retry policy: tenacity strategies composed; Retry-After overrides the backoff."""

from __future__ import annotations

import asyncio

import pytest
from tenacity import Future, RetryCallState

from dispatcher.outcomes import AttemptKind, AttemptResult
from dispatcher.retry import backoff, retrying, wait_retry_after
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

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def attempt() -> AttemptResult:
        nonlocal calls
        calls += 1
        return answers[min(calls, len(answers)) - 1]

    async def go() -> AttemptResult:
        controller = retrying(delivery, sleep)
        result: AttemptResult = await controller(attempt)
        return result

    return asyncio.run(go()), calls, sleeps


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
