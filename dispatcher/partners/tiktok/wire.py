"""TikTok For Business Events API 2.0 (app events): identifiers, currencies and the request
body's wire models. docs/partners/tiktok.md traces every field to its public source.

Sources (TikTok's English page for app events is not public; these are):
- SEG: segmentio/action-destinations `packages/destination-actions/src/destinations/
  tiktok-app-events/reportAppEvent/types.ts` and `fields/common_fields.ts` (TikTok-maintained):
  field names, types, the `att_status` and `content_type` enums, the standard event names;
- BUB: bububa/tiktok-business `model/event/track.go` (a copy of TikTok's Chinese docs): `app.app_id`
  digits only on iOS, `idfa` upper-case raw, `gaid` lower-case, `locale` a BCP 47 tag,
  `limited_data_use`, `test_event_code`, at most 1,000 events per request, app events
  allowlist-only; `enum/event_type.go`: the app standard events;
- IOS: tiktok/tiktok-business-ios-sdk `TikTokBusinessSDK/Core/TikTokConstants.m` (event names,
  the 67 currencies), `TikTokContentsEvent.m` (contents keys), `TikTokBusiness.m` (auto events);
- AND: tiktok/tiktok-business-android-sdk `business-core/src/main/java/com/tiktok/appevents/base/
  EventName.java`, `.../appevents/contents/TTContentsEventConstants.java` (the same 67
  currencies, `order_id`), `.../util/TTConst.java` (auto events).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# The seed's partner event identifiers (what operators write in YAML) and TikTok's wire names;
# names are case sensitive (BUB enum/event_type.go). Each name is in IOS TTEventName or its
# contents events, AND EventName or its contents events, SEG STANDARD_EVENTS and BUB's app events,
# except two:
# - InAppADImpr: IOS, SEG and BUB spell it so; AND alone writes `InAppAdImpr`. Kept as TikTok's
#   own integration (SEG) writes it.
# - 2Dretention: only an SDK auto-event (IOS TikTokBusiness.m, AND TTConst.AutoEvents
#   SecondDayRetention), in no standard-event list; whether the Events API reads it as a
#   standard event is not confirmed. Kept (the seed lists it); docs/partners/tiktok.md says so.
TIKTOK_EVENTS: MappingProxyType[str, str] = MappingProxyType(
    {
        "Registration": "Registration",
        "Pay(Purchase)": "Purchase",
        "View_content": "ViewContent",
        "Checkout": "Checkout",
        "Add_to_cart": "AddToCart",
        "2D_retention": "2Dretention",
        "Unlock_achievement": "UnlockAchievement",
        "Subscribe": "Subscribe",
        "Start_trial": "StartTrial",
        "Spend_credits": "SpendCredits",
        "Search": "Search",
        "Rate": "Rate",
        "Login": "Login",
        "Loan_disbursal": "LoanDisbursal",
        "Loan_approval": "LoanApproval",
        "Loan_application": "LoanApplication",
        "Achieve_level": "AchieveLevel",
        "Join_group": "JoinGroup",
        "InApp_ad_impr": "InAppADImpr",
        "InApp_ad_click": "InAppADClick",
        "Generate_lead": "GenerateLead",
        "Create_role": "CreateRole",
        "Create_group": "CreateGroup",
        "Complete_tutorial": "CompleteTutorial",
        "Launch_app": "LaunchAPP",
        "Add_to_wishlist": "AddToWishlist",
        "Add_payment_info": "AddPaymentInfo",
    }
)
INSTALL_EVENT = "InstallApp"  # IOS, AND (also the SDKs' automatic install event), SEG, BUB
MAX_EVENTS_PER_REQUEST = 1000  # BUB: TikTok rejects a larger request whole
# A destination is `<TikTok App ID>` or, for an app in test mode, `<App ID>:<test_event_code>`
# (the code is one per request, so test events never share a request with real ones).
DESTINATION_SEPARATOR = ":"

# The currencies TikTok reads in `properties.currency`: the 67 codes of IOS `TTCurrency`
# (TikTokConstants.m) and AND `TTContentsEventConstants.Currency` (the same set). BUB's comment
# lists an older 63 and is not used.
TIKTOK_CURRENCIES: frozenset[str] = frozenset({
    "AED", "ARS", "AUD", "BDT", "BGN", "BHD", "BIF", "BOB", "BRL", "CAD", "CHF", "CLP",
    "CNY", "COP", "CRC", "CZK", "DKK", "DZD", "EGP", "EUR", "GBP", "GTQ", "HKD", "HNL",
    "HUF", "IDR", "ILS", "INR", "IQD", "ISK", "JOD", "JPY", "KES", "KHR", "KRW", "KWD",
    "KZT", "LBP", "MAD", "MOP", "MXN", "MYR", "NGN", "NIO", "NOK", "NZD", "OMR", "PEN",
    "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RUB", "SAR", "SEK", "SGD", "THB", "TRY",
    "TWD", "TZS", "UAH", "USD", "VES", "VND", "ZAR",
})  # fmt: skip

# `user.att_status` (SEG constants.ts; BUB User.att_status): iOS only; NOT_APPLICABLE for iOS
# before 14 and for Android.
AttStatus = Literal["AUTHORIZED", "DENIED", "NOT_DETERMINED", "RESTRICTED", "NOT_APPLICABLE"]
# `properties.content_type` (SEG, BUB): `product` for a SKU id, `product_group` for an item
# group id.
CONTENT_TYPES: frozenset[str] = frozenset({"product", "product_group"})


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TikTokUser(_Wire):
    """Who the event is about (SEG TTUser, BUB User); TikTok has no Android ID field."""

    idfa: str | None = None
    idfv: str | None = None
    gaid: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    att_status: AttStatus | None = None
    locale: str | None = None


class TikTokApp(_Wire):
    """The app the event happened in (SEG TTApp, BUB App): the store id TikTok's app setup
    knows, digits only on iOS."""

    app_id: str = Field(min_length=1)
    app_name: str | None = None
    app_version: str | None = None


class TikTokAd(_Wire):
    """Attribution (SEG TTAd; BUB Ad, whose `callbeack` tag is a typo): the click and its
    campaign ids only for events attributed to TikTok; `attributed` and `is_retargeting` on
    every event."""

    callback: str | None = None
    campaign_id: str | None = None
    ad_id: str | None = None  # the ad group (AppsFlyer's adset)
    creative_id: str | None = None  # the ad
    is_retargeting: bool | None = None
    attributed: bool | None = None


class TikTokContent(_Wire):
    """One item of `properties.contents` (SEG; IOS TikTokContentsEvent.m)."""

    content_id: str | None = None
    quantity: int | float | None = None
    price: int | float | None = None
    content_name: str | None = None
    content_category: str | None = None
    brand: str | None = None


class TikTokProperties(_Wire):
    """`properties`: TikTok's own fields; the rich event's other parameters go along under their
    own keys (the seed forwards every parameter), so the model is open."""

    model_config = ConfigDict(frozen=True, extra="allow")

    contents: list[TikTokContent] | None = None
    content_ids: list[str] | None = None
    content_type: Literal["product", "product_group"] | None = None
    currency: str | None = None
    value: int | float | None = None
    description: str | None = None
    num_items: int | float | None = None
    search_string: str | None = None
    order_id: str | None = None


class TikTokEvent(_Wire):
    """One entry of the request's `data` list."""

    event: str
    event_time: int
    event_id: str
    limited_data_use: bool | None = None
    user: TikTokUser | None = None
    app: TikTokApp
    ad: TikTokAd | None = None
    properties: TikTokProperties | None = None


class TikTokRequest(_Wire):
    """The body of `POST /open_api/v1.3/event/track/` for app events."""

    event_source: Literal["app"] = "app"
    event_source_id: str
    test_event_code: str | None = None
    data: list[TikTokEvent] = Field(min_length=1, max_length=MAX_EVENTS_PER_REQUEST)
