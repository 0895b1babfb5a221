"""The rules (docs/decisions.md), one table per rule, with their boundaries; then properties."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.attribution import Attribution, attribute
from dispatcher.partners.base import Identifiers, PostbackContent
from dispatcher.partners.tiktok import TikTokAdapter
from dispatcher.revenue import strip_revenue
from dispatcher.rules import Rule, Send, Skip, SkipReason, decide
from schemas.events import INSTALL, Event, Money
from tests.factories import (
    APP_ID,
    INSTALL_TIME,
    NOW_S,
    TIKTOK_APP_ID,
    app_dict,
    decode_record,
    event_dict,
    make_in_app,
    make_install,
    make_partner,
)

ADAPTER = TikTokAdapter()
REVENUE_KEYS = {"af_revenue", "revenue", "event_revenue"}


def decide_for(event: Event, **app_overrides: Any) -> Send | Skip:
    return decide(event, make_partner(app_dict(**app_overrides)), ADAPTER, NOW_S)


def expect_skip(decision: Send | Skip, reason: SkipReason, rule: Rule) -> None:
    assert isinstance(decision, Skip), f"expected skip {reason}, got send: {decision.detail}"
    assert (decision.reason, decision.rule) == (reason, rule), decision.detail


# --- rule 1: the app has a config for this partner and is active ------------------------------


def test_unknown_app_is_skipped_by_rule_1() -> None:
    decision = decide_for(make_install(app_id="com.unknown.app"))
    expect_skip(decision, SkipReason.UNKNOWN_APP, Rule.APP_ACTIVE)


def test_inactive_app_is_skipped_by_rule_1_before_anything_else() -> None:
    # Given an inactive app and an event that every later rule would also refuse
    event = make_in_app(media_source="organic", event_name="af_unmapped")
    decision = decide_for(event, active=False, in_app={"enabled": False})
    # Then the first rule decides
    expect_skip(decision, SkipReason.PARTNER_INACTIVE, Rule.APP_ACTIVE)


# --- rule 2: a first install; in-app postbacks enabled -------------------------------------------


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        pytest.param(make_in_app(), SkipReason.IN_APP_DISABLED, id="in-app-disabled"),
        pytest.param(make_install(), None, id="install-still-sent"),
    ],
)
def test_in_app_disabled(event: Event, expected: SkipReason | None) -> None:
    decision = decide_for(event, in_app={"enabled": False})
    if expected is None:
        assert isinstance(decision, Send)
    else:
        expect_skip(decision, expected, Rule.KIND)


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"event_type": "reinstall", "event_name": "reinstall",
                      "conversion_type": "reinstall"}, id="reinstall"),
        pytest.param({"event_type": None, "conversion_type": "Reinstall"}, id="conversion-type-only"),
        pytest.param({"event_type": "re-engagement", "event_name": "re-engagement",
                      "is_retargeting": True, "retargeting_conversion_type": "re-engagement",
                      "conversion_type": "re-engagement"}, id="re-engagement"),
        pytest.param({"event_type": "re-attribution", "event_name": "re-attribution",
                      "is_retargeting": "true"}, id="re-attribution"),
        pytest.param({"event_type": None, "event_name": "re-attribution", "conversion_type": None},
                     id="event-name-only"),
        pytest.param({"event_type": None, "conversion_type": None, "is_retargeting": "true",
                      "retargeting_conversion_type": "re-attribution"}, id="retargeting-flag-only"),
        pytest.param({"event_type": "organic-reinstall", "media_source": "organic"},
                     id="organic-reinstall"),
        pytest.param({"conversion_type": "unheard-of"}, id="unknown-conversion-kind"),
    ],
)  # fmt: skip
def test_only_a_first_install_gets_an_install_postback(overrides: dict[str, Any]) -> None:
    # Given a re-engagement, re-attribution or reinstall record, attributed to TikTok
    event = make_install(**overrides)
    # Then no install postback is owed, whatever the scope
    for scope in ("attributed", "all"):
        decision = decide_for(event, install_scope=scope)
        expect_skip(decision, SkipReason.NOT_A_NEW_INSTALL, Rule.KIND)
        assert str(event.conversion) in decision.detail


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({}, id="install-type"),
        pytest.param({"event_type": None, "conversion_type": None, "is_retargeting": None},
                     id="nothing-said"),
        pytest.param({"event_type": "organic-install", "conversion_type": "Install",
                      "media_source": "organic"}, id="organic-install"),
        pytest.param({"is_retargeting": "false"}, id="retargeting-false-string"),
    ],
)  # fmt: skip
def test_first_installs_pass_rule_2(overrides: dict[str, Any]) -> None:
    assert isinstance(decide_for(make_install(**overrides), install_scope="all"), Send)


def test_in_app_events_of_a_re_engagement_are_judged_like_any_other() -> None:
    event = make_in_app(event_type="re-engagement-in-app-event", is_retargeting=True,
                        conversion_type="re-engagement")  # fmt: skip
    decision = decide_for(event)
    assert isinstance(decision, Send), decision.detail


# --- rule 3: attribution scope, with the lookback windows --------------------------------------

CLICK_7D = {"click_lookback": "7d"}


@pytest.mark.parametrize(
    ("overrides", "app", "attributed"),
    [
        pytest.param({}, {}, True, id="click-1h-before"),
        pytest.param(
            {"attributed_touch_time": INSTALL_TIME - timedelta(days=7)}, CLICK_7D, True,
            id="click-exactly-at-lookback",
        ),
        pytest.param(
            {"attributed_touch_time": INSTALL_TIME - timedelta(days=7, seconds=1)}, CLICK_7D, False,
            id="click-one-second-past-lookback",
        ),
        pytest.param(
            {"attributed_touch_time": INSTALL_TIME}, {}, True, id="click-at-install-time",
        ),
        pytest.param(
            {"attributed_touch_time": INSTALL_TIME + timedelta(seconds=1)}, {}, False,
            id="click-after-install",
        ),
        pytest.param(
            {"attributed_touch_time": INSTALL_TIME - timedelta(hours=2)}, {"click_lookback": "1h"},
            False, id="click-outside-1h-lookback",
        ),
        pytest.param({"attributed_touch_type": "impression"}, {}, False, id="view-through-off"),
        pytest.param(
            {"attributed_touch_type": "impression"}, {"view_through": True}, True,
            id="view-through-on",
        ),
        pytest.param(
            {"attributed_touch_type": "impression", "attributed_touch_time": INSTALL_TIME - timedelta(hours=24)},
            {"view_through": True, "view_through_lookback": "24h"}, True,
            id="impression-exactly-at-24h",
        ),
        pytest.param(
            {"attributed_touch_type": "impression",
             "attributed_touch_time": INSTALL_TIME - timedelta(hours=24, seconds=1)},
            {"view_through": True, "view_through_lookback": "1d"}, False,
            id="impression-one-second-past-1d",
        ),
        pytest.param(
            {"attributed_touch_type": "impression", "attributed_touch_time": INSTALL_TIME - timedelta(hours=3)},
            {"view_through": True, "view_through_lookback": "2h", "click_lookback": "7d"}, False,
            id="impression-uses-view-through-lookback-not-click",
        ),
        pytest.param({"media_source": "organic"}, {}, False, id="organic"),
        pytest.param({"media_source": None}, {}, False, id="media-source-null"),
        pytest.param({"media_source": ""}, {}, False, id="media-source-empty"),
        pytest.param({"media_source": "googleadwords_int"}, {}, False, id="another-partner"),
        pytest.param({"media_source": "tiktokglobal_int"}, {}, True, id="successor-media-source"),
        pytest.param({"media_source": "TikTokGlobal_INT"}, {}, True, id="media-source-case"),
        pytest.param({"attributed_touch_type": None}, {}, False, id="no-touch-type"),
        pytest.param({"attributed_touch_time": None}, {}, False, id="no-touch-time"),
    ],
)  # fmt: skip
def test_install_scope_attributed(
    overrides: dict[str, Any], app: dict[str, Any], attributed: bool
) -> None:
    decision = decide_for(make_install(**overrides), **app)
    if attributed:
        assert isinstance(decision, Send), decision.detail
        assert decision.reason == "attributed"
        assert decision.payload["ad"]["callback"].startswith("E.C.P.clk")
    else:
        expect_skip(decision, SkipReason.OUT_OF_SCOPE, Rule.SCOPE)


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"media_source": "organic"}, id="organic"),
        pytest.param(
            {"media_source": "googleadwords_int", "click_id": "g-1"}, id="another-partner"
        ),
        pytest.param({"attributed_touch_type": "impression"}, id="view-through-off"),
    ],
)
def test_scope_all_sends_unattributed_installs_without_ad_fields(
    overrides: dict[str, Any],
) -> None:
    decision = decide_for(make_install(**overrides), install_scope="all")
    assert isinstance(decision, Send)
    assert decision.reason == "scope_all"
    # another partner's click id is never sent to TikTok; TikTok is told the user is not its own
    assert decision.payload["ad"] == {"is_retargeting": False, "attributed": False}


def test_in_app_event_is_judged_by_its_install_attribution() -> None:
    # Given an in-app event whose install came from another partner
    event = make_in_app(media_source="googleadwords_int")
    # When in-app scope is attributed, it is out of scope; when all, it is sent
    expect_skip(decide_for(event), SkipReason.OUT_OF_SCOPE, Rule.SCOPE)
    assert isinstance(decide_for(event, in_app={"scope": "all"}), Send)


@pytest.mark.parametrize(
    ("copy", "scope", "expected"),
    [
        # the secondary copy, attributed to another network (the user-acquisition source)
        pytest.param({"media_source": "googleadwords_int"}, "all",
                     SkipReason.SECONDARY_ATTRIBUTION, id="secondary-elsewhere-scope-all"),
        pytest.param({"media_source": "googleadwords_int"}, "attributed",
                     SkipReason.OUT_OF_SCOPE, id="secondary-elsewhere-scope-attributed"),
        pytest.param({"media_source": "organic"}, "all",
                     SkipReason.SECONDARY_ATTRIBUTION, id="secondary-organic-scope-all"),
        # the secondary copy attributed to TikTok goes to TikTok
        pytest.param({}, "all", None, id="secondary-to-this-partner-scope-all"),
        pytest.param({}, "attributed", None, id="secondary-to-this-partner-scope-attributed"),
    ],
)  # fmt: skip
def test_a_secondary_copy_goes_only_to_a_partner_it_is_attributed_to(
    copy: dict[str, Any], scope: str, expected: SkipReason | None
) -> None:
    # Given the secondary copy of an in-app event reported twice
    event = make_in_app(is_primary_attribution=False, **copy)
    decision = decide_for(event, in_app={"scope": scope})
    if expected is None:
        assert isinstance(decision, Send), decision.detail
        assert decision.reason == "attributed"
    else:
        expect_skip(decision, expected, Rule.SCOPE)


@pytest.mark.parametrize("flag", [False, "false", "False"])
def test_the_primary_flag_is_read_in_every_spelling(flag: object) -> None:
    event = make_in_app(is_primary_attribution=flag, media_source="organic")
    expect_skip(decide_for(event, in_app={"scope": "all"}), SkipReason.SECONDARY_ATTRIBUTION,
                Rule.SCOPE)  # fmt: skip


@pytest.mark.parametrize("flag", [True, "true", None, ""])
def test_a_primary_copy_or_an_unmarked_one_is_sent_under_scope_all(flag: object) -> None:
    event = make_in_app(is_primary_attribution=flag, media_source="organic")
    assert isinstance(decide_for(event, in_app={"scope": "all"}), Send)


def test_restricted_is_nobodys_unless_a_partner_file_lists_it() -> None:
    event = make_install(media_source="restricted", attributed_touch_type=None,
                         attributed_touch_time=None, original_url=None)  # fmt: skip
    decision = decide_for(event)
    expect_skip(decision, SkipReason.OUT_OF_SCOPE, Rule.SCOPE)
    assert "privacy-restricted" in decision.detail
    # A partner file that lists `restricted` owns such installs
    listed = make_partner(app_dict(), media_sources=["bytedanceglobal_int", "restricted"])
    clicked = make_install(media_source="restricted")
    decision = decide(clicked, listed, ADAPTER, NOW_S)
    assert isinstance(decision, Send)
    assert decision.reason == "attributed"


def test_in_app_scope_is_independent_of_install_scope() -> None:
    event = make_in_app(media_source="organic")
    decision = decide_for(event, install_scope="all", in_app={"scope": "attributed"})
    expect_skip(decision, SkipReason.OUT_OF_SCOPE, Rule.SCOPE)


# --- rule 4: in-app postback window ------------------------------------------------------------


@pytest.mark.parametrize(
    ("after_install", "window", "inside"),
    [
        pytest.param(timedelta(days=180), "180d", True, id="exactly-at-window"),
        pytest.param(timedelta(days=180, seconds=1), "180d", False, id="one-second-past"),
        pytest.param(timedelta(hours=1), "1h", True, id="1h-window-end"),
        pytest.param(timedelta(days=3650), "lifetime", True, id="lifetime"),
        pytest.param(timedelta(days=200), None, False, id="default-180d"),
    ],
)
def test_in_app_window(after_install: timedelta, window: str | None, inside: bool) -> None:
    event = make_in_app(event_time=INSTALL_TIME + after_install)
    in_app: dict[str, Any] = {} if window is None else {"window": window}
    app = app_dict(in_app=in_app)
    if window is None:
        del app["in_app_postbacks"]["window"]
    decision = decide(event, make_partner(app), ADAPTER, NOW_S)
    if inside:
        assert isinstance(decision, Send), decision
    else:
        expect_skip(decision, SkipReason.OUTSIDE_WINDOW, Rule.WINDOW)


def test_window_does_not_apply_to_installs() -> None:
    event = make_install(event_time=INSTALL_TIME + timedelta(days=400))
    assert isinstance(decide_for(event, in_app={"window": "1h"}), Send)


# --- rule 5: event mapping ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sdk_event", "wire_event"),
    [
        pytest.param("af_purchase", "Purchase", id="purchase"),
        pytest.param("af_complete_registration", "Registration", id="registration"),
        pytest.param("af_add_to_cart", "AddToCart", id="add-to-cart"),
        pytest.param("af_unmapped", None, id="unmapped"),
        pytest.param("AF_PURCHASE", None, id="names-are-case-sensitive"),
    ],
)
def test_event_mapping(sdk_event: str, wire_event: str | None) -> None:
    decision = decide_for(make_in_app(event_name=sdk_event))
    if wire_event is None:
        expect_skip(decision, SkipReason.UNMAPPED_EVENT, Rule.MAPPING)
    else:
        assert isinstance(decision, Send)
        assert decision.payload["event"] == wire_event


def test_install_is_sent_as_install_app() -> None:
    decision = decide_for(make_install())
    assert isinstance(decision, Send)
    assert decision.payload["event"] == "InstallApp"
    assert "properties" not in decision.payload


# --- rule 6: revenue ---------------------------------------------------------------------------


def test_revenue_kept_where_the_mapping_says_so() -> None:
    decision = decide_for(make_in_app(event_name="af_purchase"))
    assert isinstance(decision, Send)
    assert decision.rule is Rule.REVENUE
    properties = decision.payload["properties"]
    assert properties["value"] == 9.99
    assert properties["currency"] == "USD"
    assert properties["af_revenue"] == "9.99"


def test_revenue_stripped_forwards_every_other_parameter() -> None:
    # Given a non-revenue mapping and an event value with revenue at several depths
    value = {
        "af_revenue": "5",
        "revenue": 5,
        "af_currency": "EUR",
        "af_content_id": "sku-9",
        "items": [{"sku": "a", "event_revenue": 1}, {"sku": "b"}],
        "value": 5,
    }
    event = make_in_app(event_name="af_add_to_cart", event_value=value, event_revenue="5")
    decision = decide_for(event)
    assert isinstance(decision, Send)
    body = json.dumps(decision.payload)
    # Then no revenue key survives anywhere, and no properties.value
    assert not any(key in body for key in ('"af_revenue"', '"revenue"', '"event_revenue"'))
    properties = decision.payload["properties"]
    assert "value" not in properties
    # And every other parameter is forwarded (the content id in TikTok's contents)
    assert properties == {
        "af_currency": "EUR",
        "contents": [{"content_id": "sku-9"}],
        "items": [{"sku": "a"}, {"sku": "b"}],
    }


def test_event_value_as_a_json_string_is_forwarded() -> None:
    encoded = json.dumps({"af_content_type": "shoes", "af_quantity": 2, "af_order_id": "o-1"})
    decision = decide_for(make_in_app(event_name="af_add_to_cart", event_value=encoded))
    assert isinstance(decision, Send)
    # (a content type other than product or product_group is not TikTok's: forwarded as is)
    assert decision.payload["properties"] == {
        "af_content_type": "shoes",
        "num_items": 2,
        "order_id": "o-1",
    }


def test_revenue_falls_back_to_af_revenue_in_the_event_value() -> None:
    event = make_in_app(
        event_revenue=None,
        event_revenue_currency=None,
        event_value={"af_revenue": "12.50", "af_currency": "gbp"},
    )
    decision = decide_for(event)
    assert isinstance(decision, Send)
    assert decision.payload["properties"]["value"] == 12.5
    assert decision.payload["properties"]["currency"] == "GBP"


def test_revenue_kept_but_absent_sends_no_value() -> None:
    event = make_in_app(event_revenue=None, event_revenue_currency=None, event_value={"k": 1})
    decision = decide_for(event)
    assert isinstance(decision, Send)
    assert decision.payload["properties"] == {"k": 1}


# --- properties ----------------------------------------------------------------------------------

_json_leaf = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
_json = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["a", "revenue", "af_revenue", "event_revenue", "value", "x"]), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip
_event_values = st.dictionaries(
    st.sampled_from(["af_revenue", "revenue", "event_revenue", "af_currency", "value", "sku", "af_quantity"]),
    _json,
    max_size=6,
)  # fmt: skip
_media_sources = st.sampled_from(
    [None, "", "organic", "bytedanceglobal_int", "tiktokglobal_int", "googleadwords_int"]
)
_touch_types = st.sampled_from([None, "click", "impression", "tv"])
_offsets = st.integers(min_value=-3 * 86400, max_value=40 * 86400).map(
    lambda s: timedelta(seconds=s)
)
_sdk_events = st.sampled_from(
    ["af_purchase", "af_complete_registration", "af_add_to_cart", "other"]
)


@st.composite
def in_app_events(draw: st.DrawFn) -> Event:
    return decode_record(
        event_dict(
            "in-app-event",
            event_name=draw(_sdk_events),
            media_source=draw(_media_sources),
            attributed_touch_type=draw(_touch_types),
            attributed_touch_time=INSTALL_TIME - draw(_offsets),
            event_time=INSTALL_TIME + draw(_offsets),
            event_value=draw(_event_values),
            event_revenue=draw(st.sampled_from([None, "1.5", "0"])),
        ),
        "in-app-event",
    )


def _contains_revenue_key(value: Any) -> bool:
    if isinstance(value, dict):
        return any(k in REVENUE_KEYS or _contains_revenue_key(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_contains_revenue_key(item) for item in value)
    return False


@settings(max_examples=300, deadline=None)
@given(event=in_app_events(), view_through=st.booleans())
def test_a_stripped_payload_never_contains_revenue(event: Event, view_through: bool) -> None:
    partner = make_partner(
        app_dict(view_through=view_through, in_app={"scope": "all", "window": "lifetime", "events": [
            {"sdk_event": name, "partner_event": "Add_to_cart", "send_revenue": False}
            for name in ("af_purchase", "af_complete_registration", "af_add_to_cart", "other")
        ]})
    )  # fmt: skip
    decision = decide(event, partner, ADAPTER, NOW_S)
    assert isinstance(decision, Send)
    assert not _contains_revenue_key(decision.payload)
    assert "value" not in decision.payload.get("properties", {})


@settings(max_examples=300, deadline=None)
@given(event=in_app_events(), view_through=st.booleans(), install=st.booleans())
def test_scope_all_sends_a_superset_of_scope_attributed(
    event: Event, view_through: bool, install: bool
) -> None:
    subject = event
    if install:
        subject = event._replace(
            type=INSTALL, event_name="install", params={}, standard_params={}, revenue=None
        )
    attributed = make_partner(app_dict(view_through=view_through, install_scope="attributed"))
    everything = make_partner(
        app_dict(view_through=view_through, install_scope="all", in_app={"scope": "all"})
    )
    narrow = decide(subject, attributed, ADAPTER, NOW_S)
    wide = decide(subject, everything, ADAPTER, NOW_S)
    if isinstance(narrow, Send):
        assert isinstance(wide, Send)
        assert wide.payload == narrow.payload
    if isinstance(wide, Skip):
        assert isinstance(narrow, Skip)


@settings(max_examples=200, deadline=None)
@given(event=in_app_events())
def test_deciding_is_deterministic(event: Event) -> None:
    partner = make_partner(app_dict(in_app={"scope": "all"}))
    first = decide(event, partner, ADAPTER, NOW_S)
    second = decide(event._replace(), partner.model_copy(), ADAPTER, NOW_S)
    assert first == second


@settings(max_examples=200, deadline=None)
@given(event=in_app_events())
def test_only_attributed_events_carry_ad_fields(event: Event) -> None:
    partner = make_partner(app_dict(in_app={"scope": "all", "window": "lifetime"}))
    decision = decide(event, partner, ADAPTER, NOW_S)
    if isinstance(decision, Send):
        ad = decision.payload["ad"]
        assert ad["attributed"] == (decision.reason == "attributed")
        if decision.reason != "attributed":
            assert set(ad) == {"attributed", "is_retargeting"}


# --- whole decisions: where a postback goes, which rule decided, and the words for the operator ---

TIKTOK = make_partner(app_dict())
ALL_SCOPES = make_partner(app_dict(install_scope="all", in_app={"scope": "all"}))
VIEW_THROUGH = make_partner(app_dict(view_through=True, view_through_lookback="6h"))
OTHER_APPS = make_partner(app_dict(), app_dict(app_id="com.example.other", active=False,
                                               tiktok_app_id="7300000000000000002"))  # fmt: skip
CLICK = "click within the 7d lookback"


def skip(rule: Rule, reason: SkipReason, why: str, app_id: str = APP_ID) -> Skip:
    return Skip("tiktok", app_id, rule, reason, why)


@pytest.mark.parametrize(
    ("event", "partner", "expected", "detail"),
    [
        pytest.param(make_install(app_id="com.unknown.app"), TIKTOK,
                     skip(Rule.APP_ACTIVE, SkipReason.UNKNOWN_APP, "app com.unknown.app has no tiktok config",
                          "com.unknown.app"), "app com.unknown.app has no tiktok config", id="unknown-app"),
        pytest.param(make_install(app_id="com.example.other"), OTHER_APPS,
                     skip(Rule.APP_ACTIVE, SkipReason.PARTNER_INACTIVE, "active: false", "com.example.other"),
                     "active: false", id="inactive-app-among-others"),
        pytest.param(make_in_app(), make_partner(app_dict(in_app={"enabled": False})),
                     skip(Rule.KIND, SkipReason.IN_APP_DISABLED, "in_app_postbacks.enabled is false"),
                     "in_app_postbacks.enabled is false", id="in-app-disabled"),
        pytest.param(make_install(conversion_type="reinstall", event_type="reinstall"), TIKTOK,
                     skip(Rule.KIND, SkipReason.NOT_A_NEW_INSTALL, "a reinstall record, not a first install"),
                     "a reinstall record, not a first install", id="reinstall"),
        pytest.param(make_install(media_source="organic"), TIKTOK,
                     skip(Rule.SCOPE, SkipReason.OUT_OF_SCOPE, "organic install"),
                     "scope is attributed, but not attributed to tiktok: organic install", id="organic"),
        pytest.param(make_install(media_source="googleadwords_int"), TIKTOK,
                     skip(Rule.SCOPE, SkipReason.OUT_OF_SCOPE,
                          "attributed to another media source (googleadwords_int)"),
                     "scope is attributed, but not attributed to tiktok: attributed to another media "
                     "source (googleadwords_int)", id="another-network"),
        pytest.param(make_install(media_source=" Restricted "), TIKTOK,
                     skip(Rule.SCOPE, SkipReason.OUT_OF_SCOPE, "media source 'restricted' (a privacy-"
                          "restricted network), which this partner does not list"),
                     "scope is attributed, but not attributed to tiktok: media source 'restricted' (a "
                     "privacy-restricted network), which this partner does not list", id="restricted"),
        pytest.param(make_install(attributed_touch_type=" IMPRESSION "), TIKTOK,
                     skip(Rule.SCOPE, SkipReason.OUT_OF_SCOPE,
                          "view-through install and view_through is off for this app"),
                     "scope is attributed, but not attributed to tiktok: view-through install and "
                     "view_through is off for this app", id="impression-view-through-off"),
        pytest.param(make_install(attributed_touch_type="engagement"), TIKTOK,
                     skip(Rule.SCOPE, SkipReason.OUT_OF_SCOPE,
                          "touch type 'engagement' is neither click nor impression"),
                     "scope is attributed, but not attributed to tiktok: touch type 'engagement' is "
                     "neither click nor impression", id="another-touch-type"),
        pytest.param(make_install(attributed_touch_time=None), TIKTOK,
                     skip(Rule.SCOPE, SkipReason.OUT_OF_SCOPE,
                          "no attributed_touch_time, so the lookback cannot be checked"),
                     "scope is attributed, but not attributed to tiktok: no attributed_touch_time, so "
                     "the lookback cannot be checked", id="no-touch-time"),
        pytest.param(make_install(attributed_touch_time=INSTALL_TIME - timedelta(days=8)), TIKTOK,
                     skip(Rule.SCOPE, SkipReason.OUT_OF_SCOPE,
                          "click 8d before the install, outside the 7d lookback"),
                     "scope is attributed, but not attributed to tiktok: click 8d before "
                     "the install, outside the 7d lookback", id="click-too-old"),
        pytest.param(make_install(attributed_touch_time=INSTALL_TIME + timedelta(minutes=5)), TIKTOK,
                     skip(Rule.SCOPE, SkipReason.OUT_OF_SCOPE,
                          "click 5m after the install, outside the 7d lookback"),
                     "scope is attributed, but not attributed to tiktok: click 5m after the "
                     "install, outside the 7d lookback", id="click-after-the-install"),
        pytest.param(make_in_app(media_source="organic", is_primary_attribution=False), ALL_SCOPES,
                     skip(Rule.SCOPE, SkipReason.SECONDARY_ATTRIBUTION, "organic install"),
                     "the secondary copy of an event reported twice goes only to a partner it is "
                     "attributed to, and it is not attributed to tiktok: organic install",
                     id="secondary-copy"),
        pytest.param(make_in_app(event_time=INSTALL_TIME + timedelta(days=181)), TIKTOK,
                     skip(Rule.WINDOW, SkipReason.OUTSIDE_WINDOW,
                          "181d after install, past the 180d window"),
                     "181d after install, past the 180d window", id="outside-window"),
        pytest.param(make_in_app(event_name="af_level_up"), TIKTOK,
                     skip(Rule.MAPPING, SkipReason.UNMAPPED_EVENT, "sdk event 'af_level_up' is not mapped"),
                     "sdk event 'af_level_up' is not mapped", id="unmapped"),
    ],
)  # fmt: skip
def test_every_skip_whole(event: Event, partner: Any, expected: Skip, detail: str) -> None:
    decision = decide(event, partner, ADAPTER, NOW_S)
    assert decision == expected
    assert decision.detail == detail


@pytest.mark.parametrize(
    ("event", "partner", "rule", "reason", "why", "detail"),
    [
        pytest.param(make_install(), TIKTOK, Rule.AGE, "attributed", CLICK, CLICK,
                     id="attributed-install"),
        pytest.param(make_install(attributed_touch_type="Click"), TIKTOK, Rule.AGE, "attributed",
                     CLICK, CLICK, id="touch-type-in-capitals"),
        pytest.param(make_install(attributed_touch_type=" IMPRESSION "), VIEW_THROUGH, Rule.AGE,
                     "attributed", "impression within the 6h lookback",
                     "impression within the 6h lookback", id="impression-view-through-on"),
        pytest.param(make_install(media_source="organic"), ALL_SCOPES, Rule.AGE, "scope_all",
                     "organic install", "organic install", id="scope-all-organic"),
        pytest.param(make_in_app(), TIKTOK, Rule.REVENUE, "attributed", CLICK,
                     f"{CLICK}; af_purchase -> Pay(Purchase); revenue kept", id="purchase"),
        pytest.param(make_in_app(event_name="af_add_to_cart"), TIKTOK, Rule.REVENUE, "attributed",
                     CLICK, f"{CLICK}; af_add_to_cart -> Add_to_cart; revenue stripped",
                     id="revenue-stripped"),
        pytest.param(make_in_app(event_revenue=None, event_value="{}"), TIKTOK, Rule.REVENUE,
                     "attributed", CLICK,
                     f"{CLICK}; af_purchase -> Pay(Purchase); revenue kept (none in the event)",
                     id="revenue-kept-but-none"),
        pytest.param(make_in_app(media_source="organic", is_primary_attribution=True), ALL_SCOPES,
                     Rule.REVENUE, "scope_all", "organic install",
                     "organic install; af_purchase -> Pay(Purchase); revenue kept", id="primary-copy"),
    ],
)  # fmt: skip
def test_every_send_whole_with_its_destination(
    event: Event, partner: Any, rule: Rule, reason: str, why: str, detail: str
) -> None:
    decision = decide(event, partner, ADAPTER, NOW_S)
    assert isinstance(decision, Send), decision.detail
    # Then it goes to the app's TikTok App ID (its event_source_id), for the rule and reason given
    assert decision._replace(content=None, payload=None) == Send(  # type: ignore[arg-type]
        "tiktok",
        TIKTOK_APP_ID,
        None,
        None,
        rule,
        reason,
        why,  # type: ignore[arg-type]
    )
    assert decision.detail == detail
    assert decision.payload == ADAPTER.build_event(decision.content)


def test_each_app_gets_its_own_destination() -> None:
    partner = make_partner(app_dict(), app_dict(app_id="com.example.other",
                                                tiktok_app_id="7300000000000000002"))  # fmt: skip
    first = decide(make_install(), partner, ADAPTER, NOW_S)
    second = decide(make_install(app_id="com.example.other"), partner, ADAPTER, NOW_S)
    assert (first.partner, first.destination, second.destination) == (  # type: ignore[union-attr]
        "tiktok", TIKTOK_APP_ID, "7300000000000000002")  # fmt: skip
    assert (first.content.app.app_id, second.content.app.app_id) == (  # type: ignore[union-attr]
        APP_ID, "com.example.other")  # fmt: skip


# --- revenue stripping, at any depth ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param({}, {}, id="nothing"),
        pytest.param({"af_revenue": "1", "revenue": 2, "event_revenue": 3, "af_currency": "USD"},
                     {"af_currency": "USD"}, id="top-level"),
        pytest.param({"cart": {"revenue": 2, "items": [{"af_revenue": 1, "sku": "a"}, "b", [{"revenue": 0}]]}},
                     {"cart": {"items": [{"sku": "a"}, "b", [{}]]}}, id="objects-in-lists-in-objects"),
        pytest.param({"levels": [[{"event_revenue": 5, "n": 1}]], "price": "3"},
                     {"levels": [[{"n": 1}]], "price": "3"}, id="lists-in-lists"),
        pytest.param({"note": "revenue", "revenues": 3}, {"note": "revenue", "revenues": 3},
                     id="only-exact-keys"),
    ],
)  # fmt: skip
def test_revenue_is_stripped_at_any_depth(params: dict[str, Any], expected: dict[str, Any]) -> None:
    assert strip_revenue(params, frozenset(REVENUE_KEYS)) == expected


# --- attribution, as the value the rules read ------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        pytest.param(make_install(media_source=" Organic "), Attribution(False, "organic install"),
                     id="organic-any-case"),
        pytest.param(make_install(media_source="googleadwords_int"),
                     Attribution(False, "attributed to another media source (googleadwords_int)"),
                     id="another-network"),
        pytest.param(make_install(attributed_touch_type="engagement"),
                     Attribution(False, "touch type 'engagement' is neither click nor impression"),
                     id="another-touch-type"),
        pytest.param(make_install(attributed_touch_time=INSTALL_TIME - timedelta(days=8)),
                     Attribution(False, "click 8d before the install, outside the 7d lookback"),
                     id="too-old"),
        pytest.param(make_install(), Attribution(True, "click within the 7d lookback"), id="click"),
    ],
)  # fmt: skip
def test_attribution_whole(event: Event, expected: Attribution) -> None:
    app = TIKTOK.apps[0]
    assert attribute(event, TIKTOK, app) == expected
    assert type(attribute(event, TIKTOK, app).attributed) is bool


def test_unattributed_content_says_so_with_false() -> None:
    decision = decide(make_install(media_source="organic"), ALL_SCOPES, ADAPTER, NOW_S)
    assert isinstance(decision, Send)
    assert decision.content.attributed is False


def test_each_rule_has_a_title_for_explain() -> None:
    assert [(rule.value, rule.title) for rule in Rule] == [
        (1, "app configured and active"),
        (2, "not blocked or rejected as fraud"),
        (3, "first install / in-app postbacks enabled"),
        (4, "attribution scope and primary copy"),
        (5, "in-app postback window"),
        (6, "event mapping"),
        (7, "consent to share data for advertising"),
        (8, "event age"),
        (9, "revenue"),
    ]


def ids(event: Event) -> Identifiers:
    """A default factory event's identifiers, every one of them allowed."""
    return Identifiers(event.idfa, event.idfv, None, None, None, None, event.ip, event.user_agent)


