"""TikTok For Business: the app-event payload, the request, and TikTok's answers.

Every field's public source is in docs/partners/tiktok.md and in `wire.py`'s docstring; the
answer codes and their classes are in `codes.py`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from dispatcher.outcomes import AttemptKind, AttemptResult
from dispatcher.partners.answers import Answer, read_answer, with_request_id
from dispatcher.partners.base import PostbackContent, encode_json
from dispatcher.partners.tiktok.codes import (
    CODE_PARTIAL_OK,
    FIRST_SERVER_ERROR_CODE,
    AnswerClass,
    answer_class,
)
from dispatcher.partners.tiktok.wire import (
    CONTENT_TYPES,
    DESTINATION_SEPARATOR,
    INSTALL_EVENT,
    TIKTOK_CURRENCIES,
    TIKTOK_EVENTS,
)
from schemas.events import Att

# The attribution link's parameter that TikTok fills with its click id (`__CALLBACK_PARAM__`).
CLICK_ID_PARAMETER = "clickid"
# TikTok's AppsFlyer link: each parameter and the TikTok macro that fills it (as TikTok
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

# AppsFlyer's rich-event parameters (its standard in-app event parameters) read into TikTok's
# properties; none of them is forwarded under its own key beside TikTok's field. The content
# id, quantity and price make `contents` (one item per id; AppsFlyer sends lists for several
# items); the content type is TikTok's only when it is `product` or `product_group`.
CONTENT_ID_KEY = "af_content_id"
QUANTITY_KEY = "af_quantity"
PRICE_KEY = "af_price"
CONTENT_TYPE_KEY = "af_content_type"
DESCRIPTION_KEY = "af_description"
ORDER_ID_KEY = "af_order_id"
SEARCH_STRING_KEY = "af_search_string"

# `user.att_status` on iOS from the neutral ATT status. AppsFlyer's af_unavailable says only
# that the IDFA is not available, not why (TikTok's NOT_APPLICABLE means iOS below 14, which
# it may not be); it, a status nobody could tell (af_unknown) and none at all are left out
# rather than guessed.
ATT_STATUSES: Mapping[Att, str] = MappingProxyType(
    {
        Att.AUTHORIZED: "AUTHORIZED",
        Att.DENIED: "DENIED",
        Att.NOT_DETERMINED: "NOT_DETERMINED",
        Att.RESTRICTED: "RESTRICTED",
    }
)
NOT_APPLICABLE = "NOT_APPLICABLE"  # every Android event (TikTok: "Not Applicable ... or Android")


def store_app_id(app_id: str) -> str:
    """The store id TikTok's app setup knows: the App Store id's digits (`id1234567890` ->
    `1234567890`), an Android package name as it is."""
    if app_id.startswith("id") and app_id[2:].isdigit():
        return app_id[2:]
    return app_id


def _number(value: Any) -> int | float | None:
    """A quantity or price as a JSON number: a number, or a decimal string of one."""
    if type(value) is int:
        return value
    if type(value) is float:
        return value if math.isfinite(value) else None
    if type(value) is str:
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                return None
            return number if math.isfinite(number) else None
    return None


def _text(value: Any) -> str | None:
    """A content id as TikTok reads it, a string (Rudder's 40002 example: 'Not a valid string')."""
    if type(value) is str:
        return value if value.strip() else None
    if type(value) is int:
        return str(value)
    return None


def _item(values: Any, index: int, count: int) -> Any:
    """The `index`-th of a list parameter; a single value belongs to a single item only."""
    if type(values) is list:
        return values[index] if index < len(values) else None
    return values if count == 1 else None


def contents_of(ids: Any, quantities: Any, prices: Any) -> list[dict[str, Any]]:
    """`properties.contents`: one item per content id, its quantity and price zipped from lists
    of the same order (AppsFlyer's parameters for several items)."""
    id_list = ids if type(ids) is list else [ids]
    count = len(id_list)
    contents = []
    for index in range(count):
        content_id = _text(id_list[index])
        if content_id is None:
            continue
        item: dict[str, Any] = {"content_id": content_id}
        quantity = _number(_item(quantities, index, count))
        if quantity is not None:
            item["quantity"] = quantity
        price = _number(_item(prices, index, count))
        if price is not None:
            item["price"] = price
        contents.append(item)
    return contents


class TikTokAdapter:
    """Builds TikTok Events API app events and classifies its responses."""

    name = "tiktok"
    install_event = INSTALL_EVENT
    click_id_parameter = CLICK_ID_PARAMETER
    requires_click_id: bool = False  # TikTok takes events without a callback (matched by device)
    # `properties.currency`: the 67 codes of TikTok's SDKs; revenue in another is left out
    revenue_currencies: frozenset[str] | None = TIKTOK_CURRENCIES
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
        platform = event.platform
        if platform == "ios":
            if event.att is not None and (att_status := ATT_STATUSES.get(event.att)):
                user["att_status"] = att_status
        elif platform == "android":
            user["att_status"] = NOT_APPLICABLE
        if event.language:
            user["locale"] = event.language
        if user:
            payload["user"] = user
        app: dict[str, str] = {"app_id": store_app_id(event.app_id)}
        if event.app_name:
            app["app_name"] = event.app_name
        if event.app_version:
            app["app_version"] = event.app_version
        payload["app"] = app
        ad: dict[str, Any] = {}
        if content.attributed:
            if callback := event.click_id_for(CLICK_ID_PARAMETER):
                ad["callback"] = callback
            if event.campaign_id:
                ad["campaign_id"] = event.campaign_id
            if event.adset_id:
                ad["ad_id"] = event.adset_id  # TikTok's ad group is AppsFlyer's adset
            if event.ad_id:
                ad["creative_id"] = event.ad_id
        ad["is_retargeting"] = event.is_retargeting
        ad["attributed"] = content.attributed
        payload["ad"] = ad
        if content.params or content.revenue is not None:
            properties = self._properties(content)
            if properties:
                payload["properties"] = properties
        return payload

    @staticmethod
    def _properties(content: PostbackContent) -> dict[str, Any]:
        params = content.params
        properties = dict(params)
        if CONTENT_ID_KEY in params:
            contents = contents_of(
                params[CONTENT_ID_KEY], params.get(QUANTITY_KEY), params.get(PRICE_KEY)
            )
            if contents:
                properties["contents"] = contents
                del properties[CONTENT_ID_KEY]
                properties.pop(QUANTITY_KEY, None)
                properties.pop(PRICE_KEY, None)
                properties.pop("content_id", None)  # no flat content id beside contents
        elif QUANTITY_KEY in params:
            num_items = _number(params[QUANTITY_KEY])
            if num_items is not None:
                properties["num_items"] = num_items
                del properties[QUANTITY_KEY]
        content_type = params.get(CONTENT_TYPE_KEY)
        if content_type in CONTENT_TYPES:
            properties["content_type"] = content_type
            del properties[CONTENT_TYPE_KEY]
        description = params.get(DESCRIPTION_KEY)
        if type(description) is str:
            properties["description"] = description
            del properties[DESCRIPTION_KEY]
        if ORDER_ID_KEY in params and (order_id := _text(params[ORDER_ID_KEY])) is not None:
            properties["order_id"] = order_id
            del properties[ORDER_ID_KEY]
        search_string = params.get(SEARCH_STRING_KEY)
        if type(search_string) is str:
            properties["search_string"] = search_string
            del properties[SEARCH_STRING_KEY]
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
        """`{"event_source": "app", "event_source_id": <TikTok App ID>, "data": [...]}`, with
        `test_event_code` at the top when the destination is an app in test mode. No
        `partner_name`: Segment and RudderStack send their own as registered TikTok partners;
        we are not one, and no source says the field is required."""
        app_id, _, test_event_code = destination.partition(DESTINATION_SEPARATOR)
        if test_event_code:
            body = {"event_source": "app", "event_source_id": app_id,
                    "test_event_code": test_event_code, "data": payloads}  # fmt: skip
        else:
            body = {"event_source": "app", "event_source_id": app_id, "data": payloads}
        return encode_json(body)

    def request_headers(self, token: str) -> dict[str, str]:
        """TikTok authenticates with an `Access-Token` header."""
        return {"Access-Token": token, "Content-Type": "application/json"}

    def body_headers(self, body: bytes, secret: str) -> dict[str, str]:
        """None: TikTok authenticates by the token alone."""
        return {}

    def classify(
        self, status: int, headers: Mapping[str, str], body: bytes, now: float
    ) -> AttemptResult:
        """Read the body, not only the status: TikTok reports most errors as HTTP 200. The
        body's code is looked up in TikTok's table (`codes.ANSWER_CLASSES`)."""
        answer = read_answer(status, headers, body, now, "TikTok")
        if answer.decided is not None:
            return answer.decided
        return with_request_id(self._read_code(status, answer), answer.request_id)

    @staticmethod
    def _read_code(status: int, answer: Answer) -> AttemptResult:
        code, message, retry_after = answer.code, answer.message, answer.retry_after
        kind = None if code is None else answer_class(code)
        if kind is AnswerClass.DELIVERED:
            return AttemptResult(
                AttemptKind.OK, status, code, message, partial=code == CODE_PARTIAL_OK
            )
        if kind is AnswerClass.THROTTLED:
            return AttemptResult(
                AttemptKind.RETRYABLE, status, code, message, retry_after, throttled=True
            )
        if kind is AnswerClass.SETUP:
            return AttemptResult(AttemptKind.SETUP, status, code, message)
        if kind is AnswerClass.BAD_EVENT:
            return AttemptResult(AttemptKind.FATAL, status, code, message)
        if kind is AnswerClass.TRANSIENT:
            return AttemptResult(
                AttemptKind.RETRYABLE, status, code, message, retry_after,
                fate_unknown=code is not None and code >= FIRST_SERVER_ERROR_CODE,
            )  # fmt: skip
        # In none of TikTok's lists: retried as transient (bounded by give_up_after_s); the
        # message says so, and the request may have been processed.
        return AttemptResult(
            AttemptKind.RETRYABLE, status, code, f"{UNLISTED_CODE}: {message}", retry_after,
            fate_unknown=True, unlisted=True,
        )  # fmt: skip

    def should_split(self, result: AttemptResult, size: int) -> bool:
        """A bad event rejects its whole request: halve the batch until it is alone."""
        return (
            size > 1
            and result.kind is AttemptKind.FATAL
            and result.code is not None
            and answer_class(result.code) is AnswerClass.BAD_EVENT
        )


# The start of the message of an answer whose code is in none of TikTok's lists.
UNLISTED_CODE = "a code in none of TikTok's lists, retried as transient"
