"""Input events: AppsFlyer-style install and in-app event records read from Kafka (SPEC §2)."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator

EventType = Literal["install", "in-app-event"]
INSTALL: EventType = "install"
IN_APP_EVENT: EventType = "in-app-event"

# `YYYY-MM-DD HH:MM:SS[.fff]` (UTC, AppsFlyer raw data) or ISO 8601 with an offset.
_TIMESTAMP = re.compile(
    r"\d{4}-\d{2}-\d{2}"
    r"(?:(?P<space> )|T)"
    r"\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?"
    r"(?P<offset>Z|[+-]\d{2}:?\d{2})?"
)


def parse_timestamp(value: object) -> datetime:
    """Parse an event timestamp to an aware UTC datetime; numbers and other formats are refused."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str):
        raise ValueError(
            f"must be a timestamp string 'YYYY-MM-DD HH:MM:SS[.fff]' (UTC) or ISO 8601 with an "
            f"offset, not {type(value).__name__}"
        )
    match = _TIMESTAMP.fullmatch(value)
    if match is None or (match["space"] is None and match["offset"] is None):
        raise ValueError(
            f"{value[:40]!r} is not 'YYYY-MM-DD HH:MM:SS[.fff]' (UTC) nor ISO 8601 with an offset"
        )
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:  # e.g. month 13: the shape matched, the calendar did not
        raise ValueError(f"{value[:40]!r} is not a valid date and time: {exc}") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _optional_timestamp(value: object) -> datetime | None:
    if value is None or value == "":
        return None
    return parse_timestamp(value)


def parse_event_value(value: object) -> dict[str, Any]:
    """Normalise `event_value` (an object, or a JSON string of one) to a dict."""
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            decoded = json.loads(value)
        except ValueError:
            raise ValueError(
                "is a string but not JSON; expected an object or a JSON object string"
            ) from None
        if isinstance(decoded, dict):
            return decoded
        raise ValueError(f"is a JSON string of {type(decoded).__name__}, not of an object")
    raise ValueError(f"must be an object or a JSON string of one, not {type(value).__name__}")


def parse_decimal(value: object) -> Decimal | None:
    """Read a revenue amount from a decimal string or a number; None when absent."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError(f"must be a decimal string or a number, not {type(value).__name__}")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{str(value)[:40]!r} is not a decimal number") from None
    if not amount.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    return amount


def _lower_or_none(value: object) -> object:
    if value is None or value == "":
        return None
    return value.strip().lower() if isinstance(value, str) else value


Timestamp = Annotated[datetime, BeforeValidator(parse_timestamp)]
OptionalTimestamp = Annotated[datetime | None, BeforeValidator(_optional_timestamp)]
OptionalDecimal = Annotated[Decimal | None, BeforeValidator(parse_decimal)]
EventValue = Annotated[dict[str, Any], BeforeValidator(parse_event_value)]
Platform = Annotated[Literal["ios", "android"] | None, BeforeValidator(_lower_or_none)]
TouchType = Annotated[str | None, BeforeValidator(_lower_or_none)]


class _Event(BaseModel):
    """Fields of installs and in-app events; in-app events carry their install's attribution."""

    model_config = ConfigDict(frozen=True, extra="ignore", coerce_numbers_to_str=True)

    event_id: str
    event_name: str
    event_time: Timestamp
    install_time: Timestamp
    app_id: str
    appsflyer_id: str
    platform: Platform = None
    media_source: str | None = None
    attributed_touch_type: TouchType = None
    attributed_touch_time: OptionalTimestamp = None
    click_id: str | None = None
    campaign_id: str | None = None
    adset_id: str | None = None
    ad_id: str | None = None
    idfa: str | None = None
    idfv: str | None = None
    advertising_id: str | None = None
    android_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    app_version: str | None = None
    country_code: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _blank_is_absent(cls, data: Any) -> Any:
        """AppsFlyer exports write missing values as empty strings; treat them as absent."""
        if isinstance(data, dict) and "" in data.values():
            required = {"event_id", "event_time", "install_time", "app_id", "appsflyer_id"}
            return {k: v for k, v in data.items() if v != "" or k in required}
        return data

    @model_validator(mode="after")
    def _required_not_blank(self) -> _Event:
        for name in ("event_id", "app_id", "appsflyer_id", "event_name"):
            if not getattr(self, name).strip():
                raise ValueError(f"{name} must not be empty")
        return self

    @property
    def event_time_s(self) -> float:
        """Event time as Unix seconds."""
        return self.event_time.timestamp()


class InstallEvent(_Event):
    """An install, from the installs topic."""

    event_type: Literal["install"]
    event_name: str = INSTALL


class InAppEvent(_Event):
    """An in-app event, from the in-app events topic."""

    event_type: Literal["in-app-event"]
    event_value: EventValue = {}
    event_revenue: OptionalDecimal = None
    event_revenue_currency: str | None = None


Event = InstallEvent | InAppEvent


def is_finite_number(value: object) -> bool:
    """True for an int or a finite float (not a bool)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value)
