"""The AppsFlyer decoder: Push API V2 / raw data V5 records in, canonical events or bad input out.

Field names, value shapes and `event_type` values follow AppsFlyer's Push API V2 and raw data
pages (support.appsflyer.com articles 207034356 "Push API V2.0" and 208387843 "Raw data
fields"), cross-checked with public consumers of the same messages (rudderlabs/rudder-transformer
`test/integrations/sources/appsflyer/data.ts`, airbytehq/airbyte `source-appsflyer`).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import unquote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.devtools.samples import APPSFLYER_FIELDS
from dispatcher.inputs import BadInput
from dispatcher.inputs.appsflyer import (
    _EVENT_TYPE_KINDS,
    INSTALL_EVENT_TYPES,
    AppsFlyerDecoder,
    _kind_of,
    derive_event_id,
)
from schemas.events import (
    Att,
    Conversion,
    Event,
    FraudMark,
    Money,
    link_parameter_of,
    parse_decimal,
    parse_timestamp,
)
from tests.factories import decode, decode_record, event_dict, event_id_of, make_in_app, raw

DECODER = AppsFlyerDecoder()
# Fields a valid record must have; every other one may be absent, null or "".
REQUIRED = ("app_id", "appsflyer_id", "event_time", "install_time")
OPTIONAL = tuple(field for field in APPSFLYER_FIELDS if field not in (*REQUIRED, "event_name"))


# --- time formats -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-11-20 10:00:00", datetime(2025, 11, 20, 10, 0, tzinfo=UTC)),
        ("2025-11-20 10:00:00.123", datetime(2025, 11, 20, 10, 0, 0, 123000, tzinfo=UTC)),
        ("2025-11-20T10:00:00Z", datetime(2025, 11, 20, 10, 0, tzinfo=UTC)),
        ("2025-11-20T12:00:00+02:00", datetime(2025, 11, 20, 10, 0, tzinfo=UTC)),
        ("2025-11-20T05:30:00.5-0430", datetime(2025, 11, 20, 10, 0, 0, 500000, tzinfo=UTC)),
        ("2025-11-20 12:00:00+02:00", datetime(2025, 11, 20, 10, 0, tzinfo=UTC)),
    ],
)
def test_both_time_formats_parse_to_utc(text: str, expected: datetime) -> None:
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize(
    "value",
    [
        1763632800, 1763632800.5, "1763632800", "2025-11-20",
        "2025-11-20T10:00:00",  # ISO 8601 without an offset is ambiguous
        "20/11/2025 10:00:00", "2025-13-20 10:00:00", "2025-11-20 25:00:00", "", None,
        ["2025-11-20 10:00:00"],
    ],
)  # fmt: skip
def test_other_time_formats_are_refused(value: object) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the messages are checked below
        parse_timestamp(value)


def test_selected_timezone_copies_are_ignored() -> None:
    event = make_in_app(event_time_selected_timezone="not a time", install_time_selected_timezone=7)
    assert event.event_time == datetime(2025, 11, 20, 9, 0, tzinfo=UTC)


# --- shapes of values -------------------------------------------------------------------------


def test_event_value_may_be_a_json_string_or_an_object() -> None:
    as_string = make_in_app(event_value='{"a": 1}')
    as_object = make_in_app(event_value={"a": 1})
    assert as_object.params == as_string.params == {"a": 1}


@pytest.mark.parametrize("value", [None, "", "{}"])
def test_an_absent_or_empty_event_value_has_no_parameters(value: object) -> None:
    assert make_in_app(event_value=value).params == {}


def test_an_absent_event_value_key_has_no_parameters() -> None:
    record = event_dict("in-app-event")
    del record["event_value"]
    assert decode_record(record, "in-app-event").params == {}


@pytest.mark.parametrize(
    ("value", "expected"),
    [("9.99", Decimal("9.99")), (9.99, Decimal("9.99")), (10, Decimal(10)), ("", None), (None, None)],
)  # fmt: skip
def test_revenue_is_a_decimal_from_a_string_or_a_number(
    value: object, expected: Decimal | None
) -> None:
    event = make_in_app(event_revenue=value, event_value="{}")
    assert event.revenue == (Money(expected, "USD") if expected is not None else None)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param({"event_revenue": "5", "event_revenue_currency": "eur"}, Money(Decimal(5), "EUR"),
                     id="event-revenue-and-currency"),
        pytest.param({"event_revenue": "5", "event_revenue_currency": None,
                      "event_value": {"af_currency": " gbp "}}, Money(Decimal(5), "GBP"),
                     id="currency-only-from-af-currency"),
        pytest.param({"event_revenue": "5", "event_revenue_currency": "",
                      "event_value": {}}, Money(Decimal(5), None), id="no-currency-anywhere"),
        pytest.param({"event_revenue": None, "event_value": {"af_revenue": 12.5, "af_currency": "jpy"}},
                     Money(Decimal("12.5"), "JPY"), id="af-revenue-fallback"),
        pytest.param({"event_revenue": None, "event_value": {"af_revenue": "n/a"}}, None,
                     id="unreadable-af-revenue-is-no-revenue"),
        pytest.param({"event_revenue": None, "event_value": {"af_currency": "USD"}}, None,
                     id="currency-without-amount"),
    ],
)  # fmt: skip
def test_where_revenue_comes_from(fields: dict[str, Any], expected: Money | None) -> None:
    assert make_in_app(**fields).revenue == expected


def test_installs_carry_no_revenue() -> None:
    record = event_dict("install", event_revenue="3", event_value={"af_revenue": "3"})
    assert decode_record(record, "install").revenue is None


def test_standard_parameters_get_neutral_names() -> None:
    value = {"af_content_id": "sku", "af_content_type": "shoes", "af_quantity": 2,
             "af_order_id": "o-1", "af_search_string": "red", "af_price": "3"}  # fmt: skip
    event = make_in_app(event_value=json.dumps(value))
    assert event.standard_params == {"content_id": "sku", "content_type": "shoes", "quantity": 2,
                                     "order_id": "o-1", "search_string": "red"}  # fmt: skip
    assert event.params == value


@pytest.mark.parametrize(
    ("flag", "primary"),
    [(True, True), (False, False), ("true", True), ("false", False), ("False", False),
     (1, True), (0, False), (None, True), ("", True)],
)  # fmt: skip
def test_booleans_arrive_as_json_or_as_strings(flag: object, primary: bool) -> None:
    assert make_in_app(is_primary_attribution=flag).is_primary is primary


def test_blank_strings_and_nulls_are_absent() -> None:
    event = make_in_app(
        attributed_touch_time="", event_revenue="", event_value="", original_url="", af_c_id="",
        idfa=None, ip="", media_source="", attributed_touch_type="",
    )  # fmt: skip
    assert (event.touch_time, event.revenue, event.params, event.link, event.campaign_id,
            event.idfa, event.ip, event.media_source, event.touch_type) == (
        None, None, {}, None, None, None, None, None, None)  # fmt: skip


def test_numbers_become_strings_and_unknown_fields_are_ignored() -> None:
    event = make_in_app(af_c_id=99, app_version=3, something_new={"x": 1}, custom_data="{}")
    assert (event.campaign_id, event.app_version) == ("99", "3")


def test_the_touch_type_and_platform_are_normalised() -> None:
    event = make_in_app(attributed_touch_type=" Click ", platform="iOS")
    assert (event.touch_type, event.platform) == ("click", "ios")


def test_events_are_frozen() -> None:
    event = make_in_app()
    with pytest.raises(AttributeError):
        event.event_id = "other"  # type: ignore[misc]


# --- event types, topics and conversions --------------------------------------------------------


@pytest.mark.parametrize("event_type", [*INSTALL_EVENT_TYPES, None, ""])
def test_install_event_types_are_read_on_the_installs_topic(event_type: str | None) -> None:
    event = decode_record(event_dict("install", event_type=event_type), "install")
    assert event.type == "install"


@pytest.mark.parametrize(
    "event_type",
    ["in-app-event", "install-in-app-event", "organic-install-in-app-event",
     "re-engagement-in-app-event", "re-attribution-in-app-event", None],
)  # fmt: skip
def test_in_app_event_types_are_read_on_the_in_app_topic(event_type: str | None) -> None:
    event = decode_record(event_dict("in-app-event", event_type=event_type), "in-app-event")
    assert (event.type, event.is_in_app) == ("in-app-event", True)


@pytest.mark.parametrize(
    ("event_type", "topic", "expected"),
    [
        ("install-in-app-event", "install", "does not match its topic, which carries installs"),
        ("in-app-event", "install", "does not match its topic"),
        ("uninstall", "install", "event_type 'uninstall' does not match"),
        ("install", "in-app-event", "does not match its topic, which carries in-app events"),
        ("organic-install", "in-app-event", "does not match its topic"),
    ],
)
def test_an_event_type_of_the_other_topic_is_bad_input(
    event_type: str, topic: str, expected: str
) -> None:
    result = decode(raw(event_dict(topic, event_type=event_type)), topic)
    assert isinstance(result, BadInput)
    assert expected in result.detail
    assert result.parsed is not None
    assert result.parsed["event_type"] == event_type


@pytest.mark.parametrize(
    ("fields", "conversion"),
    [
        ({}, Conversion.INSTALL),
        ({"event_type": "organic-install", "conversion_type": "Install"}, Conversion.INSTALL),
        ({"event_type": "reinstall"}, Conversion.REINSTALL),
        ({"event_type": None, "conversion_type": "Reinstall"}, Conversion.REINSTALL),
        ({"event_type": "re-engagement"}, Conversion.RE_ENGAGEMENT),
        ({"event_type": None, "conversion_type": None, "event_name": "re-attribution"},
         Conversion.RE_ATTRIBUTION),
        ({"event_type": None, "conversion_type": "Re-engagement", "is_retargeting": "true",
          "retargeting_conversion_type": "re-attribution"}, Conversion.RE_ATTRIBUTION),
        ({"event_type": None, "conversion_type": None, "is_retargeting": True},
         Conversion.RE_ENGAGEMENT),
        ({"event_type": None, "conversion_type": "something-new"}, Conversion.OTHER),
    ],
)  # fmt: skip
def test_conversion_kinds(fields: dict[str, Any], conversion: Conversion) -> None:
    assert decode_record(event_dict("install", **fields), "install").conversion is conversion


@pytest.mark.parametrize(
    ("fields", "topic"),
    [
        ({"event_type": "install"}, "install"),
        ({"event_type": "re-engagement-in-app-event"}, "in-app-event"),
        ({"event_type": "In-App-Event "}, "in-app-event"),
        ({"event_type": None, "event_name": "af_purchase"}, "in-app-event"),
        ({"event_type": None, "event_name": "re-engagement"}, "install"),
        ({"event_type": None, "event_name": None}, "install"),
    ],
)
def test_explain_finds_the_topic_from_the_record(fields: dict[str, Any], topic: str) -> None:
    assert DECODER.topic_type_of(raw(event_dict("install", **fields))) == topic


@pytest.mark.parametrize("message", [b"not json", b"[1]"])
def test_explain_reads_a_message_that_is_not_an_object_as_an_install(message: bytes) -> None:
    assert DECODER.topic_type_of(message) == "install"


# --- bad input --------------------------------------------------------------------------------


def _without(kind: str, field: str) -> bytes:
    record = event_dict(kind)
    del record[field]
    return raw(record)


@pytest.mark.parametrize(
    ("message", "topic", "expected_detail"),
    [
        (b"\x00\xff\xfe garbage", "install", "not valid JSON"),
        (b'{"app_id": "a", ', "install", "not valid JSON"),
        (b"[1, 2, 3]", "install", "not a JSON object: list"),
        (b'"a string"', "install", "not a JSON object: str"),
        (b"42", "install", "not a JSON object: int"),
        (b"null", "install", "not a JSON object"),
        (_without("install", "appsflyer_id"), "install", "missing required field appsflyer_id"),
        (_without("install", "event_time"), "install", "missing required field event_time"),
        (_without("in-app-event", "event_name"), "in-app-event", "missing required field event_name"),
        (raw(event_dict("in-app-event", event_name=" ")), "in-app-event", "missing required field event_name"),
        (raw(event_dict("install", app_id=" ")), "install", "app_id must not be empty"),
        (raw(event_dict("install", event_time=1763632800)), "install", "event_time: must be a timestamp"),
        (raw(event_dict("install", install_time="yesterday")), "install", "install_time: 'yesterday'"),
        (raw(event_dict("install", attributed_touch_time="2025-02-30 10:00:00")), "install", "attributed_touch_time:"),
        (raw(event_dict("install", app_id=["id1"])), "install", "app_id: Input should be a valid string"),
        (raw(event_dict("install", event_id=["x"])), "install", "event_id: Input should be a valid string"),
        (raw(event_dict("in-app-event", event_value="[1]")), "in-app-event", "event_value: must be an object, or a JSON string of one"),
        (raw(event_dict("in-app-event", event_value='"text"')), "in-app-event", "event_value: must be an object"),
        (raw(event_dict("in-app-event", event_value=42)), "in-app-event", "event_value: must be an object"),
        (raw(event_dict("in-app-event", event_revenue="abc")), "in-app-event", "event_revenue: must be a finite decimal"),
        (raw(event_dict("in-app-event", event_revenue="NaN")), "in-app-event", "event_revenue: must be a finite decimal"),
        (raw(event_dict("in-app-event", is_primary_attribution="maybe")), "in-app-event", "is_primary_attribution: must be true or false"),
        (raw(event_dict("install", is_retargeting=[True])), "install", "is_retargeting: must be true or false"),
    ],
)  # fmt: skip
def test_bad_input_is_described(message: bytes, topic: str, expected_detail: str) -> None:
    result = decode(message, topic)
    assert isinstance(result, BadInput)
    assert expected_detail in result.detail, result.detail
    assert result.raw == message


def test_bad_input_keeps_the_parsed_object_when_there_was_one() -> None:
    data = event_dict("install", event_time="never")
    result = decode(raw(data), "install")
    assert isinstance(result, BadInput)
    assert result.parsed == data


def test_a_null_message_is_bad_input() -> None:
    result = decode(None, "install")
    assert result == BadInput("empty message (null value)", None, None)


def test_five_problems_are_named_and_the_rest_counted() -> None:
    record = {"event_time": "x", "install_time": "y", "app_id": [], "appsflyer_id": {},
              "event_value": "[", "event_revenue": "z", "is_retargeting": "w"}  # fmt: skip
    result = decode(raw(record), "in-app-event")
    assert isinstance(result, BadInput)
    parts = result.detail.split("; ")
    assert len(parts) == 6
    assert parts[-1] == "and 2 more"
    # in the order of the record's fields
    assert [part.split(":")[0] for part in parts[:5]] == [
        "app_id", "appsflyer_id", "event_time", "install_time", "is_retargeting"
    ]  # fmt: skip


def test_exactly_five_problems_need_no_count() -> None:
    result = decode(raw({"event_time": "x"}), "install")
    assert isinstance(result, BadInput)
    assert result.detail == (
        "missing required field app_id; missing required field appsflyer_id; event_time: 'x' is "
        "not 'YYYY-MM-DD HH:MM:SS[.fff]' (UTC) nor ISO 8601 with an offset (got 'x'); "
        "missing required field install_time"
    )


# --- the derived event id -----------------------------------------------------------------------


def test_an_event_id_given_by_the_producer_is_used_as_it_is() -> None:
    event = make_in_app(event_id="  Weird-ID/1 ")
    assert (event.event_id, event.event_id_derived) == ("  Weird-ID/1 ", False)


@pytest.mark.parametrize("blank", [None, "", "   "])
def test_without_an_event_id_one_is_derived(blank: str | None) -> None:
    record = event_dict("in-app-event", event_id=blank)
    event = decode_record(record, "in-app-event")
    assert event.event_id_derived
    assert event.event_id == event_id_of(record | {"event_id": None})


def test_the_recipe_is_pinned() -> None:
    """The recipe of docs/input-events.md: SHA-256 of `3:id1,3:1-2,11:af_purchase,23:2025-11-20 10:00:00.000,7:{"a":1},`,
    its first 32 hex digits.
    A change here re-sends history under new ids: never change it silently."""
    assert derive_event_id("id1", "1-2", "af_purchase", "2025-11-20 10:00:00.000", '{"a":1}') == (
        "4786018f983ac06518c39605897bce01"
    )


@settings(max_examples=300, deadline=None)
@given(parts=st.tuples(*[st.text(max_size=12)] * 5))
def test_the_derived_id_follows_the_recipe_for_any_text(parts: tuple[str, ...]) -> None:
    """ASCII text takes a shortcut (its lengths need no encoding); any text, ASCII or not,
    must give the recipe's netstrings of UTF-8 bytes."""
    netstrings = b"".join(
        b"%d:%b," % (len(data), data)
        for data in (part.encode("utf-8", "surrogatepass") for part in parts)
    )
    assert derive_event_id(*parts) == hashlib.sha256(netstrings).hexdigest()[:32]


