"""Ocean Engine's conversion API (`POST /api/v2/conversion`): identifiers, codes and the body of
one conversion.

Sources (Ocean Engine's own pages are in Chinese; the fields were read from public clients): the
Go client `bububa/oceanengine` (`marketing-api/model/conversion/request.go`: `event_type`,
`context.ad.callback`, `context.ad.match_type`, `context.device.{imei,idfa,oaid}` (its device
model has no `platform`, so none is sent), `properties.pay_amount` in fen, `timestamp` in
milliseconds; `marketing-api/enum/conversion_event_type.go`: the event types;
`marketing-api/model/response.go`: the answer `{code, message, request_id}`;
`marketing-api/api/conversion/conversion.go`: code 128 taken as success; `marketing-api/core/
client.go` `AnalyticsPost`: the `x-signature` header). docs/partners/oceanengine.md traces each.
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

CODE_OK = 0
# bububa/oceanengine's `Conversion` returns no error for code 128 (its commit 40ad371,
# "refactor(conversion): returns code", with no word on why). No public source explains it; the
# client's author, who calls the API, takes it as accepted, so it is delivered here too. Any
# other non-zero `code` on HTTP 200 is a rejection of the conversion: no Ocean Engine source
# names a code transient or setup.
CODE_ACCEPTED_128 = 128
DELIVERED_CODES = frozenset({CODE_OK, CODE_ACCEPTED_128})
# The signature header of `core/client.go` `AnalyticsPost`: lower-case hex SHA-256 of the body's
# bytes followed by the secret's.
SIGNATURE_HEADER = "x-signature"
REVENUE_CURRENCY = "CNY"  # `pay_amount` is in fen: hundredths of a yuan


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OceanEngineAd(_Wire):
    """The click (or impression) the conversion is matched to."""

    callback: str = Field(min_length=1)
    match_type: int = Field(default=MATCH_TYPE_CLICK, ge=0, le=2)


class OceanEngineDevice(_Wire):
    """Device ids: `idfa` and `oaid` raw, `imei` as its lower-case MD5."""

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
