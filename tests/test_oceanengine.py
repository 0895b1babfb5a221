"""Ocean Engine: the conversion built for each case, its answers, and its config.

Facts relied on, from the public Go client `bububa/oceanengine` (Ocean Engine's own pages are in
Chinese): `marketing-api/model/conversion/request.go` gives the body (`event_type`,
`context.ad.callback` from the `__CALLBACK_PARAM__` macro, `context.ad.match_type`, absent meaning
a click; `context.device.imei` as an MD5, `idfa` and `oaid` raw; `properties.pay_amount`;
`timestamp` in milliseconds) and `marketing-api/enum/conversion_event_type.go` the event types.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from dispatcher.config_loader import load_settings
from dispatcher.errors import ConfigError
from dispatcher.explain import explain
from dispatcher.outcomes import AttemptKind, AttemptResult
from dispatcher.partners import adapter_for
from dispatcher.partners.oceanengine import OceanEngineAdapter
from dispatcher.partners.oceanengine.adapter import fen, sign
from dispatcher.partners.oceanengine.wire import OCEAN_ENGINE_EVENTS, OceanEngineConversion
from dispatcher.rules import Rule, Send, Skip, SkipReason, decide
from schemas.config import TopicFormats
from schemas.events import Event
from tests.factories import (
    INSTALL_TIME,
    NOW_S,
    app_dict,
    make_oe_in_app,
    make_oe_install,
    make_oe_partner,
    oceanengine_event_dict,
    oe_app_dict,
    oe_partner_dict,
    partner_dict,
    raw,
)

ADAPTER = OceanEngineAdapter()
NOW = 1_763_600_000.0
IMEI_MD5 = hashlib.md5(b"867530912345678", usedforsecurity=False).hexdigest()


def decide_for(event: Event, **app: Any) -> Send | Skip:
    return decide(event, make_oe_partner(oe_app_dict(**app)), ADAPTER, NOW_S)


def sent(event: Event, **app: Any) -> Send:
    decision = decide_for(event, **app)
    assert isinstance(decision, Send), decision.detail
    OceanEngineConversion.model_validate(decision.payload)  # the wire model accepts it
    return decision


def test_the_registry_knows_ocean_engine() -> None:
    assert isinstance(adapter_for("oceanengine"), OceanEngineAdapter)


# --- the conversion ----------------------------------------------------------------------------


def test_an_attributed_install_is_sent_as_active_with_its_click_id() -> None:
    event = make_oe_install()
    payload = sent(event).payload
    assert payload == {
        "event_type": "active",
        "context": {
            "ad": {"callback": event.click_id_for("clickid"), "match_type": 0},
            # no platform: bububa's ContextDevice has none
            "device": {
                "oaid": "6c1a5b2f-0d9e-4c57-b3a2-1f0e9d8c7b6a",
                "imei": IMEI_MD5,
            },
        },
        "timestamp": int(INSTALL_TIME.timestamp()) * 1000,
    }


def test_an_in_app_event_carries_its_type_and_time_in_milliseconds() -> None:
    event = make_oe_in_app(event_time=INSTALL_TIME + timedelta(hours=2, milliseconds=345))
    payload = sent(event).payload
    assert payload["event_type"] == "active_pay"
    assert payload["timestamp"] == (int(INSTALL_TIME.timestamp()) + 7200) * 1000 + 345


@pytest.mark.parametrize(
    ("overrides", "callback"),
    [
        pytest.param({}, None, id="clickid-of-original_url"),
        pytest.param({"click_id": "explicit.1"}, "explicit.1", id="explicit-click_id-wins"),
        pytest.param(
            {"original_url": "https://app.appsflyer.com/id1234567890?pid=bytedance_int&clickid=a%2Bb%3D"},
            "a+b=", id="url-decoded",
        ),
    ],
)  # fmt: skip
def test_the_callback_is_the_click_id(overrides: dict[str, Any], callback: str | None) -> None:
    event = make_oe_install(**overrides)
    payload = sent(event).payload
    assert payload["context"]["ad"]["callback"] == (callback or event.click_id_for("clickid"))


def test_an_impression_install_is_sent_with_match_type_1_when_view_through_is_on() -> None:
    touch = INSTALL_TIME - timedelta(hours=2)
    event = make_oe_install(attributed_touch_type="impression", attributed_touch_time=touch)
    assert sent(event, view_through=True).payload["context"]["ad"]["match_type"] == 1
    off = decide_for(event, view_through=False)
    assert isinstance(off, Skip)
    assert off.reason is SkipReason.OUT_OF_SCOPE


@pytest.mark.parametrize(
    ("overrides", "device"),
    [
        pytest.param(
            {"platform": "ios", "idfa": "6D92078A-8246-4BA4-AE5B-76104861E7DC", "oaid": None,
             "imei": None},
            {"idfa": "6D92078A-8246-4BA4-AE5B-76104861E7DC"},
            id="idfa-raw-case-kept",
        ),
        pytest.param(
            {"idfa": "00000000-0000-0000-0000-000000000000", "platform": "ios", "oaid": None,
             "imei": None},
            None, id="zero-idfa-dropped",
        ),
        pytest.param(
            {"imei": " 867530912345678 ", "oaid": None},
            {"imei": IMEI_MD5},
            id="imei-md5-lower-case",
        ),
        pytest.param({"platform": None, "oaid": None, "imei": None}, None, id="no-device"),
    ],
)  # fmt: skip
def test_device_ids(overrides: dict[str, Any], device: dict[str, str] | None) -> None:
    payload = sent(make_oe_install(**overrides)).payload
    assert payload["context"].get("device") == device
    # Android id and GAID have no field at Ocean Engine
    assert "9774d56d682e549c" not in json.dumps(payload)
    assert "3f6c4b3e" not in json.dumps(payload)


@pytest.mark.parametrize(
    ("revenue", "currency", "pay_amount"),
    [
        ("68.00", "CNY", 6800),
        ("9.99", "cny", 999),
        ("0.005", "CNY", 1),
        ("1234.5", "CNY", 123450),
        ("0", "CNY", 0),
    ],
)
def test_cny_revenue_is_sent_in_fen(revenue: str, currency: str, pay_amount: int) -> None:
    event = make_oe_in_app(event_revenue=revenue, event_revenue_currency=currency)
    decision = sent(event)
    assert decision.payload["properties"] == {"pay_amount": pay_amount}
    assert decision.content.unsent_revenue is None


def test_revenue_in_another_currency_is_left_out_and_said() -> None:
    event = make_oe_in_app(event_revenue="9.99", event_revenue_currency="USD")
    decision = sent(event)
    assert "properties" not in decision.payload
    assert decision.content.unsent_revenue is not None
    assert decision.content.unsent_revenue.currency == "USD"
    assert "revenue not sent" in decision.detail
    assert "USD" in decision.detail


@pytest.mark.parametrize(
    ("fields", "revenue"),
    [
        pytest.param({"event_revenue": "9.99", "event_revenue_currency": "usd"},
                     "revenue not sent: oceanengine reads no USD amounts (9.99 USD)", id="dollars"),
        pytest.param({"event_revenue": "5", "event_revenue_currency": None, "event_value": "{}"},
                     "revenue not sent: oceanengine reads no unnamed amounts (5)", id="no-currency"),
    ],
)  # fmt: skip
def test_revenue_left_out_is_explained_whole(fields: dict[str, Any], revenue: str) -> None:
    decision = sent(make_oe_in_app(**fields))
    assert decision.detail == f"click within the 7d lookback; af_purchase -> active_pay; {revenue}"


def test_revenue_stripped_by_the_mapping_is_not_sent() -> None:
    event = make_oe_in_app(event_name="af_add_to_cart")
    decision = sent(event)
    assert decision.payload["event_type"] == "in_app_cart"
    assert "properties" not in decision.payload
    assert decision.content.unsent_revenue is None  # stripped by choice, not unsent


def test_fen_rounds_half_up() -> None:
    assert [fen(Decimal(v)) for v in ("0.004", "0.005", "1.015", "100")] == [0, 1, 102, 10000]


# --- what is not sent --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"original_url": None}, id="no-link"),
        pytest.param(
            {"original_url": "https://app.appsflyer.com/id1234567890?pid=bytedance_int"},
            id="link-without-clickid",
        ),
        pytest.param(
            {"original_url": "https://app.appsflyer.com/id1234567890?pid=bytedance_int&clickid="},
            id="blank-clickid",
        ),
    ],
)
def test_an_attributed_event_without_a_click_id_is_skipped(overrides: dict[str, Any]) -> None:
    for event in (make_oe_install(**overrides), make_oe_in_app(**overrides)):
        decision = decide_for(event)
        assert isinstance(decision, Skip)
        assert (decision.partner, decision.app_id, decision.rule, decision.reason) == (
            "oceanengine", event.app_id, Rule.SCOPE, SkipReason.NO_CLICK_ID)  # fmt: skip
        assert decision.why.endswith(
            ", but the record has no oceanengine click id (click_id, or clickid in original_url)"
        )
        assert decision.detail == (
            f"{decision.why}; oceanengine matches conversions by the click id alone"
        )


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"media_source": "bytedanceglobal_int"}, id="tiktok-install"),
        pytest.param({"media_source": "organic"}, id="organic"),
        pytest.param({"attributed_touch_time": INSTALL_TIME - timedelta(days=8)}, id="old-click"),
    ],
)
def test_events_not_attributed_to_ocean_engine_are_out_of_scope(overrides: dict[str, Any]) -> None:
    decision = decide_for(make_oe_install(**overrides))
    assert isinstance(decision, Skip)
    assert decision.reason is SkipReason.OUT_OF_SCOPE


def test_the_window_and_mapping_rules_apply_as_to_any_partner() -> None:
    late = make_oe_in_app(event_time=INSTALL_TIME + timedelta(days=31))
    unmapped = make_oe_in_app(event_name="af_tutorial_completion")
    assert decide_for(late).reason is SkipReason.OUTSIDE_WINDOW  # type: ignore[comparison-overlap]
    assert decide_for(unmapped).reason is SkipReason.UNMAPPED_EVENT  # type: ignore[comparison-overlap]


# --- the request ---------------------------------------------------------------------------------


def test_one_conversion_is_the_whole_body_and_no_credentials_are_sent() -> None:
    payload = sent(make_oe_install()).payload
    assert json.loads(ADAPTER.encode_request("id1234567890", [payload])) == payload
    # compact: no spaces, the payload's key order, UTF-8 as it is
    assert (
        ADAPTER.encode_request("id1234567890", [payload])
        == json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    )
    with pytest.raises(ValueError, match="one conversion per request"):
        ADAPTER.encode_request("id1234567890", [payload, payload])
    assert ADAPTER.request_headers("") == {"Content-Type": "application/json"}


def body(code: int, message: str = "msg") -> bytes:
    return json.dumps({"code": code, "message": message, "request_id": "r-1"}).encode()


@pytest.mark.parametrize(
    ("status", "headers", "answer", "kind", "flags"),
    [
        (200, {}, body(0, "success"), AttemptKind.OK, {}),
        (200, {}, body(1, "bad callback"), AttemptKind.FATAL, {}),
        (200, {}, body(40001), AttemptKind.FATAL, {}),
        (200, {}, b"<html>gateway</html>", AttemptKind.RETRYABLE, {"fate_unknown": True}),
        (429, {"retry-after": "3"}, b"", AttemptKind.RETRYABLE, {"throttled": True, "retry_after_s": 3.0}),
        (503, {}, b"", AttemptKind.RETRYABLE, {"fate_unknown": True}),
        (500, {}, body(0), AttemptKind.RETRYABLE, {"fate_unknown": True}),
        (400, {}, body(2), AttemptKind.FATAL, {}),
        (404, {}, b"not found", AttemptKind.FATAL, {}),
    ],
)  # fmt: skip
def test_answers(
    status: int, headers: dict[str, str], answer: bytes, kind: AttemptKind, flags: dict[str, Any]
) -> None:
    result = ADAPTER.classify(status, headers, answer, NOW)
    assert result.kind is kind
    for name, value in flags.items():
        assert getattr(result, name) == value, name
    assert not ADAPTER.should_split(result, 1)


OK, RETRY, FATAL = AttemptKind.OK, AttemptKind.RETRYABLE, AttemptKind.FATAL


@pytest.mark.parametrize(
    ("status", "headers", "answer", "expected"),
    [
        pytest.param(200, {}, body(0, "success"), AttemptResult(OK, 200, 0, "success"), id="ok"),
        pytest.param(200, {"retry-after": "5"}, body(1, "bad callback"),
                     AttemptResult(FATAL, 200, 1, "bad callback"), id="any-other-code-rejects"),
        pytest.param(200, {}, body(50000, "busy"), AttemptResult(FATAL, 200, 50000, "busy"),
                     id="no-code-is-documented-as-transient"),
        pytest.param(200, {}, b"<html>gateway</html>",
                     AttemptResult(RETRY, 200, None, "HTTP 200 without a Ocean Engine body: "
                                   "<html>gateway</html>", fate_unknown=True), id="not-its-json"),
        pytest.param(429, {"retry-after": "3"}, b"",
                     AttemptResult(RETRY, 429, None, "too many requests", 3.0, throttled=True),
                     id="http-429"),
        pytest.param(503, {"retry-after": "60"}, b"",
                     AttemptResult(RETRY, 503, None, "HTTP 503", 60.0, fate_unknown=True),
                     id="http-503-with-retry-after"),
        pytest.param(503, {"retry-after": format_datetime(datetime.fromtimestamp(NOW + 90, UTC),
                                                          usegmt=True)}, b"",
                     AttemptResult(RETRY, 503, None, "HTTP 503", 90.0, fate_unknown=True),
                     id="retry-after-as-an-http-date"),
        pytest.param(400, {}, body(2, "bad"), AttemptResult(FATAL, 400, 2, "bad"), id="http-400"),
        pytest.param(404, {}, b"not found", AttemptResult(FATAL, 404, None, "not found"),
                     id="http-404"),
    ],
)  # fmt: skip
def test_every_answer_classified_whole(
    status: int, headers: dict[str, str], answer: bytes, expected: AttemptResult
) -> None:
    assert ADAPTER.classify(status, headers, answer, NOW) == expected


def test_a_rejection_keeps_the_code_and_message_for_the_dead_letter() -> None:
    result = ADAPTER.classify(200, {}, body(7, "callback expired"), NOW)
    assert (result.code, result.message) == (7, "callback expired")


# --- explain: both partners' decisions for one event --------------------------------------------


def test_explain_shows_both_partners_decisions(tmp_path: Path) -> None:
    config = write_both(tmp_path)
    settings = load_settings(config, {"TIKTOK_ACCESS_TOKEN": "t"})
    record = oceanengine_event_dict("in-app-event")
    result = explain(raw(record), settings.partners, TopicFormats(), NOW_S)
    by_partner = {entry["partner"]: entry for entry in result["decisions"]}
    assert by_partner["tiktok"]["reason"] == "out_of_scope"
    ocean = by_partner["oceanengine"]
    assert ocean["decision"] == "send"
    assert ocean["request"]["url"] == "https://analytics.oceanengine.com/api/v2/conversion"
    assert ocean["request"]["headers"] == {"Content-Type": "application/json"}
    assert ocean["request"]["body"]["properties"] == {"pay_amount": 6800}


# --- config -------------------------------------------------------------------------------------


def write_both(
    tmp_path: Path, ocean: dict[str, Any] | None = None, tiktok: dict[str, Any] | None = None
) -> Path:
    (tmp_path / "partners").mkdir(exist_ok=True)
    (tmp_path / "partners" / "tiktok.yaml").write_text(yaml.safe_dump(tiktok or partner_dict()))
    (tmp_path / "partners" / "oceanengine.yaml").write_text(
        yaml.safe_dump(ocean or oe_partner_dict())
    )
    config = tmp_path / "dispatcher.yaml"
    config.write_text(yaml.safe_dump({"kafka": {"bootstrap_servers": "localhost:9092"}}))
    return config


def issues_of(config: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(config, {"TIKTOK_ACCESS_TOKEN": "t", "OCEAN_TOKEN": "o"})
    return [str(issue) for issue in caught.value.issues]


def test_the_example_file_loads_beside_tiktok() -> None:
    repo = Path(__file__).resolve().parent.parent
    settings = load_settings(repo / "config" / "dispatcher.yaml", {"TIKTOK_ACCESS_TOKEN": "t"})
    ocean = settings.partners.by_name("oceanengine")
    assert ocean.media_sources == ("bytedance_int",)
    assert ocean.delivery.batch_max_events == 1
    assert "oceanengine" not in settings.partners.tokens


def test_defaults_need_nothing_but_the_media_source() -> None:
    partner = make_oe_partner(
        {"app_id": "id1"}, endpoint="https://analytics.oceanengine.com/api/v2/conversion"
    )
    app = partner.apps[0]
    assert (app.install_postbacks.scope, app.in_app_postbacks.enabled) == ("attributed", False)
    assert partner.delivery.batch_max_events == 1
    assert partner.access_token_env is None


TIKTOK_IN_OCEAN = {"sdk_event": "af_purchase", "partner_event": "Pay(Purchase)"}


@pytest.mark.parametrize(
    ("app", "partner", "expected"),
    [
        ({"in_app": {"events": [{"sdk_event": "a", "partner_event": "active_pay"}, TIKTOK_IN_OCEAN]}}, {},
         "apps[0].in_app_postbacks.events[1].partner_event: 'Pay(Purchase)' is not an Ocean Engine "
         "event type; allowed: active_register, active_pay, next_day_open"),
        ({"in_app": {"events": [{"sdk_event": "a", "partner_event": "active"}]}}, {},
         "apps[0].in_app_postbacks.events[0].partner_event: 'active' is the install"),
        ({"install_scope": "all"}, {},
         "apps[0].install_postbacks.scope: scope 'all' is not allowed for Ocean Engine; allowed: attributed "
         "(Ocean Engine matches a conversion by its click id, which only its own installs carry)"),
        ({"in_app": {"scope": "all"}}, {},
         "apps[0].in_app_postbacks.scope: scope 'all' is not allowed for Ocean Engine; allowed: attributed "
         "(Ocean Engine matches a conversion by its click id, which only its own installs carry)"),
        ({"tiktok_app_id": "7300000000000000001"}, {}, "apps[0].tiktok_app_id: unknown key"),
        ({}, {"access_token_env": "OCEAN_TOKEN"},
         "access_token_env: Ocean Engine's conversion API takes no token"),
        ({}, {"delivery": {"batch_max_events": 2}},
         "delivery.batch_max_events: 2 is out of range; allowed: only 1"),
    ],
)  # fmt: skip
def test_config_errors_name_file_path_and_what_is_allowed(
    tmp_path: Path, app: dict[str, Any], partner: dict[str, Any], expected: str
) -> None:
    config = write_both(tmp_path, ocean=oe_partner_dict(oe_app_dict(**app), **partner))
    issues = issues_of(config)
    ocean_file = str((tmp_path / "partners" / "oceanengine.yaml").resolve())
    assert any(issue.startswith(f"{ocean_file}: {expected}") for issue in issues), issues


def test_an_ocean_engine_event_type_in_the_tiktok_file_is_an_error(tmp_path: Path) -> None:
    events = [{"sdk_event": "af_purchase", "partner_event": "active_pay"}]
    config = write_both(tmp_path, tiktok=partner_dict(app_dict(in_app={"events": events})))
    [issue] = issues_of(config)
    assert (
        "tiktok.yaml: apps[0].in_app_postbacks.events[0].partner_event: 'active_pay' is not a TikTok"
        in issue
    )


def test_every_event_type_is_accepted_and_sent_as_is() -> None:
    events = [
        {"sdk_event": f"e{i}", "partner_event": name} for i, name in enumerate(OCEAN_ENGINE_EVENTS)
    ]
    partner = make_oe_partner(oe_app_dict(in_app={"events": events}))
    for i, name in enumerate(OCEAN_ENGINE_EVENTS):
        decision = decide(make_oe_in_app(event_name=f"e{i}"), partner, ADAPTER, NOW_S)
        assert isinstance(decision, Send)
        assert decision.payload["event_type"] == name
        assert ADAPTER.event_label(decision.payload) == name


# --- signing, code 128, setup answers ----------------------------------------------------------


def test_a_request_is_signed_only_when_a_secret_is_set() -> None:
    """bububa/oceanengine marketing-api/core/client.go AnalyticsPost: `x-signature` is the
    lower-case hex SHA-256 of the body's bytes followed by the secret's."""
    body = ADAPTER.encode_request("id1234567890", [sent(make_oe_install()).payload])
    expected = hashlib.sha256(body + b"s3cret").hexdigest()
    assert sign(body, "s3cret") == expected
    assert ADAPTER.body_headers(body, "s3cret") == {"x-signature": expected}
    assert ADAPTER.body_headers(body, None) == {}
    assert ADAPTER.body_headers(body, "") == {}


def test_the_signing_secret_is_named_by_an_environment_variable() -> None:
    partner = make_oe_partner(oe_app_dict(), signing_secret_env="OCEAN_ENGINE_SECRET")
    assert partner.signing_secret_env == "OCEAN_ENGINE_SECRET"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="is not an environment variable name"):
        make_oe_partner(oe_app_dict(), signing_secret_env="the secret itself")


def test_code_128_is_taken_as_delivered() -> None:
    """bububa/oceanengine marketing-api/api/conversion/conversion.go returns no error for code 128
    (commit 40ad371, unexplained); its code and message are kept for the postback log."""
    result = ADAPTER.classify(200, {}, body(128, "already reported"), NOW)
    assert result == AttemptResult(OK, 200, 128, "already reported")
    assert result.request_id == "r-1"  # Ocean Engine's request id, for the postback log


@pytest.mark.parametrize("status", [200, 400, 500])
def test_the_request_id_is_kept_on_every_answer(status: int) -> None:
    assert ADAPTER.classify(status, {}, body(0), NOW).request_id == "r-1"
    no_id = json.dumps({"code": 0, "message": "ok"}).encode()
    assert ADAPTER.classify(status, {}, no_id, NOW).request_id is None


@pytest.mark.parametrize("status", [401, 403])
def test_an_unauthorized_or_forbidden_answer_holds_the_app(status: int) -> None:
    """RFC 9110 401/403: credentials or permission, nothing the conversion can fix."""
    result = ADAPTER.classify(status, {}, body(1, "forbidden"), NOW)
    assert result == AttemptResult(AttemptKind.SETUP, status, 1, "forbidden")


def test_a_signing_secret_is_loaded_from_its_variable_and_signs_every_request(
    tmp_path: Path,
) -> None:
    """bububa/oceanengine `marketing-api/core/client.go`: `x-signature` is the lower-case hex
    SHA-256 of the body followed by the secret; the secret lives in the environment only."""
    import asyncio

    import httpx

    from dispatcher.delivery.http import PartnerHttp

    config = write_both(tmp_path, ocean=oe_partner_dict(signing_secret_env="OCEAN_ENGINE_SECRET"))
    # Unset, it stops start-up like a missing token
    with pytest.raises(ConfigError) as caught:
        load_settings(config, {"TIKTOK_ACCESS_TOKEN": "t"})
    assert any("OCEAN_ENGINE_SECRET" in str(issue) and "signing_secret_env" in str(issue)
               for issue in caught.value.issues)  # fmt: skip
    settings = load_settings(config, {"TIKTOK_ACCESS_TOKEN": "t", "OCEAN_ENGINE_SECRET": "s3cret"})
    assert "s3cret" in settings.secrets()  # redacted from every log line
    signing = settings.partners.signing_secrets["oceanengine"].get_secret_value()
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"code": 0, "message": "s3cret ok", "request_id": "r"})

    http = PartnerHttp(
        httpx.AsyncClient(transport=httpx.MockTransport(answer)), ADAPTER, lambda: NOW
    )
    http.configure("http://oceanengine.test/api/v2/conversion", "", 5.0, signing)
    body = b'{"event_type":"active"}'
    result = asyncio.run(http.post(body, lambda: None))
    assert result.kind is AttemptKind.OK
    assert "s3cret" not in result.message
    assert seen[0].headers["x-signature"] == hashlib.sha256(body + b"s3cret").hexdigest()
    # Without a secret, nothing is signed
    http.configure("http://oceanengine.test/api/v2/conversion", "", 5.0)
    asyncio.run(http.post(body, lambda: None))
    assert "x-signature" not in seen[1].headers


@pytest.mark.parametrize("key", ["access_token_env", "access_token_file"])
def test_ocean_engine_takes_no_token_from_a_variable_or_a_file(key: str) -> None:
    with pytest.raises(ValidationError) as caught:
        make_oe_partner(oe_app_dict(), **{key: "OCEAN_TOKEN"})
    assert f"takes no token; allowed: leave {key} out" in str(caught.value)