def test_the_derived_id_reads_each_field_exactly_as_sent() -> None:
    base = event_dict(
        "in-app-event", event_value='{"b": 2, "a": 1}', event_time="2025-11-20 10:00:00.000"
    )
    same_moment = base | {"event_time": "2025-11-20 10:00:00"}
    spaced = base | {"event_value": '{"b":2,"a":1}'}
    ids = {event_id_of(record) for record in (base, same_moment, spaced)}
    assert len(ids) == 3  # a different text is a different id, even for the same value


def test_an_event_value_object_enters_the_id_as_canonical_json() -> None:
    as_object = event_dict("in-app-event", event_value={"b": [1, "é"], "a": None})
    reordered = as_object | {"event_value": {"a": None, "b": [1, "é"]}}
    canonical_text = as_object | {"event_value": '{"a":null,"b":[1,"é"]}'}
    assert (
        decode_record(as_object, "in-app-event").event_id
        == decode_record(reordered, "in-app-event").event_id
    )
    assert event_id_of(as_object) == event_id_of(canonical_text)


@pytest.mark.parametrize("value", [None, ""])
def test_an_absent_event_value_enters_the_id_as_empty_text(value: str | None) -> None:
    record = event_dict("install", event_value=value)
    absent = {k: v for k, v in record.items() if k != "event_value"}
    assert decode_record(record, "install").event_id == decode_record(absent, "install").event_id


