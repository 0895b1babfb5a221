"""Realistic sample events for the demo and benchmarks: every case the rules distinguish."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from schemas.events import EventType

DEMO_APP = "id1234567890"  # view-through off, installs and in-app scope: attributed
DEMO_APP_ALL = "com.example.app"  # view-through on, installs scope: all, window: lifetime
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
    """Seeded generator of AppsFlyer-like raw events around `now`."""

    # case → weight; the in-app cases come with their install's attribution
    CASES: tuple[tuple[str, int], ...] = (
        ("install_tiktok_click", 12),
        ("install_tiktok_successor_id", 3),
        ("install_view_through_on", 3),
        ("install_view_through_off", 3),
        ("install_organic", 8),
        ("install_organic_scope_all", 4),
        ("install_other_partner", 8),
        ("install_click_outside_lookback", 3),
        ("install_unknown_app", 2),
        ("in_app_purchase_attributed", 14),
        ("in_app_registration_attributed", 8),
        ("in_app_add_to_cart_attributed", 8),
        ("in_app_organic", 8),
        ("in_app_unmapped_event", 6),
        ("in_app_outside_window", 4),
        ("bad_input", 1),
    )

    def __init__(self, seed: int = 7, now: datetime | None = None) -> None:
        self._random = random.Random(seed)
        self._now = now
        self._counter = 0
        self._cases = [case for case, _ in self.CASES]
        self._weights = [weight for _, weight in self.CASES]

    def generate(self, count: int) -> Iterator[Sample]:
        """`count` samples in a realistic mix."""
        for _ in range(count):
            case = self._random.choices(self._cases, self._weights)[0]
            yield self.make(case)

    def make(self, case: str) -> Sample:
        """One sample of the given case."""
        self._counter += 1
        rnd = self._random
        now = self._now or datetime.now(UTC)
        if case == "bad_input":
            value = rnd.choice(
                [b"{not json", b"[]", b'{"event_type": "install"}', json.dumps(
                    {"event_id": f"bad-{self._counter}", "event_type": "install",
                     "event_time": 1763632800, "install_time": "yesterday",
                     "app_id": DEMO_APP, "appsflyer_id": "x"}).encode()]
            )  # fmt: skip
            return Sample("install", value, case)
        in_app = case.startswith("in_app")
        install_age = timedelta(minutes=rnd.randint(1, 60 * 24 * 20)) if in_app else timedelta(0)
        install_time = now - install_age
        event = self._base(install_time, now if in_app else install_time)
        if case in {"install_organic", "in_app_organic", "install_organic_scope_all"}:
            event |= {"media_source": rnd.choice(["organic", None, ""]),
                      "attributed_touch_type": None, "attributed_touch_time": None,
                      "click_id": None}  # fmt: skip
        if case == "install_tiktok_successor_id":
            event["media_source"] = "tiktokglobal_int"
        if case in {"install_view_through_on", "install_view_through_off"}:
            event["attributed_touch_type"] = "impression"
            event["attributed_touch_time"] = _ts(install_time - timedelta(hours=rnd.randint(1, 20)))
        if case == "install_view_through_on":
            event["app_id"] = DEMO_APP_ALL
        if case in {"install_organic_scope_all"}:
            event["app_id"] = DEMO_APP_ALL
        if case == "install_other_partner":
            event["media_source"] = rnd.choice(OTHER_PARTNERS)
        if case == "install_click_outside_lookback":
            event["attributed_touch_time"] = _ts(install_time - timedelta(days=rnd.randint(8, 20)))
        if case == "install_unknown_app":
            event["app_id"] = "com.unconfigured.game"
        if in_app:
            event |= self._in_app(case, now)
        return Sample("in-app-event" if in_app else "install", event, case)

    def _base(self, install_time: datetime, event_time: datetime) -> dict[str, Any]:
        rnd = self._random
        n = self._counter
        ios = rnd.random() < 0.55
        touch = install_time - timedelta(minutes=rnd.randint(1, 60 * 24 * 3))
        event: dict[str, Any] = {
            "event_id": f"demo-{n:07d}-{rnd.getrandbits(32):08x}",
            "event_type": "install",
            "event_name": "install",
            "event_time": _ts(event_time),
            "install_time": _ts(install_time),
            "app_id": DEMO_APP,
            "appsflyer_id": f"{1700000000000 + rnd.randint(0, 10**9)}-{rnd.randint(0, 10**7):07d}",
            "platform": "ios" if ios else "android",
            "media_source": "bytedanceglobal_int",
            "attributed_touch_type": "click",
            "attributed_touch_time": _ts(touch),
            "click_id": f"E.C.P.{rnd.getrandbits(64):016x}",
            "campaign_id": str(rnd.choice([1780001, 1780002, 1780003])),
            "adset_id": str(rnd.choice([1790001, 1790002])),
            "ad_id": str(rnd.choice([1800001, 1800002, 1800003, 1800004])),
            "ip": f"203.0.113.{rnd.randint(1, 254)}",
            "user_agent": "ExampleApp/3.4.1 (iPhone; iOS 17.5)"
            if ios
            else "Dalvik/2.1.0 (Linux; Android 14)",
            "app_version": rnd.choice(["3.4.0", "3.4.1", "3.5.0"]),
            "country_code": rnd.choice(["US", "GB", "DE", "BR", "JP"]),
        }
        uuid = str(UUID(int=rnd.getrandbits(128), version=4))
        if ios:
            event["idfa"] = uuid
            event["idfv"] = uuid.upper()[::-1]
        else:
            event["advertising_id"] = uuid
            event["android_id"] = f"{rnd.getrandbits(64):016x}"
        return event

    def _in_app(self, case: str, now: datetime) -> dict[str, Any]:
        rnd = self._random
        names = {
            "in_app_purchase_attributed": "af_purchase",
            "in_app_registration_attributed": "af_complete_registration",
            "in_app_add_to_cart_attributed": "af_add_to_cart",
            "in_app_organic": "af_purchase",
            "in_app_unmapped_event": rnd.choice(["af_tutorial_completion", "af_app_opened"]),
            "in_app_outside_window": "af_purchase",
        }
        name = names[case]
        fields: dict[str, Any] = {"event_type": "in-app-event", "event_name": name}
        if case == "in_app_outside_window":
            installed = now - timedelta(days=rnd.randint(181, 400))
            fields["install_time"] = _ts(installed)
            fields["attributed_touch_time"] = _ts(installed - timedelta(hours=2))
        if name == "af_purchase":
            price = rnd.choice(["0.99", "4.99", "9.99", "19.99"])
            value = {"af_revenue": price, "af_currency": "USD",
                     "af_content_id": f"sku-{rnd.randint(1, 40)}", "af_quantity": 1,
                     "af_order_id": f"o-{rnd.getrandbits(40):010x}"}  # fmt: skip
            fields |= {"event_revenue": price, "event_revenue_currency": "USD"}
        elif name == "af_add_to_cart":
            value = {"af_content_id": f"sku-{rnd.randint(1, 40)}", "af_price": "4.99",
                     "af_currency": "USD", "af_revenue": "4.99"}  # fmt: skip
        elif name == "af_complete_registration":
            value = {"af_registration_method": rnd.choice(["email", "apple", "google"])}
        else:
            value = {}
        # AppsFlyer raw data carries event_value as a JSON string; some pipelines decode it.
        fields["event_value"] = json.dumps(value) if rnd.random() < 0.5 else value
        return fields
