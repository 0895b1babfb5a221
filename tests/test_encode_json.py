"""Request bodies are written by orjson, and by pydantic-core where orjson refuses a value
(`dispatcher.partners.base.encode_json`)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pydantic_core
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.partners.base import encode_json

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
    assert json.loads(body) == value


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
