"""The two readers of an AppsFlyer record agree.

`_read_fast` (msgspec) reads a record exactly as `_read_checked` (pydantic-core, the reference
that also says what is wrong) does, or declines and leaves it to it: a record read differently
would be decided differently. The limits of pydantic-core's JSON reader that msgspec's lacks
(nesting past 200, integers past 4,300 digits, invalid UTF-8 in a skipped field) were found by
probing both; each guard has an example below that fails without it.
"""

from __future__ import annotations

import inspect
import json
import random
import re
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from bench.records import SHAPES
from dispatcher.devtools.samples import APPSFLYER_FIELDS, SampleGenerator
from dispatcher.inputs import BadInput
from dispatcher.inputs.appsflyer import (
    AppsFlyerRecord,
    Checked,
    Lowered,
    Record,
    _read_checked,
    _read_fast,
    checked_reader,
)
from schemas.events import Event
from tests.factories import decode, event_dict, raw

CORPUS = Path(__file__).parent / "corpus" / "appsflyer"


def exactly(record: Record) -> str:
    """A record with every value's type showing: 1, 1.0 and True, or Decimal('4.990') and
    Decimal('4.99'), are equal in Python and different in a payload."""
    return repr(msgspec.structs.asdict(record))


def checked(message: bytes) -> str | None:
    try:
        return exactly(_read_checked(message))
    except ValidationError:
        return None


def assert_agree(message: bytes) -> Record | None:
    fast = _read_fast(message)
    if fast is not None:
        assert exactly(fast) == checked(message), message[:300]
    return fast


def test_the_records_the_worker_meets_are_read_fast() -> None:
    """The benchmark's records, the demo's and the corpus's: the fast reader takes them (else
    each would cost its checks and the checked reading too), with the same result."""
    messages = [json.dumps(SHAPES["appsflyer"](n, "decode")).encode() for n in range(50)]
    messages += [json.dumps(SHAPES["small"](n, "decode")).encode() for n in range(50)]
    generator = SampleGenerator(seed=3)
    messages += [s.encode() for s in generator.generate(500) if s.case != "bad_input"]
    for message in messages:
        assert assert_agree(message) is not None, message[:300]
    for path in sorted(CORPUS.glob("*.json")):  # a revenue that is a float: see test below
        message = path.read_bytes()
        fast = assert_agree(message)
        assert (fast is None) == isinstance(json.loads(message).get("event_revenue"), float), path


# --- one declaration per field -----------------------------------------------------------------
# `Record` declares each field once; msgspec's reader is its decoder, the checked reader is made
# from its fields (`checked_reader`).


def test_msgspec_reads_a_field_as_its_type_whatever_its_checked_rule() -> None:
    """A `Checked` rule is `Annotated` metadata that msgspec ignores: every field of `Record` is
    read as its type alone, and a `msgspec.Meta` beside a rule still applies."""
    for field in msgspec.structs.fields(Record):
        bare = get_args(field.type)[0] if get_origin(field.type) is Annotated else field.type
        assert msgspec.inspect.type_info(field.type) == msgspec.inspect.type_info(bare), field
    assert msgspec.json.decode(b'"x"', type=Annotated[str, Checked(int)]) == "x"
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b"7", type=Annotated[str, Checked(int)])
    with pytest.raises(msgspec.ValidationError, match="length >= 2"):
        msgspec.json.decode(b'"x"', type=Annotated[str, msgspec.Meta(min_length=2), Checked(int)])


def test_the_checked_reader_has_every_field_under_its_rule() -> None:
    assert list(AppsFlyerRecord.__annotations__) == list(Record.__struct_fields__)
    assert AppsFlyerRecord.__required_keys__ == {
        "app_id", "appsflyer_id", "event_time", "event_time_text", "install_time",
    }  # fmt: skip


class _Renamed(msgspec.Struct):
    app_id: str = msgspec.field(name="appId")


class _RenamedAll(msgspec.Struct, rename="camel"):
    app_id: str


class _Constrained(msgspec.Struct):
    app_id: Annotated[str, msgspec.Meta(min_length=1)]