_texts = st.text(min_size=1, max_size=30).filter(str.strip)
_five = st.fixed_dictionaries(
    {"app_id": _texts, "appsflyer_id": _texts, "event_name": _texts,
     "event_time": st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 1, 1)).map(
         lambda moment: moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]),
     "event_value": st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5),
                                    max_size=4).map(json.dumps)}
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(five=_five, extra=st.dictionaries(st.text(max_size=10).filter(lambda k: k not in APPSFLYER_FIELDS and k != "event_id"),
                                         st.none() | st.integers() | st.text(max_size=10), max_size=5),
       seed=st.randoms())  # fmt: skip
def test_the_derived_id_ignores_key_order_and_unknown_keys(
    five: dict[str, str], extra: dict[str, Any], seed: Any
) -> None:
    record = event_dict("in-app-event", **five)
    shuffled_items = list((record | extra).items())
    seed.shuffle(shuffled_items)
    shuffled = dict(shuffled_items)
    assert (
        decode_record(record, "in-app-event").event_id
        == decode_record(shuffled, "in-app-event").event_id
    )


@settings(max_examples=200, deadline=None)
@given(five=_five, field=st.sampled_from(["app_id", "appsflyer_id", "event_name", "event_time", "event_value"]),
       other=_five)  # fmt: skip
