"""Contract tests: the request bodies the worker builds from the AppsFlyer corpus, held to JSON
Schemas written from the partners' public models, and TikTok's answer table held to its SDK.

The schemas (beside this file) name the source of every rule in its `description`:
- `tiktok_event_track.schema.json`: segmentio/action-destinations tiktok-app-events
  (`reportAppEvent/types.ts`, `fields/common_fields.ts`), bububa/tiktok-business
  `model/event/track.go`, the event names and currencies of TikTok's iOS and Android SDKs;
- `oceanengine_conversion.schema.json`: bububa/oceanengine
  `marketing-api/model/conversion/request.go` and its enums.
A payload change that leaves a schema fails here, whatever the adapter's own tests say.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from dispatcher.partners.oceanengine import OceanEngineAdapter
from dispatcher.partners.tiktok import TikTokAdapter
from dispatcher.partners.tiktok.codes import ANSWER_CLASSES, AnswerClass
from dispatcher.rules import Send, decide
from schemas.events import Event
from tests.factories import app_dict, decode, make_oe_partner, make_partner, oe_app_dict

HERE = Path(__file__).parent
CORPUS = HERE.parent / "corpus" / "appsflyer"
TIKTOK = Draft202012Validator(json.loads((HERE / "tiktok_event_track.schema.json").read_text()))
OCEAN = Draft202012Validator(json.loads((HERE / "oceanengine_conversion.schema.json").read_text()))
TIKTOK_ADAPTER = TikTokAdapter()
OCEAN_ADAPTER = OceanEngineAdapter()
ALL_EVENTS = [
    {"sdk_event": "af_purchase", "partner_event": "Pay(Purchase)", "send_revenue": True},
    {"sdk_event": "af_add_to_cart", "partner_event": "Add_to_cart"},
    {"sdk_event": "af_complete_registration", "partner_event": "Registration"},
]
# Every app under scope all with every corpus event mapped, one of them in test mode, so the
# corpus yields as many bodies as it can.
TIKTOK_PARTNER = make_partner(
    app_dict(install_scope="all", in_app={"scope": "all", "window": "lifetime", "events": ALL_EVENTS}),
    app_dict(app_id="com.example.app", tiktok_app_id="7300000000000000002", view_through=True,
             install_scope="all", test_event_code="TEST12345",
             in_app={"scope": "all", "window": "lifetime", "events": ALL_EVENTS}),
)  # fmt: skip
OCEAN_EVENTS = [
    {"sdk_event": "af_purchase", "partner_event": "active_pay", "send_revenue": True},
    {"sdk_event": "af_add_to_cart", "partner_event": "in_app_cart"},
    {"sdk_event": "af_complete_registration", "partner_event": "active_register"},
]
OCEAN_PARTNER = make_oe_partner(
    oe_app_dict(view_through=True, in_app={"window": "lifetime", "events": OCEAN_EVENTS}),
    oe_app_dict(app_id="com.example.app", view_through=True,
                in_app={"window": "lifetime", "events": OCEAN_EVENTS}),
)  # fmt: skip
RECORDS = sorted(CORPUS.glob("*.json"))


def _event(path: Path, **overrides: Any) -> Event:
    record = json.loads(path.read_bytes()) | overrides
    topic = "in-app-event" if path.stem.startswith("in_app") else "install"
    event = decode(json.dumps(record).encode(), topic)
    assert isinstance(event, Event), event
    return event


def _now(event: Event) -> float:
    """Decided at the event's own time, so no corpus record is too old."""
    return event.event_time_s


def tiktok_bodies() -> list[tuple[str, dict[str, Any]]]:
    bodies = []
    for path in RECORDS:
        event = _event(path)
        decision = decide(event, TIKTOK_PARTNER, TIKTOK_ADAPTER, _now(event))
        if isinstance(decision, Send):
            body = TIKTOK_ADAPTER.encode_request(decision.destination, [decision.payload])
            bodies.append((path.stem, json.loads(body)))
    return bodies


def ocean_bodies() -> list[tuple[str, dict[str, Any]]]:
    bodies = []
    for path in RECORDS:
        # The same user actions as if Ocean Engine's click had brought the install
        event = _event(path, media_source="bytedance_int", event_revenue_currency="CNY",
                       click_id=f"oe.{path.stem}")  # fmt: skip
        decision = decide(event, OCEAN_PARTNER, OCEAN_ADAPTER, _now(event))
        if isinstance(decision, Send):
            body = OCEAN_ADAPTER.encode_request(decision.destination, [decision.payload])
            bodies.append((path.stem, json.loads(body)))
    return bodies


