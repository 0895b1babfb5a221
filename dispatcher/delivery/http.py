"""The HTTP edge of a partner: one request, read as an attempt result.

httpx's exceptions are mapped here to attempt results (a transport error or timeout is
retryable; whether the request may have arrived decides duplicates); the partner module reads
the answer; the token is redacted from anything the partner says back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

import httpx

from dispatcher.logs import SecretRedactor
from dispatcher.outcomes import AttemptKind, AttemptResult
from dispatcher.partners import PartnerAdapter
from dispatcher.ratelimit import Clock

log = logging.getLogger(__name__)

_FATE_UNKNOWN_ERRORS = (
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)


def transport_failure(exc: httpx.HTTPError) -> AttemptResult:
    """Map an httpx error to a retryable attempt; whether it may have arrived decides duplicates."""
    kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "transport error"
    return AttemptResult(
        AttemptKind.RETRYABLE,
        None,
        None,
        f"{kind}: {type(exc).__name__}",
        fate_unknown=isinstance(exc, _FATE_UNKNOWN_ERRORS),
        # sent, and not answered in time: a smaller request may be
        timed_out=isinstance(exc, httpx.ReadTimeout),
    )


class PartnerHttp:
    """Posts request bodies to one partner's endpoint with its headers."""

    def __init__(
        self, client: httpx.AsyncClient, adapter: PartnerAdapter, wall_clock: Clock
    ) -> None:
        self.client = client
        self.adapter = adapter
        self.wall_clock = wall_clock
        self.endpoint = ""
        self.headers: dict[str, str] = {}
        self.timeout_s = 10.0
        self.signing_secret = ""
        self.redactor = SecretRedactor([])
        self._unlisted_seen: set[int | None] = set()  # codes in none of the partner's lists

    def configure(
        self, endpoint: str, token: str, timeout_s: float, signing_secret: str = ""
    ) -> None:
        """Where and how to send (`signing_secret`: the partner's body signature, when set);
        batches already in flight finish with the old settings."""
        self.endpoint = endpoint
        self.headers = self.adapter.request_headers(token)
        self.timeout_s = timeout_s
        self.signing_secret = signing_secret
        # a partner's error message may quote a secret back: it must reach no log or dead letter
        self.redactor = SecretRedactor([secret for secret in (token, signing_secret) if secret])

    async def post(self, body: bytes, on_written: Callable[[], None]) -> AttemptResult:
        """One attempt; `on_written` is called once the body has left (for the pacer)."""

        async def trace(event: str, _info: object) -> None:
            if event == "http11.send_request_body.complete":
                on_written()

        headers = self.headers
        if self.signing_secret:
            headers = headers | self.adapter.body_headers(body, self.signing_secret)
        try:
            response = await self.client.post(
                self.endpoint,
                content=body,
                headers=headers,
                timeout=self.timeout_s,
                extensions={"trace": trace},
            )
        except httpx.HTTPError as exc:
            result = transport_failure(exc)
        except Exception as exc:  # a defect must not lose events: log it and retry
            log.exception("unexpected error sending to %s", self.adapter.name)
            result = AttemptResult(
                AttemptKind.RETRYABLE, None, None, f"internal error: {type(exc).__name__}"
            )
        else:
            result = self.adapter.classify(
                response.status_code, response.headers, response.content, self.wall_clock()
            )
        redacted = self.redactor.redact(result.message)
        if redacted is not result.message:
            result = replace(result, message=redacted)
        if result.unlisted and result.code not in self._unlisted_seen:
            self._unlisted_seen.add(result.code)
            log.warning(
                "%s answered a code in none of its lists, retried as transient (logged once per "
                "code): %s",
                self.adapter.name,
                result.message,
                extra={"partner": self.adapter.name, "code": result.code, "status": result.status},
            )
        return result

    async def aclose(self) -> None:
        """Close the client and its connections."""
        await self.client.aclose()
