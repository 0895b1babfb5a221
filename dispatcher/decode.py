"""Decoding at the edge: Kafka message bytes → a typed event, or bad input that keeps its bytes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from schemas.events import IN_APP_EVENT, INSTALL, Event, EventType, InAppEvent, InstallEvent

_MODELS: dict[str, type[InstallEvent] | type[InAppEvent]] = {
    INSTALL: InstallEvent,
    IN_APP_EVENT: InAppEvent,
}
_MAX_ERRORS_IN_DETAIL = 5
# Fields validated as unions: one plain sentence instead of one message per union member.
_FIELD_RULES = {
    "event_value": "must be an object, or a JSON string of one",
    "event_revenue": "must be a finite decimal string or number",
}


@dataclass(frozen=True, slots=True)
class BadInput:
    """A message that is not a valid event; it goes to the dead-letter topic with its bytes."""

    detail: str
    raw: bytes | None
    parsed: dict[str, Any] | None  # the JSON object, when the message was one


def decode(raw: bytes | None, expected_type: EventType) -> Event | BadInput:
    """Decode one message from the topic of `expected_type` events."""
    if raw is None:
        return BadInput("empty message (null value)", None, None)
    try:
        return _MODELS[expected_type].model_validate_json(raw)
    except ValidationError as exc:
        return _bad_input(raw, exc, expected_type)


def _bad_input(raw: bytes, exc: ValidationError, expected_type: EventType) -> BadInput:
    errors = exc.errors(include_url=False, include_context=False)
    first = errors[0]
    if first["type"] == "json_invalid" or first["type"] == "json_type":
        return BadInput(f"not valid JSON: {first['msg']}", raw, None)
    if first["type"] == "model_type" and not first["loc"]:
        return BadInput(f"not a JSON object: {_describe_json(raw)}", raw, None)
    first_per_field: dict[object, ErrorDetails] = {}
    for error in errors:
        first_per_field.setdefault(error["loc"][0] if error["loc"] else "", error)
    described = [_describe_error(error, expected_type) for error in first_per_field.values()]
    parts = described[:_MAX_ERRORS_IN_DETAIL]
    if len(described) > _MAX_ERRORS_IN_DETAIL:
        parts.append(f"and {len(described) - _MAX_ERRORS_IN_DETAIL} more")
    return BadInput("; ".join(parts), raw, _parse_object(raw))


def _describe_error(error: ErrorDetails, expected_type: EventType) -> str:
    field = str(error["loc"][0]) if error["loc"] else "message"
    if field in _FIELD_RULES:
        return f"{field}: {_FIELD_RULES[field]} (got {_short(error['input'])})"
    if error["type"] == "missing":
        return f"missing required field {field}"
    if error["type"] == "string_pattern_mismatch":
        return f"{field} must not be empty"
    if field == "event_type" and error["type"] == "literal_error":
        return (
            f"event_type {_short(error['input'])} does not match its topic, which carries "
            f"{expected_type!r} events"
        )
    message = error["msg"].removeprefix("Value error, ")
    return f"{field}: {message} (got {_short(error['input'])})"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe_json(raw: bytes) -> str:
    try:
        return type(json.loads(raw)).__name__
    except ValueError:
        return "unreadable"


def _parse_object(raw: bytes) -> dict[str, Any] | None:
    try:
        decoded = json.loads(raw)
    except ValueError:
        return None
    return decoded if isinstance(decoded, dict) else None
