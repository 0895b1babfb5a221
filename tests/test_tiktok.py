"""TikTok payload: user fields, ad fields, properties; and reading TikTok's answers."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from pydantic import ValidationError

from dispatcher.outcomes import AttemptKind, AttemptResult
from dispatcher.partners.answers import parse_retry_after
from dispatcher.partners.tiktok.adapter import UNLISTED_CODE, TikTokAdapter, store_app_id
from dispatcher.partners.tiktok.wire import TIKTOK_CURRENCIES, TIKTOK_EVENTS, TikTokRequest
from dispatcher.rules import Send, decide
from tests.factories import (
    AD_ID,
    ADSET_ID,
    CAMPAIGN_ID,
    NOW_S,
    app_dict,
    click_url,
    make_in_app,
    make_install,
    make_partner,
)

ADAPTER = TikTokAdapter()


def payload_of(event, **app):  # type: ignore[no-untyped-def]
    decision = decide(event, make_partner(app_dict(**app)), ADAPTER, NOW_S)
    assert isinstance(decision, Send), decision
    return decision.payload


def test_the_table_has_the_seeds_27_identifiers() -> None:
    assert len(TIKTOK_EVENTS) == 27
    assert TIKTOK_EVENTS["Pay(Purchase)"] == "Purchase"
    assert TIKTOK_EVENTS["2D_retention"] == "2Dretention"
    assert TIKTOK_EVENTS["Launch_app"] == "LaunchAPP"
    assert TIKTOK_EVENTS["InApp_ad_impr"] == "InAppADImpr"


def test_install_payload_matches_the_wire_format() -> None:
    event = make_install(
        idfa="6d92078a-8246-4ba4-ae5b-76104861e7dc",
        advertising_id="ABCDEF01-2345-6789-ABCD-EF0123456789",
        android_id="a1b2c3",
        event_time="2025-11-20T10:00:00Z",
        original_url=click_url("E.C.P.2f9a"),
    )
    payload = payload_of(event)
    assert payload == {
        "event": "InstallApp",
        "event_time": 1763632800,
        "event_id": event.event_id,
        "user": {
            "idfa": "6D92078A-8246-4BA4-AE5B-76104861E7DC",
            "idfv": event.idfv,
            "gaid": "abcdef01-2345-6789-abcd-ef0123456789",
            "ip": "203.0.113.7",
            "user_agent": event.user_agent,
        },
        # the App Store id's digits (bububa track.go App.app_id)
        "app": {"app_id": "1234567890", "app_version": "1.2.3"},
        "ad": {
            "callback": "E.C.P.2f9a",
            "campaign_id": CAMPAIGN_ID,
            "ad_id": ADSET_ID,
            "creative_id": AD_ID,
            "is_retargeting": False,
            "attributed": True,
        },
    }
    TikTokRequest.model_validate(
        json.loads(ADAPTER.encode_request("7300000000000000001", [payload]))
    )


def test_event_time_is_unix_seconds_and_event_id_unchanged() -> None:
    event = make_in_app(event_id="  Weird-ID/1 ", event_time="2025-11-20 10:00:00.999")
    payload = payload_of(event)
    assert payload["event_time"] == 1763632800
    assert payload["event_id"] == "  Weird-ID/1 "


def test_limited_ad_tracking_zero_ids_are_not_sent() -> None:
    zero = "00000000-0000-0000-0000-000000000000"
    payload = payload_of(
        make_install(idfa=zero, advertising_id=zero, idfv=None, ip=None, user_agent=None)
    )
    assert "user" not in payload


FLAGS = {"is_retargeting": False, "attributed": True}


def test_ad_fields_only_when_present() -> None:
    payload = payload_of(make_install(af_c_id=None, af_adset_id="", af_ad_id=None))
    assert payload["ad"] == {"callback": payload["ad"]["callback"]} | FLAGS
    payload = payload_of(
        make_install(original_url=None, af_c_id=None, af_adset_id=None, af_ad_id=None)
    )
    assert payload["ad"] == FLAGS


@pytest.mark.parametrize(
    ("fields", "callback"),
    [
        pytest.param({"original_url": click_url("E.C.P.abc")}, "E.C.P.abc", id="from-the-link"),
        pytest.param({"original_url": "https://app.appsflyer.com/id1?pid=x&clickid=a%2Bb%3D%3D"},
                     "a+b==", id="url-decoded"),
        pytest.param({"original_url": "https://app.appsflyer.com/id1?clickid=&clickid=second"},
                     "second", id="first-non-blank"),
        pytest.param({"click_id": "explicit", "original_url": click_url("from-link")}, "explicit",
                     id="an-explicit-click-id-wins"),
        pytest.param({"click_id": "", "original_url": click_url("from-link")}, "from-link",
                     id="a-blank-click-id-is-absent"),
        pytest.param({"original_url": "https://app.appsflyer.com/id1?pid=bytedanceglobal_int"},
                     None, id="a-link-without-click-id"),
        pytest.param({"original_url": "not a url at all"}, None, id="not-a-link"),
        pytest.param({"original_url": "http://[::1"}, None, id="an-unparseable-link"),
        pytest.param({"original_url": None}, None, id="no-link"),
    ],
)  # fmt: skip
def test_the_callback_is_the_click_id_of_the_link(
    fields: dict[str, object], callback: str | None
) -> None:
    """TikTok's click id comes back in the `clickid` parameter of the attribution link, which
    TikTok fills from its `__CALLBACK_PARAM__` macro (TikTok's AppsFlyer integration guide;
    AppsFlyer records the clicked link in `original_url`)."""
    payload = payload_of(make_install(af_c_id=None, af_adset_id=None, af_ad_id=None, **fields))
    assert payload["ad"] == ({"callback": callback} if callback else {}) | FLAGS


def test_campaign_ids_are_read_under_their_old_names_too() -> None:
    old = make_install(
        af_c_id=None, af_adset_id=None, af_ad_id=None, campaign_id=11, adset_id="12", ad_id="13"
    )
    assert (
        payload_of(old)["ad"] | {"callback": ""}
        == {
            "callback": "",
            "campaign_id": "11",
            "ad_id": "12",
            "creative_id": "13",
        }
        | FLAGS
    )
    both = make_install(af_c_id="21", campaign_id="11")
    assert payload_of(both)["ad"]["campaign_id"] == "21"


def test_request_body_and_headers() -> None:
    body = json.loads(ADAPTER.encode_request("7300000000000000001", [{"event": "InstallApp"}]))
    assert body == {
        "event_source": "app",
        "event_source_id": "7300000000000000001",
        "data": [{"event": "InstallApp"}],
    }
    assert ADAPTER.request_headers("tok") == {
        "Access-Token": "tok",
        "Content-Type": "application/json",
    }


def _body(code: int, message: str = "m") -> bytes:
    return json.dumps({"code": code, "message": message, "request_id": "r", "data": {}}).encode()


@pytest.mark.parametrize(
    ("status", "body", "headers", "kind", "throttled"),
    [
        (200, _body(0, "OK"), {}, AttemptKind.OK, False),
        (200, _body(20001, "partial"), {}, AttemptKind.OK, False),
        (200, _body(40100, "too many"), {}, AttemptKind.RETRYABLE, True),
        (200, _body(50000), {}, AttemptKind.RETRYABLE, False),
        (200, _body(51234), {}, AttemptKind.RETRYABLE, False),
        (200, _body(40001, "no permission"), {}, AttemptKind.SETUP, False),
        (200, _body(40002, "bad parameter"), {}, AttemptKind.FATAL, False),
        (200, _body(40105, "access token invalid"), {}, AttemptKind.SETUP, False),
        (200, b"<html>proxy</html>", {}, AttemptKind.RETRYABLE, False),
        (200, b"", {}, AttemptKind.RETRYABLE, False),
        (429, b"", {"retry-after": "3"}, AttemptKind.RETRYABLE, True),
        (500, b"oops", {}, AttemptKind.RETRYABLE, False),
        (503, _body(0), {}, AttemptKind.RETRYABLE, False),
        (400, _body(40002), {}, AttemptKind.FATAL, False),
        (401, b"", {}, AttemptKind.SETUP, False),
        (403, b"", {}, AttemptKind.SETUP, False),
        (404, b"", {}, AttemptKind.FATAL, False),
        (302, b"", {}, AttemptKind.FATAL, False),
    ],
)
def test_classify_reads_the_body_not_only_the_status(
    status: int, body: bytes, headers: dict[str, str], kind: AttemptKind, throttled: bool
) -> None:
    result = ADAPTER.classify(status, headers, body, now=0.0)
    assert result.kind is kind
    assert result.throttled is throttled
    assert result.status == status


def test_partial_success_is_marked_and_codes_carried() -> None:
    result = ADAPTER.classify(200, {}, _body(20001, "some failed"), now=0.0)
    assert result.partial
    assert (result.code, result.message) == (20001, "some failed")


def test_retry_after_in_seconds_or_http_date() -> None:
    now = datetime(2025, 11, 20, 10, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after("7", now) == 7.0
    later = format_datetime(datetime(2025, 11, 20, 10, 0, 30, tzinfo=UTC), usegmt=True)
    assert parse_retry_after(later, now) == 30.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None
    assert ADAPTER.classify(429, {"retry-after": "2.5"}, b"", now=now).retry_after_s == 2.5
    # Less than a second is kept as asked, and a date already past is no wait
    assert parse_retry_after(" 0.5 ", now) == 0.5
    assert parse_retry_after("0", now) == 0.0
    assert parse_retry_after("-3", now) == 0.0
    earlier = format_datetime(datetime(2025, 11, 20, 9, 59, tzinfo=UTC), usegmt=True)
    assert parse_retry_after(earlier, now) == 0.0


def test_a_2xx_without_a_tiktok_body_keeps_the_retry_after_it_came_with() -> None:
    """A proxy's 200 (not TikTok's JSON) is retried, fate unknown, no sooner than it asked."""
    result = ADAPTER.classify(200, {"retry-after": "4"}, b"<html>ok</html>", now=0.0)
    assert (result.kind, result.status, result.code, result.retry_after_s, result.fate_unknown) == (
        AttemptKind.RETRYABLE, 200, None, 4.0, True)  # fmt: skip
    assert result.message == "HTTP 200 without a TikTok body: <html>ok</html>"


def test_only_bad_parameter_rejections_split() -> None:
    bad_parameter = ADAPTER.classify(200, {}, _body(40002), now=0.0)
    no_permission = ADAPTER.classify(200, {}, _body(40001), now=0.0)
    assert ADAPTER.should_split(bad_parameter, 10)
    assert not ADAPTER.should_split(bad_parameter, 1)
    assert not ADAPTER.should_split(no_permission, 10)


# --- the whole classification: every field of the result, per answer -----------------------------

NOW = datetime(2025, 11, 20, 10, 0, tzinfo=UTC).timestamp()
IN_30_S = format_datetime(datetime(2025, 11, 20, 10, 0, 30, tzinfo=UTC), usegmt=True)
A_MINUTE_AGO = format_datetime(datetime(2025, 11, 20, 9, 59, tzinfo=UTC), usegmt=True)
OK, RETRY, FATAL, SETUP = (
    AttemptKind.OK,
    AttemptKind.RETRYABLE,
    AttemptKind.FATAL,
    AttemptKind.SETUP,
)
NO_BODY = "HTTP 200 without a TikTok body: "


@pytest.mark.parametrize(
    ("status", "headers", "body", "expected"),
    [
        pytest.param(200, {}, _body(0, "OK"), AttemptResult(OK, 200, 0, "OK"), id="ok"),
        pytest.param(204, {}, _body(0, "OK"), AttemptResult(OK, 204, 0, "OK"), id="ok-any-2xx"),
        pytest.param(200, {}, _body(20001, "2 failed"),
                     AttemptResult(OK, 200, 20001, "2 failed", partial=True), id="partial-success"),
        pytest.param(200, {"retry-after": "4"}, _body(40100, "too many"),
                     AttemptResult(RETRY, 200, 40100, "too many", 4.0, throttled=True),
                     id="too-many-requests-with-retry-after"),
        pytest.param(200, {"retry-after": IN_30_S}, _body(40100, "too many"),
                     AttemptResult(RETRY, 200, 40100, "too many", 30.0, throttled=True),
                     id="retry-after-as-an-http-date"),
        pytest.param(200, {"retry-after": "2"}, _body(50000, "internal"),
                     AttemptResult(RETRY, 200, 50000, "internal", 2.0, fate_unknown=True),
                     id="server-error-code-fate-unknown"),
        pytest.param(200, {"retry-after": "2"}, _body(51012, "pixel"),
                     AttemptResult(RETRY, 200, 51012, "pixel", 2.0, fate_unknown=True),
                     id="internal-service-code-fate-unknown"),
        pytest.param(200, {"retry-after": "2"}, _body(40202, "conflict"),
                     AttemptResult(RETRY, 200, 40202, "conflict", 2.0), id="transient-below-the-server-codes"),
        pytest.param(200, {}, _body(49999, "odd"),
                     AttemptResult(RETRY, 200, 49999, f"{UNLISTED_CODE}: odd", fate_unknown=True, unlisted=True),
                     id="a-code-in-no-list"),
        pytest.param(200, {"retry-after": "9"}, _body(40001, "no permission"),
                     AttemptResult(SETUP, 200, 40001, "no permission"), id="setup"),
        pytest.param(200, {"retry-after": "9"}, _body(40002, "Batch.0.event: bad"),
                     AttemptResult(FATAL, 200, 40002, "Batch.0.event: bad"), id="bad-event"),
        pytest.param(200, {}, _body(40050, "duplicated"), AttemptResult(OK, 200, 40050, "duplicated"),
                     id="duplicate-request-delivered"),
        pytest.param(200, {}, b'{"code": 0, "message": 7}', AttemptResult(OK, 200, 0, ""),
                     id="a-message-that-is-not-text"),
        pytest.param(200, {}, b"<html>proxy</html>",
                     AttemptResult(RETRY, 200, None, NO_BODY + "<html>proxy</html>", fate_unknown=True),
                     id="not-tiktoks-json"),
        pytest.param(200, {}, b"\xff\xfe<html>",
                     AttemptResult(RETRY, 200, None, NO_BODY + "\ufffd\ufffd<html>", fate_unknown=True),
                     id="a-body-that-is-not-utf-8"),
        pytest.param(200, {}, b"", AttemptResult(RETRY, 200, None, NO_BODY, fate_unknown=True),
                     id="empty"),
        pytest.param(200, {}, b"<p>" + b"x" * 300,
                     AttemptResult(RETRY, 200, None, NO_BODY + "<p>" + "x" * 197, fate_unknown=True),
                     id="a-long-body-is-cut-at-200-bytes"),
        pytest.param(200, {}, b'{"code": "0"}',
                     AttemptResult(RETRY, 200, None, NO_BODY + '{"code": "0"}', fate_unknown=True),
                     id="a-code-that-is-not-a-number"),
        pytest.param(200, {}, b'{"code": false}',
                     AttemptResult(RETRY, 200, None, NO_BODY + '{"code": false}', fate_unknown=True),
                     id="a-code-that-is-a-boolean"),
        pytest.param(200, {}, b"[0]", AttemptResult(RETRY, 200, None, NO_BODY + "[0]", fate_unknown=True),
                     id="not-an-object"),
        pytest.param(429, {"retry-after": " 3 "}, b"",
                     AttemptResult(RETRY, 429, None, "too many requests", 3.0, throttled=True),
                     id="http-429"),
        pytest.param(429, {}, _body(40100, "slow down"),
                     AttemptResult(RETRY, 429, 40100, "slow down", throttled=True), id="http-429-with-a-body"),
        pytest.param(503, {"retry-after": "120"}, b"",
                     AttemptResult(RETRY, 503, None, "HTTP 503", 120.0, fate_unknown=True),
                     id="http-503-with-retry-after"),
        pytest.param(500, {"retry-after": A_MINUTE_AGO}, b"oops",
                     AttemptResult(RETRY, 500, None, "oops", 0.0, fate_unknown=True),
                     id="http-500-retry-after-in-the-past"),
        pytest.param(502, {"retry-after": "soon"}, _body(0),
                     AttemptResult(RETRY, 502, 0, "m", fate_unknown=True), id="http-502-unreadable-retry-after"),
        pytest.param(400, {}, _body(40002, "bad"), AttemptResult(FATAL, 400, 40002, "bad"), id="http-400"),
        pytest.param(401, {"retry-after": "5"}, b"", AttemptResult(SETUP, 401, None, "HTTP 401"), id="http-401"),
        pytest.param(403, {}, _body(40001, "no"), AttemptResult(SETUP, 403, 40001, "no"), id="http-403"),
        pytest.param(302, {}, b"", AttemptResult(FATAL, 302, None, "HTTP 302"), id="a-redirect"),
        pytest.param(199, {}, _body(0), AttemptResult(FATAL, 199, 0, "m"), id="below-2xx"),
        pytest.param(300, {}, _body(0), AttemptResult(FATAL, 300, 0, "m"), id="above-2xx"),
    ],
)  # fmt: skip
def test_every_answer_classified_whole(
    status: int, headers: dict[str, str], body: bytes, expected: AttemptResult
) -> None:
    result = ADAPTER.classify(status, headers, body, now=NOW)
    assert replace(result, request_id=None) == expected
    # TikTok's request id is kept whatever the answer (the postback log shows it): `request_id`,
    # in every answer of tiktok-business-api-sdk's response model (InlineResponse200)
    assert result.request_id == ("r" if b'"request_id"' in body else None)


@pytest.mark.parametrize(
    ("code", "size", "split"),
    [(40002, 2, True), (40002, 1000, True), (40002, 1, False), (40001, 2, False),
     (40000, 2, True), (40061, 3, True), (53102, 2, True), (None, 2, False)],
)  # fmt: skip
def test_a_bad_parameter_splits_any_batch_of_two_or_more(
    code: int | None, size: int, split: bool
) -> None:
    assert ADAPTER.should_split(AttemptResult(FATAL, 200, code, "m"), size) is split


def test_the_event_label_is_tiktoks_event_name() -> None:
    assert ADAPTER.event_label(payload_of(make_in_app())) == "Purchase"
    assert ADAPTER.event_label(payload_of(make_install())) == "InstallApp"


def test_a_request_holds_at_most_1000_events() -> None:
    """TikTok rejects a whole request of more than 1,000 events."""
    assert make_partner(delivery={"batch_max_events": 1000}).delivery.batch_max_events == 1000
    with pytest.raises(ValidationError, match="less than or equal to 1000"):
        make_partner(delivery={"batch_max_events": 1001})
    event = {"event": "InstallApp", "event_time": 1, "event_id": "e", "app": {"app_id": "a"}}
    TikTokRequest(event_source_id="1", data=[event] * 1000)  # type: ignore[list-item]
    with pytest.raises(ValidationError, match="at most 1000 items"):
        TikTokRequest(event_source_id="1", data=[event] * 1001)  # type: ignore[list-item]


def test_an_in_app_payload_whole_without_app_version_and_with_its_own_content_id() -> None:
    # Given a purchase whose event_value names content_id itself, beside af_content_id
    value = {"af_revenue": "9.99", "af_currency": "USD", "af_content_id": "sku-1",
             "content_id": "own", "af_quantity": 2}  # fmt: skip
    event = make_in_app(event_value=json.dumps(value), app_version=None, idfv=None, ip=None,
                        user_agent=None, idfa=None, original_url=None)  # fmt: skip
    # Then the item goes in contents, and neither content id is sent flat beside it
    assert payload_of(event) == {
        "event": "Purchase",
        "event_time": int(event.event_time_s),
        "event_id": event.event_id,
        "app": {"app_id": "1234567890"},
        "ad": {"campaign_id": CAMPAIGN_ID, "ad_id": ADSET_ID, "creative_id": AD_ID} | FLAGS,
        "properties": {"af_revenue": "9.99", "af_currency": "USD",
                       "contents": [{"content_id": "sku-1", "quantity": 2}], "value": 9.99,
                       "currency": "USD"},
    }  # fmt: skip


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_a_non_finite_number_in_event_value_leaves_the_tiktok_body_valid_json(
    constant: str,
) -> None:
    # Given a purchase whose event_value holds NaN or Infinity (Python's json writes them)
    event = make_in_app(
        event_value=f'{{"af_revenue": "4.99", "af_currency": "USD", "score": {constant}}}'
    )
    assert math.isnan(event.params["score"]) or math.isinf(event.params["score"])
    # When the request body is written
    body = ADAPTER.encode_request("7300000000000000001", [payload_of(event)])
    # Then it is JSON proper, the parameter null, the rest of the event intact
    sent = json.loads(body, parse_constant=_not_json)["data"][0]
    assert sent["properties"]["score"] is None
    assert event.revenue is not None
    assert sent["properties"]["value"] == float(event.revenue.amount)
    assert sent["event_id"] == event.event_id


# --- fields: app, user, ad, properties (docs/partners/tiktok.md) --------------------------------


@pytest.mark.parametrize(
    ("app_id", "store_id"),
    [("id1234567890", "1234567890"), ("com.example.app", "com.example.app"),
     ("idea.app", "idea.app")],
)  # fmt: skip
def test_app_id_is_the_store_id_digits_only_on_ios(app_id: str, store_id: str) -> None:
    """bububa/tiktok-business model/event/track.go App.app_id: for iOS the number of the App Store
    URL without `id`; for Android the package name."""
    assert store_app_id(app_id) == store_id


def test_app_name_and_version_come_from_the_event() -> None:
    payload = payload_of(make_install(app_name="Example", app_version="3.4.1"))
    assert payload["app"] == {"app_id": "1234567890", "app_name": "Example", "app_version": "3.4.1"}


@pytest.mark.parametrize(
    ("platform", "att", "status"),
    [
        ("ios", "authorized", "AUTHORIZED"), ("ios", "af_authorized", "AUTHORIZED"),
        ("ios", "denied", "DENIED"), ("ios", "not_determined", "NOT_DETERMINED"),
        ("ios", "restricted", "RESTRICTED"),
        # AppsFlyer says only that the IDFA is unavailable, not why: not guessed, left out
        ("ios", "af_unavailable", None), ("ios", "af_unknown", None), ("ios", None, None),
        ("android", None, "NOT_APPLICABLE"), ("android", "denied", "NOT_APPLICABLE"),
        (None, "denied", None),
    ],
)  # fmt: skip
def test_att_status(platform: str | None, att: str | None, status: str | None) -> None:
    """Segment tiktok-app-events constants.ts and bububa track.go: AUTHORIZED, DENIED,
    NOT_DETERMINED, RESTRICTED, and NOT_APPLICABLE for iOS below 14 or Android."""
    user = payload_of(make_install(platform=platform, att=att)).get("user", {})
    assert user.get("att_status") == status


def test_locale_is_the_events_bcp_47_language() -> None:
    assert payload_of(make_install(language="en_US"))["user"]["locale"] == "en-US"
    assert "locale" not in payload_of(make_install(language="English"))["user"]


def test_an_event_sent_limited_says_so_and_carries_no_identifiers() -> None:
    event = make_install(gdpr_applies=True, ad_user_data_enabled=False, att="denied")
    payload = payload_of(event, consent={"without_consent": "limited"})
    assert payload["limited_data_use"] is True
    assert payload["user"] == {"att_status": "DENIED"}  # the ATT status identifies nobody


def test_an_event_not_attributed_to_tiktok_says_so_under_scope_all() -> None:
    event = make_in_app(media_source="googleadwords_int", is_retargeting=True)
    events = [{"sdk_event": "af_purchase", "partner_event": "Pay(Purchase)", "send_revenue": True}]
    payload = payload_of(event, in_app={"scope": "all", "events": events})
    assert payload["ad"] == {"is_retargeting": True, "attributed": False}
    assert payload_of(make_install(media_source="organic"), install_scope="all")["ad"] == {
        "is_retargeting": False, "attributed": False}  # fmt: skip


def _properties(value: dict[str, object], **fields: object) -> dict[str, object]:
    return dict(payload_of(make_in_app(event_value=value, **fields))["properties"])


def test_several_items_are_zipped_into_contents() -> None:
    """AppsFlyer sends lists for several items; TikTok takes one `contents` item each (Segment
    types.ts, iOS TikTokContentsEvent.m): content ids as strings, quantity and price numbers."""
    value = {"af_content_id": ["sku-1", 22, "sku-3"], "af_quantity": [1, "2"],
             "af_price": [4.99, "1.50", 3], "af_currency": "USD"}  # fmt: skip
    properties = _properties(value, event_revenue=None, event_revenue_currency=None)
    assert properties == {
        "af_currency": "USD",
        "contents": [{"content_id": "sku-1", "quantity": 1, "price": 4.99},
                     {"content_id": "22", "quantity": 2, "price": 1.5},
                     {"content_id": "sku-3", "price": 3}],
    }  # fmt: skip


def test_tiktoks_own_fields_replace_the_appsflyer_keys() -> None:
    value = {"af_content_type": "product_group", "af_description": "gems",
             "af_order_id": 17, "af_search_string": "red shoes", "af_level": 3}  # fmt: skip
    properties = _properties(value, event_revenue=None)
    assert properties == {"content_type": "product_group", "description": "gems",
                          "order_id": "17", "search_string": "red shoes", "af_level": 3}  # fmt: skip


def test_a_content_type_tiktok_does_not_know_is_forwarded_under_its_own_key() -> None:
    properties = _properties({"af_content_type": "shoes", "af_quantity": 2}, event_revenue=None)
    assert properties == {"af_content_type": "shoes", "num_items": 2}


def test_revenue_in_a_currency_tiktok_does_not_list_is_left_out() -> None:
    """The 67 currencies of TikTok's iOS (TikTokConstants.m TTCurrency) and Android
    (TTContentsEventConstants.Currency) SDKs."""
    assert len(TIKTOK_CURRENCIES) == 67
    assert ADAPTER.revenue_currencies == TIKTOK_CURRENCIES
    decision = decide(make_in_app(event_revenue="9.99", event_revenue_currency="XAF"),
                      make_partner(app_dict()), ADAPTER, NOW_S)  # fmt: skip
    assert isinstance(decision, Send)
    assert "value" not in decision.payload["properties"]
    assert decision.content.unsent_revenue is not None


# --- test mode --------------------------------------------------------------------------------


def test_an_app_in_test_mode_gets_a_destination_and_request_of_its_own() -> None:
    partner = make_partner(app_dict(test_event_code="TEST12345"))
    decision = decide(make_install(), partner, ADAPTER, NOW_S)
    assert isinstance(decision, Send)
    assert decision.destination == "7300000000000000001:TEST12345"
    body = json.loads(ADAPTER.encode_request(decision.destination, [decision.payload]))
    assert (body["event_source_id"], body["test_event_code"]) == (
        "7300000000000000001", "TEST12345")  # fmt: skip
    TikTokRequest.model_validate(body)
    assert [app.test_mode for app in partner.apps] == [
        "test_event_code TEST12345: its events show in TikTok Events Manager's Test Events and "
        "are not counted"
    ]
    assert make_partner(app_dict()).apps[0].test_mode is None


@pytest.mark.parametrize("code", ["", "TEST 1", "TEST-1", 12345, "x" * 65])
def test_a_test_event_code_is_letters_and_digits(code: object) -> None:
    with pytest.raises(ValidationError, match="is not a TikTok test event code"):
        make_partner(app_dict(test_event_code=code))


# --- answers: one test per class, each with its source -------------------------------------------


def test_delivered_codes() -> None:
    """tiktok_code.py OK 0 and PARTIAL_OK 20001; RudderStack's tiktok_ads networkHandler.js counts
    both as success, and TikTok's Android SDK (TTRequest.java) never retries a 20001 batch. No
    public source shows a 20001 body naming the failed events, so the batch is delivered and
    marked partial (its message goes to the log)."""
    assert ADAPTER.classify(200, {}, _body(0, "OK"), now=0.0) == AttemptResult(OK, 200, 0, "OK")
    assert ADAPTER.classify(200, {}, _body(20001, "x"), now=0.0) == AttemptResult(
        OK, 200, 20001, "x", partial=True)  # fmt: skip


@pytest.mark.parametrize("code", [40100, 40132, 61000, 40016])
def test_throttled_codes(code: int) -> None:
    """tiktok_code.py REQUEST_TOO_FREQUENT 40100 (Rudder: ThrottledError), REQUEST_FREQUENCY_LIMITED
    40132, TOO_MANY_REQUESTS_BL 61000, BIZ_FC_ERROR 40016 (flow control, read from its name)."""
    result = ADAPTER.classify(200, {"retry-after": "7"}, _body(code), now=0.0)
    assert result == AttemptResult(RETRY, 200, code, "m", 7.0, throttled=True)


@pytest.mark.parametrize("code", [50000, 50002, 51012, 52103, 60001])
def test_transient_codes(code: int) -> None:
    """tiktok_code.py SYS_ERROR, SYS_TIMEOUT, PIXEL_ERROR, RDS_TIMEOUT_ERROR, MAINTENANCE: the
    server's trouble, retried; the request may have been processed."""
    result = ADAPTER.classify(200, {}, _body(code), now=0.0)
    assert result == AttemptResult(RETRY, 200, code, "m", fate_unknown=True)


