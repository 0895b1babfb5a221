"""The benchmark's records: AppsFlyer Push API V2 records (the default), the same filled in
(`full`), or the small ones of the first benchmark. Every record is an owed in-app purchase, TikTok-attributed, inside every window;
each AppsFlyer record is of its own install (`appsflyer_id`), so the derived event ids are unique."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from dispatcher.devtools.samples import appsflyer_record, tiktok_click_url

APP_ID = "id1234567890"
# Stands in for `bench_sent_at` in records encoded ahead of time; replaced by the send time
# (`stamp`) when the record is produced.
SENT_AT_PLACEHOLDER = 1111111111.25  # exact in binary: json.dumps writes it as it is


def stamp(encoded: bytes, sent_at: float) -> bytes:
    """A record encoded with `SENT_AT_PLACEHOLDER`, sent at `sent_at` (Unix seconds)."""
    return encoded.replace(b"1111111111.25", b"%.6f" % sent_at, 1)


def _now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}"


def _value(n: int, run: str, sent_at: float | None) -> dict[str, Any]:
    value: dict[str, Any] = {
        "af_revenue": "4.99",
        "af_currency": "USD",
        "af_content_id": f"sku-{n % 50}",
    }
    if sent_at is not None:
        value["bench_sent_at"] = sent_at
    return value


def appsflyer(n: int, run: str, sent_at: float | None = None) -> dict[str, Any]:
    """A Push API V2 in-app purchase as AppsFlyer sends it: ~120 fields, most null, no event id,
    the click id in `original_url`."""
    click_id = f"E.C.P.{run}{n:012d}"
    return appsflyer_record({
        "attributed_touch_type": "click", "attributed_touch_time": "2025-11-19 08:00:00.000",
        "install_time": "2025-11-19 09:00:00.000", "event_time": _now(), "event_name": "af_purchase",
        "event_value": json.dumps(_value(n, run, sent_at)), "event_revenue": "4.99",
        "event_revenue_currency": "USD", "event_revenue_usd": "4.99", "event_source": "SDK",
        "media_source": "bytedanceglobal_int", "af_channel": "TikTok", "campaign": "spring_sale_1",
        "af_c_id": "1780001", "af_adset": "adgroup_1", "af_adset_id": "1790001", "af_ad": "video_1",
        "af_ad_id": "1800001", "af_ad_type": "video", "region": "NA", "country_code": "US",
        "city": "Austin", "ip": "203.0.113.7", "wifi": True, "language": "en-US",
        "appsflyer_id": f"1763500000000-{run}{n:07d}",
        "idfa": "6D92078A-8246-4BA4-AE5B-76104861E7DC", "idfv": "0C7B1C55-7A4C-4E5B-9D3E-3F1B2A1D0E9F",
        "platform": "ios", "device_type": "iPhone15,2", "os_version": "17.5", "app_version": "3.4.1",
        "sdk_version": "v6.15.1", "app_id": APP_ID, "app_name": "Example",
        "bundle_id": "com.example.app", "is_retargeting": False, "af_attribution_lookback": "7d",
        "is_primary_attribution": True,
        "user_agent": "ExampleApp/3.4.1 CFNetwork/1494.0.7 Darwin/23.4.0",
        "original_url": tiktok_click_url(APP_ID, click_id, "1780001", "1790001", "1800001"),
        "campaign_type": "ua", "conversion_type": "install", "match_type": "id_matching",
        "device_category": "phone", "device_model": "iPhone15,2", "api_version": "2.0",
        "event_type": "install-in-app-event", "selected_timezone": "UTC",
        "selected_currency": "USD",
    })  # fmt: skip


def small(n: int, run: str, sent_at: float | None = None) -> dict[str, Any]:
    """The first benchmark's record: the fields the worker reads, under this project's first names, with
    an event id (~700 bytes)."""
    return {
        "event_id": f"{run}-{n}", "event_type": "in-app-event", "event_name": "af_purchase",
        "event_time": _now(), "install_time": "2025-11-19 09:00:00.000",
        "app_id": APP_ID, "appsflyer_id": f"af-{n % 20000}", "platform": "ios",
        "media_source": "bytedanceglobal_int", "attributed_touch_type": "click",
        "attributed_touch_time": "2025-11-19 08:00:00.000", "click_id": f"clk-{n}",
        "campaign_id": "1780001", "adset_id": "1790001", "ad_id": "1800001",
        "idfa": "6d92078a-8246-4ba4-ae5b-76104861e7dc", "ip": "203.0.113.7",
        "user_agent": "ExampleApp/3.4.1 (iPhone; iOS 17.5)", "app_version": "3.4.1",
        "event_value": json.dumps(_value(n, run, sent_at)), "event_revenue": "4.99",
        "event_revenue_currency": "USD",
    }  # fmt: skip


# AppsFlyer fields blank for an iOS in-app event after a TikTok click and no other touch: the
# Android, Google Play and Amazon ids, search keywords, sub-parameters, contributors,
# re-engagement. `full` leaves them out, as the newer Push API leaves blank fields out.
_BLANK_ON_IOS = frozenset({
    "af_keywords", "af_sub_siteid", "af_sub1", "af_sub2", "af_sub3", "af_sub4", "af_sub5",
    *(f"contributor_{n}_{field}" for n in (1, 2, 3)
      for field in ("af_prt", "media_source", "campaign", "touch_type", "touch_time",
                    "match_type", "engagement_type")),
    "advertising_id", "android_id", "imei", "oaid", "amazon_aid", "retargeting_conversion_type",
    "af_reengagement_window", "http_referrer", "install_app_store", "gp_referrer",
    "gp_click_time", "gp_install_begin", "gp_broadcast_referrer", "keyword_match_type",
    "keyword_id", "custom_dimension", "store_product_page", "raw_consent_data",
})  # fmt: skip


def full(n: int, run: str, sent_at: float | None = None) -> dict[str, Any]:
    """The same purchase with every field of AppsFlyer's list that such an event carries filled
    in (cost, location, carrier, consent, times in the selected time zone...) and
    the blank ones left out (~2.6 KB)."""
    record = appsflyer(n, run, sent_at)
    record.update({
        "is_receipt_validated": True, "af_prt": "examplemedia", "af_siteid": "tiktok_feed",
        "af_cost_model": "cpc", "af_cost_value": "0.12", "af_cost_currency": "USD",
        "state": "TX", "postal_code": "78701", "dma": "635", "operator": "Verizon",
        "carrier": "Verizon", "customer_user_id": f"user-{n}", "custom_data": '{"tier":"gold"}',
        "network_account_id": "7000000000000001", "deeplink_url": "example://shop/sku-1",
        "device_download_time": "2025-11-19 08:58:41.000", "is_lat": False,
        "store_reinstall": False, "revenue_in_selected_currency": "4.99",
        "cost_in_selected_currency": "0.12",
        "attributed_touch_time_selected_timezone": "2025-11-19 08:00:00.000+0000",
        "install_time_selected_timezone": "2025-11-19 09:00:00.000+0000",
        "event_time_selected_timezone": record["event_time"] + "+0000",
        "device_download_time_selected_timezone": "2025-11-19 08:58:41.000+0000",
        "engagement_type": "click", "gdpr_applies": False, "ad_personalization_enabled": True,
        "ad_user_data_enabled": True, "att": "authorized",
    })  # fmt: skip
    return {field: value for field, value in record.items() if field not in _BLANK_ON_IOS}


SHAPES: dict[str, Callable[..., dict[str, Any]]] = {
    "appsflyer": appsflyer,
    "full": full,
    "small": small,
}
