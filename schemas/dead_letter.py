"""The dead-letter record: one JSON object per message on the dead-letter topic."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

DeadLetterReason = Literal[
    "bad_input", "partner_rejected", "retries_exhausted", "too_old", "partner_setup"
]
DEAD_LETTER_REASONS: tuple[DeadLetterReason, ...] = (
    "bad_input",
    "partner_rejected",
    "retries_exhausted",
    "too_old",  # still retrying when the event passed the partner's max_event_age
    "partner_setup",  # held on a setup answer for longer than hold_max_s
)
# What `replay-dead-letters` replays unless told: what an operator's fix may cure. `too_old`
# letters are decided again on replay (and stay too old unless `max_event_age` changed);
# `bad_input` ones only when asked.
DEFAULT_REPLAY_REASONS: tuple[DeadLetterReason, ...] = (
    "partner_rejected",
    "retries_exhausted",
    "partner_setup",
)
# The Kafka header of a record replayed from a partner's dead letter, naming that partner: the
# worker decides such a record for that partner alone, so the others are not sent it again.
REPLAY_PARTNER_HEADER = "dispatcher-replay-partner"


class DeadLetter(BaseModel):
    """Why an event could not be delivered, with what is needed to replay it; never a token."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    reason: DeadLetterReason
    detail: str
    partner: str | None = None
    source_topic: str
    source_partition: int
    source_offset: int
    # The event as it arrived (the decoded JSON object), or None when it was not a JSON object.
    event: dict[str, Any] | None = None
    # For bad input: the original bytes as text (invalid UTF-8 shown with backslash escapes) ...
    raw: str | None = None
    # ... and, only when they are not valid UTF-8, the exact bytes in base64.
    raw_base64: str | None = None
    raw_truncated: bool = False
    attempts: int = 0
    last_status: int | None = None
    last_code: int | None = None
    failed_at: str
