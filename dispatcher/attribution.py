"""Is an install attributed to this partner? Media source, touch type, lookback."""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from typing import NamedTuple

from schemas.config import AppConfig, PartnerConfig
from schemas.durations import format_duration, format_duration_s
from schemas.events import Event

ORGANIC_MEDIA_SOURCES = frozenset({"", "organic"})
# AppsFlyer's mask for privacy-restricted networks: nobody's, unless a partner file lists it.
RESTRICTED_MEDIA_SOURCE = "restricted"
_ZERO = timedelta(0)


class Attribution(NamedTuple):
    """Whether the install belongs to this partner, and why in words an operator reads."""

    attributed: bool
    why: str


_ORGANIC = Attribution(False, "organic install")
_NO_TOUCH_TIME = Attribution(False, "no attributed_touch_time, so the lookback cannot be checked")
_RESTRICTED = Attribution(
    False,
    "media source 'restricted' (a privacy-restricted network), which this partner does not list",
)
_VIEW_THROUGH_OFF = Attribution(False, "view-through install and view_through is off for this app")


def is_within_lookback(install_time: datetime, touch_time: datetime, lookback: timedelta) -> bool:
    """`0 <= install_time - touch_time <= lookback`, both ends inclusive."""
    return _ZERO <= install_time - touch_time <= lookback


def is_organic(media_source: str | None) -> bool:
    """`organic`, empty or absent media source."""
    return media_source is None or media_source.strip().lower() in ORGANIC_MEDIA_SOURCES


def attribute(event: Event, partner: PartnerConfig, app: AppConfig) -> Attribution:
    """Judge the install's attribution (in-app events carry their install's fields)."""
    media_source = event.media_source
    if media_source is None or is_organic(media_source):
        return _ORGANIC
    if not partner.is_partner_media_source(media_source):
        if media_source.strip().lower() == RESTRICTED_MEDIA_SOURCE:
            return _RESTRICTED
        return Attribution(False, f"attributed to another media source ({media_source})")
    touch_type = event.touch_type
    if touch_type == "click":
        lookback = app.click_lookback
    elif touch_type == "impression":
        if not app.view_through:
            return _VIEW_THROUGH_OFF
        lookback = app.view_through_lookback
    else:
        return Attribution(False, f"touch type {touch_type!r} is neither click nor impression")
    touch_time = event.touch_time
    if touch_time is None:
        return _NO_TOUCH_TIME
    if not is_within_lookback(event.install_time, touch_time, lookback):
        gap = event.install_time - touch_time
        return Attribution(
            False,
            f"{touch_type} {_describe_gap(gap)} the install, outside the "
            f"{format_duration(lookback)} lookback",
        )
    return _within(touch_type, lookback)


@functools.lru_cache(maxsize=256)
def _within(touch_type: str, lookback: timedelta) -> Attribution:
    """The (shared) answer for a touch inside its window; built once per app setting."""
    return Attribution(True, f"{touch_type} within the {format_duration(lookback)} lookback")


def _describe_gap(gap: timedelta) -> str:
    if gap < _ZERO:
        return f"{format_duration_s(-gap.total_seconds())} after"
    return f"{format_duration_s(gap.total_seconds())} before"
