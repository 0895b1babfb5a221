"""The TikTok For Business partner file: its apps carry TikTok's App ID, its events TikTok's
identifiers, and a request holds at most 1,000 events."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from dispatcher.partners.tiktok.wire import (
    DESTINATION_SEPARATOR,
    MAX_EVENTS_PER_REQUEST,
    TIKTOK_EVENTS,
)
from schemas.config import (
    AppConfig,
    DeliveryConfig,
    EnvName,
    EventMapping,
    InAppPostbacks,
    MaxEventAge,
    PartnerConfig,
)


def _tiktok_event_identifier(value: str) -> str:
    if value not in TIKTOK_EVENTS:
        raise ValueError(
            f"{value!r} is not a TikTok partner event identifier; allowed: "
            + ", ".join(TIKTOK_EVENTS)
        )
    return value


class TikTokEventMapping(EventMapping):
    """An event mapping whose partner event is one of TikTok's identifiers."""

    partner_event: Annotated[str, AfterValidator(_tiktok_event_identifier)]


class TikTokInAppPostbacks(InAppPostbacks):
    """In-app postbacks mapped to TikTok's event identifiers."""

    events: tuple[TikTokEventMapping, ...] = ()


def _tiktok_app_id(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.isdigit():
        raise ValueError(
            f"{value!r} is not a TikTok App ID; allowed: the digits of the App ID from TikTok "
            'Events Manager, quoted, e.g. "7300000000000000001"'
        )
    return value


_TEST_EVENT_CODE = re.compile(r"[A-Za-z0-9]{1,64}")


def _test_event_code(value: object) -> object:
    if value is None:
        return None
    if not isinstance(value, str) or not _TEST_EVENT_CODE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a TikTok test event code; allowed: the code Events Manager's Test "
            "Events tab shows (letters and digits, e.g. TEST12345), or null to send for real"
        )
    return value


class TikTokAppConfig(AppConfig):
    """An app's TikTok settings; `tiktok_app_id` is TikTok's `event_source_id`."""

    tiktok_app_id: Annotated[str, BeforeValidator(_tiktok_app_id)]
    in_app_postbacks: TikTokInAppPostbacks = TikTokInAppPostbacks(enabled=False)
    # Events go to Events Manager's Test Events instead of being counted (bububa/tiktok-business
    # model/event/track.go `test_event_code`; Segment's tiktok-app-events sends it when set).
    test_event_code: Annotated[str | None, BeforeValidator(_test_event_code)] = None

    @property
    def test_mode(self) -> str | None:
        """Events Manager's Test Events, when a `test_event_code` is set."""
        if self.test_event_code is None:
            return None
        return (
            f"test_event_code {self.test_event_code}: its events show in TikTok Events "
            "Manager's Test Events and are not counted"
        )

    @property
    def destination(self) -> str:
        """Events for one TikTok App ID are batched into one request; an app in test mode gets
        a destination of its own (`<App ID>:<test code>`), since the code is one per request."""
        if self.test_event_code is None:
            return self.tiktok_app_id
        return f"{self.tiktok_app_id}{DESTINATION_SEPARATOR}{self.test_event_code}"


class TikTokDeliveryConfig(DeliveryConfig):
    """Delivery settings; TikTok rejects a whole request of more than 1,000 events."""

    batch_max_events: Annotated[int, Field(ge=1, le=MAX_EVENTS_PER_REQUEST)] = 1000
    # The age integrators document for TikTok's Events API (TikTok's own figure is not public).
    max_event_age: MaxEventAge = timedelta(days=28)


class TikTokPartnerConfig(PartnerConfig):
    """The TikTok For Business partner file."""

    partner: Literal["tiktok"]
    delivery: TikTokDeliveryConfig = TikTokDeliveryConfig()
    endpoint: str = "https://business-api.tiktok.com/open_api/v1.3/event/track/"
    access_token_env: EnvName = "TIKTOK_ACCESS_TOKEN"  # noqa: S105 - a variable name
    apps: tuple[TikTokAppConfig, ...] = ()
