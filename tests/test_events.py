"""Input event schema: time formats, event_value shapes, decimals, types (SPEC §2)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from schemas.events import InAppEvent, InstallEvent, parse_timestamp
from tests.factories import event_dict


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
        1763632800,  # a number is not a timestamp here
        1763632800.5,
        "1763632800",
        "2025-11-20",
        "2025-11-20T10:00:00",  # ISO 8601 without an offset is ambiguous
        "20/11/2025 10:00:00",
        "2025-13-20 10:00:00",
        "2025-11-20 25:00:00",
        "",
        None,
        ["2025-11-20 10:00:00"],
    ],
)
def test_other_time_formats_are_refused(value: object) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message is checked in test_decode
        parse_timestamp(value)


def test_event_value_may_be_an_object_or_a_json_string_of_one() -> None:
    as_object = InAppEvent.model_validate(event_dict("in-app-event", event_value={"a": 1}))
    as_string = InAppEvent.model_validate(event_dict("in-app-event", event_value='{"a": 1}'))
    assert as_object.event_value == as_string.event_value == {"a": 1}


@pytest.mark.parametrize("value", [None, ""])
def test_absent_event_value_is_empty(value: object) -> None:
    assert (
        InAppEvent.model_validate(event_dict("in-app-event", event_value=value)).event_value == {}
    )


@pytest.mark.parametrize("value", ["[1, 2]", "not json", '"text"', 42, [1], True])
def test_event_value_of_another_shape_is_refused(value: object) -> None:
    with pytest.raises(ValidationError, match="event_value"):
        InAppEvent.model_validate(event_dict("in-app-event", event_value=value))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("9.99", Decimal("9.99")),
        (9.99, Decimal("9.99")),
        (10, Decimal(10)),
        ("", None),
        (None, None),
    ],
)
def test_revenue_is_a_decimal(value: object, expected: Decimal | None) -> None:
    event = InAppEvent.model_validate(event_dict("in-app-event", event_revenue=value))
    assert event.event_revenue == expected


@pytest.mark.parametrize("value", ["abc", "NaN", "Infinity", True, [1], {"a": 1}])
def test_unreadable_revenue_is_refused(value: object) -> None:
    with pytest.raises(ValidationError, match="event_revenue"):
        InAppEvent.model_validate(event_dict("in-app-event", event_revenue=value))


@pytest.mark.parametrize(
    "field", ["event_id", "event_time", "install_time", "app_id", "appsflyer_id"]
)
def test_required_fields(field: str) -> None:
    data = event_dict("install")
    del data[field]
    with pytest.raises(ValidationError, match=field):
        InstallEvent.model_validate(data)


@pytest.mark.parametrize("field", ["event_id", "app_id", "appsflyer_id"])
def test_required_fields_must_not_be_blank(field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        InstallEvent.model_validate(event_dict("install", **{field: " "}))


def test_in_app_event_needs_its_sdk_event_name() -> None:
    data = event_dict("in-app-event")
    del data["event_name"]
    with pytest.raises(ValidationError, match="event_name"):
        InAppEvent.model_validate(data)


@pytest.mark.parametrize(
    ("field", "value"),
    [("app_id", ["id1"]), ("media_source", {"a": 1}), ("platform", ["ios"]), ("idfa", [1])],
)
def test_wrong_types_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        InstallEvent.model_validate(event_dict("install", **{field: value}))


def test_numeric_ids_become_strings_and_unknown_fields_are_ignored() -> None:
    event = InstallEvent.model_validate(
        event_dict("install", event_id=12345, campaign_id=99, something_new={"x": 1})
    )
    assert (event.event_id, event.campaign_id) == ("12345", "99")


def test_blank_optional_fields_are_absent() -> None:
    # AppsFlyer exports write missing values as "": parsed fields read it as absent ...
    event = InAppEvent.model_validate(
        event_dict("in-app-event", attributed_touch_time="", event_revenue="", event_value="")
    )
    assert (event.attributed_touch_time, event.event_revenue, event.event_value) == (None, None, {})


def test_blank_strings_act_as_absent_in_decisions_and_payloads() -> None:
    # ... and plain strings stay "", which every rule and the payload treat as absent.
    from dispatcher.partners.tiktok import TikTokAdapter
    from dispatcher.rules import Send, decide
    from tests.factories import app_dict, make_partner

    blank = {"click_id": "", "campaign_id": "", "idfa": "", "ip": "", "app_version": ""}
    event = InstallEvent.model_validate(event_dict("install", **blank))
    decision = decide(event, make_partner(app_dict()), TikTokAdapter().build_event)
    assert isinstance(decision, Send)
    assert decision.payload["ad"] == {"ad_id": "adset-1", "creative_id": "ad-1"}
    assert "idfa" not in decision.payload["user"]
    assert "ip" not in decision.payload["user"]
    assert decision.payload["app"] == {"app_id": "id1234567890"}
    organic = InstallEvent.model_validate(event_dict("install", media_source=""))
    assert not isinstance(
        decide(organic, make_partner(app_dict()), TikTokAdapter().build_event), Send
    )


def test_events_are_frozen() -> None:
    event = InstallEvent.model_validate(event_dict("install"))
    with pytest.raises(ValidationError):
        event.event_id = "other"  # type: ignore[misc]
