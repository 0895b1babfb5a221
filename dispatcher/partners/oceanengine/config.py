"""The Ocean Engine partner file: its events use Ocean Engine's event types, its apps send only
what is attributed to it (a conversion is matched by its click id alone), one conversion per
request, and no token."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator

from dispatcher.partners.oceanengine.wire import INSTALL_EVENT, OCEAN_ENGINE_EVENTS
from schemas.config import (
    AppConfig,
    DeliveryConfig,
    EnvName,
    EventMapping,
    InAppPostbacks,
    InstallPostbacks,
    PartnerConfig,
)


def _event_type(value: str) -> str:
    allowed = ", ".join(OCEAN_ENGINE_EVENTS)
    if value == INSTALL_EVENT:
        raise ValueError(
            f"{INSTALL_EVENT!r} is the install, sent for every attributed install on its own; "
            f"map in-app events to one of: {allowed}"
        )
    if value not in OCEAN_ENGINE_EVENTS:
        raise ValueError(f"{value!r} is not an Ocean Engine event type; allowed: {allowed}")
    return value


def _attributed_only(value: str) -> str:
    if value != "attributed":
        raise ValueError(
            f"scope {value!r} is not allowed for Ocean Engine; allowed: attributed (Ocean Engine "
            "matches a conversion by its click id, which only its own installs carry)"
        )
    return value


AttributedOnly = Annotated[str, AfterValidator(_attributed_only)]


class OceanEngineEventMapping(EventMapping):
    """An event mapping whose partner event is one of Ocean Engine's event types."""

    partner_event: Annotated[str, AfterValidator(_event_type)]


class OceanEngineInstallPostbacks(InstallPostbacks):
    """Installs: only those attributed to Ocean Engine."""

    scope: AttributedOnly = "attributed"  # type: ignore[assignment]


class OceanEngineInAppPostbacks(InAppPostbacks):
    """In-app events of installs attributed to Ocean Engine, mapped to its event types."""

    scope: AttributedOnly = "attributed"  # type: ignore[assignment]
    events: tuple[OceanEngineEventMapping, ...] = ()


class OceanEngineAppConfig(AppConfig):
    """An app's Ocean Engine settings (Ocean Engine needs no id of its own for the app)."""

    install_postbacks: OceanEngineInstallPostbacks = OceanEngineInstallPostbacks()
    in_app_postbacks: OceanEngineInAppPostbacks = OceanEngineInAppPostbacks(enabled=False)


class OceanEngineDeliveryConfig(DeliveryConfig):
    """Delivery settings; one conversion per request (Ocean Engine documents no batching)."""

    batch_max_events: Annotated[int, Field(ge=1, le=1)] = 1
    batch_linger_ms: Annotated[int, Field(ge=0, le=10_000)] = 0


class OceanEngineConfig(PartnerConfig):
    """The Ocean Engine partner file."""

    partner: Literal["oceanengine"]
    endpoint: str = "https://analytics.oceanengine.com/api/v2/conversion"
    delivery: OceanEngineDeliveryConfig = OceanEngineDeliveryConfig()
    apps: tuple[OceanEngineAppConfig, ...] = ()
    # The variable holding the secret requests are signed with (`x-signature`, bububa/oceanengine
    # `marketing-api/core/client.go`); None: requests go unsigned. Never the secret itself.
    signing_secret_env: EnvName | None = None

    @field_validator("access_token_env", "access_token_file")
    @classmethod
    def _no_token(cls, value: object, info: ValidationInfo) -> object:
        if value is not None:
            raise ValueError(
                f"Ocean Engine's conversion API takes no token; allowed: leave {info.field_name} "
                "out"
            )
        return value
