"""Revenue stripping: what `send_revenue: false` removes from the forwarded parameters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def strip_revenue(params: Mapping[str, Any], revenue_keys: frozenset[str]) -> dict[str, Any]:
    """A copy of `params` without any of `revenue_keys`, in nested objects and lists as well."""
    return {
        key: _strip(value, revenue_keys) for key, value in params.items() if key not in revenue_keys
    }


def _strip(value: Any, revenue_keys: frozenset[str]) -> Any:
    if isinstance(value, Mapping):
        return strip_revenue(value, revenue_keys)
    if isinstance(value, list):
        return [_strip(item, revenue_keys) for item in value]
    return value
