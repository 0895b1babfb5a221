"""What each partner's API accepts and answers, as the sandbox speaks it.

A contract reads one request (headers and body) and says which events it accepts and the body
code to answer with; the server does the rest (faults, records, the HTTP answer).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from dispatcher.partners.oceanengine.wire import CODE_OK as OCEAN_ENGINE_OK
from dispatcher.partners.oceanengine.wire import OceanEngineConversion
from dispatcher.partners.tiktok.codes import CODE_OK as TIKTOK_OK
from dispatcher.partners.tiktok.wire import MAX_EVENTS_PER_REQUEST, TikTokRequest

# TikTok's PARAM_ERROR (tiktok_code.py), the answer to a body its schema refuses
CODE_BAD_PARAMETER = 40002

TIKTOK_BAD_TOKEN = 40105
# Ocean Engine publishes its error codes only in Chinese pages we could not read: the sandbox
# answers a malformed conversion with a non-zero code of its own, which the worker must treat
# as a rejection like any other.
OCEAN_ENGINE_SANDBOX_BAD_BODY = 1
LATENCY_PROPERTY = "bench_sent_at"


@dataclass(frozen=True)
class Accepted:
    """One event a contract accepted."""

    event_id: str  # what identifies a duplicate
    event: str  # the partner's event name
    source: str  # TikTok: the event_source_id; Ocean Engine: the callback
    payload: dict[str, Any] | None
    sent_at: float | None  # a benchmark's send time, for latency


@dataclass(frozen=True)
class Verdict:
    """A contract's reading of a request: the code to answer, and what it accepted."""

    code: int
    message: str
    accepted: tuple[Accepted, ...] = ()
    source: str | None = None


class Contract(Protocol):
    """One partner's side of the API."""

    partner: str
    path: str  # requests whose path starts with it are this partner's

    def read(self, headers: dict[str, str], body: bytes, keep_payloads: bool) -> Verdict:
        """Validate a request as the partner would."""
        ...

    def answer(self, code: int, message: str, request_id: str) -> bytes:
        """The partner's response body."""
        ...


def _sent_at(properties: dict[str, Any] | None) -> float | None:
    value = (properties or {}).get(LATENCY_PROPERTY)
    return float(value) if isinstance(value, float | int) else None


class TikTokContract:
    """TikTok's Events API: a batch of app events, an `Access-Token`, codes in the body."""

    partner = "tiktok"
    path = "/open_api/"

    def __init__(self, token: str | None) -> None:
        self.token = token

    def read(self, headers: dict[str, str], body: bytes, keep_payloads: bool) -> Verdict:
        if self.token is not None and headers.get("access-token") != self.token:
            return Verdict(TIKTOK_BAD_TOKEN, "Access token is incorrect or revoked.")
        try:
            request = TikTokRequest.model_validate_json(body)
        except ValidationError as exc:
            return Verdict(CODE_BAD_PARAMETER, _describe_tiktok(exc))
        source = request.event_source_id
        payloads = json.loads(body)["data"] if keep_payloads else [None] * len(request.data)
        accepted = tuple(
            Accepted(
                entry.event_id,
                entry.event,
                source,
                payload,
                _sent_at(entry.properties.model_extra if entry.properties else None),
            )
            for entry, payload in zip(request.data, payloads, strict=True)
        )
        return Verdict(TIKTOK_OK, "OK", accepted, source)

    def answer(self, code: int, message: str, request_id: str) -> bytes:
        return json.dumps(
            {"code": code, "message": message, "request_id": request_id, "data": {}}
        ).encode()


class OceanEngineContract:
    """Ocean Engine's conversion API: one conversion per request, matched by its callback."""

    partner = "oceanengine"
    path = "/api/v2/conversion"

    def read(self, headers: dict[str, str], body: bytes, keep_payloads: bool) -> Verdict:
        try:
            conversion = OceanEngineConversion.model_validate_json(body)
        except ValidationError as exc:
            return Verdict(OCEAN_ENGINE_SANDBOX_BAD_BODY, _describe(exc))
        callback = conversion.context.ad.callback
        # Ocean Engine documents no event id: one click's conversion of one type at one
        # time is one conversion, and the same again is a duplicate.
        identity = f"{callback}|{conversion.event_type}|{conversion.timestamp}"
        payload = json.loads(body) if keep_payloads else None
        accepted = Accepted(identity, conversion.event_type, callback, payload, None)
        return Verdict(OCEAN_ENGINE_OK, "success", (accepted,), callback)

    def answer(self, code: int, message: str, request_id: str) -> bytes:
        return json.dumps({"code": code, "message": message, "request_id": request_id}).encode()


def _describe(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    if error["type"] == "json_invalid":
        return "Request body is not valid JSON."
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}"


def _describe_tiktok(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    if error["type"] == "too_long" and error["loc"] == ("data",):
        return f"data: at most {MAX_EVENTS_PER_REQUEST} events per request"
    return _describe(exc)
