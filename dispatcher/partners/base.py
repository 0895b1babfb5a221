"""What every partner provides, and the content the rules hand it.

A partner is a package under `dispatcher/partners/` holding its identifiers, its config model, its
payload, request and response reading (a `PartnerAdapter`), registered once as a `Partner`; plus
its YAML file. The rules and the delivery loop do not change when one is added.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Protocol

import orjson
import pydantic_core

from dispatcher.outcomes import AttemptResult
from schemas.config import AppConfig, PartnerConfig
from schemas.events import Event, Money

_ZERO_DEVICE_ID = "00000000-0000-0000-0000-000000000000"


def usable_device_id(value: str | None) -> str | None:
    """A device id worth sending, stripped; None for a blank one or the all-zero id of limited
    ad tracking, which identifies nobody."""
    if not value or value.strip() == _ZERO_DEVICE_ID:
        return None
    return value.strip()


def encode_json(value: Any) -> bytes:
    """A request body as compact UTF-8 JSON.

    orjson writes a TikTok batch in about half the time pydantic-core takes, on the delivery
    thread that shares the GIL with the worker's loop. A value orjson refuses (an integer past 64
    bits from an `event_value`, a type it does not know) is written by pydantic-core. Where both
    write a value the bytes are the same, except non-finite floats (`NaN` or `Infinity` in an
    `event_value` is read as a float): orjson writes `null`, pydantic-core `NaN`, which is not
    JSON.
    """
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return pydantic_core.to_json(value)


class Identifiers(NamedTuple):
    """The user's identifiers the rules allow to be sent (docs/signals.md): none of them when the
    event is sent `limited`; never an all-zero id; no advertising id under limited ad tracking.
    A partner module sends these, never the event's own fields."""

    idfa: str | None = None
    idfv: str | None = None
    advertising_id: str | None = None
    android_id: str | None = None
    oaid: str | None = None
    imei: str | None = None
    ip: str | None = None
    user_agent: str | None = None


NO_IDENTIFIERS = Identifiers()


def identifiers_of(event: Event) -> Identifiers:
    """What may be sent of `event`'s identifiers when the user's consent allows it."""
    return Identifiers(
        usable_device_id(event.idfa),
        usable_device_id(event.idfv),
        None if event.limit_ad_tracking else usable_device_id(event.advertising_id),
        usable_device_id(event.android_id),
        usable_device_id(event.oaid),
        usable_device_id(event.imei),
        event.ip,
        event.user_agent,
    )


class PostbackContent(NamedTuple):
    """What the rules decided to send, in partner-neutral terms."""

    event: Event
    app: AppConfig
    partner_event: str | None  # the configured identifier; None for an install
    attributed: bool  # attributed to this partner: its click/campaign ids go along
    params: Mapping[str, Any]  # event_value parameters, revenue keys removed when stripped
    standard_params: Mapping[str, Any]  # the event's standard parameters, stripped likewise
    revenue: Money | None  # sent only when the mapping keeps revenue and the event has it
    revenue_stripped: bool
    # revenue the mapping keeps but the partner cannot take (a currency it does not read)
    unsent_revenue: Money | None = None
    identifiers: Identifiers = NO_IDENTIFIERS  # what may be sent of the user's identifiers
    # sent without consent to share data for advertising: no identifiers, and the partner's
    # limited-data flag where it has one
    limited: bool = False


class PartnerAdapter(Protocol):
    """Payload building and response reading for one partner's API; no I/O of its own."""

    name: str
    install_event: str  # the partner's name for an install (the `event` label of its postbacks)
    # The attribution link's query parameter the partner fills with its click id.
    click_id_parameter: str
    # True when the partner matches conversions by its click id alone: an attributed event
    # without one cannot be sent (skip reason `no_click_id`).
    requires_click_id: bool
    # The revenue currencies the partner reads; None for any. Revenue in another currency is
    # left out of the postback and counted (`dispatcher_revenue_unsent_total`).
    revenue_currencies: frozenset[str] | None
    # Its attribution links (`dispatcher link`): AppsFlyer parameter -> the partner's macro (or a
    # fixed value), in the order the partner documents; `click_id_parameter` among them.
    link_parameters: tuple[tuple[str, str], ...]
    has_impression_link: bool

    def build_event(self, content: PostbackContent) -> dict[str, Any]:
        """One event of the partner's request body."""
        ...

    def event_label(self, payload: Mapping[str, Any]) -> str:
        """The partner's event name of a built payload (a bounded metric label)."""
        ...

    def encode_request(self, destination: str, payloads: Sequence[Mapping[str, Any]]) -> bytes:
        """The request body for a batch of payloads bound for one destination."""
        ...

    def request_headers(self, token: str) -> dict[str, str]:
        """Headers of every request, credentials included."""
        ...

    def body_headers(self, body: bytes, secret: str) -> dict[str, str]:
        """Headers that depend on the body (a signature), sent when the partner file names a
        signing secret; {} for a partner that signs nothing."""
        ...

    def classify(
        self, status: int, headers: Mapping[str, str], body: bytes, now: float
    ) -> AttemptResult:
        """Read an HTTP answer (`now` in Unix seconds): success, retry later, or rejection."""
        ...

    def should_split(self, result: AttemptResult, size: int) -> bool:
        """Whether a rejected batch should be retried as halves to isolate the bad events."""
        ...


class Partner(NamedTuple):
    """A partner as registered: its name (a partner file's `partner:`), the model its file is
    validated with, and its adapter."""

    name: str
    config_model: type[PartnerConfig]
    adapter: PartnerAdapter
