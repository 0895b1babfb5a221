"""Attribution links (`dispatcher link`): the AppsFlyer click and impression links an advertiser
gives a partner, so that its clicks reach AppsFlyer with the partner's click id and the app's
lookback windows. Pure: no I/O.

The parameters and the partner macros that fill them belong to the partner (its adapter's
`link_parameters`); the lookbacks are written as AppsFlyer accepts them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode

from dispatcher.partners.base import PartnerAdapter
from schemas.config import AppConfig, PartnerConfig
from schemas.durations import format_duration, parse_duration

CLICK_HOST = "https://app.appsflyer.com"
IMPRESSION_HOST = "https://impression.appsflyer.com"
CLICK_LOOKBACK_PARAMETER = "af_click_lookback"
VIEW_THROUGH_LOOKBACK_PARAMETER = "af_viewthrough_lookback"
_HOUR = timedelta(hours=1)
_DAY = timedelta(days=1)
MAX_CLICK_LOOKBACK = timedelta(days=30)
MAX_VIEW_THROUGH_LOOKBACK = _DAY
# Set by the command itself: `--param` may not change them.
_RESERVED = frozenset({"pid", CLICK_LOOKBACK_PARAMETER, VIEW_THROUGH_LOOKBACK_PARAMETER})


class LinkError(ValueError):
    """A link that cannot be written; the message names what is allowed."""


class AttributionLinks(NamedTuple):
    """One partner app's links, the parameters they carry, and what the operator should know."""

    partner: str
    app_id: str
    media_source: str
    click: str
    impression: str | None  # None when the partner has no impression link
    click_parameters: tuple[tuple[str, str], ...]
    impression_parameters: tuple[tuple[str, str], ...]
    warnings: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        """The document `--json` prints for this partner app."""
        return {
            "partner": self.partner,
            "app_id": self.app_id,
            "media_source": self.media_source,
            "click": {"url": self.click, "parameters": dict(self.click_parameters)},
            "impression": (
                {"url": self.impression, "parameters": dict(self.impression_parameters)}
                if self.impression is not None
                else None
            ),
            "warnings": list(self.warnings),
        }


def lookback_text(value: timedelta, maximum: timedelta, what: str) -> str:
    """A lookback as AppsFlyer accepts it: whole hours `1h`..`23h`, or whole days up to
    `maximum`; anything else raises `LinkError` naming what is allowed."""
    allowed = "whole hours 1h..23h" + (
        f" or whole days 1d..{format_duration(maximum)}" if maximum > _DAY else " or 1d"
    )
    if _HOUR <= value < _DAY and value % _HOUR == timedelta(0):
        return f"{value // _HOUR}h"
    if _DAY <= value <= maximum and value % _DAY == timedelta(0):
        return f"{value // _DAY}d"
    raise LinkError(
        f"{what} {format_duration(value)} cannot be written in a link; allowed: {allowed}"
    )


def parse_lookback(text: str, maximum: timedelta, what: str) -> str:
    """A lookback flag (`12h`, `7d`) checked and written as AppsFlyer accepts it."""
    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise LinkError(f"{what}: {exc}") from None
    return lookback_text(value, maximum, what)


def parse_params(items: Sequence[str]) -> list[tuple[str, str]]:
    """`KEY=VALUE` flags, in order; a malformed or reserved key raises `LinkError`."""
    params: list[tuple[str, str]] = []
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise LinkError(f"--param {item!r}: write KEY=VALUE, e.g. af_sub1=spring")
        if key in _RESERVED:
            raise LinkError(
                f"--param {key}: set by the command; use --media-source, --click-lookback or "
                "--view-through-lookback"
            )
        params.append((key, value))
    return params


def build_links(
    partner: PartnerConfig,
    adapter: PartnerAdapter,
    app: AppConfig,
    *,
    media_source: str | None = None,
    click_lookback: str | None = None,
    view_through_lookback: str | None = None,
    params: Sequence[tuple[str, str]] = (),
) -> AttributionLinks:
    """The click and impression links of one partner app; flags override the app's config."""
    source = media_source.strip().lower() if media_source else partner.media_sources[0]
    if source not in partner.media_sources:
        raise LinkError(
            f"media source {media_source!r} is not {partner.name}'s; allowed: "
            + ", ".join(partner.media_sources)
        )
    where = f"apps[{partner.apps.index(app)}]"
    click_window = (
        parse_lookback(click_lookback, MAX_CLICK_LOOKBACK, "--click-lookback")
        if click_lookback
        else lookback_text(app.click_lookback, MAX_CLICK_LOOKBACK, f"{where}.click_lookback")
    )
    view_window = (
        parse_lookback(view_through_lookback, MAX_VIEW_THROUGH_LOOKBACK, "--view-through-lookback")
        if view_through_lookback
        else lookback_text(
            app.view_through_lookback, MAX_VIEW_THROUGH_LOOKBACK,
            f"{where}.view_through_lookback",
        )
    )  # fmt: skip
    mapping = [("pid", source), *adapter.link_parameters]
    click = _with_overrides([*mapping, (CLICK_LOOKBACK_PARAMETER, click_window)], params)
    warnings: list[str] = []
    impression: tuple[tuple[str, str], ...] = ()
    impression_url = None
    if adapter.has_impression_link:
        impression = _with_overrides(
            [*mapping, (VIEW_THROUGH_LOOKBACK_PARAMETER, view_window)], params
        )
        impression_url = _url(IMPRESSION_HOST, app.app_id, impression)
        if not app.view_through:
            warnings.append(
                f"app {app.app_id} has view_through: false in the {partner.name} file: "
                "installs from impressions on this link will not count as "
                f"{partner.name}'s (set view_through: true to count them)"
            )
    return AttributionLinks(
        partner.name, app.app_id, source, _url(CLICK_HOST, app.app_id, click), impression_url,
        click, impression, tuple(warnings),
    )  # fmt: skip


def _with_overrides(
    base: list[tuple[str, str]], overrides: Sequence[tuple[str, str]]
) -> tuple[tuple[str, str], ...]:
    """`base` with each override replacing its key in place, or appended when new."""
    params = dict(base)
    params.update(overrides)
    return tuple(params.items())


def _url(host: str, app_id: str, params: Sequence[tuple[str, str]]) -> str:
    # Macros (`__CALLBACK_PARAM__`) and ids stay readable; anything else is percent-encoded.
    return f"{host}/{quote(app_id, safe='.')}?{urlencode(params, quote_via=quote, safe='')}"
