"""Realistic sample events for the demo and benchmarks: every case the rules distinguish."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from schemas.events import EventType

# Push API V2's field names, in AppsFlyer's order (raw data V5, as listed by the Pull API's
# public clients, plus the Push-only ones); a deployment selects which it receives. Sources in
# docs/input-events.md.
APPSFLYER_FIELDS: tuple[str, ...] = (
    "attributed_touch_type", "attributed_touch_time", "install_time", "event_time", "event_name",
    "event_value", "event_revenue", "event_revenue_currency", "event_revenue_usd", "event_source",
    "is_receipt_validated", "af_prt", "media_source", "af_channel", "af_keywords", "campaign",
    "af_c_id", "af_adset", "af_adset_id", "af_ad", "af_ad_id", "af_ad_type", "af_siteid",
    "af_sub_siteid", "af_sub1", "af_sub2", "af_sub3", "af_sub4", "af_sub5", "af_cost_model",
    "af_cost_value", "af_cost_currency",
    *(f"contributor_{n}_{field}" for n in (1, 2, 3)
      for field in ("af_prt", "media_source", "campaign", "touch_type", "touch_time")),
    "region", "country_code", "state", "city", "postal_code", "dma", "ip", "wifi", "operator",
    "carrier", "language", "appsflyer_id", "advertising_id", "idfa", "android_id",
    "customer_user_id", "imei", "idfv", "platform", "device_type", "os_version", "app_version",
    "sdk_version", "app_id", "app_name", "bundle_id", "is_retargeting",
    "retargeting_conversion_type", "af_attribution_lookback", "af_reengagement_window",
    "is_primary_attribution", "user_agent", "http_referrer", "original_url", "custom_data",
    "network_account_id", "install_app_store",
    *(f"contributor_{n}_match_type" for n in (1, 2, 3)),
    "campaign_type", "conversion_type", "match_type", "gp_referrer", "gp_click_time",
    "gp_install_begin", "gp_broadcast_referrer", "keyword_match_type", "keyword_id", "amazon_aid",
    "device_category", "device_model", "device_download_time", "deeplink_url", "oaid", "is_lat",
    "store_reinstall", "api_version", "event_type", "selected_timezone", "selected_currency",
    "revenue_in_selected_currency", "cost_in_selected_currency",
    "attributed_touch_time_selected_timezone", "install_time_selected_timezone",
    "event_time_selected_timezone", "device_download_time_selected_timezone", "engagement_type",
    *(f"contributor_{n}_engagement_type" for n in (1, 2, 3)),
    "custom_dimension", "store_product_page", "raw_consent_data", "gdpr_applies",
    "ad_personalization_enabled", "ad_user_data_enabled", "att",
)  # fmt: skip


def appsflyer_record(values: dict[str, Any]) -> dict[str, Any]:
    """A Push API V2 message: every field, null unless `values` sets it (older Push API sends
    blank fields as null; newer leaves them out, which `values` can do by popping them)."""
    record: dict[str, Any] = dict.fromkeys(APPSFLYER_FIELDS)
    record.update(values)
    return record


def tiktok_click_url(
    app_id: str, click_id: str, campaign_id: str, adset_id: str, ad_id: str
) -> str:
    """An AppsFlyer click link as TikTok fills it and AppsFlyer records it in `original_url`."""
    query = urlencode(
        {"pid": "bytedanceglobal_int", "af_c_id": campaign_id, "af_adset_id": adset_id,
         "af_ad_id": ad_id, "clickid": click_id, "af_click_lookback": "7d", "redirect": "false"}
    )  # fmt: skip
    return f"https://app.appsflyer.com/{app_id}?{query}"


def oceanengine_click_url(
    app_id: str, click_id: str, campaign_id: str, adset_id: str, ad_id: str
) -> str:
    """An AppsFlyer click link as Ocean Engine fills it (`clickid` from its `__CALLBACK_PARAM__`
    macro; campaign, ad plan and creative ids) and AppsFlyer records it in `original_url`."""
    query = urlencode(
        {"pid": "bytedance_int", "af_c_id": campaign_id, "af_adset_id": adset_id,
         "af_ad_id": ad_id, "clickid": click_id, "redirect": "false"}
    )  # fmt: skip
    return f"https://app.appsflyer.com/{app_id}?{query}"


DEMO_APP = "id1234567890"  # view-through off, installs and in-app scope: attributed
DEMO_APP_ALL = "com.example.app"  # view-through on, scope: all, window: lifetime
DEMO_TIKTOK_IDS = {DEMO_APP: "7300000000000000001", DEMO_APP_ALL: "7300000000000000002"}
OTHER_PARTNERS = ("googleadwords_int", "Facebook Ads", "applovin_int", "unityads_int")


@dataclass(frozen=True)
class Sample:
    """One message to produce: the topic kind, its value, and the case it illustrates."""

    event_type: EventType
    value: dict[str, Any] | bytes
    case: str

    def encode(self) -> bytes:
        """The Kafka message value."""
        return self.value if isinstance(self.value, bytes) else json.dumps(self.value).encode()

    def key(self) -> bytes | None:
        """The Kafka key: the AppsFlyer id keeps one user's events on one partition."""
        if isinstance(self.value, dict):
            return str(self.value.get("appsflyer_id", "")).encode() or None
        return None


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