TIKTOK_BODIES = tiktok_bodies()
OCEAN_BODIES = ocean_bodies()


def test_the_corpus_gives_bodies_of_every_kind() -> None:
    events = {entry["event"] for _, body in TIKTOK_BODIES for entry in body["data"]}
    assert {"InstallApp", "Purchase", "AddToCart", "Registration"} <= events
    assert any("test_event_code" in body for _, body in TIKTOK_BODIES)
    assert any(body["data"][0]["ad"]["attributed"] is False for _, body in TIKTOK_BODIES)
    assert {body["event_type"] for _, body in OCEAN_BODIES} >= {"active", "active_pay"}


@pytest.mark.parametrize(("name", "body"), TIKTOK_BODIES, ids=[n for n, _ in TIKTOK_BODIES])
def test_every_tiktok_body_of_the_corpus_meets_tiktoks_schema(
    name: str, body: dict[str, Any]
) -> None:
    TIKTOK.validate(body)


@pytest.mark.parametrize(("name", "body"), OCEAN_BODIES, ids=[n for n, _ in OCEAN_BODIES])
def test_every_ocean_engine_body_of_the_corpus_meets_its_schema(
    name: str, body: dict[str, Any]
) -> None:
    OCEAN.validate(body)


def _purchase_body() -> dict[str, Any]:
    return copy.deepcopy(dict(TIKTOK_BODIES)["in_app_purchase"])


def _changed(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    body = _purchase_body()
    where: Any = body
    for key in path[:-1]:
        where = where[key]
    where[path[-1]] = value
    return body


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(_changed(("data", 0, "user", "android_id"), "a1b2"), id="a-field-tiktok-lacks"),
        pytest.param(_changed(("data", 0, "user", "att_status"), "authorized"), id="lower-case-att"),
        pytest.param(_changed(("data", 0, "app", "app_id"), "id1234567890"), id="ios-app-id-with-id"),
        pytest.param(_changed(("data", 0, "user", "idfa"), "6d92078a-8246"), id="lower-case-idfa"),
        pytest.param(_changed(("data", 0, "event"), "InAppAdImpr"), id="androids-spelling"),
        pytest.param(_changed(("data", 0, "properties", "currency"), "XAF"), id="unlisted-currency"),
        pytest.param(_changed(("data", 0, "properties", "content_type"), "shoes"), id="content-type"),
        pytest.param(_changed(("data", 0, "properties", "af_content_id"), "gems_500"),
                     id="af-content-id-beside-contents"),
        pytest.param(_changed(("data", 0, "properties", "content_id"), "gems_500"),
                     id="content-id-beside-contents"),
        pytest.param(_changed(("data", 0, "properties", "contents", 0, "content_id"), 500),
                     id="a-content-id-that-is-a-number"),
        pytest.param(_changed(("data", 0, "ad", "callbeack"), "x"), id="bububas-typo"),
        pytest.param(_changed(("data", 0, "event_time"), 1763664069000), id="milliseconds"),
    ],
)  # fmt: skip
def test_tiktoks_schema_refuses_a_body_that_leaves_it(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        TIKTOK.validate(body)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("context", "device", "platform"), "ios"),
        (("context", "device", "imei"), "867530912345678"),
        (("timestamp",), 1763664069),
        (("event_type",), "purchase"),
        (("properties", "pay_amount"), 9.99),
    ],
)  # fmt: skip
def test_ocean_engines_schema_refuses_a_body_that_leaves_it(
    path: tuple[str, ...], value: Any
) -> None:
    body = copy.deepcopy(dict(OCEAN_BODIES)["in_app_purchase"])
    where: Any = body
    for key in path[:-1]:
        where = where.setdefault(key, {})
    where[path[-1]] = value
    with pytest.raises(ValidationError):
        OCEAN.validate(body)


# --- TikTok's answer table against its SDK's list ----------------------------------------------


def _sdk_codes() -> dict[int, str]:
    codes = {}
    for line in (HERE / "tiktok_sdk_codes.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, code = line.split()
            codes[int(code)] = name
    return codes


def test_the_answer_table_holds_exactly_the_sdks_codes_each_in_a_class() -> None:
    """tiktok/tiktok-business-api-sdk tiktok_code.py `NumericErrorCodes`: 163 codes."""
    sdk = _sdk_codes()
    assert len(sdk) == 163
    assert set(ANSWER_CLASSES) == set(sdk)
    assert all(isinstance(kind, AnswerClass) for kind in ANSWER_CLASSES.values())
    assert {kind for kind in ANSWER_CLASSES.values()} == set(AnswerClass)
