"""Revenue: what `send_revenue: false` strips, and what is sent otherwise."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from schemas.events import InAppEvent, parse_decimal

# Keys that carry revenue in AppsFlyer event values; none of them survives stripping, at any depth.
REVENUE_KEYS = frozenset({"af_revenue", "revenue", "event_revenue"})


@dataclass(frozen=True, slots=True)
class Money:
    """An amount with its ISO 4217 currency, when known."""

    amount: Decimal
    currency: str | None


def strip_revenue(params: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `params` without any revenue key, in nested objects and lists as well."""
    return {key: _strip(value) for key, value in params.items() if key not in REVENUE_KEYS}


def _strip(value: Any) -> Any:
    if isinstance(value, Mapping):
        return strip_revenue(value)
    if isinstance(value, list):
        return [_strip(item) for item in value]
    return value


def revenue_of(event: InAppEvent) -> Money | None:
    """`event_revenue`/`event_revenue_currency`, else `af_revenue`/`af_currency` from the value."""
    params = event.event_value
    if event.event_revenue is not None:
        currency = event.event_revenue_currency or _currency(params.get("af_currency"))
        return Money(event.event_revenue, _normalise_currency(currency))
    try:
        amount = parse_decimal(params.get("af_revenue"))
    except ValueError:
        return None  # an unreadable af_revenue is forwarded as a parameter, never as the value
    if amount is None:
        return None
    return Money(amount, _normalise_currency(_currency(params.get("af_currency"))))


def _currency(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _normalise_currency(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    return value.strip().upper()