def test_the_derived_id_changes_when_any_of_its_five_fields_changes(
    five: dict[str, str], field: str, other: dict[str, str]
) -> None:
    changed = five | {field: other[field]}
    if changed[field] == five[field]:
        return  # the same value drawn twice: nothing changed
    record = event_dict("in-app-event", **five)
    assert (
        decode_record(record, "in-app-event").event_id
        != decode_record(record | changed, "in-app-event").event_id
    )


@settings(max_examples=200, deadline=None)
@given(five=_five, copy=st.fixed_dictionaries({
    "media_source": st.sampled_from(["googleadwords_int", "bytedanceglobal_int", "organic", None]),
    "is_primary_attribution": st.sampled_from([True, False, "false"]),
    "conversion_type": st.sampled_from(["install", "re-engagement", None]),
    "event_type": st.sampled_from(["re-engagement-in-app-event", "install-in-app-event", None]),
    "original_url": st.none() | st.just("https://app.appsflyer.com/id1?clickid=x"),
}))  # fmt: skip
def test_both_attribution_copies_get_the_same_id(
    five: dict[str, str], copy: dict[str, Any]
) -> None:
    primary = event_dict("in-app-event", **five)
    secondary = primary | copy
    assert (
        decode_record(primary, "in-app-event").event_id
        == decode_record(secondary, "in-app-event").event_id
    )


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(["install", "in-app-event"]),
       blanks=st.dictionaries(st.sampled_from(OPTIONAL), st.sampled_from(["absent", None, ""]),
                              max_size=len(OPTIONAL)))  # fmt: skip
def test_any_optional_fields_absent_null_or_blank_decode(kind: str, blanks: dict[str, Any]) -> None:
    record = event_dict(kind)
    for field, blank in blanks.items():
        if blank == "absent":
            record.pop(field, None)
        else:
            record[field] = blank
    result = decode(raw(record), kind)
    assert isinstance(result, Event), result
    assert result.event_id == event_id_of(record)


