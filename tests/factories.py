"""Factories: build events and configs in one line, overriding only what a test is about."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.config import TikTokAppConfig, TikTokPartnerConfig
from schemas.events import InAppEvent, InstallEvent

INSTALL_TIME = datetime(2025, 11, 19, 9, 0, 0, tzinfo=UTC)
APP_ID = "id1234567890"
TIKTOK_APP_ID = "7300000000000000001"
_ids = itertools.count(1)


def ts(moment: datetime) -> str:
    """AppsFlyer's raw-data time format."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def event_dict(event_type: str = "install", **overrides: Any) -> dict[str, Any]:
    """A valid input event as a JSON-ready dict; by default a TikTok click install, in window."""
    number = next(_ids)
    touch = INSTALL_TIME - timedelta(hours=1)
    data: dict[str, Any] = {
        "event_id": f"evt-{number}",
        "event_type": event_type,
        "event_name": "install" if event_type == "install" else "af_purchase",
        "event_time": ts(
            INSTALL_TIME if event_type == "install" else INSTALL_TIME + timedelta(days=1)
        ),
        "install_time": ts(INSTALL_TIME),
        "app_id": APP_ID,
        "appsflyer_id": f"1700000000000-{number:07d}",
        "platform": "ios",
        "media_source": "bytedanceglobal_int",
        "attributed_touch_type": "click",
        "attributed_touch_time": ts(touch),
        "click_id": f"clk-{number}",
        "campaign_id": "cmp-1",
        "adset_id": "adset-1",
        "ad_id": "ad-1",
        "idfa": "6d92078a-8246-4ba4-ae5b-76104861e7dc",
        "idfv": "0C7B1C55-7A4C-4E5B-9D3E-3F1B2A1D0E9F",
        "ip": "203.0.113.7",
        "user_agent": "ExampleApp/1.2.3 (iPhone; iOS 17.1)",
        "app_version": "1.2.3",
        "country_code": "US",
    }
    if event_type != "install":
        data["event_value"] = {"af_revenue": "9.99", "af_currency": "USD", "af_content_id": "sku-1"}
        data["event_revenue"] = "9.99"
        data["event_revenue_currency"] = "USD"
    for key, value in overrides.items():
        data[key] = ts(value) if isinstance(value, datetime) else value
    return data


def make_install(**overrides: Any) -> InstallEvent:
    """A decoded install."""
    return InstallEvent.model_validate(event_dict("install", **overrides))


def make_in_app(**overrides: Any) -> InAppEvent:
    """A decoded in-app event (af_purchase with revenue by default)."""
    return InAppEvent.model_validate(event_dict("in-app-event", **overrides))


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
