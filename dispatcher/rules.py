"""The rules engine: is a postback owed for this event and partner app?

Pure: no Kafka, no HTTP, no clock, no logging. The same event, config and time always give the
same decision: the current time is an argument, never read here. The rules run in order and the
first that says no is the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum, StrEnum
from typing import Any, Literal, NamedTuple

from dispatcher.attribution import attribute
from dispatcher.partners.base import (
    NO_IDENTIFIERS,
    PartnerAdapter,
    PostbackContent,
    identifiers_of,
)
from dispatcher.revenue import strip_revenue
from schemas.config import PartnerConfig
from schemas.durations import format_duration, format_duration_s
from schemas.events import Conversion, Event


class Rule(IntEnum):
    """The rules, numbered in the order they run."""

    APP_ACTIVE = 1
    FRAUD = 2
    KIND = 3
    SCOPE = 4
    WINDOW = 5
    MAPPING = 6
    CONSENT = 7
    AGE = 8
    REVENUE = 9

    @property
    def title(self) -> str:
        """A short name for `explain` output."""
        return _RULE_TITLES[self]


_RULE_TITLES = {
    Rule.APP_ACTIVE: "app configured and active",
    Rule.FRAUD: "not blocked or rejected as fraud",
    Rule.KIND: "first install / in-app postbacks enabled",
    Rule.SCOPE: "attribution scope and primary copy",
    Rule.WINDOW: "in-app postback window",
    Rule.MAPPING: "event mapping",
    Rule.CONSENT: "consent to share data for advertising",
    Rule.AGE: "event age",
    Rule.REVENUE: "revenue",
}


class SkipReason(StrEnum):
    """Why no postback is owed (the `reason` label of `dispatcher_decisions_total`)."""

    UNKNOWN_APP = "unknown_app"
    PARTNER_INACTIVE = "partner_inactive"
    FRAUD_BLOCKED = "fraud_blocked"
    FRAUD_REJECTED = "fraud_rejected"
    NOT_A_NEW_INSTALL = "not_a_new_install"
    IN_APP_DISABLED = "in_app_disabled"
    OUT_OF_SCOPE = "out_of_scope"
    SECONDARY_ATTRIBUTION = "secondary_attribution"
    NO_CLICK_ID = "no_click_id"
    OUTSIDE_WINDOW = "outside_window"
    UNMAPPED_EVENT = "unmapped_event"
    NO_CONSENT = "no_consent"
    TOO_OLD = "too_old"


SendReason = Literal["attributed", "scope_all"]


# Decisions are NamedTuples: immutable values, and about three times cheaper to build per
# event than frozen dataclasses.


class Skip(NamedTuple):
    """No postback is owed; `rule` said no for `reason`."""

    partner: str
    app_id: str
    rule: Rule
    reason: SkipReason
    why: str

    @property
    def detail(self) -> str:
        """Why, in words an operator reads (built on demand, not per event)."""
        if self.reason is SkipReason.OUT_OF_SCOPE:
            return f"scope is attributed, but not attributed to {self.partner}: {self.why}"
        if self.reason is SkipReason.SECONDARY_ATTRIBUTION:
            return (
                f"the secondary copy of an event reported twice goes only to a partner it is "
                f"attributed to, and it is not attributed to {self.partner}: {self.why}"
            )
        if self.reason is SkipReason.NO_CLICK_ID:
            return f"{self.why}; {self.partner} matches conversions by the click id alone"
        return self.why


class Send(NamedTuple):
    """A postback is owed: `payload` is the partner's event, `destination` where it goes."""

    partner: str
    destination: str
    content: PostbackContent
    payload: Mapping[str, Any]
    rule: Rule  # the last rule that ran: age for installs, revenue for in-app events
    reason: SendReason
    why: str  # the attribution's

    @property
    def detail(self) -> str:
        """Why it is owed, in words an operator reads (built on demand, not per event)."""
        content = self.content
        why = self.why
        if content.limited:
            why += (
                "; sent limited (no consent to share data for advertising): no identifiers, "
                "IP or user agent"
            )
        if content.partner_event is None:
            return why
        if content.revenue_stripped:
            revenue = "revenue stripped"
        elif content.unsent_revenue is not None:
            unsent = content.unsent_revenue
            revenue = (
                f"revenue not sent: {self.partner} reads no {unsent.currency or 'unnamed'} "
                f"amounts ({' '.join(filter(None, (str(unsent.amount), unsent.currency)))})"
            )
        elif content.revenue is not None:
            revenue = "revenue kept"
        else:
            revenue = "revenue kept (none in the event)"
        return f"{why}; {content.event.event_name} -> {content.partner_event}; {revenue}"


Decision = Send | Skip


