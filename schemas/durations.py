"""Durations as operators write them in YAML: `30m`, `12h`, `7d`."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(r"(?P<amount>\d+)\s*(?P<unit>[mhd])")
_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}


def parse_duration(value: object) -> timedelta:
    """Parse `30m` / `12h` / `7d`; anything else (bare numbers included) is refused."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        match = _DURATION.fullmatch(value.strip())
        if match:
            return int(match["amount"]) * _UNITS[match["unit"]]
    raise ValueError(f"{value!r} is not a duration; write minutes, hours or days: 30m, 12h, 7d")


def format_duration(value: timedelta) -> str:
    """Render a duration the way it is written in YAML, in the largest exact unit."""
    minutes = int(value.total_seconds() // 60)
    if minutes % (24 * 60) == 0:
        return f"{minutes // (24 * 60)}d"
    if minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m"


def check_range(value: timedelta, low: timedelta, high: timedelta) -> timedelta:
    """Return `value` if `low <= value <= high`, else raise with the allowed range."""
    if not low <= value <= high:
        raise ValueError(
            f"{format_duration(value)} is out of range; allowed: "
            f"{format_duration(low)} to {format_duration(high)}"
        )
    return value


def format_duration_s(seconds: float) -> str:
    """A length of time for people to read: `40d 3h 5m 2s`, largest unit first, zero parts left
    out, fractions of a second kept to the millisecond."""
    sign = "-" if seconds < 0 else ""
    millis = round(abs(seconds) * 1000)
    whole, ms = divmod(millis, 1000)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d"] if days else []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if secs or ms or not parts:
        parts.append(f"{secs}.{ms:03d}".rstrip("0").rstrip(".") + "s")
    return sign + " ".join(parts)
