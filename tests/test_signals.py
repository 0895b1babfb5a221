"""Fraud, consent and age: AppsFlyer's own signals decide too (rules 2, 7 and 8).

Field names and values, from AppsFlyer's documentation (the docs' "Fraud, consent and age" page
lists them with their sources):
- `blocked_reason`, `blocked_reason_value`, `blocked_sub_reason`, `blocked_reason_rule`,
  `rejected_reason`, `rejected_reason_value`: raw data V5 fields (Pull API `additional_fields`,
  the raw data field dictionary, support.appsflyer.com 208387843); `blocked_reason_rule` is
  older, still read when present.
- `gdpr_applies`, `ad_user_data_enabled`, `ad_personalization_enabled`: true/false, in Push API
  and Data Locker since mid-2024 (AppsFlyer's "DMA in raw data reports").
- `att`: Apple's `authorized`, `denied`, `not_determined`, `restricted`, and AppsFlyer's own
  `af_authorized`, `af_unavailable`, `af_unknown` (support.appsflyer.com 360014090597); the IDFA is
  all zeros when it is unavailable, and `is_lat` is to be disregarded on iOS 14 and later.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from dispatcher.inputs import BadInput
from dispatcher.partners.oceanengine import OceanEngineAdapter
from dispatcher.partners.tiktok import TikTokAdapter
from dispatcher.rules import Rule, Send, Skip, SkipReason, decide
from schemas.events import Att, Event, FraudMark
from tests.factories import (
    INSTALL_TIME,
    NOW_S,
    app_dict,
    decode,
    event_dict,
    make_in_app,
    make_install,
    make_oe_in_app,
    make_oe_partner,
    make_partner,
    oe_app_dict,
    raw,
)

TIKTOK = TikTokAdapter()
OCEAN_ENGINE = OceanEngineAdapter()
ZERO_ID = "00000000-0000-0000-0000-000000000000"
DAY_S = 86_400.0


def decide_tiktok(event: Event, now_s: float = NOW_S, **app: Any) -> Send | Skip:
    return decide(event, make_partner(app_dict(**app)), TIKTOK, now_s)


# --- decoding ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("authorized", Att.AUTHORIZED),
        ("af_authorized", Att.AUTHORIZED),
        ("denied", Att.DENIED),
        ("not_determined", Att.NOT_DETERMINED),
        ("restricted", Att.RESTRICTED),
        ("af_unavailable", Att.UNAVAILABLE),
        ("af_unknown", Att.UNKNOWN),
        ("Denied", Att.DENIED),  # case is not AppsFlyer's to vary, but costs nothing to accept
        ("something_new", Att.UNKNOWN),
        ("", None),
        (None, None),
    ],
)
def test_every_documented_att_value_is_read(value: str | None, expected: Att | None) -> None:
    assert make_install(att=value).att == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), ("true", True), (False, False), ("false", False), ("", None), (None, None),
     ("TRUE", True), ("False", False)],
)  # fmt: skip
def test_consent_flags_are_read_in_every_spelling(value: object, expected: bool | None) -> None:
    event = make_install(
        gdpr_applies=value, ad_user_data_enabled=value, ad_personalization_enabled=value
    )
    assert (event.gdpr_applies, event.ad_user_data, event.ad_personalization) == (expected,) * 3


@pytest.mark.parametrize("field", ["gdpr_applies", "ad_user_data_enabled", "is_lat"])
def test_an_unreadable_consent_flag_is_bad_input(field: str) -> None:
    result = decode(raw(event_dict("install", **{field: "maybe"})), "install")
    assert isinstance(result, BadInput)
    assert result.detail == f"{field}: must be true or false (or the string of one) (got 'maybe')"


@pytest.mark.parametrize(
    ("fields", "blocked", "rejected"),
    [
        ({"blocked_reason": "click_flood"}, FraudMark("click_flood"), None),
        ({"blocked_reason": "ctit_anomalies", "blocked_reason_value": "4",
          "blocked_sub_reason": "short_ctit", "blocked_reason_rule": "rule_1"},
         FraudMark("ctit_anomalies", "4", "short_ctit", "rule_1"), None),
        ({"blocked_reason": "  ", "blocked_reason_value": "4"}, None, None),
        ({"blocked_reason": None, "blocked_sub_reason": "x"}, None, None),
        ({"rejected_reason": "validation_rule", "rejected_reason_value": "geo"}, None,
         FraudMark("validation_rule", "geo")),
        ({"rejected_reason": ""}, None, None),
        ({}, None, None),
    ],
)  # fmt: skip
def test_blocked_and_rejected_records_are_read(
    fields: dict[str, Any], blocked: FraudMark | None, rejected: FraudMark | None
) -> None:
    event = make_in_app(**fields)
    assert (event.blocked, event.rejected) == (blocked, rejected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("en-US", "en-US"), ("en_GB", "en-GB"), ("zh-Hans-CN", "zh-Hans-CN"), ("fr", "fr"),
     ("English", None), ("", None), (None, None), ("en US", None)],
)  # fmt: skip
def test_the_language_is_kept_only_as_a_bcp_47_tag(value: str | None, expected: str | None) -> None:
    assert make_install(language=value).language == expected


def test_an_absent_signal_is_no_signal() -> None:
    event = make_install()
    assert (event.blocked, event.rejected, event.gdpr_applies, event.att) == (None,) * 4
    assert event.limit_ad_tracking is False


# --- rule 2: fraud -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["install", "in-app-event"])
@pytest.mark.parametrize("send_rejected", [False, True])
def test_a_blocked_record_is_never_sent(kind: str, send_rejected: bool) -> None:
    event = decode(raw(event_dict(kind, blocked_reason="click_flood")), kind)
    assert isinstance(event, Event)
    decision = decide_tiktok(event, send_rejected=send_rejected)
    assert isinstance(decision, Skip)
    assert (decision.rule, decision.reason) == (Rule.FRAUD, SkipReason.FRAUD_BLOCKED)
    assert decision.detail == "blocked as fraud: click_flood"


def test_fraud_is_judged_before_the_install_kind() -> None:
    # A blocked reinstall says why it is not sent by its first reason: the fraud
    blocked_reinstall = make_install(
        event_type="reinstall", conversion_type="reinstall", blocked_reason="bots"
    )
    assert decide_tiktok(blocked_reinstall).reason is SkipReason.FRAUD_BLOCKED
    # ... and after the app's own: an inactive app is inactive whatever the record says
    assert decide_tiktok(blocked_reinstall, active=False).reason is SkipReason.PARTNER_INACTIVE


def test_a_rejected_event_is_sent_only_where_the_app_says_send_rejected() -> None:
    event = make_in_app(rejected_reason="validation_rule", rejected_reason_value="geo")
    skipped = decide_tiktok(event)
    assert isinstance(skipped, Skip)
    assert (skipped.rule, skipped.reason) == (Rule.FRAUD, SkipReason.FRAUD_REJECTED)
    assert skipped.detail == (
        "rejected by validation rules: validation_rule, value geo (send_rejected is false)"
    )
    assert isinstance(decide_tiktok(event, send_rejected=True), Send)


# --- rule 7: consent -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gdpr_applies", "ad_user_data", "owed"),
    [
        (True, True, True),
        (True, False, False),
        (True, None, False),  # consent not given is not consent
        (False, False, True),  # not under the GDPR: the rule does not apply
        (False, None, True),
        (None, False, True),
        (None, None, True),
    ],
)
def test_consent_to_share_data_for_advertising(
    gdpr_applies: bool | None, ad_user_data: bool | None, owed: bool
) -> None:
    event = make_in_app(gdpr_applies=gdpr_applies, ad_user_data_enabled=ad_user_data)
    decision = decide_tiktok(event)
    if owed:
        assert isinstance(decision, Send), decision.detail
        assert decision.content.limited is False
    else:
        assert isinstance(decision, Skip)
        assert (decision.rule, decision.reason) == (Rule.CONSENT, SkipReason.NO_CONSENT)
        assert decision.detail == (
            f"gdpr_applies is true and ad_user_data_enabled is "
            f"{'absent' if ad_user_data is None else 'false'} (without_consent is skip)"
        )


def test_personalisation_consent_alone_does_not_decide() -> None:
    event = make_in_app(
        gdpr_applies=True, ad_user_data_enabled=True, ad_personalization_enabled=False
    )
    assert isinstance(decide_tiktok(event), Send)


def test_without_consent_limited_sends_no_identifier_and_says_so_to_tiktok() -> None:
    event = make_in_app(gdpr_applies=True, ad_user_data_enabled=False)
    decision = decide_tiktok(event, consent={"without_consent": "limited"})
    assert isinstance(decision, Send)
    assert decision.content.limited is True
    assert decision.payload["limited_data_use"] is True
    assert "user" not in decision.payload
    assert "sent limited (no consent to share data for advertising)" in decision.detail


def test_without_consent_limited_sends_ocean_engine_no_device() -> None:
    event = make_oe_in_app(gdpr_applies=True, ad_user_data_enabled=False)
    partner = make_oe_partner(oe_app_dict(consent={"without_consent": "limited"}))
    decision = decide(event, partner, OCEAN_ENGINE, NOW_S)
    assert isinstance(decision, Send), decision.detail
    assert "device" not in decision.payload["context"]
    assert decision.payload["context"]["ad"]["callback"]  # matched by the click id alone


def test_a_consenting_user_is_sent_whole() -> None:
    event = make_in_app(gdpr_applies=True, ad_user_data_enabled=True)
    decision = decide_tiktok(event, consent={"without_consent": "limited"})
    assert isinstance(decision, Send)
    assert "limited_data_use" not in decision.payload
    assert set(decision.payload["user"]) >= {"idfa", "idfv", "ip", "user_agent"}


# --- identifiers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "idfa", "gaid"),
    [
        ({"idfa": ZERO_ID}, False, False),
        ({"idfa": "6D92078A-8246-4BA4-AE5B-76104861E7DC"}, True, False),
        ({"idfa": "6D92078A-8246-4BA4-AE5B-76104861E7DC", "is_lat": True}, True, False),  # iOS
        ({"platform": "android", "idfa": None, "advertising_id": "3f2504e0-4f89-41d3-9a0c-0305e82c3301"}, False, True),
        ({"platform": "android", "idfa": None, "advertising_id": "3f2504e0-4f89-41d3-9a0c-0305e82c3301",
          "is_lat": "true"}, False, False),
        ({"platform": "android", "idfa": None, "advertising_id": ZERO_ID}, False, False),
        ({"platform": "android", "idfa": None, "advertising_id": "3f2504e0-4f89-41d3-9a0c-0305e82c3301",
          "is_lat": False}, False, True),
    ],
)  # fmt: skip
def test_identifier_rules(fields: dict[str, Any], idfa: bool, gaid: bool) -> None:
    """Never an all-zero id; no advertising id under Android's limited ad tracking; `is_lat`
    disregarded on iOS (AppsFlyer: use ATT there)."""
    decision = decide_tiktok(make_install(**fields))
    assert isinstance(decision, Send)
    user = decision.payload.get("user", {})
    assert ("idfa" in user, "gaid" in user) == (idfa, gaid)
    assert ZERO_ID not in json.dumps(decision.payload)


# --- rule 8: age ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age_s", "owed"),
    [(0.0, True), (28 * DAY_S - 0.001, True), (28 * DAY_S, True), (28 * DAY_S + 0.001, False),
     (40 * DAY_S, False), (-3600.0, True)],
)  # fmt: skip
@pytest.mark.parametrize("kind", ["install", "in-app-event"])
def test_tiktok_takes_events_up_to_28_days_old_inclusive(
    kind: str, age_s: float, owed: bool
) -> None:
    event = decode(raw(event_dict(kind)), kind)
    assert isinstance(event, Event)
    decision = decide_tiktok(event, now_s=event.event_time_s + age_s)
    if owed:
        assert isinstance(decision, Send), decision.detail
    else:
        assert isinstance(decision, Skip)
        assert (decision.rule, decision.reason) == (Rule.AGE, SkipReason.TOO_OLD)


def test_too_old_says_how_old_in_words() -> None:
    event = make_in_app()
    decision = decide_tiktok(event, now_s=event.event_time_s + 40 * DAY_S + 3 * 3600 + 5)
    assert decision.detail == "40d 3h 5s old, past tiktok's max_event_age of 28d"


def test_max_event_age_is_per_partner_and_lifetime_means_any_age() -> None:
    event = make_in_app()
    later = event.event_time_s + 400 * DAY_S
    assert isinstance(decide(event, make_partner(delivery={"max_event_age": "lifetime"}), TIKTOK,
                             later), Send)  # fmt: skip
    short = make_partner(delivery={"max_event_age": "2h"})
    assert decide(event, short, TIKTOK, event.event_time_s + 7200).reason != SkipReason.TOO_OLD
    assert decide(event, short, TIKTOK, event.event_time_s + 7201).reason is SkipReason.TOO_OLD
    oe_event = make_oe_in_app()
    assert isinstance(decide(oe_event, make_oe_partner(), OCEAN_ENGINE, later), Send)


@pytest.mark.parametrize(
    ("value", "message"),
    [("45", "'45' is not a duration"), ("30m", "30m is out of range; allowed: 1h to 365d"),
     ("400d", "400d is out of range"), (3, "3 is not a duration")],
)  # fmt: skip
def test_max_event_age_is_validated(value: object, message: str) -> None:
    with pytest.raises(ValidationError) as raised:
        make_partner(delivery={"max_event_age": value})
    assert message in str(raised.value)
    assert "or write `lifetime`" in str(raised.value)


@pytest.mark.parametrize(
    ("app", "path", "allowed"),
    [({"consent": {"without_consent": "maybe"}}, "consent.without_consent", "'skip' or 'limited'"),
     ({"send_rejected": "sometimes"}, "send_rejected", "a valid boolean")],
)  # fmt: skip
def test_consent_and_fraud_settings_are_validated(
    app: dict[str, Any], path: str, allowed: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        make_partner(app_dict(**app))
    assert f"apps.0.{path}" in str(raised.value)
    assert allowed in str(raised.value)


def test_rules_run_in_order_consent_before_age() -> None:
    old_without_consent = make_in_app(gdpr_applies=True, ad_user_data_enabled=False)
    decision = decide_tiktok(
        old_without_consent, now_s=old_without_consent.event_time_s + 90 * DAY_S
    )
    assert decision.reason is SkipReason.NO_CONSENT
    unmapped_blocked = make_in_app(event_name="af_level_up", blocked_reason="bots")
    assert decide_tiktok(unmapped_blocked).reason is SkipReason.FRAUD_BLOCKED


# --- properties ----------------------------------------------------------------------------------

SIGNAL_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "gdpr_applies": st.sampled_from([True, False, "true", "false", None, ""]),
        "ad_user_data_enabled": st.sampled_from([True, False, "true", "false", None, ""]),
        "att": st.sampled_from(["authorized", "denied", "af_unavailable", None]),
        "is_lat": st.sampled_from([True, False, None]),
        "rejected_reason": st.sampled_from(["validation_rule", None]),
        "idfa": st.sampled_from([ZERO_ID, "6D92078A-8246-4BA4-AE5B-76104861E7DC", None]),
        "advertising_id": st.sampled_from([ZERO_ID, "3f2504e0-4f89-41d3-9a0c-0305e82c3301", None]),
        "media_source": st.sampled_from(["bytedanceglobal_int", "organic", "bytedance_int"]),
        "event_name": st.sampled_from(["af_purchase", "af_add_to_cart", "af_level_up"]),
    },
)
APP_SETTINGS = st.fixed_dictionaries(
    {
        "send_rejected": st.booleans(),
        "consent": st.fixed_dictionaries({"without_consent": st.sampled_from(["skip", "limited"])}),
        "install_scope": st.sampled_from(["attributed", "all"]),
        "view_through": st.booleans(),
        "in_app": st.fixed_dictionaries(
            {
                "scope": st.sampled_from(["attributed", "all"]),
                "window": st.sampled_from(["lifetime", "1h", "180d"]),
            }
        ),
    }
)
AGES_S = st.floats(min_value=-DAY_S, max_value=400 * DAY_S)
MAX_AGES = st.sampled_from(["lifetime", "1h", "28d", "365d"])


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["install", "in-app-event"]), SIGNAL_FIELDS, APP_SETTINGS, AGES_S, MAX_AGES)
def test_a_blocked_record_is_never_sent_to_any_partner_under_any_config(
    kind: str, fields: dict[str, Any], app: dict[str, Any], age_s: float, max_age: str
) -> None:
    event = decode(raw(event_dict(kind, blocked_reason="bots", **fields)), kind)
    assert isinstance(event, Event)
    now_s = event.event_time_s + age_s
    tiktok = make_partner(app_dict(**app), delivery={"max_event_age": max_age})
    ocean_app = {k: v for k, v in app.items() if k not in ("install_scope", "in_app")}
    ocean = make_oe_partner(oe_app_dict(**ocean_app), delivery={"max_event_age": max_age})
    for partner, adapter in ((tiktok, TIKTOK), (ocean, OCEAN_ENGINE)):
        decision = decide(event, partner, adapter, now_s)
        assert isinstance(decision, Skip)
        assert decision.reason is SkipReason.FRAUD_BLOCKED


IDENTIFYING = ("6D92078A", "3f2504e0", "0C7B1C55", "203.0.113.7", "CFNetwork", "6c1a5b2f",
               "9774d56d682e549c", "867530912345678")  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["install", "in-app-event"]), SIGNAL_FIELDS, APP_SETTINGS)
def test_limited_never_carries_an_identifier(
    kind: str, fields: dict[str, Any], app: dict[str, Any]
) -> None:
    fields = fields | {"gdpr_applies": True, "ad_user_data_enabled": False, "oaid": "6c1a5b2f-0d9e",
                       "android_id": "9774d56d682e549c", "imei": "867530912345678"}  # fmt: skip
    event = decode(raw(event_dict(kind, **fields)), kind)
    assert isinstance(event, Event)
    app = app | {"consent": {"without_consent": "limited"}}
    ocean_app = {k: v for k, v in app.items() if k not in ("install_scope", "in_app")}
    for partner, adapter in (
        (make_partner(app_dict(**app)), TIKTOK),
        (make_oe_partner(oe_app_dict(**ocean_app)), OCEAN_ENGINE),
    ):
        decision = decide(event, partner, adapter, event.event_time_s)
        if isinstance(decision, Send):
            body = adapter.encode_request(decision.destination, [decision.payload]).decode()
            assert not [part for part in IDENTIFYING if part in body], body
            assert "imei" not in body
            assert decision.content.limited


def test_the_install_time_lookback_is_untouched_by_age() -> None:
    """Age is the event's, not the install's: an in-app event of an install older than the
    partner's age is sent when the event itself is recent."""
    event = make_in_app(event_time=INSTALL_TIME + timedelta(days=100))
    assert isinstance(decide_tiktok(event, now_s=event.event_time_s + DAY_S), Send)