def _link_parameter_by_splitting(link: str, name: str) -> str | None:
    """The reading `link_parameter_of` must agree with: split the query on `&`, first pair whose
    key is `name` with a non-blank URL-decoded value."""
    query = link.partition("#")[0].partition("?")[2]
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if key == name and value and unquote_plus(value).strip():
            return unquote_plus(value)
    return None


_link_parts = st.sampled_from(
    [
        "clickid",
        "xclickid",
        "clickidx",
        "c",
        "=",
        "&",
        "?",
        "#",
        "%20",
        "+",
        " ",
        "a",
        "E.C.P",
        "%2B",
        "==",
    ]
)


@settings(max_examples=500, deadline=None)
@given(parts=st.lists(_link_parts, max_size=14))
def test_a_link_parameter_is_read_as_splitting_the_query_would(parts: list[str]) -> None:
    link = "https://app.appsflyer.com/id1?" + "".join(parts)
    assert link_parameter_of(link, "clickid") == _link_parameter_by_splitting(link, "clickid")


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        ("https://x/?clickid=abc&c=1", "abc"),
        ("https://x/?c=1&clickid=E.C.P.a%2Bb+c", "E.C.P.a+b c"),
        ("https://x/?clickid=E.C.P.a+b", "E.C.P.a b"),  # '+' alone is a space
        ("https://x/?clickid=E.C.P.a%2Fb", "E.C.P.a/b"),  # '%' alone is an escape
        ("https://x/?clickid=+&clickid=next", "next"),  # a lone '+' is blank
        ("https://x/?xclickid=no&clickid=&clickid=%20&clickid=yes#clickid=frag", "yes"),
        ("https://x/?c=1&clickidx=no", None),
        ("https://x/#?clickid=frag", None),
        ("https://x/clickid=abc", None),
        ("https://x/?clickid=&clickid=first&c=2&clickid=last", "first"),
    ],
)
def test_a_link_parameter_examples(link: str, expected: str | None) -> None:
    assert link_parameter_of(link, "clickid") == expected


# --- found by mutation testing: kinds of undocumented event types, revenue, whole details -------


@pytest.mark.parametrize(
    ("event_type", "kind"),
    [
        ("install", Conversion.INSTALL), ("organic-install", Conversion.INSTALL),
        ("reinstall", Conversion.REINSTALL), ("organic-reinstall", Conversion.REINSTALL),
        ("re-engagement", Conversion.RE_ENGAGEMENT), ("re-attribution", Conversion.RE_ATTRIBUTION),
        ("install-in-app-event", Conversion.INSTALL),
        ("reinstall-in-app-event", Conversion.REINSTALL),
        ("re-engagement-in-app-event", Conversion.RE_ENGAGEMENT),
        ("re-attribution-in-app-event", Conversion.RE_ATTRIBUTION),
        ("in-app-event", None), ("retargeting-in-app-event", None), ("uninstall", None),
    ],
)  # fmt: skip
def test_an_in_app_event_type_names_the_kind_of_its_install(
    event_type: str, kind: Conversion | None
) -> None:
    """Documented types are looked up in a table built once; others are worked out each time."""
    assert _kind_of(event_type) is kind
    if event_type in _EVENT_TYPE_KINDS:
        assert _EVENT_TYPE_KINDS[event_type] is kind


@pytest.mark.parametrize(
    ("event_type", "conversion"),
    [
        pytest.param("retargeting-in-app-event", Conversion.INSTALL, id="unknown-kind-not-taken"),
        pytest.param("organic-re-engagement-in-app-event", Conversion.INSTALL,
                     id="unknown-prefix-not-taken"),
    ],
)  # fmt: skip
def test_an_undocumented_in_app_event_type_decodes(event_type: str, conversion: Conversion) -> None:
    event = make_in_app(event_type=event_type, conversion_type=None)
    assert (event.type, event.conversion) == ("in-app-event", conversion)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param({"event_revenue": None, "event_value": {"af_revenue": "4.5", "af_currency": 840}},
                     Money(Decimal("4.5"), None), id="af-currency-a-number"),
        pytest.param({"event_revenue": "3", "event_revenue_currency": None,
                      "event_value": {"af_currency": ["USD"]}}, Money(Decimal(3), None),
                     id="af-currency-a-list-beside-event-revenue"),
        pytest.param({"event_revenue": None, "event_value": {"af_revenue": "2", "af_currency": "  "}},
                     Money(Decimal(2), None), id="af-currency-blank"),
        pytest.param({"event_revenue": None, "event_value": {"af_revenue": "2"}},
                     Money(Decimal(2), None), id="af-currency-missing"),
        pytest.param({"event_revenue": "1", "event_revenue_currency": "usd",
                      "event_value": {"af_currency": "EUR"}}, Money(Decimal(1), "USD"),
                     id="event-revenue-currency-wins"),
    ],
)  # fmt: skip
def test_a_currency_that_is_not_text_is_no_currency(
    fields: dict[str, Any], expected: Money
) -> None:
    assert make_in_app(**fields).revenue == expected


