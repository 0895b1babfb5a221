"""Moments as operators type them on the command line: ISO 8601 (`2026-12-01T00:00:00Z`), or a
duration ago (`2h`, `3d`)."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.durations import parse_duration


def parse_moment(text: str, now_s: float) -> float:
    """Unix seconds of `text`: ISO 8601 with a date (UTC unless it names an offset), or a
    duration before `now_s`; ValueError naming what is allowed otherwise."""
    value = text.strip()
    try:
        return now_s - parse_duration(value).total_seconds()
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a moment; write ISO 8601 (2026-12-01T00:00:00Z) or a duration ago "
            "(30m, 2h, 3d)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
