"""AppsFlyer's records, as Push API V2 posts them (raw data V5 fields), into the canonical event.

Everything that is AppsFlyer's lives here: field names and their aliases, blank values (an absent
key, `null` and `""` mean the same), `"true"` booleans, `event_value` as a JSON string or an
object, revenue as a string or a number, the revenue keys and well-known keys of `event_value`,
the `event_type` values of Push API, and the derived event id. Field names and values
follow AppsFlyer's Push API and raw data documentation (docs/input-events.md).

Each field the worker reads is declared once, in `Record`: both readers are made from it, the
fast one in msgspec and the checked one in pydantic-core (`AppsFlyerRecord`), which says what is
wrong with a bad record.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Annotated, Any, Literal, Required, get_args, get_origin

import msgspec
from pydantic import (
    ConfigDict,
    Field,
    Json,
    PlainValidator,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    with_config,
)
from pydantic_core import ErrorDetails
from typing_extensions import TypedDict

from dispatcher.inputs.base import BadInput
from schemas.events import (
    IN_APP_EVENT,
    INSTALL,
    Att,
    Conversion,
    Event,
    EventType,
    FraudMark,
    Money,
    parse_decimal,
    parse_timestamp,
)

# Keys of `event_value` that carry revenue; none of them survives stripping, at any depth.
REVENUE_KEYS = frozenset({"af_revenue", "revenue", "event_revenue"})
# Well-known `event_value` keys → the canonical event's neutral parameter names.
STANDARD_PARAMS: Mapping[str, str] = MappingProxyType(
    {
        "af_content_id": "content_id",
        "af_content_type": "content_type",
        "af_quantity": "quantity",
        "af_order_id": "order_id",
        "af_search_string": "search_string",
    }
)
_STANDARD_PAIRS = tuple(STANDARD_PARAMS.items())
# Push API's `event_type` values on the installs topic; in-app events are `in-app-event` (V1) or
# end in `-in-app-event` (V2: install-, organic-install-, re-engagement-, re-attribution-).
INSTALL_EVENT_TYPES = (
    "install",
    "organic-install",
    "reinstall",
    "organic-reinstall",
    "re-engagement",
    "re-attribution",
)
IN_APP_EVENT_TYPE_SUFFIX = "in-app-event"
# Values of `event_type`, `conversion_type` and `event_name` that name a conversion kind.
_CONVERSIONS: Mapping[str, Conversion] = MappingProxyType(
    {
        "install": Conversion.INSTALL,
        "organic-install": Conversion.INSTALL,
        "reinstall": Conversion.REINSTALL,
        "organic-reinstall": Conversion.REINSTALL,
        "re-engagement": Conversion.RE_ENGAGEMENT,
        "re-attribution": Conversion.RE_ATTRIBUTION,
    }
)
_INSTALL_EVENT_NAMES = frozenset(_CONVERSIONS)
# AppsFlyer's `att` values (Apple's four, and AppsFlyer's own for devices without the prompt or
# without a known status) in neutral terms; any other value is `Att.UNKNOWN`.
ATT_STATUSES: Mapping[str, Att] = MappingProxyType(
    {
        "authorized": Att.AUTHORIZED,
        "af_authorized": Att.AUTHORIZED,
        "denied": Att.DENIED,
        "not_determined": Att.NOT_DETERMINED,
        "restricted": Att.RESTRICTED,
        "af_unavailable": Att.UNAVAILABLE,
        "af_unknown": Att.UNKNOWN,
    }
)
_MAX_ERRORS_IN_DETAIL = 5


@dataclass(frozen=True, slots=True)
class Checked:
    """A `Record` field's rule in the checked reader, where it is more than the type msgspec reads
    the field as. Given as `Annotated` metadata, which msgspec ignores (it reads only its `Meta`).

    `rule` is the field's type in pydantic-core; `required` makes the field required there though
    msgspec has a default for it (a value `_read_fast` fills in itself); `sentence` says what the
    value must be, in the error that names the field, instead of one message per union member
    (for a field read from its own key).
    """

    rule: Any
    required: bool = False
    sentence: str | None = None


def _optional_timestamp(value: object) -> datetime | None:
    return None if value is None or value == "" else parse_timestamp(value)


# The rules several fields share: the type msgspec reads (and mypy sees) with the rule
# pydantic-core checks; `_read_fast` checks the same rule by hand.

# Required identifiers must hold a non-blank character (checked in pydantic-core).
Identifier = Annotated[str, Checked(Annotated[str, StringConstraints(pattern=r"\S")])]
# Text when read; the parsed time once checked.
Timestamp = Annotated[Any, Checked(Annotated[datetime, PlainValidator(parse_timestamp)])]
OptionalTimestamp = Annotated[
    Any, Checked(Annotated[datetime | None, PlainValidator(_optional_timestamp)])
]
# Lower-cased in pydantic-core (no Python call per event); "" stays "" and means absent.
Lowered = Annotated[
    str | None,
    Checked(Annotated[str | None, StringConstraints(strip_whitespace=True, to_lower=True)]),
]
# `true`, `"true"`, `1`, ...; "" and null mean absent.
Flag = Annotated[
    bool | str | None,
    Checked(bool | Literal[""] | None, sentence="must be true or false (or the string of one)"),
]


class Record(msgspec.Struct, gc=False, kw_only=True):
    """The fields of a Push API V2 message that the worker reads, each declared once here; every
    other one is ignored, an absent one None.

    Both readers are made from these declarations: msgspec's decoder of this Struct, whose record
    `_read_fast` then checks field by field, and pydantic-core's `AppsFlyerRecord`, which takes
    each field's `Checked` rule, else its type here (`_read_checked`: the reference that
    `_read_fast` must match, and the reader of every record it declines, with the error that
    names the field). Typed as msgspec reads them from JSON; the `Any` ones hold their text when
    read and their value once `_read_fast` has checked them. In the order pydantic-core checks
    them and lists their errors in (`kw_only`: so a field with a default may come before a
    required one). Never in a reference cycle, so not tracked by the garbage collector."""

    app_id: Identifier
    appsflyer_id: Identifier
    event_time: Timestamp
    # The text of event_time as sent, for the derived id: read from event_time's key by the
    # checked reader, set from event_time by `_read_fast`.
    event_time_text: Annotated[
        str, Checked(Annotated[str, Field(validation_alias="event_time")], required=True)
    ] = ""
    install_time: Timestamp
    event_name: str | None = None
    event_type: Lowered = None
    event_id: str | None = None  # not AppsFlyer's: a producer may add one
    conversion_type: Lowered = None  # documented: Install, Re-engagement, Reinstall
    retargeting_conversion_type: Lowered = None  # re-engagement or re-attribution
    is_retargeting: Flag = None
    is_primary_attribution: Flag = None
    media_source: str | None = None
    attributed_touch_type: Lowered = None
    attributed_touch_time: OptionalTimestamp = None
    click_id: str | None = None  # not AppsFlyer's: a producer may add the click id itself
    original_url: str | None = None
    af_c_id: str | None = None
    af_adset_id: str | None = None
    af_ad_id: str | None = None
    # The names of this project's first record format, accepted as aliases of the three above.
    campaign_id: str | None = None
    adset_id: str | None = None
    ad_id: str | None = None
    platform: Lowered = None
    idfa: str | None = None
    idfv: str | None = None
    advertising_id: str | None = None
    android_id: str | None = None
    oaid: str | None = None
    imei: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    app_version: str | None = None
    country_code: str | None = None
    # Parsed in pydantic-core; the text as sent is kept for the derived id. Tried in order, the
    # JSON string (as Push API sends it) first: a smart union tries every member on every event.
    event_value: Annotated[
        str | dict[str, Any] | None,
        Checked(
            Annotated[
                Json[dict[str, Any]] | dict[str, Any] | Literal[""] | None,
                Field(validation_alias="event_value", union_mode="left_to_right"),
            ],
            sentence="must be an object, or a JSON string of one",
        ),
    ] = None
    # The text of event_value as sent, for the derived id (read as event_time_text is).
    event_value_text: Annotated[
        Any, Checked(Annotated[str | dict[str, Any] | None, Field(validation_alias="event_value")])
    ] = None
    event_revenue: Annotated[
        Any,
        Checked(
            Annotated[
                Annotated[Decimal, Field(allow_inf_nan=False)] | Literal[""] | None,
                Field(validation_alias="event_revenue"),
            ],
            sentence="must be a finite decimal string or number",
        ),
    ] = None
    event_revenue_currency: str | None = None
    # Fraud: Protect360's blocks and the validation rules' rejections.
    blocked_reason: str | None = None
    blocked_reason_value: str | None = None
    blocked_sub_reason: str | None = None
    blocked_reason_rule: str | None = None
    rejected_reason: str | None = None
    rejected_reason_value: str | None = None
    # Consent and tracking signals.
    gdpr_applies: Flag = None
    ad_user_data_enabled: Flag = None
    ad_personalization_enabled: Flag = None
    att: Lowered = None
    is_lat: Flag = None
    app_name: str | None = None
    language: str | None = None


def checked_rule(field: msgspec.structs.FieldInfo) -> Checked:
    """A Struct field's rule in the checked reader: its `Checked` metadata, else the type msgspec
    reads it as. TypeError, so that the module does not import rather than the readers
    disagreeing, for a field pydantic-core would read from another key than msgspec, one with
    a constraint only msgspec checks (`msgspec.Meta`) or more than one rule, and an `Any` field
    without a rule (nothing would check it)."""
    args = get_args(field.type) if get_origin(field.type) is Annotated else (field.type,)
    kind, metadata = args[0], args[1:]
    if field.encode_name != field.name:
        raise TypeError(f"{field.name}: msgspec reads it from key {field.encode_name!r}")
    rules = [item for item in metadata if isinstance(item, Checked)]
    if len(rules) != len(metadata) or len(rules) > 1:
        raise TypeError(f"{field.name}: metadata other than one Checked rule: {metadata!r}")
    if rules:
        return rules[0]
    if kind is Any:
        raise TypeError(f"{field.name}: typed Any without a Checked rule")
    return Checked(kind)


# mypy reads only a TypedDict call spelled out field by field; this one is made from a Struct's.
_typed_dict: Any = TypedDict


def checked_reader(struct: type[msgspec.Struct], name: str) -> type:
    """The TypedDict that pydantic-core validates for `struct`: each field under its
    `checked_rule`, required where msgspec requires it or its rule does; other keys are ignored
    and numbers are read as text where text is expected."""
    fields = {}
    for field in msgspec.structs.fields(struct):
        rule = checked_rule(field)
        fields[field.name] = Required[rule.rule] if field.required or rule.required else rule.rule
    reader: type = _typed_dict(name, fields, total=False)
    return with_config(ConfigDict(extra="ignore", coerce_numbers_to_str=True))(reader)


# The checked reader's record: `Record`'s fields under their rules, validated in pydantic-core.
AppsFlyerRecord = checked_reader(Record, "AppsFlyerRecord")
_RECORD: TypeAdapter[dict[str, Any]] = TypeAdapter(AppsFlyerRecord)
_validate_record = _RECORD.validate_json
# Fields validated as unions: one plain sentence instead of one message per union member. An
# error is under the key its field is read from: event_value_text's are event_value's.
_FIELD_RULES = {
    field.name: sentence
    for field in msgspec.structs.fields(Record)
    if (sentence := checked_rule(field).sentence) is not None
}


def _read_checked(raw: bytes) -> Record:
    """The record as pydantic-core validates it: the reference reading, and the one that says
    what is wrong (`ValidationError`)."""
    return Record(**_validate_record(raw))


_decode_record = msgspec.json.Decoder(Record).decode
_decode_object = msgspec.json.Decoder(dict[str, Any]).decode
# What pydantic-core's JSON reader refuses and msgspec's reads: integers of more than 4,300
# digits, invalid UTF-8 in a field that is skipped, nesting deeper than 200 (text with fewer
# brackets cannot nest that deep). Such records go to the checked reader; but nesting is
# counted only where the worker reads it (`event_value`): counting a whole message's brackets
# would cost about as much as msgspec saves, for a depth no AppsFlyer record has.
_MAX_NESTING = 200
_MAX_DIGITS = 4300
_LONG_NUMBER = b"0" * (_MAX_DIGITS + 1)
_DIGITS_AS_ZEROS = bytes.maketrans(b"0123456789", b"0" * 10)
# What pydantic-core's `strip_whitespace` strips from ASCII text (Rust's `trim`); Python's
# `strip()` would strip \x1c-\x1f too.
_TRIMMED = " \t\n\x0b\x0c\r"


def _read_fast(raw: bytes) -> Record | None:
    """The record `_read_checked` reads from `raw`, read in msgspec (about half pydantic-core's
    time on AppsFlyer records: the fields not read never become objects) and checked here; None
    whenever this reader cannot vouch for the same record (a value it would read differently, or
    an error to describe), and the checked reader reads it then. A test compares both readers on
    generated records."""
    if (len(raw) > _MAX_DIGITS and _LONG_NUMBER in raw.translate(_DIGITS_AS_ZEROS)) or not (
        raw.isascii() or _is_utf8(raw)
    ):
        return None
    try:
        record = _decode_record(raw)
        app_id = record.app_id
        appsflyer_id = record.appsflyer_id
        if not (  # `Identifier`'s rule for ASCII text; other text is left to the checked reader
            app_id.isascii()
            and appsflyer_id.isascii()
            and app_id.strip(_TRIMMED)
            and appsflyer_id.strip(_TRIMMED)
        ):
            return None
        event_time = record.event_time
        install_time = record.install_time
        touch_time = record.attributed_touch_time
        record.event_time = parse_timestamp(event_time)  # raises for what is not text
        record.event_time_text = event_time
        record.install_time = parse_timestamp(install_time)
        if touch_time is not None:
            if type(touch_time) is not str:
                return None  # `0` or `false` is not blank, as `_optional_timestamp` sees it
            record.attributed_touch_time = parse_timestamp(touch_time) if touch_time else None
        # Lowered fields (blank ones stay as they are)
        if record.event_type:
            record.event_type = _lowered(record.event_type)
        if record.conversion_type:
            record.conversion_type = _lowered(record.conversion_type)
        if record.retargeting_conversion_type:
            record.retargeting_conversion_type = _lowered(record.retargeting_conversion_type)
        if record.attributed_touch_type:
            record.attributed_touch_type = _lowered(record.attributed_touch_type)
        if record.platform:
            record.platform = _lowered(record.platform)
        if type(record.is_retargeting) is str:
            record.is_retargeting = _flag(record.is_retargeting)
        if type(record.is_primary_attribution) is str:
            record.is_primary_attribution = _flag(record.is_primary_attribution)
        if record.att:
            record.att = _lowered(record.att)
        if type(record.gdpr_applies) is str:
            record.gdpr_applies = _flag(record.gdpr_applies)
        if type(record.ad_user_data_enabled) is str:
            record.ad_user_data_enabled = _flag(record.ad_user_data_enabled)
        if type(record.ad_personalization_enabled) is str:
            record.ad_personalization_enabled = _flag(record.ad_personalization_enabled)
        if type(record.is_lat) is str:
            record.is_lat = _flag(record.is_lat)
        value = record.event_value
        record.event_value_text = value
        if type(value) is str and value:
            if value.count("{") + value.count("[") > _MAX_NESTING:
                return None
            record.event_value = _decode_object(value)  # refuses integers past 4,300 digits
        elif type(value) is dict and raw.count(b"{") + raw.count(b"[") > _MAX_NESTING:
            return None  # the object's nesting counts in the message's; skipped fields' doesn't
        amount = record.event_revenue
        if amount is not None and amount != "":
            record.event_revenue = _amount(amount)
    except (msgspec.DecodeError, ValueError, RecursionError):
        return None
    return record


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode()
    except UnicodeDecodeError:
        return False
    return True


def _lowered(value: str) -> str:
    """`Lowered` for ASCII text; other text raises (left to the checked reader)."""
    if not value.isascii():
        raise ValueError(value)
    return value.strip(_TRIMMED).lower()


def _flag(value: str) -> bool | str:
    """`Flag` for the strings true, false and ""; others raise."""
    if value == "true":
        return True
    if value == "false":
        return False
    if value:
        raise ValueError(value)
    return value


def _amount(value: object) -> Decimal:
    """`event_revenue` as pydantic-core reads digits with at most one point inside, or an
    integer; others raise. A float is left to the checked reader: pydantic-core writes it out
    in Rust's shortest digits, whose last digit differs from Python's in rare cases."""
    if type(value) is int:
        return Decimal(value)
    if type(value) is str:
        whole, point, fraction = value.partition(".")
        if (
            whole.isascii()
            and whole.isdigit()
            and (not point or (fraction.isascii() and fraction.isdigit()))
        ):
            return Decimal(value)
    raise ValueError(value)


def derive_event_id(
    app_id: str, appsflyer_id: str, event_name: str, event_time: str, event_value: str
) -> str:
    """The event id of a record that has none (the recipe is in docs/input-events.md).

    SHA-256 over the five fields as sent, each written as a netstring (`<length of its UTF-8
    bytes>:<bytes>,`), in this order; the first 32 hex digits. Never change it: a new recipe
    re-sends history under new ids.
    """
    if (
        app_id.isascii()
        and appsflyer_id.isascii()
        and event_name.isascii()
        and event_time.isascii()
        and event_value.isascii()
    ):  # the usual case: a character is a byte, so lengths need no encoding first
        netstrings = (
            f"{len(app_id)}:{app_id},{len(appsflyer_id)}:{appsflyer_id},"
            f"{len(event_name)}:{event_name},{len(event_time)}:{event_time},"
            f"{len(event_value)}:{event_value},"
        ).encode("ascii")
    else:
        a, b, c, d, e = (
            part.encode("utf-8", "surrogatepass")
            for part in (app_id, appsflyer_id, event_name, event_time, event_value)
        )
        netstrings = b"%d:%b,%d:%b,%d:%b,%d:%b,%d:%b," % (
            len(a), a, len(b), b, len(c), c, len(d), d, len(e), e,
        )  # fmt: skip
    return _sha256(netstrings).hexdigest()[:32]


_sha256 = hashlib.sha256


def event_value_text(value: str | dict[str, Any] | None) -> str:
    """`event_value` as it enters the derived id: a string as sent, an object as its canonical
    JSON (keys sorted, no spaces), absent as ""."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class AppsFlyerDecoder:
    """Decodes AppsFlyer Push API V2 / raw data V5 records."""

    name = "appsflyer"

    def decode(self, raw: bytes | None, topic_type: EventType) -> Event | BadInput:
        """Decode one message read from the topic that carries `topic_type` events."""
        if raw is None:
            return BadInput("empty message (null value)", None, None)
        record = _read_fast(raw) if type(raw) is bytes else None
        if record is None:
            try:
                record = _read_checked(raw)
            except ValidationError as exc:
                return _bad_input(raw, exc)
        problem = _check_type(record, topic_type)
        if problem is not None:
            return BadInput(problem, raw, _parse_object(raw))
        return to_event(record, topic_type)

    def topic_type_of(self, raw: bytes) -> EventType:
        """In-app when `event_type` says so or `event_name` is not an install's; else install."""
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError):  # nested past the reader's depth: not an event
            return INSTALL
        if not isinstance(value, dict):
            return INSTALL
        event_type = value.get("event_type")
        if isinstance(event_type, str) and event_type.strip():
            if event_type.strip().lower().endswith(IN_APP_EVENT_TYPE_SUFFIX):
                return IN_APP_EVENT
            return INSTALL
        name = value.get("event_name")
        if (
            isinstance(name, str)
            and name.strip()
            and name.strip().lower() not in _INSTALL_EVENT_NAMES
        ):
            return IN_APP_EVENT
        return INSTALL