class _Unchecked(msgspec.Struct):
    event_time: Any


class _TwoRules(msgspec.Struct):
    platform: Annotated[Lowered, Checked(str | None)] = None


@pytest.mark.parametrize(
    ("struct", "problem"),
    [
        (_Renamed, "reads it from key 'appId'"),
        (_RenamedAll, "reads it from key 'appId'"),
        (_Constrained, "metadata other than one Checked rule"),
        (_Unchecked, "typed Any without a Checked rule"),
        (_TwoRules, "metadata other than one Checked rule"),
    ],
)
def test_a_field_the_readers_would_read_differently_is_refused(
    struct: type[msgspec.Struct], problem: str
) -> None:
    """A field read under another key or with a constraint by msgspec alone, or one no reader
    checks: deriving the checked reader raises, so `Record` with such a field does not import."""
    with pytest.raises(TypeError, match=re.escape(problem)):
        checked_reader(struct, "Broken")


class _Extended(Record, kw_only=True):
    """`Record` as a contributor extends it: one line per field, nothing else."""

    af_sub1: str | None = None
    af_channel: Lowered = None


def test_a_field_added_to_record_is_read_by_both_readers() -> None:
    """Adding a field is one edit: declared in `Record`, it is in msgspec's reader and in the
    checked reader, under its rule there (a shared rule's check in `_read_fast` is the test
    below's business)."""
    message = raw(event_dict("in-app-event", af_sub1="creative-7", af_channel=" TikTok "))
    reader = checked_reader(_Extended, "Extended")
    checked_record = TypeAdapter(reader).validate_json(message)
    fast_record = msgspec.json.decode(message, type=_Extended)
    assert set(reader.__annotations__) == {
        *AppsFlyerRecord.__annotations__,
        "af_sub1",
        "af_channel",
    }
    assert checked_record["af_sub1"] == fast_record.af_sub1 == "creative-7"
    assert checked_record["af_channel"] == "tiktok"
    assert fast_record.af_channel == " TikTok "  # as read; `_read_fast` applies `Lowered`


def test_the_fast_reader_checks_every_field_that_has_a_rule() -> None:
    """A field whose checked rule is more than its msgspec type needs its check in `_read_fast`
    too: a field that has a rule and that `_read_fast` never touches would be read unchecked."""
    source = inspect.getsource(_read_fast)
    unchecked = [
        field.name
        for field in msgspec.structs.fields(Record)
        if get_origin(field.type) is Annotated
        and not re.search(rf"\brecord\.{field.name}\b", source)
    ]
    assert unchecked == []


# --- generated records --------------------------------------------------------------------------

# Values where the readers' rules could part: whitespace pydantic-core trims or keeps,
# non-ASCII case, flag and amount spellings, times, JSON texts for event_value.
EDGE_VALUES = (
    "", " ", "\t", "\x1c", "\x0b", "\x85", "\xa0", " \tInstall\r\n", "\x1cclick\x1c",
    "INSTALL", "Re-Engagement", "install-in-app-event", "re-attribution", "organic-install",
    "CLICK", "\u0131mpression", "İOS", "ß", "\uff49\uff4f\uff53", "true", "false", "True",
    "TRUE", "1", "0", "yes", "t", " true", "4.99", "4.990", "4.", ".5", "007", "00.10", "1e2",
    " 4.99", "-1", "NaN", "Infinity", "1_000", "٣", "²", "2026-11-20 10:00:00",
    "2026-11-20 10:00:00.123", "2026-11-20T10:00:00Z", "2026-11-20T12:00:00+02:00",
    "2026-11-20T10:00:00", "2026-13-01 00:00:00", "2026-11-20", "1763632800", "{}",
    '{"af_revenue": "1.5"}', '{"a": [1, 2.5, true, null]}', "[1]", "not json", '{"n": NaN}',
    '{"n": 123456789012345678901234567890}', '{"n": 1e400}', '{"n": 1, "n": 2}',
    ' {"a": 1} ', "😀", "\ud83d\ude00",
)  # fmt: skip
_EDGE_TEXT = st.sampled_from(EDGE_VALUES)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63, max_value=2**70)
    | st.floats()
    | st.text(max_size=8)
    | _EDGE_TEXT,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
