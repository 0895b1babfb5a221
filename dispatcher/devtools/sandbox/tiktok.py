"""TikTok's Events API as the sandbox speaks it: the request contract, the answers, the control
routes (see the package's docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import ValidationError

from dispatcher.devtools.sandbox.faults import Fault, FaultQueue
from dispatcher.devtools.sandbox.http import Answer, json_answer, serve
from dispatcher.partners.tiktok.wire import (
    CODE_BAD_PARAMETER,
    CODE_OK,
    MAX_EVENTS_PER_REQUEST,
    TikTokRequest,
)

CODE_BAD_TOKEN = 40105
LATENCY_PROPERTY = "bench_sent_at"


@dataclass
class ReceivedEvent:
    """An event the sandbox accepted."""

    event_id: str
    event: str
    event_source_id: str
    received_at: float
    payload: dict[str, Any] | None
    sent_at: float | None = None  # a benchmark's `properties.bench_sent_at`, for latency


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


class TikTokSandbox:
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
        self.faults = FaultQueue()
        self._api: asyncio.Server | None = None
        self._control: asyncio.Server | None = None
        self._api_writers: set[asyncio.StreamWriter] = set()
        self._reopen: asyncio.TimerHandle | None = None
        self._request_ids = itertools.count(1)
        self._seen: set[str] = set()

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
        """The Events API endpoint."""
        return f"http://{self.host}:{self.port}/open_api/v1.3/event/track/"

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

    def add_faults(self, faults: list[Fault]) -> None:
        """Queue faults; each applies in turn."""
        self.faults.add(faults)

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
        fault = self.faults.next()
        if fault is not None and fault.delay_s:
            await asyncio.sleep(fault.delay_s)
        if fault is not None and fault.close:
            self._record(arrived, 0, None, 0, None)
            return None
        if fault is not None and not fault.answers_normally:
            extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            asked = float(fault.retry_after) if fault.retry_after else None
            if fault.code is not None:
                self._record(arrived, fault.status, fault.code, 0, None, asked)
                return fault.status, extra, self._body(fault.code, fault.message)
            self._record(arrived, fault.status, None, 0, None, asked)
            return fault.status, extra, fault.message.encode()
        if method != "POST":
            self._record(arrived, 404, None, 0, None)
            return 404, {}, b"not found"
        if self.token is not None and headers.get("access-token") != self.token:
            self._record(arrived, 200, CODE_BAD_TOKEN, 0, None)
            return 200, {}, self._body(CODE_BAD_TOKEN, "Access token is incorrect or revoked.")
        try:
            request = TikTokRequest.model_validate_json(body)
        except ValidationError as exc:
            self._record(arrived, 200, CODE_BAD_PARAMETER, 0, None)
            return 200, {}, self._body(CODE_BAD_PARAMETER, _describe(exc))
        now = time.time()
        source = request.event_source_id
        payloads = json.loads(body)["data"] if self.record_payloads else [None] * len(request.data)
        for entry, payload in zip(request.data, payloads, strict=True):
            properties = entry.properties or {}
            sent_at = properties.get(LATENCY_PROPERTY)
            self.events.append(
                ReceivedEvent(
                    entry.event_id,
                    entry.event,
                    source,
                    now,
                    payload,
                    sent_at if isinstance(sent_at, float | int) else None,
                )
            )
            self._seen.add(entry.event_id)
        self._record(arrived, 200, CODE_OK, len(request.data), source)
        return 200, {}, self._body(CODE_OK, "OK")

    def _body(self, code: int, message: str) -> bytes:
        request_id = f"sandbox-{next(self._request_ids)}"
        return json.dumps(
            {"code": code, "message": message, "request_id": request_id, "data": {}}
        ).encode()

    def _record(
        self,
        arrived: float,
        status: int,
        code: int | None,
        events: int,
        source: str | None,
        retry_after_s: float | None = None,
    ) -> None:
        self.requests.append(
            RequestRecord(arrived, status, code, events, source, retry_after_s, time.time())
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
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            return 400, {}, b'{"error": "body is not JSON"}'
        if route == ("GET", "/events"):
            return json_answer(200, {"events": [asdict(event) for event in self.events]})
        if route == ("GET", "/requests"):
            return json_answer(200, {"requests": [asdict(record) for record in self.requests]})
        if route == ("GET", "/stats"):
            return json_answer(200, self.stats())
        if route == ("POST", "/faults"):
            try:
                faults = [Fault(**spec) for spec in payload.get("faults", [])]
            except TypeError as exc:
                return json_answer(400, {"error": str(exc)})
            self.add_faults(faults)
            return json_answer(200, {"queued": len(self.faults)})
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


def _describe(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    if error["type"] == "json_invalid":
        return "Request body is not valid JSON."
    if error["type"] == "too_long" and error["loc"] == ("data",):
        return f"data: at most {MAX_EVENTS_PER_REQUEST} events per request"
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}"