@pytest.mark.parametrize("code", [40001, 40102, 40105, 40118, 40063, 40007, 41002])
def test_setup_codes(code: int) -> None:
    """tiktok_code.py PERMISSION_ERROR (Rudder's message: not an admin or operator),
    ACCESS_TOKEN_EXPIRE, INVALID_ACCESS_TOKEN, NOT_IN_WHITELIST (app events are allowlist-only:
    bububa track.go), INVALID_PARTNER_NAME, NOT_EXIST, FIELDS_OFFLINE: an operator must act."""
    result = ADAPTER.classify(200, {}, _body(code), now=0.0)
    assert result == AttemptResult(SETUP, 200, code, "m")
    assert not ADAPTER.should_split(result, 10)


@pytest.mark.parametrize("code", [40000, 40002, 40061, 40062, 40700, 53102])
def test_bad_event_codes_split_the_batch(code: int) -> None:
    """tiktok_code.py INVALID_PARAMS (Android SDK: discarded), PARAM_ERROR (Rudder's message names
    one event's field), INVALID_BATCH_SIZE, PII_NOT_HASHED, RPC_VALIDATION_ERROR,
    DESERIALIZATION_ERROR: the batch is halved until the bad event is alone."""
    result = ADAPTER.classify(200, {}, _body(code), now=0.0)
    assert result == AttemptResult(FATAL, 200, code, "m")
    assert ADAPTER.should_split(result, 2)
    assert not ADAPTER.should_split(result, 1)


def test_a_code_in_none_of_tiktoks_lists_is_logged_once_per_code(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A code in none of TikTok's lists is transient, bounded by give_up_after_s, and
    logged once per code."""
    import asyncio
    import logging

    import httpx

    from dispatcher.delivery.http import PartnerHttp

    codes = iter([49999, 49999, 49998, 49999])

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"code": next(codes), "message": "odd"})

    http = PartnerHttp(
        httpx.AsyncClient(transport=httpx.MockTransport(answer)), ADAPTER, lambda: 0.0
    )
    http.configure("http://tiktok.test/open_api/v1.3/event/track/", "tok", 5.0)
    caplog.set_level(logging.WARNING, logger="dispatcher.delivery.http")
    results = [asyncio.run(http.post(b"{}", lambda: None)) for _ in range(4)]
    assert all(result.kind is AttemptKind.RETRYABLE and result.unlisted for result in results)
    logged = [record for record in caplog.records if "none of its lists" in record.getMessage()]
    assert [record.code for record in logged] == [49999, 49998]  # type: ignore[attr-defined]
