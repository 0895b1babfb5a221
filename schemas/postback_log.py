"""The postback log's record: one JSON object per owed postback once its outcome is final (and,
with `postback_log.skips`, per decision not to send), on `kafka.postback_log_topic`: one a line
in the log's Kafka records, which hold a request's postbacks each."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

LoggedOutcome = Literal["delivered", "rejected", "gave_up", "too_old", "partner_setup", "skipped"]
LOGGED_OUTCOMES: tuple[LoggedOutcome, ...] = (
    "delivered",
    "rejected",
    "gave_up",
    "too_old",
    "partner_setup",
    "skipped",  # decided not owed (only with postback_log.skips: true); `reason` says why
)


class LoggedSource(BaseModel):
    """Where the event was read."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    topic: str
    partition: int
    offset: int


class PostbackRecord(BaseModel):
    """One postback's final outcome: what was sent, to whom, when, and what the partner said.
    Never a token; the user's identifiers, IP and user agent only with
    `postback_log.include_user`."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: str
    partner: str
    destination: str | None  # the partner app; None for a skip that names none
    app_id: str
    appsflyer_id: str | None = None  # AppsFlyer's id of the app install
    event: str | None  # the partner's event name; None for a skip
    sdk_event: str  # the SDK's event name (`install` for an install)
    event_time: str  # ISO 8601, UTC
    outcome: LoggedOutcome
    reason: str | None = None  # why it was not sent (`skipped` only)
    attempts: int = 0
    http_status: int | None = None
    partner_code: int | None = None
    partner_message: str | None = None
    partner_request_id: str | None = None
    first_attempt_at: str | None = None  # ISO 8601, UTC
    final_at: str  # ISO 8601, UTC
    source: LoggedSource
    replay: bool = False  # sent again from a dead letter, or by `dispatcher replay`
    payload: dict[str, Any] | None = None  # the event as sent, without the user object