def _check_type(record: Record, topic_type: EventType) -> str | None:
    """Why the record does not belong on its topic, or None when it does."""
    event_type = record.event_type
    if topic_type == IN_APP_EVENT:
        if not (record.event_name or "").strip():
            return "missing required field event_name (the SDK event name of an in-app event)"
        if event_type and not event_type.endswith(IN_APP_EVENT_TYPE_SUFFIX):
            return (
                f"event_type {event_type!r} does not match its topic, which carries in-app events "
                f"(event_type in-app-event or *-in-app-event)"
            )
    elif event_type and event_type not in INSTALL_EVENT_TYPES:
        return (
            f"event_type {event_type!r} does not match its topic, which carries installs "
            f"(event_type {', '.join(INSTALL_EVENT_TYPES)})"
        )
    return None


_new_event: Callable[[type[Event], tuple[Any, ...]], Event] = tuple.__new__
# (Event's fields in order, without the keyword-binding constructor)


def to_event(record: Record, topic_type: EventType) -> Event:
    """The canonical event of a valid record read from the topic of `topic_type` events.

    Built positionally, in `Event`'s field order (per event, binding 33 keywords costs more than
    the rest of this function); the corpus tests compare whole events and payloads."""
    event_value = record.event_value
    params: Mapping[str, Any] = event_value if isinstance(event_value, dict) else _EMPTY
    event_name = record.event_name
    event_time: datetime = record.event_time
    event_id = record.event_id
    derived = not (event_id and event_id.strip())
    if derived:
        event_id = derive_event_id(
            record.app_id,
            record.appsflyer_id,
            event_name or "",
            record.event_time_text,
            event_value_text(record.event_value_text),
        )
    return _new_event(
        Event,
        (
            topic_type,  # type
            event_id,  # event_id
            derived,  # event_id_derived
            event_name or INSTALL,  # event_name
            event_time,  # event_time
            event_time.timestamp(),  # event_time_s
            record.install_time,  # install_time
            record.app_id,  # app_id
            record.appsflyer_id,  # install_id
            _conversion(record),  # conversion
            record.is_primary_attribution is not False,  # is_primary
            record.media_source or None,  # media_source
            record.attributed_touch_type or None,  # touch_type
            record.attributed_touch_time,  # touch_time
            record.click_id or None,  # click_id
            record.original_url or None,  # link
            record.af_c_id or record.campaign_id or None,  # campaign_id
            record.af_adset_id or record.adset_id or None,  # adset_id
            record.af_ad_id or record.ad_id or None,  # ad_id
            record.platform or None,  # platform
            record.idfa or None,  # idfa
            record.idfv or None,  # idfv
            record.advertising_id or None,  # advertising_id
            record.android_id or None,  # android_id
            record.oaid or None,  # oaid
            record.imei or None,  # imei
            record.ip or None,  # ip
            record.user_agent or None,  # user_agent
            record.app_version or None,  # app_version
            record.country_code or None,  # country_code
            params,  # params
            (  # standard_params
                {name: params[key] for key, name in _STANDARD_PAIRS if key in params}
                if params
                else _EMPTY
            ),
            _revenue(record, params) if topic_type == IN_APP_EVENT else None,  # revenue
            REVENUE_KEYS,  # revenue_keys
            record.is_retargeting is True,  # is_retargeting
            _fraud(  # blocked
                record.blocked_reason,
                record.blocked_reason_value,
                record.blocked_sub_reason,
                record.blocked_reason_rule,
            )
            if record.blocked_reason
            else None,
            _fraud(record.rejected_reason, record.rejected_reason_value, None, None)  # rejected
            if record.rejected_reason
            else None,
            _consent(record.gdpr_applies),  # gdpr_applies
            _consent(record.ad_user_data_enabled),  # ad_user_data
            _consent(record.ad_personalization_enabled),  # ad_personalization
            (ATT_STATUSES.get(record.att, Att.UNKNOWN) if record.att else None),  # att
            record.is_lat is True,  # limit_ad_tracking
            record.app_name or None,  # app_name
            _language(record.language),  # language
        ),
    )