class SampleGenerator:
    """Seeded generator of AppsFlyer Push API V2 records around `now`."""

    # case → weight; the in-app cases come with their install's attribution
    CASES: tuple[tuple[str, int], ...] = (
        ("install_tiktok_click", 12),
        ("install_tiktok_successor_id", 3),
        ("install_view_through_on", 3),
        ("install_view_through_off", 3),
        ("install_organic", 8),
        ("install_organic_scope_all", 4),
        ("install_other_partner", 8),
        ("install_restricted", 2),
        ("install_click_outside_lookback", 3),
        ("install_unknown_app", 2),
        ("install_reinstall", 2),
        ("install_re_engagement", 2),
        ("in_app_purchase_attributed", 14),
        ("in_app_registration_attributed", 8),
        ("in_app_add_to_cart_attributed", 8),
        ("in_app_organic", 8),
        ("in_app_unmapped_event", 6),
        ("in_app_outside_window", 4),
        ("in_app_re_engagement_copies", 2),
        ("install_oceanengine_click", 6),
        ("install_oceanengine_no_click_id", 1),
        ("in_app_oceanengine_purchase", 5),
        ("in_app_oceanengine_registration", 2),
        # AppsFlyer's own signals: fraud, consent, limited ad tracking, ATT, age
        ("install_blocked", 2),
        ("in_app_rejected", 1),
        ("in_app_no_consent", 2),
        ("install_android_lat", 1),
        ("install_att_denied", 1),
        ("in_app_too_old", 1),
        ("bad_input", 1),
    )

    def __init__(self, seed: int = 7, now: datetime | None = None) -> None:
        self._random = random.Random(seed)
        self._now = now
        self._counter = 0
        self._cases = [case for case, _ in self.CASES]
        self._weights = [weight for _, weight in self.CASES]

    def generate(self, count: int) -> Iterator[Sample]:
        """`count` samples in a realistic mix (a case of two copies yields two samples)."""
        produced = 0
        while produced < count:
            case = self._random.choices(self._cases, self._weights)[0]
            for sample in self.make_all(case)[: count - produced]:
                produced += 1
                yield sample

    def make(self, case: str) -> Sample:
        """One sample of the given case (the primary copy, for a case of two)."""
        return self.make_all(case)[0]

    def make_all(self, case: str) -> list[Sample]:
        """The messages of one case: one, or the primary and secondary copies of an event."""
        self._counter += 1
        rnd = self._random
        now = self._now or datetime.now(UTC)
        if case == "bad_input":
            value = rnd.choice(
                [b"{not json", b"[]", b'{"event_type": "install"}', json.dumps(
                    appsflyer_record({"event_type": "install", "event_name": "install",
                                      "event_time": 1763632800, "install_time": "yesterday",
                                      "app_id": DEMO_APP, "appsflyer_id": "x"})).encode()]
            )  # fmt: skip
            return [Sample("install", value, case)]
        in_app = case.startswith("in_app")
        install_age = timedelta(minutes=rnd.randint(1, 60 * 24 * 20)) if in_app else timedelta(0)
        install_time = now - install_age
        event = self._base(install_time, now if in_app else install_time)
        if case in {"install_organic", "in_app_organic", "install_organic_scope_all"}:
            event |= _ORGANIC
            event["event_type"] = "organic-install"
        if case == "install_tiktok_successor_id":
            # TikTok as a self-reporting network: no attribution link, no click id.
            event |= {"media_source": "tiktokglobal_int", "original_url": None}
        if case in {"install_view_through_on", "install_view_through_off"}:
            event["attributed_touch_type"] = "impression"
            event["attributed_touch_time"] = _ts(install_time - timedelta(hours=rnd.randint(1, 20)))
            event["original_url"] = None
        if case == "install_view_through_on":
            event["app_id"] = DEMO_APP_ALL
        if case in {"install_organic_scope_all"}:
            event["app_id"] = DEMO_APP_ALL
        if case == "install_other_partner":
            event |= {"media_source": rnd.choice(OTHER_PARTNERS), "original_url": None}
        if case == "install_restricted":
            event |= _ORGANIC | {"media_source": "restricted"}
        if case == "install_click_outside_lookback":
            event["attributed_touch_time"] = _ts(install_time - timedelta(days=rnd.randint(8, 20)))
        if case == "install_unknown_app":
            event["app_id"] = "com.unconfigured.game"
        if case == "install_reinstall":
            event |= {"event_type": "reinstall", "event_name": "reinstall",
                      "conversion_type": "reinstall"}  # fmt: skip
        if case == "install_re_engagement":
            event |= {"event_type": "re-engagement", "event_name": "re-engagement",
                      "conversion_type": "re-engagement", "is_retargeting": True,
                      "retargeting_conversion_type": "re-engagement",
                      "campaign_type": "retargeting"}  # fmt: skip
        if case == "install_blocked":
            # Protect360's verdict, as its raw data reports carry it
            event |= {"blocked_reason": rnd.choice(["click_flood", "bots", "install_hijacking"]),
                      "blocked_reason_value": str(rnd.randint(1, 40))}  # fmt: skip
        if case == "install_android_lat":
            event |= {"platform": "android", "idfa": None, "idfv": None, "is_lat": True,
                      "advertising_id": str(UUID(int=rnd.getrandbits(128), version=4)),
                      "user_agent": "Dalvik/2.1.0 (Linux; U; Android 14; Pixel 8)"}  # fmt: skip
        if case == "install_att_denied":
            # The user refused tracking: AppsFlyer fills the IDFA with zeros
            event |= {"platform": "ios", "att": "denied", "advertising_id": None,
                      "idfa": "00000000-0000-0000-0000-000000000000"}  # fmt: skip
        if "oceanengine" in case:
            event |= self._oceanengine(event)
        if case == "install_oceanengine_no_click_id":
            event["original_url"] = None  # no link recorded: nothing to match the conversion by
        if rnd.random() < 0.5:
            # Newer Push API leaves blank fields out; older sends them as null.
            event = {key: value for key, value in event.items() if value is not None}
        if not in_app:
            return [Sample("install", event, case)]
        event |= self._in_app(case, now)
        if case != "in_app_re_engagement_copies":
            return [Sample("in-app-event", event, case)]
        # Reported twice during a re-engagement: the primary copy to the retargeting source
        # (TikTok), the secondary to the user-acquisition source (another network). Under
        # scope: all, only the primary copy is owed to TikTok.
        event["app_id"] = DEMO_APP_ALL
        primary = event | {
            "event_type": "re-engagement-in-app-event", "is_retargeting": True,
            "retargeting_conversion_type": "re-engagement", "campaign_type": "retargeting",
        }  # fmt: skip
        secondary = event | {
            "media_source": "googleadwords_int", "original_url": None, "af_channel": "ACI_Search",
            "is_primary_attribution": False,
        }  # fmt: skip
        return [Sample("in-app-event", primary, case), Sample("in-app-event", secondary, case)]

    def _base(self, install_time: datetime, event_time: datetime) -> dict[str, Any]:
        rnd = self._random
        ios = rnd.random() < 0.55
        touch = install_time - timedelta(minutes=rnd.randint(1, 60 * 24 * 3))
        app_id = DEMO_APP
        campaign_id = str(rnd.choice([1780001, 1780002, 1780003]))
        adset_id = str(rnd.choice([1790001, 1790002]))
        ad_id = str(rnd.choice([1800001, 1800002, 1800003, 1800004]))
        click_id = f"E.C.P.{rnd.getrandbits(96):024x}"
        uuid = str(UUID(int=rnd.getrandbits(128), version=4))
        created = int(install_time.timestamp() * 1000) - rnd.randint(0, 10**6)
        values: dict[str, Any] = {
            "attributed_touch_type": "click",
            "attributed_touch_time": _ts(touch),
            "install_time": _ts(install_time),
            "event_time": _ts(event_time),
            "event_name": "install",
            "event_value": "{}",
            "event_revenue_currency": "USD",
            "event_source": "SDK",
            "media_source": "bytedanceglobal_int",
            "af_channel": rnd.choice(["TikTok", "Pangle"]),
            "campaign": f"spring_sale_{campaign_id[-1]}",
            "af_c_id": campaign_id,
            "af_adset": f"adgroup_{adset_id[-1]}",
            "af_adset_id": adset_id,
            "af_ad": f"video_{ad_id[-1]}",
            "af_ad_id": ad_id,
            "af_ad_type": "video",
            "af_siteid": None,
            "region": "NA",
            "country_code": rnd.choice(["US", "GB", "DE", "BR", "JP"]),
            "city": rnd.choice(["Austin", "London", "Berlin"]),
            "ip": f"203.0.113.{rnd.randint(1, 254)}",
            "wifi": rnd.random() < 0.6,
            "language": "en-US",
            "appsflyer_id": f"{created}-{rnd.randint(0, 10**18):018d}",
            "platform": "ios" if ios else "android",
            "device_type": "iPhone15,2" if ios else None,
            "os_version": rnd.choice(["17.5", "18.1"]) if ios else rnd.choice(["13", "14"]),
            "app_version": rnd.choice(["3.4.0", "3.4.1", "3.5.0"]),
            "sdk_version": "v6.15.1",
            "app_id": app_id,
            "app_name": "Example",
            "bundle_id": "com.example.app",
            "is_retargeting": False,
            "af_attribution_lookback": "7d",
            "is_primary_attribution": True,
            "user_agent": "ExampleApp/3.4.1 CFNetwork/1494.0.7 Darwin/23.4.0"
            if ios
            else "Dalvik/2.1.0 (Linux; U; Android 14; Pixel 8 Build/AP2A.240805.005)",
            "original_url": tiktok_click_url(app_id, click_id, campaign_id, adset_id, ad_id),
            "campaign_type": "ua",
            "conversion_type": "install",
            "match_type": "id_matching",
            "device_category": "phone",
            "device_model": "iPhone15,2" if ios else "google::Pixel 8",
            "device_download_time": _ts(install_time - timedelta(seconds=rnd.randint(30, 600))),
            "api_version": "2.0",
            "event_type": "install",
            "selected_timezone": "UTC",
            "selected_currency": "USD",
            "install_time_selected_timezone": _ts(install_time) + "+0000",
            "event_time_selected_timezone": _ts(event_time) + "+0000",
        }
        if ios:
            values |= {"idfa": uuid.upper(), "idfv": str(UUID(int=rnd.getrandbits(128))).upper()}
        else:
            values |= {"advertising_id": uuid, "android_id": f"{rnd.getrandbits(64):016x}"}
        return appsflyer_record(values)

    def _oceanengine(self, event: dict[str, Any]) -> dict[str, Any]:
        """An install from an Ocean Engine click: China traffic, mostly Android (OAID, IMEI)."""
        rnd = self._random
        click_id = f"B.{rnd.getrandbits(80):020x}"
        android = rnd.random() < 0.8
        fields: dict[str, Any] = {
            "media_source": "bytedance_int",
            "af_channel": "Douyin",
            "original_url": oceanengine_click_url(
                event["app_id"], click_id, event["af_c_id"], event["af_adset_id"],
                event["af_ad_id"],
            ),
            "country_code": "CN",
            "city": rnd.choice(["Beijing", "Shanghai", "Shenzhen"]),
            "region": "AS",
            "language": "zh-CN",
            "selected_currency": "CNY",
            "event_revenue_currency": "CNY",
        }  # fmt: skip
        if android:
            fields |= {
                "platform": "android", "idfa": None, "idfv": None, "advertising_id": None,
                "android_id": f"{rnd.getrandbits(64):016x}",
                "oaid": str(UUID(int=rnd.getrandbits(128), version=4)),
                "imei": f"86{rnd.randint(10**12, 10**13 - 1)}",
                "device_type": None, "device_model": "huawei::P60",
                "user_agent": "Dalvik/2.1.0 (Linux; U; Android 13; P60 Build/HUAWEIP60)",
            }  # fmt: skip
        return fields

    def _in_app(self, case: str, now: datetime) -> dict[str, Any]:
        rnd = self._random
        names = {
            "in_app_purchase_attributed": "af_purchase",
            "in_app_registration_attributed": "af_complete_registration",
            "in_app_add_to_cart_attributed": "af_add_to_cart",
            "in_app_organic": "af_purchase",
            "in_app_unmapped_event": rnd.choice(["af_tutorial_completion", "af_app_opened"]),
            "in_app_outside_window": "af_purchase",
            "in_app_re_engagement_copies": "af_purchase",
            "in_app_oceanengine_purchase": "af_purchase",
            "in_app_oceanengine_registration": "af_complete_registration",
            "in_app_rejected": "af_purchase",
            "in_app_no_consent": "af_purchase",
            "in_app_too_old": "af_purchase",
        }
        name = names[case]
        organic = case == "in_app_organic"
        fields: dict[str, Any] = {
            "event_type": "organic-install-in-app-event" if organic else "install-in-app-event",
            "event_name": name,
        }
        if case == "in_app_rejected":
            fields |= {"rejected_reason": "validation_rule",
                       "rejected_reason_value": rnd.choice(["geo", "app_version"])}  # fmt: skip
        if case == "in_app_no_consent":
            fields |= {"gdpr_applies": True, "ad_user_data_enabled": False,
                       "ad_personalization_enabled": False}  # fmt: skip
        if case == "in_app_too_old":
            happened = now - timedelta(days=rnd.randint(35, 60))
            installed = happened - timedelta(days=1)
            fields |= {"event_time": _ts(happened), "install_time": _ts(installed),
                       "attributed_touch_time": _ts(installed - timedelta(hours=2)),
                       "event_time_selected_timezone": _ts(happened) + "+0000"}  # fmt: skip
        if case == "in_app_outside_window":
            installed = now - timedelta(days=rnd.randint(181, 400))
            fields["install_time"] = _ts(installed)
            fields["attributed_touch_time"] = _ts(installed - timedelta(hours=2))
        if name == "af_purchase" and case == "in_app_oceanengine_purchase":
            # Mostly yuan; now and then dollars, which Ocean Engine's pay_amount cannot carry.
            currency = "CNY" if rnd.random() < 0.85 else "USD"
            price = rnd.choice(["6.00", "30.00", "68.00", "128.00"])
            value = {"af_revenue": price, "af_currency": currency,
                     "af_content_id": f"sku-{rnd.randint(1, 40)}", "af_quantity": 1}  # fmt: skip
            fields |= {"event_revenue": price, "event_revenue_currency": currency}
        elif name == "af_purchase":
            price = rnd.choice(["0.99", "4.99", "9.99", "19.99"])
            value = {"af_revenue": price, "af_currency": "USD",
                     "af_content_id": f"sku-{rnd.randint(1, 40)}", "af_quantity": 1,
                     "af_order_id": f"o-{rnd.getrandbits(40):010x}"}  # fmt: skip
            fields |= {"event_revenue": price, "event_revenue_usd": price}
        elif name == "af_add_to_cart":
            value = {"af_content_id": f"sku-{rnd.randint(1, 40)}", "af_price": "4.99",
                     "af_currency": "USD", "af_revenue": "4.99"}  # fmt: skip
        elif name == "af_complete_registration":
            value = {"af_registration_method": rnd.choice(["email", "apple", "google"])}
        else:
            value = {}
        # AppsFlyer sends event_value as a JSON string; some collectors decode it to an object.
        fields["event_value"] = json.dumps(value) if rnd.random() < 0.8 else value
        return fields


# The attribution fields of an organic record: AppsFlyer leaves them null.
_ORGANIC: dict[str, Any] = {
    "media_source": "organic", "attributed_touch_type": None, "attributed_touch_time": None,
    "af_channel": None, "campaign": None, "af_c_id": None, "af_adset": None, "af_adset_id": None,
    "af_ad": None, "af_ad_id": None, "af_ad_type": None, "original_url": None,
    "af_attribution_lookback": None, "match_type": None, "campaign_type": "organic",
}  # fmt: skip
