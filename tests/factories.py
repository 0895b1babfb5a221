"""Factories: build events and configs in one line, overriding only what a test is about."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from dispatcher.devtools.samples import (
    appsflyer_record,
    oceanengine_click_url,
    tiktok_click_url,
)
from dispatcher.inputs import BadInput
from dispatcher.inputs.appsflyer import AppsFlyerDecoder, derive_event_id, event_value_text
from dispatcher.partners.oceanengine import OceanEngineConfig
from dispatcher.partners.tiktok import TikTokAppConfig, TikTokPartnerConfig
from schemas.events import Event

INSTALL_TIME = datetime(2025, 11, 19, 9, 0, 0, tzinfo=UTC)
# The moment the rules decide at in tests that are not about age: the day after the install,
# when a default in-app event happens.
NOW_S = (INSTALL_TIME + timedelta(days=1)).timestamp()
APP_ID = "id1234567890"
TIKTOK_APP_ID = "7300000000000000001"
CAMPAIGN_ID, ADSET_ID, AD_ID = "1780001", "1790001", "1800001"
PURCHASE_VALUE = {"af_revenue": "9.99", "af_currency": "USD", "af_content_id": "sku-1"}
_ids = itertools.count(1)


def ts(moment: datetime) -> str:
    """AppsFlyer's raw-data time format."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def click_url(click_id: str, **params: str) -> str:
    """An AppsFlyer click link as TikTok fills it in and AppsFlyer records it in `original_url`."""
    return tiktok_click_url(APP_ID, click_id, CAMPAIGN_ID, ADSET_ID, AD_ID) + (
        "&" + urlencode(params) if params else ""
    )


def event_dict(kind: str = "install", **overrides: Any) -> dict[str, Any]:
    """An AppsFlyer Push API V2 record as a JSON-ready dict, for the topic of `kind` events; by
    default a TikTok click install in its lookback, with no event id (AppsFlyer sends none), the
    click id in `original_url` and every other field null. Datetime overrides are formatted."""
    number = next(_ids)
    in_app = kind != "install"
    touch = INSTALL_TIME - timedelta(hours=1)
    values: dict[str, Any] = {
        "attributed_touch_type": "click",
        "attributed_touch_time": ts(touch),
        "install_time": ts(INSTALL_TIME),
        "event_time": ts(INSTALL_TIME + timedelta(days=1) if in_app else INSTALL_TIME),
        "event_name": "af_purchase" if in_app else "install",
        "event_value": json.dumps(PURCHASE_VALUE) if in_app else "{}",
        "event_revenue": "9.99" if in_app else None,
        "event_revenue_currency": "USD",
        "event_source": "SDK",
        "media_source": "bytedanceglobal_int",
        "campaign": "spring_sale",
        "af_c_id": CAMPAIGN_ID,
        "af_adset": "adgroup_a",
        "af_adset_id": ADSET_ID,
        "af_ad": "video_1",
        "af_ad_id": AD_ID,
        "country_code": "US",
        "ip": "203.0.113.7",
        "appsflyer_id": f"1700000000000-{number:07d}",
        "idfa": "6D92078A-8246-4BA4-AE5B-76104861E7DC",
        "idfv": "0C7B1C55-7A4C-4E5B-9D3E-3F1B2A1D0E9F",
        "platform": "ios",
        "app_version": "1.2.3",
        "app_id": APP_ID,
        "bundle_id": "com.example.app",
        "is_retargeting": False,
        "is_primary_attribution": True,
        "user_agent": "ExampleApp/1.2.3 CFNetwork/1474 Darwin/23.1.0",
        "original_url": click_url(f"E.C.P.clk{number}"),
        "conversion_type": "install",
        "campaign_type": "ua",
        "api_version": "2.0",
        "event_type": "install-in-app-event" if in_app else "install",
    }
    for key, value in overrides.items():
        values[key] = ts(value) if isinstance(value, datetime) else value
    return appsflyer_record(values)


def click_id_of(record: dict[str, Any]) -> str:
    """The click id a default record carries in its `original_url`."""
    value = parse_qs(urlsplit(record["original_url"]).query)["clickid"][0]
    return value


def event_id_of(record: dict[str, Any]) -> str:
    """The event id the worker sends for a record: its own, else the derived one."""
    if record.get("event_id"):
        return str(record["event_id"])
    return derive_event_id(
        str(record["app_id"]), str(record["appsflyer_id"]), record.get("event_name") or "",
        str(record["event_time"]), event_value_text(record.get("event_value")),
    )  # fmt: skip


def decode(message: bytes | None, kind: str) -> Event | BadInput:
    """Decode a message as the worker does on the topic of `kind` events."""
    return AppsFlyerDecoder().decode(message, kind)  # type: ignore[arg-type]


def decode_record(record: dict[str, Any], kind: str) -> Event:
    """The canonical event of a record read from the topic of `kind` events."""
    event = AppsFlyerDecoder().decode(raw(record), kind)  # type: ignore[arg-type]
    assert isinstance(event, Event), event
    return event


def make_install(**overrides: Any) -> Event:
    """A decoded install."""
    return decode_record(event_dict("install", **overrides), "install")


def make_in_app(**overrides: Any) -> Event:
    """A decoded in-app event (af_purchase with revenue by default)."""
    return decode_record(event_dict("in-app-event", **overrides), "in-app-event")