@pytest.mark.parametrize(
    ("record", "detail"),
    [
        pytest.param(event_dict("in-app-event", event_value="[1]"),
                     "event_value: must be an object, or a JSON string of one (got '[1]')",
                     id="a-field-rule-with-what-came"),
        pytest.param(event_dict("in-app-event", event_revenue="x" * 58),
                     f"event_revenue: must be a finite decimal string or number (got '{'x' * 58}')",
                     id="a-value-of-60-characters-whole"),
        pytest.param(event_dict("in-app-event", event_revenue="x" * 59),
                     f"event_revenue: must be a finite decimal string or number (got '{'x' * 56}...)",
                     id="a-longer-value-cut"),
        pytest.param(event_dict("install", install_time="x" * 100),
                     f"install_time: '{'x' * 40}' is not 'YYYY-MM-DD HH:MM:SS[.fff]' (UTC) nor ISO 8601 "
                     f"with an offset (got '{'x' * 56}...)", id="a-long-time"),
        pytest.param(event_dict("install", app_id=""), "app_id must not be empty", id="empty-id"),
    ],
)  # fmt: skip
def test_bad_input_details_whole(record: dict[str, Any], detail: str) -> None:
    topic = "install" if record["event_type"] == "install" else "in-app-event"
    result = decode(raw(record), topic)
    assert result == BadInput(detail, raw(record), record)


def test_five_problems_are_named_with_no_count() -> None:
    record = {"event_time": "x", "install_time": "y", "app_id": [], "appsflyer_id": {},
              "is_retargeting": "w"}  # fmt: skip
    result = decode(raw(record), "install")
    assert isinstance(result, BadInput)
    assert [part.split(":")[0] for part in result.detail.split("; ")] == [
        "app_id", "appsflyer_id", "event_time", "install_time", "is_retargeting"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, None, id="absent"), pytest.param("", None, id="blank"),
        pytest.param(" 9.99 ", Decimal("9.99"), id="text-with-spaces"),
        pytest.param(5, Decimal(5), id="an-integer"), pytest.param(2.5, Decimal("2.5"), id="a-float"),
        pytest.param(Decimal("1.10"), Decimal("1.10"), id="a-decimal"),
        pytest.param("-3", Decimal(-3), id="negative"),
    ],
)  # fmt: skip
def test_an_amount_is_read_from_text_or_a_number(value: object, expected: Decimal | None) -> None:
    assert parse_decimal(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "must be a decimal string or a number, not bool"),
        ([1], "must be a decimal string or a number, not list"),
        ("n/a", "'n/a' is not a decimal number"),
        ("x" * 50, f"'{'x' * 40}' is not a decimal number"),
        ("Infinity", "'Infinity' is not a finite number"),
        (float("nan"), "nan is not a finite number"),
    ],
)
def test_an_unreadable_amount_says_why(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        parse_decimal(value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (1763632800, "must be a timestamp string 'YYYY-MM-DD HH:MM:SS[.fff]' (UTC) or ISO 8601 with "
                     "an offset, not int"),
        ("2025-11-20 25:00:00", "'2025-11-20 25:00:00' is not a valid date and time"),
        # the shape of a date and time, with 40 characters of it shown
        ("2025-11-20 10:00:00 in the afternoon, local time",
         "'2025-11-20 10:00:00 in the afternoon, lo' is not a valid date and time"),
        # ISO 8601 (and Python's parser) allow any separator; AppsFlyer writes ' ' or 'T' alone
        ("2025-11-20X10:00:00+00:00", "'2025-11-20X10:00:00+00:00' is not 'YYYY-MM-DD HH:MM:SS[.fff]' "
                                      "(UTC) nor ISO 8601 with an offset"),
        ("2025-11-20T10:00:00", "'2025-11-20T10:00:00' is not 'YYYY-MM-DD HH:MM:SS[.fff]' (UTC) nor "
                                "ISO 8601 with an offset"),
        ("20/11/2025 10:00:00", "'20/11/2025 10:00:00' is not 'YYYY-MM-DD HH:MM:SS[.fff]' (UTC) nor "
                                "ISO 8601 with an offset"),
    ],
)  # fmt: skip
def test_an_unreadable_time_says_why(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        parse_timestamp(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(datetime(2025, 11, 20, 10, 0), datetime(2025, 11, 20, 10, 0, tzinfo=UTC),
                     id="a-naive-datetime-is-utc"),
        pytest.param(datetime(2025, 11, 20, 10, 0, tzinfo=UTC), datetime(2025, 11, 20, 10, 0, tzinfo=UTC),
                     id="an-aware-datetime-as-it-is"),
        pytest.param(datetime(2025, 11, 20, 15, 0, tzinfo=timezone(timedelta(hours=5))),
                     datetime(2025, 11, 20, 15, 0, tzinfo=timezone(timedelta(hours=5))),
                     id="an-aware-datetime-keeps-its-offset"),
        pytest.param("2025-11-20 10:00:00Z", datetime(2025, 11, 20, 10, 0, tzinfo=UTC),
                     id="raw-data-shape-with-its-own-offset"),
        pytest.param("2025-11-20T10:00:00.123456+00:00", datetime(2025, 11, 20, 10, 0, 0, 123456, tzinfo=UTC),
                     id="iso-with-microseconds"),
    ],
)  # fmt: skip
def test_times_already_parsed_or_with_their_own_offset(value: object, expected: datetime) -> None:
    parsed = parse_timestamp(value)
    assert (parsed, parsed.utcoffset()) == (expected, expected.utcoffset())


def test_explain_reads_json_nested_too_deep_as_an_install() -> None:
    deep = b"[" * 5000 + b"]" * 5000
    assert isinstance(decode(deep, "install"), BadInput)  # the worker's path is fine
    assert DECODER.topic_type_of(deep) == "install"


