"""Request bodies are written by orjson, and by pydantic-core where orjson refuses a value
(`dispatcher.partners.base.encode_json`)."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

import pydantic_core
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.partners.base import encode_json
from dispatcher.partners.oceanengine.adapter import OceanEngineAdapter
from dispatcher.partners.tiktok.adapter import TikTokAdapter
from dispatcher.rules import Send, decide
from tests.factories import app_dict, make_in_app, make_partner


def _strict_json(body: bytes) -> Any:
    """Parse as JSON proper: `NaN` and `Infinity` are not JSON."""

    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    return json.loads(body, parse_constant=refuse)


# What a payload holds: JSON's own values, as decoding an `event_value` gives them (integers
# within 64 bits, finite floats, text without lone surrogates).
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=["Cs"])),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(st.characters(exclude_categories=["Cs"])), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(json_values)
def test_the_bytes_are_pydantic_cores_for_every_json_value(value: Any) -> None:
    # Given any value a payload can hold
    # When it is written
    body = encode_json(value)
    # Then the bytes are those the adapters wrote before orjson, and read back as the value
    assert body == pydantic_core.to_json(value)
    assert _strict_json(body) == value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"n": 2**70}, b'{"n":1180591620717411303424}'),
        ([-(2**63) - 1], b"[-9223372036854775809]"),
        ({"amount": Decimal("4.99")}, b'{"amount":"4.99"}'),
    ],
)
def test_what_orjson_refuses_is_written_by_pydantic_core(value: Any, expected: bytes) -> None:
    # Given an integer past 64 bits, or a type orjson does not write
    # When it is written
    # Then the body is still written, as pydantic-core writes it
    assert encode_json(value) == expected


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_non_finite_number_in_event_value_leaves_the_tiktok_body_valid_json(
    constant: str,
) -> None:
    # Given a purchase whose event_value holds NaN or Infinity (Python's json writes them)
    event = make_in_app(
        event_value=f'{{"af_revenue": "4.99", "af_currency": "USD", "score": {constant}}}'
    )
    assert math.isnan(event.params["score"]) or math.isinf(event.params["score"])
    decision = decide(event, make_partner(app_dict()), TikTokAdapter())
    assert isinstance(decision, Send), decision
    # When the request body is written
    body = TikTokAdapter().encode_request("7300000000000000001", [decision.payload])
    # Then it is JSON proper, the parameter null, the rest of the event intact
    sent = _strict_json(body)["data"][0]
    assert sent["properties"]["score"] is None
    assert event.revenue is not None
    assert sent["properties"]["value"] == float(event.revenue.amount)
    assert sent["event_id"] == event.event_id


def test_an_ocean_engine_body_is_one_conversion_in_compact_json() -> None:
    # Given one built conversion
    payload = {"event_type": "active", "context": {"ad": {"callback": "cb"}}, "timestamp": 1}
    # When its body is written
    body = OceanEngineAdapter().encode_request("", [payload])
    # Then it is that conversion, compact
    assert body == b'{"event_type":"active","context":{"ad":{"callback":"cb"}},"timestamp":1}'
