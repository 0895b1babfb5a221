"""The canonical event: what the rules, the partner payloads and `explain` see.

It is format-neutral: an input decoder (`dispatcher.inputs`) turns a record of its format into
an `Event`, resolving field names, blank values, id derivation and revenue there. Nothing here
names AppsFlyer's fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, Literal, NamedTuple
from urllib.parse import unquote_plus

EventType = Literal["install", "in-app-event"]
INSTALL: EventType = "install"
IN_APP_EVENT: EventType = "in-app-event"

_fromisoformat = datetime.fromisoformat


class Conversion(StrEnum):
    """What kind of conversion the record reports; only `install` is a first install."""

    INSTALL = "install"
    REINSTALL = "reinstall"
    RE_ENGAGEMENT = "re-engagement"
    RE_ATTRIBUTION = "re-attribution"
    OTHER = "other"  # a kind the decoder does not know: not taken for a first install


class Att(StrEnum):
    """The user's App Tracking Transparency status on iOS, in neutral terms."""

    AUTHORIZED = "authorized"
    DENIED = "denied"
    NOT_DETERMINED = "not_determined"
    RESTRICTED = "restricted"
    UNAVAILABLE = "unavailable"  # the IDFA is not available, for a reason not given
    UNKNOWN = "unknown"  # a value the measurement platform does not know


class FraudMark(NamedTuple):
    """Why the measurement platform blocked or rejected a record, as it says it."""

    reason: str
    value: str | None = None
    sub_reason: str | None = None
    rule: str | None = None

    def describe(self) -> str:
        """The reason and whatever else is known, for `explain`."""
        parts = [self.reason]
        if self.value:
            parts.append(f"value {self.value}")
        if self.sub_reason:
            parts.append(f"sub-reason {self.sub_reason}")
        if self.rule:
            parts.append(f"rule {self.rule}")
        return ", ".join(parts)


class Money(NamedTuple):
    """An amount with its ISO 4217 currency, when known (a NamedTuple: one per in-app event)."""

    amount: Decimal
    currency: str | None


class Event(NamedTuple):
    """One install or in-app event, decoded and format-neutral; in-app events carry their
    install's attribution fields.

    Immutable; a NamedTuple because one is built per event, several times cheaper than a frozen
    dataclass of this many fields.
    """

    type: EventType
    event_id: str
    event_id_derived: bool  # True when the input had no id and the decoder derived one
    event_name: str
    event_time: datetime
    event_time_s: float  # the same moment in Unix seconds (payloads and latency read it)
    install_time: datetime
    app_id: str
    install_id: str  # the measurement platform's id of this app install (AppsFlyer: appsflyer_id)
    conversion: Conversion
    is_primary: bool  # False for the secondary copy of an event reported twice
    media_source: str | None
    touch_type: str | None  # lower case: click, impression, ...
    touch_time: datetime | None
    click_id: str | None  # given explicitly by the producer; else see `click_id_for`
    link: str | None  # the attribution link the user clicked, as recorded
    campaign_id: str | None
    adset_id: str | None
    ad_id: str | None
    platform: str | None
    idfa: str | None
    idfv: str | None
    advertising_id: str | None
    android_id: str | None
    oaid: str | None
    imei: str | None
    ip: str | None
    user_agent: str | None
    app_version: str | None
    country_code: str | None
    params: Mapping[str, Any]  # the rich event parameters, as sent
    # Well-known parameters under neutral names (content_id, content_type, quantity, order_id,
    # search_string); a partner maps them to its own.
    standard_params: Mapping[str, Any]
    revenue: Money | None
    revenue_keys: frozenset[str]  # the keys of `params` that carry revenue, at any depth
    is_retargeting: bool  # a retargeting (re-engagement, re-attribution) conversion
    blocked: FraudMark | None  # blocked as fraud: never a conversion
    rejected: FraudMark | None  # rejected by the platform's validation rules
    gdpr_applies: bool | None  # the user is under the GDPR (or a law like it); None: not said
    ad_user_data: bool | None  # consent to share the user's data for advertising
    ad_personalization: bool | None  # consent to personalised advertising
    att: Att | None  # iOS App Tracking Transparency status; None when not given
    limit_ad_tracking: bool  # the device asks not to be tracked (Android's LAT)
    app_name: str | None
    language: str | None  # the device's language as a BCP 47 tag (`en-US`), when it is one

    @property
    def is_in_app(self) -> bool:
        """An in-app event, not an install."""
        return self.type == IN_APP_EVENT

    def click_id_for(self, link_parameter: str) -> str | None:
        """The partner's click id: the explicit one, else `link_parameter` of the clicked link."""
        if self.click_id:
            return self.click_id
        if not self.link:
            return None
        return link_parameter_of(self.link, link_parameter)


def link_parameter_of(link: str, name: str) -> str | None:
    """The first non-blank value of query parameter `name` in `link`, URL-decoded.

    Found with `str.find` rather than by splitting the query (`urllib.parse.parse_qsl` or a
    split on `&`): a link carries some twenty parameters and this runs for every event. The
    parameter names looked up are plain ASCII, never percent-encoded.
    """
    query = link.partition("#")[0].partition("?")[2]  # the fragment is not the query's
    if name not in query:
        return None
    key = name + "="
    at = query.find(key)
    while at >= 0:
        if at == 0 or query[at - 1] == "&":
            start = at + len(key)
            end = query.find("&", start)
            value = query[start:] if end < 0 else query[start:end]
            if value:
                # (unquote_plus is two Python calls; a click id seldom holds '%' or '+')
                decoded = unquote_plus(value) if "%" in value or "+" in value else value
                if decoded.strip():
                    return decoded
        at = query.find(key, at + 1)
    return None


def parse_timestamp(value: object) -> datetime:
    """Parse an event timestamp to an aware datetime: `YYYY-MM-DD HH:MM:SS[.fff]` (UTC, AppsFlyer
    raw data) or ISO 8601 with an offset. Numbers, dates alone and offset-less ISO are refused.

    On the hot path (three per event): a positional shape check, then the C parser. The usual
    AppsFlyer text is parsed with its UTC offset appended: `datetime.replace(tzinfo=...)` costs
    several times the parse.
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
        if separator == " ":
            try:
                return _fromisoformat(value + "+00:00")  # raw data's UTC, without an offset
            except ValueError:
                pass  # it has an offset of its own, or is no date: parsed as it is below
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
