"""Ocean Engine: one conversion per request, matched by the click id."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from dispatcher.outcomes import AttemptKind, AttemptResult
from dispatcher.partners.answers import read_answer
from dispatcher.partners.base import PostbackContent, encode_json
from dispatcher.partners.oceanengine.wire import (
    DELIVERED_CODES,
    INSTALL_EVENT,
    MATCH_TYPE_CLICK,
    MATCH_TYPE_IMPRESSION,
    REVENUE_CURRENCY,
    SIGNATURE_HEADER,
)

# The attribution link's parameter Ocean Engine fills with its `__CALLBACK_PARAM__` macro.
CLICK_ID_PARAMETER = "clickid"
# AppsFlyer's preset `bytedance_int` click link: each parameter and the Ocean Engine macro that
# fills it, as far as AppsFlyer's Chinese help page shows it (support.appsflyer.com/hc/zh-cn/
# articles/115003019403): site, project (campaign), channel, creative, material ids, promotion
# (ad group) and the click id. Device macros are left out: the conversion is matched by the
# callback alone, and their parameter names could not be confirmed.
LINK_PARAMETERS: tuple[tuple[str, str], ...] = (
    ("af_siteid", "__UNION_SITE__"), ("af_c_id", "__PROJECT_ID__"), ("af_channel", "__CSITE__"),
    ("af_ad", "__CID_NAME__"), ("af_ad_id", "__CID__"), ("af_sub1", "__MID1__"),
    ("af_sub2", "__MID2__"), ("af_sub3", "__MID3__"), ("af_sub4", "__MID4__"),
    ("af_sub5", "__MID6__"), ("af_adset", "__PROMOTION_NAME__"),
    ("af_adset_id", "__PROMOTION_ID__"), (CLICK_ID_PARAMETER, "__CALLBACK_PARAM__"),
)  # fmt: skip
_FEN = Decimal(100)


def sign(body: bytes, secret: str) -> str:
    """The `x-signature` of a request body: lower-case hex SHA-256 of the body's bytes followed
    by the secret's (UTF-8), as bububa/oceanengine `marketing-api/core/client.go` signs."""
    return hashlib.sha256(body + secret.encode()).hexdigest()


def fen(amount: Decimal) -> int:
    """Yuan → fen (hundredths), half-up: 68.00 → 6800, 0.005 → 1."""
    return int((amount * _FEN).to_integral_value(ROUND_HALF_UP))


class OceanEngineAdapter:
    """Builds Ocean Engine conversions and classifies its answers."""

    name = "oceanengine"
    install_event = INSTALL_EVENT
    click_id_parameter = CLICK_ID_PARAMETER
    requires_click_id: bool = True  # a conversion is matched by its callback alone
    revenue_currencies: frozenset[str] | None = frozenset({REVENUE_CURRENCY})
    link_parameters = LINK_PARAMETERS
    # Ocean Engine has impression monitoring links and AppsFlyer counts bytedance_int
    # view-through installs; the impression link takes the same parameters.
    has_impression_link: bool = True

    def build_event(self, content: PostbackContent) -> dict[str, Any]:
        """The whole body of one request."""
        event = content.event
        ad: dict[str, Any] = {
            "callback": event.click_id_for(CLICK_ID_PARAMETER),
            "match_type": (
                MATCH_TYPE_IMPRESSION if event.touch_type == "impression" else MATCH_TYPE_CLICK
            ),
        }
        device: dict[str, str] = {}
        ids = content.identifiers
        if idfa := ids.idfa:
            device["idfa"] = idfa
        if oaid := ids.oaid:
            device["oaid"] = oaid
        if imei := ids.imei:
            device["imei"] = hashlib.md5(imei.encode(), usedforsecurity=False).hexdigest()
        context: dict[str, Any] = {"ad": ad}
        if device:
            context["device"] = device
        payload: dict[str, Any] = {
            "event_type": content.partner_event or INSTALL_EVENT,
            "context": context,
        }
        revenue = content.revenue
        if revenue is not None and revenue.currency == REVENUE_CURRENCY and revenue.amount >= 0:
            payload["properties"] = {"pay_amount": fen(revenue.amount)}
        payload["timestamp"] = int(event.event_time_s * 1000)
        return payload

    def event_label(self, payload: Mapping[str, Any]) -> str:
        """The event type, one of 12 values."""
        return str(payload["event_type"])

    def encode_request(self, destination: str, payloads: Sequence[Mapping[str, Any]]) -> bytes:
        """One conversion is the whole body: Ocean Engine documents no batch."""
        if len(payloads) != 1:
            raise ValueError(f"Ocean Engine takes one conversion per request, not {len(payloads)}")
        return encode_json(payloads[0])

    def request_headers(self, token: str) -> dict[str, str]:
        """No token: the callback identifies the advertiser's click."""
        return {"Content-Type": "application/json"}

    def body_headers(self, body: bytes, secret: str | None) -> dict[str, str]:
        """The headers that depend on the body: `x-signature` when a signing secret is set
        (`signing_secret_env`), none otherwise (public callers send none; whether Ocean Engine
        requires it is not documented in anything public)."""
        if not secret:
            return {}
        return {SIGNATURE_HEADER: sign(body, secret)}

    def classify(
        self, status: int, headers: Mapping[str, str], body: bytes, now: float
    ) -> AttemptResult:
        """`code` 0 (and 128, see `wire.CODE_ACCEPTED_128`) is success; any other code on HTTP
        200 is a rejection of this conversion. HTTP 401/403 hold the app, 429 and 5xx
        are retried (`answers.classify_status`)."""
        answer = read_answer(status, headers, body, now, "Ocean Engine")
        if answer.decided is not None:
            return answer.decided
        kind = AttemptKind.OK if answer.code in DELIVERED_CODES else AttemptKind.FATAL
        return AttemptResult(kind, status, answer.code, answer.message,
                             request_id=answer.request_id)  # fmt: skip

    def should_split(self, result: AttemptResult, size: int) -> bool:
        """Never: every request holds one conversion."""
        return False
