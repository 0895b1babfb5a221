"""Ocean Engine's conversion API (`POST /api/v2/conversion`): identifiers, codes and the body of
one conversion (SPEC §4b).

Sources (Ocean Engine's own pages are in Chinese; the fields were read from public clients): the
Go client `bububa/oceanengine` (`marketing-api/model/conversion/request.go`: `event_type`,
`context.ad.callback`, `context.ad.match_type`, `context.device.{imei,idfa,oaid}`,
`properties.pay_amount`, `timestamp` in milliseconds; `marketing-api/enum/
conversion_event_type.go`: the event types). The README's "Partners" section lists them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# The event types an app's in-app events may be sent as (config `partner_event`, sent as
# `event_type`); `active` is the install, sent automatically.
INSTALL_EVENT = "active"
OCEAN_ENGINE_EVENTS: tuple[str, ...] = (
    "active_register",  # registration
    "active_pay",  # a payment
    "next_day_open",  # opened again the day after install
    "game_addiction",  # the key action
    "form",  # a form submitted
    "in_app_order",  # an order placed
    "in_app_uv",  # a visit
    "in_app_detail_uv",  # a detail page visited
    "in_app_cart",  # added to cart
    "in_app_pay",  # paid in the app
    "authorization",  # an authorisation granted
)

# `context.ad.match_type`: how the conversion was attributed (absent means a click).
MATCH_TYPE_CLICK = 0
MATCH_TYPE_IMPRESSION = 1

CODE_OK = 0  # any other `code` on HTTP 200 is a rejection
REVENUE_CURRENCY = "CNY"  # `pay_amount` is in fen: hundredths of a yuan


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OceanEngineAd(_Wire):
    """The click (or impression) the conversion is matched to."""

    callback: str = Field(min_length=1)
    match_type: int = Field(default=MATCH_TYPE_CLICK, ge=0, le=2)


class OceanEngineDevice(_Wire):
    """Device ids: `idfa` and `oaid` raw, `imei` as its lower-case MD5."""

    platform: str | None = None
    idfa: str | None = None
    oaid: str | None = None
    imei: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")


class OceanEngineContext(_Wire):
    """What the conversion is matched by."""

    ad: OceanEngineAd
    device: OceanEngineDevice | None = None


class OceanEngineProperties(_Wire):
    """Revenue, in fen."""

    pay_amount: int = Field(ge=0)


class OceanEngineConversion(_Wire):
    """The whole body of one request: one conversion."""

    event_type: str
    context: OceanEngineContext
    properties: OceanEngineProperties | None = None
    timestamp: int = Field(ge=10**12)  # milliseconds
