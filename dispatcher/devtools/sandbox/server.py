"""The sandbox server: both partners' APIs on one port, faults and records on a control port
(see the package's docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from dispatcher.devtools.sandbox.contracts import (
    Contract,
    OceanEngineContract,
    TikTokContract,
)
from dispatcher.devtools.sandbox.faults import Fault, PartnerFaults
from dispatcher.devtools.sandbox.http import Answer, json_answer, serve

PARTNERS = ("tiktok", "oceanengine")


@dataclass
class ReceivedEvent:
    """An event the sandbox accepted."""

    event_id: str  # TikTok's event_id; for Ocean Engine, callback|event_type|timestamp
    event: str
    event_source_id: str  # TikTok's event_source_id; for Ocean Engine, the callback
    received_at: float
    payload: dict[str, Any] | None
    sent_at: float | None = None  # a benchmark's `properties.bench_sent_at`, for latency
    partner: str = "tiktok"


@dataclass
class RequestRecord:
    """A request the sandbox answered (or dropped)."""

    at: float  # when its first line arrived: what rate limits count
    status: int
    code: int | None
    events: int
    event_source_id: str | None
    retry_after_s: float | None = None  # what the answer asked for, when it did
    answered_at: float | None = None  # when the answer was ready: a Retry-After starts here
    partner: str = "tiktok"


class PartnerSandbox:
    """The sandbox server; `start()` on a running event loop."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        control_port: int = 0,
        token: str | None = None,
        record_payloads: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self.control_port = control_port
        self.token = token
        self.record_payloads = record_payloads
        self.events: list[ReceivedEvent] = []
        self.requests: list[RequestRecord] = []
        self.tiktok = TikTokContract(token)
        self.oceanengine = OceanEngineContract()
        self.faults = PartnerFaults(PARTNERS)
        self._api: asyncio.Server | None = None
        self._control: asyncio.Server | None = None
        self._api_writers: set[asyncio.StreamWriter] = set()
        self._reopen: asyncio.TimerHandle | None = None
        self._request_ids = itertools.count(1)
        self._seen: set[tuple[str, str]] = set()

    async def start(self) -> None:
        """Listen on both ports (port 0 picks free ones)."""
        await self._open_api()
        self._control = await asyncio.start_server(
            self._serve_control, self.host, self.control_port
        )
        self.control_port = self._control.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close both ports and every connection."""
        if self._reopen:
            self._reopen.cancel()
        await self._close_api()
        if self._control:
            self._control.close()
            await self._control.wait_closed()

    @property
    def url(self) -> str:
        """TikTok's Events API endpoint."""
        return f"http://{self.host}:{self.port}/open_api/v1.3/event/track/"

    @property
    def oceanengine_url(self) -> str:
        """Ocean Engine's conversion endpoint."""
        return f"http://{self.host}:{self.port}{self.oceanengine.path}"

    async def _open_api(self) -> None:
        self._api = await asyncio.start_server(self._serve_api, self.host, self.port)
        self.port = self._api.sockets[0].getsockname()[1]

    async def _close_api(self) -> None:
        if self._api is not None:
            self._api.close()
            for writer in list(self._api_writers):
                writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._api.wait_closed(), 2)
            self._api = None

    async def listener_down(self, seconds: float | None) -> None:
        """Refuse connections (for `seconds`, or until `listener_up`)."""
        await self._close_api()
        if seconds:
            loop = asyncio.get_running_loop()
            self._reopen = loop.call_later(seconds, lambda: loop.create_task(self.listener_up()))

    async def listener_up(self) -> None:
        """Accept connections again."""
        if self._reopen:
            self._reopen.cancel()
            self._reopen = None
        if self._api is None:
            await self._open_api()

    def add_faults(self, faults: list[Fault], partner: str = "tiktok") -> None:
        """Queue faults for one partner's requests; each applies in turn (a fault naming
        `event_ids` applies to every request carrying one of them, until cleared)."""
        self.faults.add(partner, faults)

    def contract_for(self, path: str) -> Contract:
        """Ocean Engine's path is its own; any other path is TikTok's."""
        if path.startswith(self.oceanengine.path):
            return self.oceanengine
        return self.tiktok

    # --- the API ---------------------------------------------------------------------------

    async def _serve_api(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._api_writers.add(writer)
        try:
            await serve(reader, writer, self._handle_api)
        finally:
            self._api_writers.discard(writer)

    async def _handle_api(
        self, method: str, path: str, headers: dict[str, str], body: bytes, arrived: float
    ) -> Answer | None:
        contract = self.contract_for(path)
        partner = contract.partner
        fault = self.faults[partner].next()
        if fault is not None and fault.delay_s:
            await asyncio.sleep(fault.delay_s)
        if fault is not None and fault.close:
            self._record(partner, arrived, 0, None, 0, None)
            return None
        if fault is not None and not fault.answers_normally:
            extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            asked = float(fault.retry_after) if fault.retry_after else None
            if fault.code is not None:
                self._record(partner, arrived, fault.status, fault.code, 0, None, asked)
                return fault.status, extra, self._body(contract, fault.code, fault.message)
            self._record(partner, arrived, fault.status, None, 0, None, asked)
            return fault.status, extra, fault.message.encode()
        if method != "POST":
            self._record(partner, arrived, 404, None, 0, None)
            return 404, {}, b"not found"
        verdict = contract.read(headers, body, self.record_payloads)
        bad = self.faults.bad_event(partner, [entry.event_id for entry in verdict.accepted])
        if bad is not None:  # a bad event rejects its whole request: nothing accepted
            self._record(partner, arrived, bad.status, bad.code, 0, verdict.source)
            if bad.code is None:
                return bad.status, {}, bad.message.encode()
            return bad.status, {}, self._body(contract, bad.code, bad.message)
        now = time.time()
        for entry in verdict.accepted:
            self.events.append(
                ReceivedEvent(
                    entry.event_id,
                    entry.event,
                    entry.source,
                    now,
                    entry.payload,
                    entry.sent_at,
                    partner,
                )
            )
            self._seen.add((partner, entry.event_id))
        self._record(partner, arrived, 200, verdict.code, len(verdict.accepted), verdict.source)
        return 200, {}, self._body(contract, verdict.code, verdict.message)

    def _body(self, contract: Contract, code: int, message: str) -> bytes:
        return contract.answer(code, message, f"sandbox-{next(self._request_ids)}")

    def _record(
        self,
        partner: str,
        arrived: float,
        status: int,
        code: int | None,
        events: int,
        source: str | None,
        retry_after_s: float | None = None,
    ) -> None:
        self.requests.append(
            RequestRecord(
                arrived, status, code, events, source, retry_after_s, time.time(), partner
            )
        )

    # --- the control port ------------------------------------------------------------------

    async def _serve_control(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await serve(reader, writer, self._handle_control)

    async def _handle_control(
        self, method: str, path: str, headers: dict[str, str], body: bytes, _arrived: float
    ) -> Answer:
        route = (method, path.split("?", 1)[0].rstrip("/"))
        query = dict(parse_qsl(urlsplit(path).query))
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            return 400, {}, b'{"error": "body is not JSON"}'
        wanted = query.get("partner")
        if route == ("GET", "/events"):
            events = [asdict(e) for e in self.events if wanted in (None, e.partner)]
            return json_answer(200, {"events": events})
        if route == ("GET", "/requests"):
            records = [asdict(r) for r in self.requests if wanted in (None, r.partner)]
            return json_answer(200, {"requests": records})
        if route == ("GET", "/stats"):
            return json_answer(200, self.stats())
        if route == ("POST", "/faults"):
            partner = payload.get("partner", "tiktok")
            if partner not in self.faults:
                return json_answer(400, {"error": f"partner: one of {', '.join(PARTNERS)}"})
            try:
                faults = [Fault(**spec) for spec in payload.get("faults", [])]
            except TypeError as exc:
                return json_answer(400, {"error": str(exc)})
            self.add_faults(faults, partner)
            return json_answer(
                200,
                {
                    "queued": len(self.faults[partner]),
                    "bad_events": len(self.faults.bad_events[partner]),
                },
            )
        if route == ("GET", "/faults"):
            return json_answer(200, self.faults.describe())
        if route == ("DELETE", "/faults"):
            self.faults.clear()
            return json_answer(200, {"queued": 0})
        if route == ("POST", "/listener"):
            if payload.get("up"):
                await self.listener_up()
            else:
                await self.listener_down(payload.get("down_for_s"))
            return json_answer(200, {"listening": self._api is not None})
        if route == ("POST", "/reset"):
            self.events.clear()
            self.requests.clear()
            self.faults.clear()
            self._seen.clear()
            return json_answer(200, {"reset": True})
        return json_answer(404, {"error": f"no route {method} {path}"})

    def stats(self) -> dict[str, int]:
        """Counts of what was received (kept as events arrive: cheap to poll)."""
        return {
            "requests": len(self.requests),
            "events": len(self.events),
            "unique_event_ids": len(self._seen),
            "duplicates": len(self.events) - len(self._seen),
        }
