"""A corpus of AppsFlyer Push API V2 records, decided and built as the worker would.

The records under `tests/corpus/appsflyer/` are written in the shape AppsFlyer sends: the raw data
V5 field list (support.appsflyer.com 207034356 "Push API V2.0"; the same names as airbytehq/airbyte's
`source-appsflyer` field list, with Push API's `contributor_N_*` spelling seen in
rudderlabs/rudder-transformer's AppsFlyer fixtures), times as `yyyy-mm-dd hh:mm:ss.sss` in UTC,
`event_value` as a JSON string, no event id, and the attribution link in `original_url` with
TikTok's click id in `clickid` (filled from `__CALLBACK_PARAM__`, TikTok's AppsFlyer guide). Some
are written as older Push API does (every field, blank ones `null`), some as newer Push API does
(blank fields left out), one as a GET-style collector does (every value a string).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dispatcher.inputs import BadInput
from dispatcher.partners.tiktok import TikTokAdapter
from dispatcher.rules import Send, decide
from schemas.events import Event
from tests.factories import NOW_S, app_dict, decode, make_partner

CORPUS = Path(__file__).parent / "corpus" / "appsflyer"
PARTNER = make_partner(
    app_dict(),  # id1234567890: view-through off, scope attributed, window 180d
    app_dict(app_id="com.example.app", tiktok_app_id="7300000000000000002", view_through=True,
             install_scope="all", in_app={"scope": "all", "window": "lifetime"}),
)  # fmt: skip
TIKTOK_AD = {"campaign_id": "1780001234567890", "ad_id": "1790001234567890",
             "creative_id": "1800001234567890", "is_retargeting": False, "attributed": True}  # fmt: skip
NOT_ATTRIBUTED = {"is_retargeting": False, "attributed": False}
# iOS records carry no `att` (Push API sends it only when selected): no att_status is sent
IOS_USER = {
    "idfa": "6D92078A-8246-4BA4-AE5B-76104861E7DC", "idfv": "0C7B1C55-7A4C-4E5B-9D3E-3F1B2A1D0E9F",
    "ip": "203.0.113.7", "user_agent": "Example/3.4.1 CFNetwork/1494.0.7 Darwin/23.4.0",
    "locale": "en-US",
}  # fmt: skip
ANDROID_USER = {
    "gaid": "3f2504e0-4f89-41d3-9a0c-0305e82c3301", "ip": "198.51.100.23",
    "user_agent": "Dalvik/2.1.0 (Linux; U; Android 14; Pixel 8 Build/AP2A.240805.005)",
    "att_status": "NOT_APPLICABLE",
}  # fmt: skip
IOS_APP = {"app_id": "1234567890", "app_name": "Example", "app_version": "3.4.1"}
ANDROID_APP = {"app_id": "com.example.app", "app_name": "Example", "app_version": "3.4.0"}

# file → (topic, decision, reason, the event id, what the payload must hold); the ids are the
# recipe's, computed outside the worker (sha256 over five netstrings).
TABLE: dict[str, tuple[str, str, str, str, dict[str, Any] | None]] = {
    "install_tiktok_click": ("install", "send", "attributed", "a3664e30b158858632cbbe9ce85929b2", {
        "event": "InstallApp", "event_time": 1763542803, "user": IOS_USER,
        "app": IOS_APP,
        "ad": {"callback": "E.C.P.CmQKSH7gS2xv8Xh0dGVzdA=="} | TIKTOK_AD}),
    "install_tiktok_view_through": ("install", "send", "attributed", "0e6468dcf56d214262d4deabe01ac523", {
        "event": "InstallApp", "event_time": 1763558055, "user": ANDROID_USER,
        "app": ANDROID_APP,
        "ad": {"callback": "E.C.P.vta9Q1"} | TIKTOK_AD}),
    "install_tiktok_srn": ("install", "send", "attributed", "73c8dcd3821a4106680a4cd80dc34246", {
        "event": "InstallApp", "event_time": 1763548200, "user": IOS_USER,
        "app": IOS_APP, "ad": TIKTOK_AD}),
    "install_organic_ios": ("install", "skip", "out_of_scope", "53766da54811f3c8971355f4c9a987a0", None),
    "install_organic_android_scope_all": ("install", "send", "scope_all", "57a8b82624f467b47126371377225dd2", {
        "event": "InstallApp", "event_time": 1763550300, "user": ANDROID_USER,
        "app": ANDROID_APP, "ad": NOT_ATTRIBUTED}),
    "install_other_network": ("install", "skip", "out_of_scope", "44e5b1bbb6ec629fe9036426e4bf4cab", None),
    "install_restricted": ("install", "send", "scope_all", "7b8d6dbd9fa66bba7d1a715de5f2522f", {
        "event": "InstallApp", "event_time": 1763555400, "user": ANDROID_USER,
        "app": ANDROID_APP, "ad": NOT_ATTRIBUTED}),
    "install_reinstall": ("install", "skip", "not_a_new_install", "54e8768e82b0b130012d363b9dec9f22", None),
    "install_re_engagement": ("install", "skip", "not_a_new_install", "bdef963825181f46d51dcc9d1d8539a0", None),
    "in_app_purchase": ("in-app-event", "send", "attributed", "42182de401938723396ff69c9fdf3bf0", {
        "event": "Purchase", "event_time": 1763664069, "user": IOS_USER,
        "app": IOS_APP,
        "ad": {"callback": "E.C.P.CmQKSH7gS2xv8Xh0dGVzdA=="} | TIKTOK_AD,
        "properties": {"af_revenue": "9.99", "af_currency": "USD",
                       "contents": [{"content_id": "gems_500", "quantity": 1}],
                       "order_id": "GPA.3391-0102", "value": 9.99, "currency": "USD"}}),
    "in_app_registration_get_style": ("in-app-event", "send", "attributed", "8852fa1450eab9114ba362b8dd3d4b67", {
        "event": "Registration", "event_time": 1763708400, "user": IOS_USER,
        "app": IOS_APP,
        "ad": {"callback": "E.C.P.CmQKSH7gS2xv8Xh0dGVzdA=="} | TIKTOK_AD,
        "properties": {"af_registration_method": "apple"}}),
    "in_app_add_to_cart_object_value": ("in-app-event", "send", "attributed", "1619ba82d0954bd3d6e2a6dd1b6688d3", {
        "event": "AddToCart", "event_time": 1763712000, "user": IOS_USER,
        "app": IOS_APP,
        "ad": {"callback": "E.C.P.CmQKSH7gS2xv8Xh0dGVzdA=="} | TIKTOK_AD,
        # revenue stripped: no af_revenue, no value
        "properties": {"af_currency": "USD",
                       "contents": [{"content_id": "gems_100", "quantity": 2, "price": 1.99}]}}),
    "in_app_re_engagement_primary": ("in-app-event", "send", "attributed", "60f93976c79234018071f2f461f01f88", {
        "event": "Purchase", "event_time": 1763755262, "user": ANDROID_USER,
        "app": ANDROID_APP,
        "ad": {"callback": "E.C.P.rtg42"} | TIKTOK_AD | {"is_retargeting": True},
        "properties": {"af_revenue": "4.99", "af_currency": "EUR",
                       "contents": [{"content_id": "coins_1200"}],
                       "order_id": "GPA.7788-1234", "value": 4.99, "currency": "EUR"}}),
    "in_app_re_engagement_secondary": ("in-app-event", "skip", "secondary_attribution", "60f93976c79234018071f2f461f01f88", None),
    "in_app_v1_event_type": ("in-app-event", "send", "attributed", "549c68fb116d72025644ee4a1e93a1fc", {
        "event": "Registration", "event_time": 1763802000, "user": IOS_USER,
        "app": IOS_APP,
        "ad": {"callback": "E.C.P.CmQKSH7gS2xv8Xh0dGVzdA=="} | TIKTOK_AD}),
    "in_app_unmapped": ("in-app-event", "skip", "unmapped_event", "665ebb77987669704aa714ce9208e1f2", None),
    "in_app_organic": ("in-app-event", "skip", "out_of_scope", "b17d416d431bdd7b526abf07821b6e9c", None),
}  # fmt: skip


def read(name: str) -> tuple[bytes, dict[str, Any]]:
    raw = (CORPUS / f"{name}.json").read_bytes()
    return raw, json.loads(raw)


def test_the_table_covers_the_whole_corpus() -> None:
    assert sorted(path.stem for path in CORPUS.glob("*.json")) == sorted(TABLE)


@pytest.mark.parametrize("name", sorted(TABLE))
def test_corpus_decisions_and_payloads(name: str) -> None:
    topic, decision, reason, event_id, payload = TABLE[name]
    raw, record = read(name)
    assert "event_id" not in record  # AppsFlyer sends none
    event = decode(raw, topic)
    assert isinstance(event, Event), event
    assert (event.event_id, event.event_id_derived) == (event_id, True)
    result = decide(event, PARTNER, TikTokAdapter(), NOW_S)
    assert (("send" if isinstance(result, Send) else "skip"), str(result.reason)) == (
        decision, reason), result.detail  # fmt: skip
    if isinstance(result, Send):
        assert payload is not None
        assert result.payload == {"event_id": event_id} | payload
        assert result.destination == PARTNER.app(event.app_id).destination  # type: ignore[union-attr]


def test_both_copies_of_a_re_engagement_event_share_their_id_and_only_one_is_sent() -> None:
    primary = decode(read("in_app_re_engagement_primary")[0], "in-app-event")
    secondary = decode(read("in_app_re_engagement_secondary")[0], "in-app-event")
    assert isinstance(primary, Event)
    assert isinstance(secondary, Event)
    assert primary.event_id == secondary.event_id
    assert (primary.is_primary, secondary.is_primary) == (True, False)
    assert (primary.media_source, secondary.media_source) == (
        "bytedanceglobal_int",
        "googleadwords_int",
    )


@pytest.mark.parametrize("name", sorted(TABLE))
def test_a_corpus_record_on_the_other_topic_is_bad_input(name: str) -> None:
    topic, *_ = TABLE[name]
    raw, record = read(name)
    other = "install" if topic == "in-app-event" else "in-app-event"
    result = decode(raw, other)
    if record.get("event_type"):
        assert isinstance(result, BadInput)
        assert "does not match its topic" in result.detail


def test_no_two_different_events_share_a_derived_id() -> None:
    """Across the corpus and 20,000 records of the demo's generator, only the two attribution
    copies of one event share an id."""
    from dispatcher.devtools.samples import SampleGenerator

    ids: dict[str, list[str]] = {}
    for name, (topic, *_rest) in TABLE.items():
        event = decode(read(name)[0], topic)
        assert isinstance(event, Event)
        ids.setdefault(event.event_id, []).append(name)
    for sample in SampleGenerator(seed=5).generate(20_000):
        event = decode(sample.encode(), sample.event_type)
        if isinstance(event, Event):
            label = "copies" if sample.case == "in_app_re_engagement_copies" else sample.case
            ids.setdefault(event.event_id, []).append(label)
    shared = {event_id: names for event_id, names in ids.items() if len(names) > 1}
    assert all(set(names) == {"copies"} for names in shared.values() if "copies" in names)
    assert {tuple(names) for names in shared.values() if "copies" not in names} == {
        ("in_app_re_engagement_primary", "in_app_re_engagement_secondary")
    }
    assert all(len(names) == 2 for names in shared.values())