_EVENT_VALUE = st.one_of(
    _JSON,
    st.dictionaries(
        st.text(max_size=10) | st.sampled_from(["af_revenue", "af_currency"]), _JSON, max_size=4
    ).map(json.dumps),
)
_VALUE = st.one_of(_EDGE_TEXT, st.text(max_size=10), _JSON)
_FIELDS = sorted(
    {*APPSFLYER_FIELDS, *Record.__struct_fields__} - {"event_time_text", "event_value_text"}
)


# Built once: the factory's times follow the clock, and a strategy must draw the same way twice.
_BASES = {kind: event_dict(kind) for kind in ("install", "in-app-event")}


@st.composite
def _messages(draw: st.DrawFn) -> bytes:
    record: dict[str, Any] = dict(_BASES[draw(st.sampled_from(sorted(_BASES)))])
    for field in draw(st.lists(st.sampled_from(_FIELDS), max_size=6)):
        record[field] = draw(_EVENT_VALUE if field == "event_value" else _VALUE)
    for field in draw(st.lists(st.sampled_from(sorted(record)), max_size=2)):
        record.pop(field, None)
    text = json.dumps(record, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    if draw(st.booleans()):  # a byte-level change: most make invalid JSON, some valid oddities
        at = draw(st.integers(0, len(text)))
        piece = draw(
            st.sampled_from(
                [
                    b"\xff",
                    b"\xed\xa0\x80",
                    b"\xc3",
                    b' "x": 1,',
                    b'"x": [[[',
                    b"]]]",
                    b"\\u0000",
                    b" ",
                ]
            )
        )
        text = text[:at] + piece + text[at:]
    return text


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=_messages())
def test_the_fast_reader_reads_as_the_checked_one_or_declines(message: bytes) -> None:
    assert_agree(message)


def test_most_altered_records_are_read_fast() -> None:
    """The property above is not met by declining: of records altered in up to three fields
    (seeded, the same values as above), the fast reader reads most that the checked one reads."""
    rng = random.Random(5)
    read_checked = read_fast = 0
    for _ in range(400):
        record = event_dict(rng.choice(["install", "in-app-event"]))
        for field in rng.sample(_FIELDS, rng.randint(1, 3)):
            record[field] = rng.choice(EDGE_VALUES)
        message = json.dumps(record).encode()
        read_checked += checked(message) is not None
        read_fast += assert_agree(message) is not None
    assert read_checked > 100
    assert read_fast >= read_checked * 0.6, (read_fast, read_checked)


# --- each guard, with an example that fails without it -----------------------------------------


def _with(extra: bytes, **fields: Any) -> bytes:
    """An in-app record with `extra` spliced in as the last member of the object."""
    return raw(event_dict("in-app-event", **fields))[:-1] + b", " + extra + b"}"


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(b'"af_sub1": "caf\xe9"', id="invalid-utf8"),
        pytest.param(b'"af_cost_value": ' + b"7" * 4301, id="an-integer-of-4301-digits"),
        # msgspec stops at the interpreter's recursion limit with a RecursionError, not a
        # decode error
        pytest.param(b'"custom_data": ' + b"[" * 5000 + b"]" * 5000, id="nested-5000-deep"),
    ],
)
def test_a_field_the_worker_skips_can_still_make_a_message_bad_input(extra: bytes) -> None:
    """msgspec skips the field without these checks; the checked reader says why."""
    message = _with(extra)
    assert _read_fast(message) is None
    result = decode(message, "in-app-event")
    assert isinstance(result, BadInput)
    assert result.detail.startswith("not valid JSON"), result.detail


def test_an_integer_of_the_longest_length_taken_is_read_fast() -> None:
    message = _with(b'"af_cost_value": ' + b"7" * 4300)
    assert assert_agree(message) is not None