@pytest.mark.parametrize(
    ("fields", "topic"),
    [
        pytest.param({"event_type": "  ", "event_name": "af_purchase"}, "in-app-event",
                     id="blank-event-type-the-name-decides"),
        pytest.param({"event_type": 7, "event_name": "af_purchase"}, "in-app-event",
                     id="an-event-type-that-is-not-text"),
        pytest.param({"event_type": " Re-Engagement ", "event_name": "af_purchase"}, "install",
                     id="an-install-kind-of-event-type-wins"),
        pytest.param({"event_type": None, "event_name": " Re-Attribution "}, "install",
                     id="an-install-name-in-any-case"),
        pytest.param({"event_type": None, "event_name": "  "}, "install", id="a-blank-name"),
        pytest.param({"event_type": None, "event_name": 5}, "install", id="a-name-that-is-not-text"),
    ],
)  # fmt: skip
def test_explain_finds_the_topic_from_any_record(fields: dict[str, Any], topic: str) -> None:
    assert DECODER.topic_type_of(raw(event_dict("install", **fields))) == topic


@pytest.mark.parametrize(
    ("fields", "topic", "detail"),
    [
        pytest.param({"event_type": "uninstall"}, "install",
                     "event_type 'uninstall' does not match its topic, which carries installs "
                     "(event_type install, organic-install, reinstall, organic-reinstall, "
                     "re-engagement, re-attribution)", id="installs-topic"),
        pytest.param({"event_type": " Install "}, "in-app-event",
                     "event_type 'install' does not match its topic, which carries in-app events "
                     "(event_type in-app-event or *-in-app-event)", id="in-app-topic"),
        pytest.param({"event_name": None}, "in-app-event",
                     "missing required field event_name (the SDK event name of an in-app event)",
                     id="in-app-without-a-name"),
    ],
)  # fmt: skip
def test_a_record_on_the_wrong_topic_is_described_whole(
    fields: dict[str, Any], topic: str, detail: str
) -> None:
    record = event_dict(topic, **fields)
    assert decode(raw(record), topic) == BadInput(detail, raw(record), record)


@pytest.mark.parametrize(
    ("kind", "fields", "conversion"),
    [
        pytest.param("install", {"event_type": "re-attribution"}, Conversion.RE_ATTRIBUTION,
                     id="event-type-re-attribution"),
        pytest.param("install", {"event_type": "organic-reinstall"}, Conversion.REINSTALL,
                     id="event-type-organic-reinstall"),
        pytest.param("install", {"event_type": "install", "conversion_type": "re-engagement"},
                     Conversion.RE_ENGAGEMENT, id="an-install-event-type-does-not-hide-the-rest"),
        pytest.param("install", {"event_type": None, "conversion_type": None,
                                 "event_name": "Re-Engagement"}, Conversion.RE_ENGAGEMENT,
                     id="event-name-in-any-case"),
        pytest.param("install", {"event_type": None, "conversion_type": None, "is_retargeting": False,
                                 "retargeting_conversion_type": "re-attribution"}, Conversion.INSTALL,
                     id="retargeting-kind-read-only-when-retargeting"),
        pytest.param("install", {"event_type": None, "conversion_type": "install",
                                 "is_retargeting": "true"}, Conversion.RE_ENGAGEMENT,
                     id="retargeting-without-a-kind-is-a-re-engagement"),
        pytest.param("install", {"event_type": None, "conversion_type": None, "event_name": None},
                     Conversion.INSTALL, id="nothing-said-is-a-first-install"),
        pytest.param("in-app-event", {"event_type": "re-engagement-in-app-event",
                                      "conversion_type": None}, Conversion.RE_ENGAGEMENT,
                     id="an-in-app-event-of-a-re-engagement"),
        pytest.param("in-app-event", {"event_type": "install-in-app-event",
                                      "conversion_type": "reinstall"}, Conversion.REINSTALL,
                     id="an-in-app-install-kind-does-not-hide-the-rest"),
        pytest.param("in-app-event", {"event_type": "in-app-event", "conversion_type": "Mystery"},
                     Conversion.OTHER, id="an-unknown-kind-is-not-a-first-install"),
    ],
)  # fmt: skip
def test_conversion_kinds_from_every_field(
    kind: str, fields: dict[str, Any], conversion: Conversion
) -> None:
    assert decode_record(event_dict(kind, **fields), kind).conversion is conversion


# The device and context fields the Event has, each carried as sent (platform lower-cased); a blank or
# absent one is None. No partner sends android_id or country_code today, so only this test can
# tell if the decoder stopped reading them.
_DEVICE_AND_CONTEXT = {
    "idfa": "6D92078A-8246-4BA4-AE5B-76104861E7DC", "idfv": "1B2C3D4E-0000-4000-8000-00000000000A",
    "advertising_id": "38400000-8cf0-11bd-b23e-10b96e40000d", "android_id": "9774d56d682e549c",
    "oaid": "00000000-1111-2222-3333-444444444444", "imei": "490154203237518",
    "ip": "203.0.113.7", "user_agent": "Dalvik/2.1.0 (Linux; U; Android 14)",
    "app_version": "4.2.0", "country_code": "US",
}  # fmt: skip


@pytest.mark.parametrize("field", sorted(_DEVICE_AND_CONTEXT))
def test_each_device_and_context_field_is_carried_as_sent(field: str) -> None:
    value = _DEVICE_AND_CONTEXT[field]
    assert getattr(decode_record(event_dict("in-app-event", **{field: value}), "in-app-event"),
                   field) == value  # fmt: skip
    for blank in ("", None):
        event = decode_record(event_dict("install", **{field: blank}), "install")
        assert getattr(event, field) is None


