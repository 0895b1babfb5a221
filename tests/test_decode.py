"""Decoding at the edge: every kind of bad input keeps its bytes and says what is wrong."""

from __future__ import annotations

import json

import pytest

from dispatcher.decode import BadInput, decode
from schemas.events import InAppEvent, InstallEvent
from tests.factories import event_dict, raw


def test_valid_messages_decode_to_their_topic_type() -> None:
    assert isinstance(decode(raw(event_dict("install")), "install"), InstallEvent)
    assert isinstance(decode(raw(event_dict("in-app-event")), "in-app-event"), InAppEvent)


@pytest.mark.parametrize(
    ("message", "topic_type", "expected_detail"),
    [
        (b"\x00\xff\xfe garbage", "install", "not valid JSON"),
        (b'{"event_id": "a", ', "install", "not valid JSON"),
        (b"[1, 2, 3]", "install", "not a JSON object: list"),
        (b'"a string"', "install", "not a JSON object: str"),
        (b"42", "install", "not a JSON object: int"),
        (b"null", "install", "not a JSON object"),
        (raw({k: v for k, v in event_dict("install").items() if k != "event_id"}), "install",
         "missing required field event_id"),
        (raw(event_dict("install", event_time=1763632800)), "install", "event_time: must be a timestamp"),
        (raw(event_dict("install", install_time="yesterday")), "install", "install_time: 'yesterday'"),
        (raw(event_dict("install", app_id=["id1"])), "install", "app_id: Input should be a valid string"),
        (raw(event_dict("install")), "in-app-event", "event_type 'install' does not match its topic"),
        (raw(event_dict("in-app-event")), "install", "event_type 'in-app-event' does not match"),
        (raw(event_dict("in-app-event", event_value="[1]")), "in-app-event", "event_value: must be an object, or a JSON string of one"),
        (raw(event_dict("install") | {"event_type": "purchase"}), "install", "event_type 'purchase'"),
    ],
)  # fmt: skip
def test_bad_input_is_described(message: bytes, topic_type: str, expected_detail: str) -> None:
    result = decode(message, topic_type)  # type: ignore[arg-type]
    assert isinstance(result, BadInput)
    assert expected_detail in result.detail
    assert result.raw == message


def test_bad_input_keeps_the_parsed_object_when_there_was_one() -> None:
    data = event_dict("install", event_time="never")
    result = decode(raw(data), "install")
    assert isinstance(result, BadInput)
    assert result.parsed == json.loads(raw(data))


def test_a_null_message_is_bad_input() -> None:
    result = decode(None, "install")
    assert isinstance(result, BadInput)
    assert result.detail == "empty message (null value)"


def test_many_errors_are_summarised() -> None:
    data = {"event_type": "install"}
    result = decode(raw(data), "install")
    assert isinstance(result, BadInput)
    assert result.detail.count("missing required field") == 5
    assert "and 0 more" not in result.detail