def _fraud(
    reason: str | None, value: str | None, sub_reason: str | None, rule: str | None
) -> FraudMark | None:
    """A block or rejection, when `reason` names one (blank text is no reason)."""
    if reason is None or not reason.strip():
        return None
    return FraudMark(
        reason.strip(),
        (value or "").strip() or None,
        (sub_reason or "").strip() or None,
        (rule or "").strip() or None,
    )


def _consent(value: bool | str | None) -> bool | None:
    """A consent flag: True, False, or None when the record does not say."""
    return value if type(value) is bool else None


def _language(value: str | None) -> str | None:
    """The device language when it is a BCP 47 tag (`en`, `en-US`, `zh-Hans-CN`; AppsFlyer's
    `en_US` written with a hyphen); None for anything else."""
    if not value:
        return None
    tag = value.strip().replace("_", "-")
    return tag if _BCP47.fullmatch(tag) else None


_EMPTY: Mapping[str, Any] = MappingProxyType({})
# A language subtag, then script, region or variant subtags (RFC 5646, simplified).
_BCP47 = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*")


def _conversion(record: Record) -> Conversion:
    """A first install unless `event_type`, `retargeting_conversion_type`, `conversion_type`,
    `event_name` or `is_retargeting` says it is a reinstall, re-engagement or re-attribution."""
    event_type = record.event_type
    if event_type:
        kind = (
            _EVENT_TYPE_KINDS[event_type]
            if event_type in _EVENT_TYPE_KINDS
            else _kind_of(event_type)
        )
        if kind is not None and kind is not Conversion.INSTALL:
            return kind
    # Then, in this order (per event: plain ifs, no loop over a tuple built for it):
    # retargeting_conversion_type of a retargeting record, conversion_type, event_name.
    is_retargeting = record.is_retargeting is True
    if is_retargeting:
        kind = _CONVERSIONS.get(record.retargeting_conversion_type or "")
        if kind is not None and kind is not Conversion.INSTALL:
            return kind
    conversion_type = record.conversion_type
    if conversion_type:
        kind = _CONVERSIONS.get(conversion_type)
        if kind is not None and kind is not Conversion.INSTALL:
            return kind
    event_name = record.event_name
    if event_name:
        kind = _CONVERSIONS.get(event_name.lower())
        if kind is not None and kind is not Conversion.INSTALL:
            return kind
    if conversion_type and conversion_type not in _CONVERSIONS:
        # An unknown kind is not taken for a first install: nothing is sent that is not owed.
        return Conversion.OTHER
    if is_retargeting:
        return Conversion.RE_ENGAGEMENT
    return Conversion.INSTALL