def test_what_the_rules_hand_the_partner_whole() -> None:
    app = TIKTOK.apps[0]
    install, purchase = make_install(), make_in_app()
    cart = make_in_app(event_name="af_add_to_cart", event_value=json.dumps(
        {"af_revenue": "3", "af_content_id": "sku-9", "color": "red"}))  # fmt: skip
    organic = make_install(media_source="organic")
    contents = [decide(event, partner, ADAPTER, NOW_S).content  # type: ignore[union-attr]
                for event, partner in ((install, TIKTOK), (purchase, TIKTOK), (cart, TIKTOK),
                                       (organic, ALL_SCOPES))]  # fmt: skip
    assert contents == [
        PostbackContent(install, app, None, True, {}, {}, None, False, None, ids(install)),
        PostbackContent(purchase, app, "Pay(Purchase)", True, purchase.params,
                        {"content_id": "sku-1"}, Money(Decimal("9.99"), "USD"), False, None,
                        ids(purchase)),
        PostbackContent(cart, app, "Add_to_cart", True, {"af_content_id": "sku-9", "color": "red"},
                        {"content_id": "sku-9"}, None, True, None, ids(cart)),
        PostbackContent(organic, ALL_SCOPES.apps[0], None, False, {}, {}, None, False, None,
                        ids(organic)),
    ]  # fmt: skip
