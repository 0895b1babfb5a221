"""The retry policy of a partner, composed from tenacity's own strategies.

The policy decides (stop? how long to wait?); the loop in `RetryPolicy.run` acts. A partner's
`Retry-After` overrides the backoff. Sleep is injected so tests build state instead of waiting.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential,
    wait_random_exponential,
)
from tenacity.wait import wait_base

from dispatcher.outcomes import AttemptResult
from dispatcher.ratelimit import Clock, Sleep
from schemas.config import DeliveryConfig


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


class RetryPolicy:
    """One partner's policy: stop after `max_attempts`, or before a wait would pass
    `give_up_after_s` (counted from the first attempt); wait what the partner asked for in
    `Retry-After`, else the backoff. Built once per partner config."""

    def __init__(self, delivery: DeliveryConfig, clock: Clock = time.monotonic) -> None:
        self.clock = clock  # the time `give_up_after_s` is counted on
        self.stop = stop_after_attempt(delivery.max_attempts) | stop_before_delay(
            delivery.give_up_after_s
        )
        self.wait = wait_retry_after(backoff(delivery))
        # The states' `retry_object`; never called: `run` is the loop.
        self._controller = AsyncRetrying(stop=self.stop, wait=self.wait)

    async def run(
        self,
        attempt: Callable[[], Awaitable[AttemptResult]],
        sleep: Sleep,
        before_sleep: Callable[[RetryCallState], None] | None = None,
    ) -> tuple[AttemptResult, int]:
        """Attempt until the answer is not retryable or the policy says stop; the last answer
        and the number of attempts. tenacity's loop (`BaseRetrying.iter`: wait, then stop, then
        sleep) over tenacity's strategies, without a controller per batch: the first attempt is
        attempt 1, and a batch that goes through at once builds no retry state at all."""
        clock = self.clock
        started = clock()
        result = await attempt()
        state: RetryCallState | None = None
        while result.retryable:
            if state is None:
                state = RetryCallState(self._controller, None, (), {})
                state.start_time = started
            state.set_result(result)
            state.outcome_timestamp = clock()  # tenacity reads its own clock: ours instead
            state.upcoming_sleep = self.wait(state)
            if self.stop(state):
                break
            if before_sleep is not None:
                before_sleep(state)
            await sleep(state.upcoming_sleep)
            state.prepare_for_next_attempt()
            result = await attempt()
        return result, 1 if state is None else state.attempt_number