# --- explain -------------------------------------------------------------------------------------


def test_explain_names_the_rule_of_each_signal_and_decides_at_now() -> None:
    from tests.test_cli import EXAMPLE, dispatcher

    records = [
        event_dict("install", blocked_reason="click_flood", blocked_reason_value="12"),
        event_dict("in-app-event", rejected_reason="validation_rule"),
        event_dict("in-app-event", gdpr_applies=True, ad_user_data_enabled=False),
        event_dict("in-app-event"),
    ]
    lines = "\n".join(json.dumps(record) for record in records)
    # Decided the day after the install, every record is judged by its own signal
    result = dispatcher("explain", "--config", str(EXAMPLE), "--json", "--now",
                        "2025-11-20T09:00:00Z", "-", stdin=lines)  # fmt: skip
    assert result.returncode == 0, result.stderr
    tiktok = [
        next(d for d in e["decisions"] if d["partner"] == "tiktok")
        for e in json.loads(result.stdout)
    ]
    assert [(d["reason"], d["rule"], d["rule_title"]) for d in tiktok] == [
        ("fraud_blocked", 2, "not blocked or rejected as fraud"),
        ("fraud_rejected", 2, "not blocked or rejected as fraud"),
        ("no_consent", 7, "consent to share data for advertising"),
        ("attributed", 9, "revenue"),
    ]
    assert tiktok[0]["detail"] == "blocked as fraud: click_flood, value 12"
    # Decided now, a year later, the purchase is too old for TikTok
    later = dispatcher("explain", "--config", str(EXAMPLE), "-", stdin=json.dumps(records[3]))
    assert "decision: skip (too_old)" in later.stdout
    assert "rule 8 (event age):" in later.stdout
    assert "past tiktok's max_event_age of 28d" in later.stdout