def test_an_event_value_text_hiding_a_long_integer_in_escapes_is_bad_input() -> None:
    """Its digits are written as \\u0037: the message has no run of digits, its event_value
    has one, which msgspec refuses as pydantic-core does (past 4,300 digits)."""
    inner = b'{\\"n\\": ' + b"\\u0037" * 4301 + b"}"
    message = raw(event_dict("in-app-event", event_value=None))
    message = message.replace(b'"event_value": null', b'"event_value": "' + inner + b'"')
    assert b'"event_value": "{' in message
    assert _read_fast(message) is None
    result = decode(message, "in-app-event")
    assert isinstance(result, BadInput)
    assert result.detail.startswith("event_value:"), result.detail


@pytest.mark.parametrize("depth", [200, 201])
def test_an_event_value_text_nested_deeper_than_the_reader_takes(depth: int) -> None:
    """201 levels within the text: pydantic-core refuses it; the fast reader declines from
    200 brackets (it counts them, and cannot tell depth from count)."""
    value = '{"n": ' + "[" * depth + "]" * depth + "}"
    message = raw(event_dict("in-app-event", event_value=value))
    assert _read_fast(message) is None
    result = decode(message, "in-app-event")
    assert isinstance(result, BadInput) == (depth == 201)


@pytest.mark.parametrize("depth", [198, 200])
def test_an_event_value_object_nested_deep(depth: int) -> None:
    """As an object it is part of the message's own nesting (pydantic-core refuses 202 levels
    in all): the fast reader declines when the message holds more than 200 brackets."""
    value = {"n": json.loads("[" * depth + "]" * depth)}
    message = raw(event_dict("in-app-event", event_value=value))
    fast = assert_agree(message)
    assert (fast is None) == (depth == 200)
    assert isinstance(decode(message, "in-app-event"), BadInput) == (depth == 200)


def test_a_skipped_field_nested_300_deep_is_read() -> None:
    """The one difference between the readers, on purpose: pydantic-core refuses a message
    nested past 200 levels even in a field the worker never reads; finding that out would cost
    every record a count of its brackets, so the fast reader reads such a record (up to the
    interpreter's recursion limit). The checked reader still refuses it on its own."""
    message = _with(b'"custom_data": ' + b"[" * 300 + b"]" * 300)
    assert checked(message) is None
    assert isinstance(decode(message, "in-app-event"), Event)


@pytest.mark.parametrize(
    ("field", "value", "read_fast"),
    [
        ("app_id", "\x1c", True),  # not blank to pydantic-core (Rust's \S) nor to the fast reader
        ("app_id", " \t", False),  # blank: refused
        ("app_id", "\xa0", False),  # blank to Rust's \S, not to strip(" \t\n\x0b\x0c\r")
        ("appsflyer_id", "\u3000", False),
        (
            "event_type",
            "\x1cinstall-in-app-event",
            True,
        ),  # Rust's trim keeps \x1c; strip() would not
        ("event_type", "\xa0Install-In-App-Event", False),  # not ASCII: the checked reader trims it
        ("platform", " iOS ", True),
        ("platform", "\x0bios\x0c", True),  # a vertical tab and a form feed are trimmed too
        ("is_retargeting", "false", True),
        ("is_retargeting", "yes", False),
        ("event_revenue", "4.990", True),
        ("event_revenue", " 4.99", False),
        ("event_revenue", "4.", False),
        ("event_revenue", 4.99, False),  # Rust's shortest digits, not always Python's
        ("event_revenue", 5, True),
        ("event_revenue", True, False),
        ("media_source", 7, False),  # a number, read as text by the checked reader
        ("attributed_touch_time", "", True),
        ("attributed_touch_time", 0, False),  # not blank: refused
        ("attributed_touch_time", False, False),
        ("event_time", 1763632800, False),
        ("event_value", "", True),
    ],
)
def test_which_values_the_fast_reader_reads(field: str, value: object, read_fast: bool) -> None:
    message = raw(event_dict("in-app-event", **{field: value}))
    assert (assert_agree(message) is not None) == read_fast