def test_the_derived_id_encodes_a_lone_surrogate_as_the_recipe_does() -> None:
    """derive_event_id takes any str. The decoder's JSON reader refuses a lone surrogate escape
    (checked here too), but a text from elsewhere (json.loads reads `"\\ud800"`) may hold one: it
    is hashed as its surrogatepass UTF-8 bytes, not refused with a UnicodeEncodeError."""
    record = raw(event_dict("in-app-event", event_name="x")).replace(b'"x"', b'"\\ud800"')
    assert isinstance(decode(record, "in-app-event"), BadInput)
    lone = json.loads('"a\\ud800"')
    expected = b"2:id,3:1-2,4:" + lone.encode("utf-8", "surrogatepass") + b",1:t,0:,"
    assert derive_event_id("id", "1-2", lone, "t", "") == hashlib.sha256(expected).hexdigest()[:32]


def test_a_record_without_an_event_name_derives_its_id_from_an_empty_name() -> None:
    """An install may come with event_name null: the recipe's third netstring is then `0:,`."""
    record = event_dict(
        "install", event_name=None, event_value=None, event_time="2025-11-20 10:00:00.000"
    )
    event = decode_record(record, "install")
    netstrings = (f"{len(record['app_id'])}:{record['app_id']},"
                  f"{len(record['appsflyer_id'])}:{record['appsflyer_id']},0:,"
                  "23:2025-11-20 10:00:00.000,0:,").encode()  # fmt: skip
    assert event.event_id == hashlib.sha256(netstrings).hexdigest()[:32]


def test_a_message_that_is_not_utf_8_says_which_byte() -> None:
    """JSON is UTF-8 text: a message with another encoding is told apart from broken JSON."""
    record = (
        json.dumps(event_dict("install", app_name="Caf\u00e9"), ensure_ascii=False)
        .encode()
        .replace("Caf\u00e9".encode(), b"Caf\xe9")
    )
    result = decode(record, "install")
    assert isinstance(result, BadInput)
    offset = record.index(b"\xe9")
    assert result.detail == (
        f"not valid JSON: not UTF-8 text (byte 0xe9 at offset {offset}: invalid continuation byte)"
    )


# --- the event built positionally ----------------------------------------------------------------
# `to_event` builds the Event with `tuple.__new__` (a keyword call of 44 fields costs ~2.9 µs an
# event against ~0.15, measured with timeit: ~6 % of the worker's CPU per event), where two
# swapped `str | None` fields would pass mypy. These two tests catch a swap.


def test_to_event_lists_every_field_in_events_order() -> None:
    """Each value of the tuple carries its field's name as a comment, in Event's order."""
    import inspect

    from dispatcher.inputs.appsflyer import to_event

    source = inspect.getsource(to_event)
    built = source[source.index("_new_event(") :]
    named = re.findall(r"#\s*(\w+)\s*$", built, flags=re.MULTILINE)
    assert named == list(Event._fields)


# Event field → the record field it is read from as is (a string carried over)
CARRIED = {
    "event_name": "event_name", "app_id": "app_id", "install_id": "appsflyer_id",
    "media_source": "media_source", "click_id": "click_id", "link": "original_url",
    "campaign_id": "af_c_id", "adset_id": "af_adset_id", "ad_id": "af_ad_id", "idfa": "idfa",
    "idfv": "idfv", "advertising_id": "advertising_id", "android_id": "android_id",
    "oaid": "oaid", "imei": "imei", "ip": "ip", "user_agent": "user_agent",
    "app_version": "app_version", "country_code": "country_code", "app_name": "app_name",
    "event_id": "event_id",
}  # fmt: skip


@pytest.mark.parametrize(
    "flags",
    [
        {"is_retargeting": True, "is_lat": False, "is_primary_attribution": False,
         "gdpr_applies": True, "ad_user_data_enabled": False, "ad_personalization_enabled": None},
        {"is_retargeting": False, "is_lat": True, "is_primary_attribution": True,
         "gdpr_applies": None, "ad_user_data_enabled": True, "ad_personalization_enabled": False},
    ],
)  # fmt: skip
def test_every_field_of_the_event_comes_from_its_own_field_of_the_record(
    flags: dict[str, Any],
) -> None:
    # Given a record whose every field read holds a value of its own
    values = {field: f"v-{field}" for field in CARRIED.values()}
    record = event_dict("in-app-event", **values, **flags, platform="Android",
                        attributed_touch_type="Impression", language="pt-BR", att="restricted",
                        blocked_reason="bots", rejected_reason="geo")  # fmt: skip
    # When it is decoded
    event = decode_record(record, "in-app-event")
    # Then each event field holds its own record field's value
    for event_field, record_field in CARRIED.items():
        assert getattr(event, event_field) == f"v-{record_field}", event_field
    assert (event.platform, event.touch_type, event.language, event.att) == (
        "android", "impression", "pt-BR", Att.RESTRICTED)  # fmt: skip
    assert (event.blocked, event.rejected) == (FraudMark("bots"), FraudMark("geo"))
    assert (event.is_retargeting, event.limit_ad_tracking, event.is_primary) == (
        flags["is_retargeting"], flags["is_lat"], flags["is_primary_attribution"])  # fmt: skip
    assert (event.gdpr_applies, event.ad_user_data, event.ad_personalization) == (
        flags["gdpr_applies"], flags["ad_user_data_enabled"],
        flags["ad_personalization_enabled"])  # fmt: skip
    assert event.install_time < event.event_time
    assert event.touch_time is not None
    assert event.touch_time < event.install_time
