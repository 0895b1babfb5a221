"""TikTok For Business Events API (app events): identifiers, request body, response (SPEC §4)."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# The seed's partner event identifiers (what operators write in YAML) and TikTok's wire names.
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
INSTALL_EVENT = "InstallApp"
MAX_EVENTS_PER_REQUEST = 1000  # TikTok rejects a larger request whole

# Response body codes (TikTok reports most errors as HTTP 200 with a non-zero code).
CODE_OK = 0
CODE_PARTIAL_SUCCESS = 20001
CODE_TOO_MANY_REQUESTS = 40100
CODE_BAD_PARAMETER = 40002
FIRST_SERVER_ERROR_CODE = 50000


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TikTokUser(_Wire):
    """Who the event is about; TikTok has no Android ID field."""

    idfa: str | None = None
    idfv: str | None = None
    gaid: str | None = None
    ip: str | None = None
    user_agent: str | None = None


class TikTokApp(_Wire):
    """The app the event happened in."""

    app_id: str
    app_version: str | None = None


class TikTokAd(_Wire):
    """Attribution details, only for events attributed to TikTok."""

    callback: str | None = None
    campaign_id: str | None = None
    ad_id: str | None = None
    creative_id: str | None = None


class TikTokEvent(_Wire):
    """One entry of the request's `data` list."""

    event: str
    event_time: int
    event_id: str
    limited_data_use: bool | None = None
    user: TikTokUser | None = None
    app: TikTokApp
    ad: TikTokAd | None = None
    properties: dict[str, Any] | None = None


class TikTokRequest(_Wire):
    """The body of `POST /open_api/v1.3/event/track/` for app events."""

    event_source: Literal["app"] = "app"
    event_source_id: str
    data: list[TikTokEvent] = Field(min_length=1, max_length=MAX_EVENTS_PER_REQUEST)
