"""The retry policy of a partner, composed from tenacity's own strategies.

The policy decides (stop? how long to wait?); the delivery loop acts. A partner's `Retry-After`
overrides the backoff. Sleep is injected so tests build state instead of waiting.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_result,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential,
    wait_random_exponential,
)
from tenacity.wait import wait_base

from dispatcher.outcomes import AttemptResult
from dispatcher.ratelimit import Sleep
from schemas.config import DeliveryConfig

BeforeSleep = Callable[[RetryCallState], Awaitable[None] | None]


def backoff(delivery: DeliveryConfig) -> wait_base:
    """Exponential backoff with "equal jitter": half fixed, half random, capped at the maximum."""
    half_initial = delivery.backoff_initial_s / 2
    half_max = delivery.backoff_max_s / 2
    return wait_exponential(multiplier=half_initial, max=half_max) + wait_random_exponential(
        multiplier=half_initial, max=half_max
    )


class wait_retry_after(wait_base):  # noqa: N801 - named like tenacity's strategies
    """Wait what the partner asked for in `Retry-After`; otherwise use `fallback`."""

    def __init__(self, fallback: wait_base) -> None:
        self.fallback = fallback

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        if outcome is not None and not outcome.failed:
            result = outcome.result()
            if isinstance(result, AttemptResult) and result.retry_after_s is not None:
                return result.retry_after_s
        return float(self.fallback(retry_state))


def _is_retryable(result: object) -> bool:
    return isinstance(result, AttemptResult) and result.retryable


def _last_result(retry_state: RetryCallState) -> AttemptResult:
    """Out of attempts or time: hand back the last answer (the caller turns it into gave-up)."""
    assert retry_state.outcome is not None
    result = retry_state.outcome.result()
    assert isinstance(result, AttemptResult)
    return result


def retrying(
    delivery: DeliveryConfig, sleep: Sleep, before_sleep: BeforeSleep | None = None
) -> AsyncRetrying:
    """A fresh retrying controller for one batch."""
    return AsyncRetrying(
        stop=stop_after_attempt(delivery.max_attempts)
        | stop_before_delay(delivery.give_up_after_s),
        wait=wait_retry_after(backoff(delivery)),
        retry=retry_if_result(_is_retryable),
        sleep=sleep,
        before_sleep=before_sleep,
        retry_error_callback=_last_result,
    )
