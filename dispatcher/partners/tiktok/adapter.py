"""TikTok For Business: the app-event payload, the request, and TikTok's answers (SPEC §4)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dispatcher.outcomes import AttemptKind, AttemptResult
from dispatcher.partners.answers import read_answer
from dispatcher.partners.base import PostbackContent, encode_json
from dispatcher.partners.tiktok.wire import (
    CODE_BAD_PARAMETER,
    CODE_OK,
    CODE_PARTIAL_SUCCESS,
    CODE_TOO_MANY_REQUESTS,
    FIRST_SERVER_ERROR_CODE,
    INSTALL_EVENT,
    TIKTOK_EVENTS,
)

# The canonical event's standard parameters → TikTok's property names (sent as well as the
# parameters under their own keys).
PROPERTY_NAMES: Mapping[str, str] = {
    "content_id": "content_id",
    "content_type": "content_type",
    "quantity": "num_items",
    "order_id": "order_id",
    "search_string": "search_string",
}
# The attribution link's parameter that TikTok fills with its click id (`__CALLBACK_PARAM__`).
CLICK_ID_PARAMETER = "clickid"
# TikTok's AppsFlyer link: each parameter and the TikTok macro that fills it (SPEC §7, as TikTok
# documents it for AppsFlyer), `clickid` carrying the click id.
LINK_PARAMETERS: tuple[tuple[str, str], ...] = (
    ("c", "__CAMPAIGN_NAME__"), ("af_c_id", "__CAMPAIGN_ID__"), ("af_adset", "__AID_NAME__"),
    ("af_adset_id", "__AID__"), ("af_ad", "__CID_NAME__"), ("af_ad_id", "__CID__"),
    ("af_ad_type", "__CTYPE__"), (CLICK_ID_PARAMETER, "__CALLBACK_PARAM__"),
    ("android_id", "__ANDROIDID1__"), ("advertising_id", "__GAID__"), ("idfa", "__IDFA__"),
    ("os", "__OS__"), ("af_ip", "__IP__"), ("af_ua", "__UA1__"), ("af_lang", "__SL__"),
    ("af_channel", "__PLACEMENT__"), ("redirect", "false"),
)  # fmt: skip
# TikTok reads `properties.value` as revenue: it never survives stripping.
REVENUE_PROPERTY = "value"


class TikTokAdapter:
    """Builds TikTok Events API app events and classifies its responses."""

    name = "tiktok"
    install_event = INSTALL_EVENT
    click_id_parameter = CLICK_ID_PARAMETER
    requires_click_id: bool = False  # TikTok takes events without a callback (matched by device)
    # `properties.currency` takes any ISO 4217 code
    revenue_currencies: frozenset[str] | None = None
    link_parameters = LINK_PARAMETERS
    has_impression_link: bool = True

    def build_event(self, content: PostbackContent) -> dict[str, Any]:
        """One `data[]` entry of the request body (per owed event: plain statements, no
        comprehension or helper that a few ifs can do)."""
        event = content.event
        partner_event = content.partner_event
        payload: dict[str, Any] = {
            "event": INSTALL_EVENT if partner_event is None else TIKTOK_EVENTS[partner_event],
            "event_time": int(event.event_time_s),
            "event_id": event.event_id,
        }
        if content.limited:
            payload["limited_data_use"] = True
        ids = content.identifiers
        user: dict[str, str] = {}
        if ids.idfa:
            user["idfa"] = ids.idfa.upper()
        if ids.idfv:
            user["idfv"] = ids.idfv
        if ids.advertising_id:
            user["gaid"] = ids.advertising_id.lower()
        if ids.ip:
            user["ip"] = ids.ip
        if ids.user_agent:
            user["user_agent"] = ids.user_agent
        if user:
            payload["user"] = user
        payload["app"] = (
            {"app_id": event.app_id, "app_version": event.app_version}
            if event.app_version
            else {"app_id": event.app_id}
        )
        if content.attributed:
            ad: dict[str, str] = {}
            if callback := event.click_id_for(CLICK_ID_PARAMETER):
                ad["callback"] = callback
            if event.campaign_id:
                ad["campaign_id"] = event.campaign_id
            if event.adset_id:
                ad["ad_id"] = event.adset_id  # TikTok's ad group is AppsFlyer's adset
            if event.ad_id:
                ad["creative_id"] = event.ad_id
            if ad:
                payload["ad"] = ad
        properties = self._properties(content)
        if properties:
            payload["properties"] = properties
        return payload

    @staticmethod
    def _properties(content: PostbackContent) -> dict[str, Any]:
        properties = dict(content.params)
        if content.standard_params:
            for name, value in content.standard_params.items():
                tiktok_key = PROPERTY_NAMES.get(name)
                if tiktok_key is not None and tiktok_key not in properties:
                    properties[tiktok_key] = value
        if content.revenue_stripped:
            properties.pop(REVENUE_PROPERTY, None)
        elif content.revenue is not None:
            properties[REVENUE_PROPERTY] = float(content.revenue.amount)
            if content.revenue.currency:
                properties["currency"] = content.revenue.currency
        return properties

    def event_label(self, payload: Mapping[str, Any]) -> str:
        """TikTok's event name, one of 28 values."""
        return str(payload["event"])

    def encode_request(self, destination: str, payloads: Sequence[Mapping[str, Any]]) -> bytes:
        """`{"event_source": "app", "event_source_id": <TikTok App ID>, "data": [...]}`."""
        body = {"event_source": "app", "event_source_id": destination, "data": payloads}
        return encode_json(body)

    def request_headers(self, token: str) -> dict[str, str]:
        """TikTok authenticates with an `Access-Token` header."""
        return {"Access-Token": token, "Content-Type": "application/json"}

    def classify(
        self, status: int, headers: Mapping[str, str], body: bytes, now: float
    ) -> AttemptResult:
        """Read the body, not only the status: TikTok reports most errors as HTTP 200."""
        code, message, retry_after, decided = read_answer(status, headers, body, now, "TikTok")
        if decided is not None:
            return decided
        if code == CODE_OK:
            return AttemptResult(AttemptKind.OK, status, code, message)
        if code == CODE_PARTIAL_SUCCESS:
            return AttemptResult(AttemptKind.OK, status, code, message, partial=True)
        if code == CODE_TOO_MANY_REQUESTS:
            return AttemptResult(
                AttemptKind.RETRYABLE, status, code, message, retry_after, throttled=True
            )
        if code is not None and code >= FIRST_SERVER_ERROR_CODE:
            return AttemptResult(
                AttemptKind.RETRYABLE, status, code, message, retry_after, fate_unknown=True
            )
        return AttemptResult(AttemptKind.FATAL, status, code, message)

    def should_split(self, result: AttemptResult, size: int) -> bool:
        """A bad parameter in one event rejects its whole request: halve to isolate it."""
        return size > 1 and result.code == CODE_BAD_PARAMETER