def decide(event: Event, partner: PartnerConfig, adapter: PartnerAdapter, now_s: float) -> Decision:
    """Run the rules for one event and one partner at `now_s` (Unix seconds, the moment of
    deciding); build the payload when one is owed.

    The adapter builds the payload and says what the partner needs (a click id, a currency);
    the rules read those capabilities, never a partner's name.
    """
    name = partner.name
    app = partner.app(event.app_id)
    if app is None:
        return Skip(name, event.app_id, Rule.APP_ACTIVE, SkipReason.UNKNOWN_APP,
                    f"app {event.app_id} has no {name} config")  # fmt: skip
    if not app.active:
        return Skip(name, app.app_id, Rule.APP_ACTIVE, SkipReason.PARTNER_INACTIVE, "active: false")

    if event.blocked is not None:
        return Skip(name, app.app_id, Rule.FRAUD, SkipReason.FRAUD_BLOCKED,
                    f"blocked as fraud: {event.blocked.describe()}")  # fmt: skip
    if event.rejected is not None and not app.send_rejected:
        return Skip(name, app.app_id, Rule.FRAUD, SkipReason.FRAUD_REJECTED,
                    f"rejected by validation rules: {event.rejected.describe()} "
                    f"(send_rejected is false)")  # fmt: skip

    is_in_app = event.is_in_app
    postbacks = app.in_app_postbacks
    if is_in_app:
        if not postbacks.enabled:
            return Skip(name, app.app_id, Rule.KIND, SkipReason.IN_APP_DISABLED,
                        "in_app_postbacks.enabled is false")  # fmt: skip
    elif event.conversion is not Conversion.INSTALL:
        return Skip(name, app.app_id, Rule.KIND, SkipReason.NOT_A_NEW_INSTALL,
                    f"a {event.conversion} record, not a first install")  # fmt: skip

    attribution = attribute(event, partner, app)
    scope = postbacks.scope if is_in_app else app.install_postbacks.scope
    if not attribution.attributed:
        if scope == "attributed":
            return Skip(name, app.app_id, Rule.SCOPE, SkipReason.OUT_OF_SCOPE, attribution.why)
        if not event.is_primary:
            return Skip(name, app.app_id, Rule.SCOPE, SkipReason.SECONDARY_ATTRIBUTION,
                        attribution.why)  # fmt: skip
    if adapter.requires_click_id and (
        not attribution.attributed or event.click_id_for(adapter.click_id_parameter) is None
    ):
        return Skip(name, app.app_id, Rule.SCOPE, SkipReason.NO_CLICK_ID,
                    f"{attribution.why}, but the record has no {name} click id (click_id, or "
                    f"{adapter.click_id_parameter} in original_url)")  # fmt: skip
    reason: SendReason = "attributed" if attribution.attributed else "scope_all"

    mapping = None
    if is_in_app:
        window = postbacks.window
        if window is not None and event.event_time - event.install_time > window:
            return Skip(name, app.app_id, Rule.WINDOW, SkipReason.OUTSIDE_WINDOW,
                        f"{format_duration_s(event.event_time_s - event.install_time.timestamp())}"
                        f" after install, past the {format_duration(window)} window")  # fmt: skip
        mapping = postbacks.mapping_for(event.event_name)
        if mapping is None:
            return Skip(name, app.app_id, Rule.MAPPING, SkipReason.UNMAPPED_EVENT,
                        f"sdk event {event.event_name!r} is not mapped")  # fmt: skip

    limited = event.gdpr_applies is True and event.ad_user_data is not True
    if limited and app.consent.without_consent == "skip":
        return Skip(name, app.app_id, Rule.CONSENT, SkipReason.NO_CONSENT,
                    f"gdpr_applies is true and ad_user_data_enabled is "
                    f"{_flag_text(event.ad_user_data)} (without_consent is skip)")  # fmt: skip

    max_age_s = partner.delivery.max_event_age_s
    if max_age_s is not None and now_s - event.event_time_s > max_age_s:
        return Skip(name, app.app_id, Rule.AGE, SkipReason.TOO_OLD,
                    f"{format_duration_s(now_s - event.event_time_s)} old, past "
                    f"{name}'s max_event_age of {format_duration_s(max_age_s)}")  # fmt: skip
    identifiers = NO_IDENTIFIERS if limited else identifiers_of(event)

    if mapping is None:
        content = PostbackContent(event, app, None, attribution.attributed, {}, {}, None, False,
                                  None, identifiers, limited)  # fmt: skip
        return Send(name, app.destination, content, adapter.build_event(content), Rule.AGE,
                    reason, attribution.why)  # fmt: skip

    unsent = None
    if mapping.send_revenue:
        params: Mapping[str, Any] = event.params
        standard_params = event.standard_params
        revenue = event.revenue
        currencies = adapter.revenue_currencies
        if revenue is not None and currencies is not None and revenue.currency not in currencies:
            revenue, unsent = None, revenue
    else:
        params = strip_revenue(event.params, event.revenue_keys)
        standard_params = strip_revenue(event.standard_params, event.revenue_keys)
        revenue = None
    content = PostbackContent(event, app, mapping.partner_event, attribution.attributed, params,
                              standard_params, revenue, not mapping.send_revenue,
                              unsent, identifiers, limited)  # fmt: skip
    return Send(name, app.destination, content, adapter.build_event(content), Rule.REVENUE,
                reason, attribution.why)  # fmt: skip


def _flag_text(value: bool | None) -> str:
    return "absent" if value is None else str(value).lower()