@pytest.mark.parametrize("now", ["yesterday", "2025-13-01", "3 days"])
def test_explain_refuses_a_moment_it_cannot_read(now: str) -> None:
    from tests.test_cli import EXAMPLE, dispatcher

    result = dispatcher("explain", "--config", str(EXAMPLE), "--now", now, "-",
                        stdin=json.dumps(event_dict("install")))  # fmt: skip
    assert result.returncode == 2
    assert "--now:" in result.stderr
    assert "write ISO 8601 (2026-12-01T00:00:00Z) or a duration ago (30m, 2h, 3d)" in result.stderr


def test_explain_reads_a_record_as_from_the_topic_given() -> None:
    from tests.test_cli import EXAMPLE, dispatcher

    in_app = json.dumps(event_dict("in-app-event"))
    result = dispatcher(
        "explain", "--config", str(EXAMPLE), "--topic", "installs", "-", stdin=in_app
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(
        "bad input on the installs topic -> dead letter (reason bad_input)"
    )
    assert "does not match its topic" in result.stdout
    same = dispatcher("explain", "--config", str(EXAMPLE), "--topic", "in_app_events", "--now",
                      "2025-11-20T09:00:00Z", "-", stdin=in_app)  # fmt: skip
    assert "in-app event af_purchase" in same.stdout


def test_parse_moment_reads_iso_and_durations_ago() -> None:
    from dispatcher.moments import parse_moment

    assert parse_moment("2026-12-01T00:00:00Z", 0) == 1_796_083_200
    assert parse_moment("2026-12-01 00:00:00", 0) == 1_796_083_200  # UTC when no offset
    assert parse_moment("2026-12-01T02:00:00+02:00", 0) == 1_796_083_200
    assert parse_moment("2h", 10_000.0) == 10_000.0 - 7200
    assert parse_moment(" 3d ", 1e6) == 1e6 - 3 * 86400


# --- corpus --------------------------------------------------------------------------------------

SIGNALS = Path(__file__).parent / "corpus" / "appsflyer" / "signals"
# file → (topic, decision or skip reason, what the TikTok payload's user holds), decided the day
# after the corpus's installs (NOW_S)
SIGNAL_CORPUS: dict[str, tuple[str, str, set[str] | None]] = {
    "install_blocked_click_flood": ("install", "fraud_blocked", None),
    "in_app_blocked_bots": ("in-app-event", "fraud_blocked", None),
    "in_app_rejected": ("in-app-event", "fraud_rejected", None),
    "in_app_no_consent": ("in-app-event", "no_consent", None),
    "in_app_consent_given": ("in-app-event", "send", {"idfa", "idfv", "ip", "user_agent"}),
    "install_android_lat": ("install", "send", {"ip", "user_agent"}),
    "install_ios_att_denied_zero_idfa": ("install", "send", {"idfv", "ip", "user_agent"}),
    "in_app_old_purchase": ("in-app-event", "too_old", None),
}
CORPUS_PARTNER = make_partner(
    app_dict(), app_dict(app_id="com.example.app", tiktok_app_id="7300000000000000002")
)


def test_the_signal_table_covers_the_signal_corpus() -> None:
    assert sorted(path.stem for path in SIGNALS.glob("*.json")) == sorted(SIGNAL_CORPUS)


@pytest.mark.parametrize("name", sorted(SIGNAL_CORPUS))
def test_signal_corpus_decisions(name: str) -> None:
    topic, expected, user = SIGNAL_CORPUS[name]
    event = decode((SIGNALS / f"{name}.json").read_bytes(), topic)
    assert isinstance(event, Event), event
    decision = decide(event, CORPUS_PARTNER, TIKTOK, NOW_S)
    if user is None:
        assert isinstance(decision, Skip)
        assert str(decision.reason) == expected, decision.detail
    else:
        assert isinstance(decision, Send), decision.detail
        assert set(decision.payload.get("user", {})) - {"att_status", "locale"} == user
