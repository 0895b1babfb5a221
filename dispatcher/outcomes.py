"""Outcomes are values: what one request attempt gave, and how a batch of postbacks ended.

The delivery loop, the offsets, the metrics and the dead letters all read these same values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class AttemptKind(StrEnum):
    """How one HTTP attempt went (the `result` label of `dispatcher_delivery_attempts_total`)."""

    OK = "ok"
    RETRYABLE = "retryable"
    FATAL = "fatal"
    # Nothing the events can fix until an operator acts (a bad token, no permission, not
    # allowlisted): the partner app is held, its events wait, nothing is dead-lettered.
    SETUP = "setup"


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """One attempt: its kind, what the partner said, and any wait it asked for."""

    kind: AttemptKind
    status: int | None
    code: int | None
    message: str
    retry_after_s: float | None = None
    throttled: bool = False  # the partner said "too many requests": lower the request rate
    partial: bool = False  # accepted, but the partner reported a partial success
    fate_unknown: bool = False  # the request may have been processed: a retry may duplicate
    timed_out: bool = False  # no answer within timeout_s: the next attempt sends fewer events
    unlisted: bool = False  # a code in none of the partner's lists: retried, and logged once
    # The partner's id of the request, when its answer gives one: kept for the postback log, not
    # part of what the answer means (two answers that differ only in it are equal).
    request_id: str | None = field(default=None, compare=False)

    @property
    def retryable(self) -> bool:
        """True when the same request may succeed later."""
        return self.kind is AttemptKind.RETRYABLE


class Outcome(StrEnum):
    """How a batch ended (the `outcome` label of `dispatcher_postbacks_total`)."""

    DELIVERED = "delivered"
    REJECTED = "rejected"
    GAVE_UP = "gave_up"
    TOO_OLD = "too_old"  # still retrying when its events passed the partner's max_event_age
    PARTNER_SETUP = "partner_setup"  # held on a setup answer for longer than hold_max_s


@dataclass(frozen=True, slots=True)
class BatchResult:
    """The final word on a batch: its outcome, the attempts it took and the last answer."""

    outcome: Outcome
    attempts: int
    last: AttemptResult
    first_attempt_at: float | None = None  # Unix seconds; None when no attempt was made

    @property
    def dead_letter_reason(self) -> str | None:
        """The dead-letter reason for this outcome, or None when nothing is dead-lettered."""
        if self.outcome is Outcome.REJECTED:
            return "partner_rejected"
        if self.outcome is Outcome.GAVE_UP:
            return "retries_exhausted"
        if self.outcome is Outcome.TOO_OLD:
            return "too_old"
        if self.outcome is Outcome.PARTNER_SETUP:
            return "partner_setup"
        return None
