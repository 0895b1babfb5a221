"""The rules engine: is a postback owed for this event and partner app? (SPEC §1)

Pure: no Kafka, no HTTP, no clock, no logging. The same event and config always give the same
decision. The six rules run in order and the first that says no is the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any, Literal

from dispatcher.attribution import attribute
from dispatcher.partners.base import PostbackContent
from dispatcher.revenue import revenue_of, strip_revenue
from schemas.config import AppConfig, PartnerConfig
from schemas.durations import format_duration
from schemas.events import Event, InAppEvent

PayloadBuilder = Callable[[PostbackContent], Mapping[str, Any]]


class Rule(IntEnum):
    """The rules of SPEC §1, numbered in the order they run."""

    APP_ACTIVE = 1
    IN_APP_ENABLED = 2
    SCOPE = 3
    WINDOW = 4
    MAPPING = 5
    REVENUE = 6

    @property
    def title(self) -> str:
        """A short name for `explain` output."""
        return _RULE_TITLES[self]


_RULE_TITLES = {
    Rule.APP_ACTIVE: "app configured and active",
    Rule.IN_APP_ENABLED: "in-app postbacks enabled",
    Rule.SCOPE: "attribution scope",
    Rule.WINDOW: "in-app postback window",
    Rule.MAPPING: "event mapping",
    Rule.REVENUE: "revenue",
}


class SkipReason(StrEnum):
    """Why no postback is owed (the `reason` label of `dispatcher_decisions_total`)."""

    UNKNOWN_APP = "unknown_app"
    PARTNER_INACTIVE = "partner_inactive"
    IN_APP_DISABLED = "in_app_disabled"
    OUT_OF_SCOPE = "out_of_scope"
    OUTSIDE_WINDOW = "outside_window"
    UNMAPPED_EVENT = "unmapped_event"


SendReason = Literal["attributed", "scope_all"]


@dataclass(frozen=True, slots=True)
class Skip:
    """No postback is owed; `rule` said no for `reason`."""

    partner: str
    app_id: str
    rule: Rule
    reason: SkipReason
    detail: str


@dataclass(frozen=True, slots=True)
class Send:
    """A postback is owed: `payload` is the partner's event, `destination` where it goes."""

    partner: str
    app: AppConfig
    destination: str
    content: PostbackContent
    payload: Mapping[str, Any]
    rule: Rule  # the last rule that ran: scope for installs, revenue for in-app events
    reason: SendReason
    detail: str


Decision = Send | Skip


def decide(event: Event, partner: PartnerConfig, build_payload: PayloadBuilder) -> Decision:
    """Run the six rules for one event and one partner; build the payload when one is owed."""
    name = partner.partner
    app = partner.app(event.app_id)
    if app is None:
        return Skip(
            name,
            event.app_id,
            Rule.APP_ACTIVE,
            SkipReason.UNKNOWN_APP,
            f"app {event.app_id} has no {name} config",
        )
    if not app.active:
        return Skip(name, app.app_id, Rule.APP_ACTIVE, SkipReason.PARTNER_INACTIVE, "active: false")

    is_in_app = isinstance(event, InAppEvent)
    postbacks = app.in_app_postbacks
    if is_in_app and not postbacks.enabled:
        return Skip(
            name,
            app.app_id,
            Rule.IN_APP_ENABLED,
            SkipReason.IN_APP_DISABLED,
            "in_app_postbacks.enabled is false",
        )

    attribution = attribute(event, partner, app)
    scope = postbacks.scope if is_in_app else app.install_postbacks.scope
    if scope == "attributed" and not attribution.attributed:
        return Skip(
            name,
            app.app_id,
            Rule.SCOPE,
            SkipReason.OUT_OF_SCOPE,
            f"scope is attributed, but not attributed to {name}: {attribution.why}",
        )
    reason: SendReason = "attributed" if attribution.attributed else "scope_all"

    if not isinstance(event, InAppEvent):
        content = PostbackContent(event, app, None, attribution.attributed, {}, None, False)
        return Send(
            name,
            app,
            app.destination,
            content,
            build_payload(content),
            Rule.SCOPE,
            reason,
            attribution.why,
        )

    window = postbacks.window
    if window is not None and event.event_time - event.install_time > window:
        return Skip(
            name,
            app.app_id,
            Rule.WINDOW,
            SkipReason.OUTSIDE_WINDOW,
            f"{event.event_time - event.install_time} after install, past the "
            f"{format_duration(window)} window",
        )

    mapping = postbacks.mapping_for(event.event_name)
    if mapping is None:
        return Skip(
            name,
            app.app_id,
            Rule.MAPPING,
            SkipReason.UNMAPPED_EVENT,
            f"sdk event {event.event_name!r} is not mapped",
        )

    if mapping.send_revenue:
        params: Mapping[str, Any] = event.event_value
        revenue = revenue_of(event)
        revenue_note = "revenue kept" if revenue is not None else "revenue kept (none in the event)"
    else:
        params = strip_revenue(event.event_value)
        revenue = None
        revenue_note = "revenue stripped"
    content = PostbackContent(
        event,
        app,
        mapping.partner_event,
        attribution.attributed,
        params,
        revenue,
        not mapping.send_revenue,
    )
    return Send(
        name,
        app,
        app.destination,
        content,
        build_payload(content),
        Rule.REVENUE,
        reason,
        f"{attribution.why}; {event.event_name} -> {mapping.partner_event}; {revenue_note}",
    )
