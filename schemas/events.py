"""Input events: AppsFlyer-style install and in-app event records read from Kafka (SPEC §2)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Json, PlainValidator, StringConstraints

EventType = Literal["install", "in-app-event"]
INSTALL: EventType = "install"
IN_APP_EVENT: EventType = "in-app-event"

_fromisoformat = datetime.fromisoformat


def parse_timestamp(value: object) -> datetime:
    """Parse an event timestamp to an aware datetime: `YYYY-MM-DD HH:MM:SS[.fff]` (UTC, AppsFlyer
    raw data) or ISO 8601 with an offset. Numbers, dates alone and offset-less ISO are refused.

    On the hot path (three per event): a positional shape check, then the C parser.
    """
    if (
        type(value) is str
        and len(value) >= 19
        and value[4] == "-"
        and value[7] == "-"
        and value[13] == ":"
        and value[16] == ":"
        and (separator := value[10]) in " T"
    ):
        try:
            parsed = _fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value[:40]!r} is not a valid date and time") from None
        if parsed.tzinfo is not None:
            return parsed
        if separator == " ":
            return parsed.replace(tzinfo=UTC)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str):
        raise ValueError(
            f"must be a timestamp string 'YYYY-MM-DD HH:MM:SS[.fff]' (UTC) or ISO 8601 with an "
            f"offset, not {type(value).__name__}"
        )
    raise ValueError(
        f"{value[:40]!r} is not 'YYYY-MM-DD HH:MM:SS[.fff]' (UTC) nor ISO 8601 with an offset"
    )


def _optional_timestamp(value: object) -> datetime | None:
    if value is None or value == "":
        return None
    return parse_timestamp(value)


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


# AppsFlyer exports write missing values as empty strings: the typed fields below read "" as
# absent; plain string fields keep "" and every rule treats an empty value as absent.
Timestamp = Annotated[datetime, PlainValidator(parse_timestamp)]
OptionalTimestamp = Annotated[datetime | None, PlainValidator(_optional_timestamp)]
# Lower-cased in pydantic-core (no Python call per event); "" stays "" and means absent.
Lowered = Annotated[str | None, StringConstraints(strip_whitespace=True, to_lower=True)]
# Required identifiers must hold a non-blank character (checked in pydantic-core).
Identifier = Annotated[str, StringConstraints(pattern=r"\S")]


class _Event(BaseModel):
    """Fields of installs and in-app events; in-app events carry their install's attribution."""

    model_config = ConfigDict(frozen=True, extra="ignore", coerce_numbers_to_str=True)

    event_id: Identifier
    event_name: Identifier
    event_time: Timestamp
    install_time: Timestamp
    app_id: Identifier
    appsflyer_id: Identifier
    platform: Lowered = None  # ios / android; not checked further, no rule depends on it
    media_source: str | None = None
    attributed_touch_type: Lowered = None
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
    # Both validated in pydantic-core (no Python call per event); read them through the
    # properties below, which turn "" and null into "absent".
    event_value_field: Annotated[
        dict[str, Any] | Json[dict[str, Any]] | Literal[""] | None, Field(alias="event_value")
    ] = None
    event_revenue_field: Annotated[
        Annotated[Decimal, Field(allow_inf_nan=False)] | Literal[""] | None,
        Field(alias="event_revenue"),
    ] = None
    event_revenue_currency: str | None = None

    @property
    def event_value(self) -> dict[str, Any]:
        """The rich event parameters (empty when absent)."""
        value = self.event_value_field
        return value if isinstance(value, dict) else {}

    @property
    def event_revenue(self) -> Decimal | None:
        """The event's revenue amount, when it has one."""
        amount = self.event_revenue_field
        return amount if isinstance(amount, Decimal) else None


Event = InstallEvent | InAppEvent