def raw(data: dict[str, Any]) -> bytes:
    """The Kafka message value of an event dict."""
    return json.dumps(data).encode()


DEFAULT_EVENTS = (
    {"sdk_event": "af_purchase", "partner_event": "Pay(Purchase)", "send_revenue": True},
    {"sdk_event": "af_complete_registration", "partner_event": "Registration"},
    {"sdk_event": "af_add_to_cart", "partner_event": "Add_to_cart", "send_revenue": False},
)


def app_dict(**overrides: Any) -> dict[str, Any]:
    """A TikTok app entry as written in YAML."""
    in_app = {
        "enabled": True,
        "scope": "attributed",
        "window": "180d",
        "events": list(DEFAULT_EVENTS),
    }
    in_app |= overrides.pop("in_app", {})
    data: dict[str, Any] = {
        "app_id": APP_ID,
        "tiktok_app_id": TIKTOK_APP_ID,
        "active": True,
        "view_through": False,
        "click_lookback": "7d",
        "view_through_lookback": "1d",
        "install_postbacks": {"scope": overrides.pop("install_scope", "attributed")},
        "in_app_postbacks": in_app,
    }
    data |= overrides
    return data


def make_app(**overrides: Any) -> TikTokAppConfig:
    """A validated TikTok app config."""
    return TikTokAppConfig.model_validate(app_dict(**overrides))


def partner_dict(*apps: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """A TikTok partner file as written in YAML."""
    data: dict[str, Any] = {
        "partner": "tiktok",
        "media_sources": ["bytedanceglobal_int", "tiktokglobal_int"],
        "endpoint": "https://business-api.tiktok.com/open_api/v1.3/event/track/",
        "access_token_env": "TIKTOK_ACCESS_TOKEN",
        "apps": list(apps) if apps else [app_dict()],
    }
    data |= overrides
    return data


def make_partner(*apps: dict[str, Any], **overrides: Any) -> TikTokPartnerConfig:
    """A validated TikTok partner config; one default app unless apps are given."""
    return TikTokPartnerConfig.model_validate(partner_dict(*apps, **overrides))


# --- Ocean Engine ---------------------------------------------------------------------------------

OCEAN_ENGINE_EVENTS = (
    {"sdk_event": "af_purchase", "partner_event": "active_pay", "send_revenue": True},
    {"sdk_event": "af_complete_registration", "partner_event": "active_register"},
    {"sdk_event": "af_add_to_cart", "partner_event": "in_app_cart", "send_revenue": False},
)


def oceanengine_event_dict(kind: str = "install", **overrides: Any) -> dict[str, Any]:
    """An AppsFlyer record of an install attributed to an Ocean Engine click (media source
    `bytedance_int`, the click id in `original_url`), in CNY; see `event_dict`."""
    number = next(_ids)
    values: dict[str, Any] = {
        "media_source": "bytedance_int",
        "original_url": oceanengine_click_url(
            APP_ID, f"OE.clk{number}", CAMPAIGN_ID, ADSET_ID, AD_ID
        ),
        "event_revenue": "68.00" if kind != "install" else None,
        "event_revenue_currency": "CNY",
        "event_value": json.dumps({"af_revenue": "68.00", "af_currency": "CNY"})
        if kind != "install"
        else "{}",
        "platform": "android",
        "idfa": None,
        "idfv": None,
        "advertising_id": "3f6c4b3e-8f1e-4a0c-9d56-0a4c8d2b7e11",
        "android_id": "9774d56d682e549c",
        "oaid": "6c1a5b2f-0d9e-4c57-b3a2-1f0e9d8c7b6a",
        "imei": "867530912345678",
    }
    return event_dict(kind, **(values | overrides))


def make_oe_install(**overrides: Any) -> Event:
    """A decoded install attributed to an Ocean Engine click."""
    return decode_record(oceanengine_event_dict("install", **overrides), "install")


def make_oe_in_app(**overrides: Any) -> Event:
    """A decoded in-app event (af_purchase, 68 CNY) of an Ocean Engine install."""
    return decode_record(oceanengine_event_dict("in-app-event", **overrides), "in-app-event")


def oe_app_dict(**overrides: Any) -> dict[str, Any]:
    """An Ocean Engine app entry as written in YAML."""
    in_app = {"enabled": True, "scope": "attributed", "window": "30d",
              "events": list(OCEAN_ENGINE_EVENTS)}  # fmt: skip
    in_app |= overrides.pop("in_app", {})
    data: dict[str, Any] = {
        "app_id": APP_ID,
        "active": True,
        "view_through": False,
        "click_lookback": "7d",
        "install_postbacks": {"scope": overrides.pop("install_scope", "attributed")},
        "in_app_postbacks": in_app,
    }
    return data | overrides


def oe_partner_dict(*apps: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """An Ocean Engine partner file as written in YAML."""
    data: dict[str, Any] = {
        "partner": "oceanengine",
        "media_sources": ["bytedance_int"],
        "endpoint": "https://analytics.oceanengine.com/api/v2/conversion",
        "apps": list(apps) if apps else [oe_app_dict()],
    }
    return data | overrides


def make_oe_partner(*apps: dict[str, Any], **overrides: Any) -> OceanEngineConfig:
    """A validated Ocean Engine partner config; one default app unless apps are given."""
    return OceanEngineConfig.model_validate(oe_partner_dict(*apps, **overrides))