def _kind_of(event_type: str) -> Conversion | None:
    """The conversion kind an `event_type` names: an in-app event's is its install's."""
    if event_type.endswith(IN_APP_EVENT_TYPE_SUFFIX):
        event_type = event_type.removesuffix(IN_APP_EVENT_TYPE_SUFFIX).rstrip("-")
    return _CONVERSIONS.get(event_type)


# Every documented `event_type` and its kind, looked up once per event; others are worked out.
_EVENT_TYPE_KINDS: Mapping[str, Conversion | None] = MappingProxyType(
    {
        value: _kind_of(value)
        for kind in (*INSTALL_EVENT_TYPES, "")
        for value in (kind, f"{kind}-{IN_APP_EVENT_TYPE_SUFFIX}".lstrip("-"))
        if value
    }
)


def _revenue(record: Record, params: Mapping[str, Any]) -> Money | None:
    """`event_revenue`/`event_revenue_currency`, else `af_revenue`/`af_currency` of the value."""
    amount = record.event_revenue
    if isinstance(amount, Decimal):
        currency = record.event_revenue_currency or _text(params.get("af_currency"))
        return Money(amount, _currency(currency))
    try:
        value_amount = parse_decimal(params.get("af_revenue"))
    except ValueError:
        return None  # an unreadable af_revenue is forwarded as a parameter, never as the value
    if value_amount is None:
        return None
    return Money(value_amount, _currency(_text(params.get("af_currency"))))


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _currency(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    return value.strip().upper()


# --- bad input ---------------------------------------------------------------------------------


def _bad_input(raw: bytes, exc: ValidationError) -> BadInput:
    errors = exc.errors(include_url=False, include_context=False)
    first = errors[0]
    if (first["type"] == "json_invalid" or first["type"] == "json_type") and not first["loc"]:
        try:
            raw.decode()
        except UnicodeDecodeError as undecodable:  # JSON is UTF-8 text: say which byte is not
            return BadInput(
                f"not valid JSON: not UTF-8 text (byte 0x{raw[undecodable.start]:02x} at offset "
                f"{undecodable.start}: {undecodable.reason})",
                raw,
                None,
            )
        return BadInput(f"not valid JSON: {first['msg']}", raw, None)  # the message, not a field
    if first["type"] == "dict_type" and not first["loc"]:
        return BadInput(f"not a JSON object: {_describe_json(raw)}", raw, None)
    first_per_field: dict[object, ErrorDetails] = {}
    for error in errors:
        field = error["loc"][0] if error["loc"] else ""
        if field in _FIELD_RULES:
            # A union's last member saw the value as sent (the JSON-string member, tried first,
            # reports the value it parsed); the field's rule is one sentence either way.
            first_per_field[field] = error
        else:
            first_per_field.setdefault(field, error)
    described = [_describe_error(error) for error in first_per_field.values()]
    parts = described[:_MAX_ERRORS_IN_DETAIL]
    if len(described) > _MAX_ERRORS_IN_DETAIL:
        parts.append(f"and {len(described) - _MAX_ERRORS_IN_DETAIL} more")
    return BadInput("; ".join(parts), raw, _parse_object(raw))


def _describe_error(error: ErrorDetails) -> str:
    field = str(error["loc"][0]) if error["loc"] else "message"
    if field in _FIELD_RULES:
        return f"{field}: {_FIELD_RULES[field]} (got {_short(error['input'])})"
    if error["type"] == "missing":
        return f"missing required field {field}"
    if error["type"] == "string_pattern_mismatch":
        return f"{field} must not be empty"
    message = error["msg"].removeprefix("Value error, ")
    return f"{field}: {message} (got {_short(error['input'])})"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe_json(raw: bytes) -> str:
    try:
        return type(json.loads(raw)).__name__
    except (ValueError, RecursionError):
        return "unreadable"


def _parse_object(raw: bytes) -> dict[str, Any] | None:
    try:
        decoded = json.loads(raw)
    except (ValueError, RecursionError):  # nested past the reader's depth: kept as raw bytes
        return None
    return decoded if isinstance(decoded, dict) else None
