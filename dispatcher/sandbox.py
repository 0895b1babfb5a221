"""A local stand-in for TikTok's Events API, for the demo, tests and benchmarks.

It speaks TikTok's response contract (HTTP 200 with a body `code`; 0 is success) on one port, and
takes orders on a control port: inject faults (HTTP 5xx, 429 with Retry-After, body codes, slow
answers, dropped connections, refused connections) and read back what it received.

    POST /open_api/v1.3/event/track/      the Events API (any path on the API port)

    control port:
    GET  /events      events accepted: event_id, event, event_source_id, received_at, payload
    GET  /requests    every request: at (arrival), status, code, events, event_source_id,
                      retry_after_s, answered_at
    GET  /stats       counts: requests, events, unique event ids, duplicates
    POST /faults      {"faults": [{"status": 503, "count": 5}, {"code": 40100, "for_s": 10}, ...]}
    DELETE /faults    clear faults
    POST /listener    {"down_for_s": 60} refuses connections for a while; {"up": true} reopens
    POST /reset       forget everything received and every fault
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
from pydantic import ValidationError

from dispatcher.broker import free_port
from schemas.tiktok import (
    CODE_BAD_PARAMETER,
    CODE_OK,
    MAX_EVENTS_PER_REQUEST,
    TikTokRequest,
)

log = logging.getLogger(__name__)

CODE_BAD_TOKEN = 40105
LATENCY_PROPERTY = "bench_sent_at"
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests"}


@dataclass
class Fault:
    """One injected misbehaviour, for the next `count` requests or for `for_s` seconds."""

    status: int = 200
    code: int | None = None  # a TikTok body code to answer with (the events are not accepted)
    message: str = "injected fault"
    retry_after: str | None = None
    delay_s: float = 0.0  # answer this late (then normally, unless status/code say otherwise)
    close: bool = False  # drop the connection without answering
    count: int | None = None
    for_s: float | None = None
    until: float | None = field(default=None, repr=False)

    @property
    def answers_normally(self) -> bool:
        """Only a delay: the request is still processed."""
        return self.status == 200 and self.code is None and not self.close


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
        self.faults: list[Fault] = []
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
        now = time.monotonic()
        for fault in faults:
            if fault.for_s is not None:
                fault.until = None  # the clock starts when the fault comes up
            self.faults.append(fault)
        self._expire(now)

    def _expire(self, now: float) -> None:
        while self.faults:
            head = self.faults[0]
            if head.for_s is not None and head.until is None:
                head.until = now + head.for_s
            if (head.count is not None and head.count <= 0) or (
                head.until is not None and now >= head.until
            ):
                self.faults.pop(0)
                continue
            return

    def _next_fault(self) -> Fault | None:
        self._expire(time.monotonic())
        if not self.faults:
            return None
        head = self.faults[0]
        if head.count is not None:
            head.count -= 1
        if head.count is None and head.for_s is None:
            self.faults.pop(0)  # neither count nor duration: a single request
        return head

    # --- the API ---------------------------------------------------------------------------

    async def _serve_api(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._api_writers.add(writer)
        try:
            await _serve(reader, writer, self._handle_api)
        finally:
            self._api_writers.discard(writer)

    async def _handle_api(
        self, method: str, path: str, headers: dict[str, str], body: bytes, arrived: float
    ) -> tuple[int, dict[str, str], bytes] | None:
        fault = self._next_fault()
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
        await _serve(reader, writer, self._handle_control)

    async def _handle_control(
        self, method: str, path: str, headers: dict[str, str], body: bytes, _arrived: float
    ) -> tuple[int, dict[str, str], bytes]:
        route = (method, path.split("?", 1)[0].rstrip("/"))
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            return 400, {}, b'{"error": "body is not JSON"}'
        if route == ("GET", "/events"):
            return _json(200, {"events": [asdict(event) for event in self.events]})
        if route == ("GET", "/requests"):
            return _json(200, {"requests": [asdict(record) for record in self.requests]})
        if route == ("GET", "/stats"):
            return _json(200, self.stats())
        if route == ("POST", "/faults"):
            try:
                faults = [Fault(**spec) for spec in payload.get("faults", [])]
            except TypeError as exc:
                return _json(400, {"error": str(exc)})
            self.add_faults(faults)
            return _json(200, {"queued": len(self.faults)})
        if route == ("DELETE", "/faults"):
            self.faults.clear()
            return _json(200, {"queued": 0})
        if route == ("POST", "/listener"):
            if payload.get("up"):
                await self.listener_up()
            else:
                await self.listener_down(payload.get("down_for_s"))
            return _json(200, {"listening": self._api is not None})
        if route == ("POST", "/reset"):
            self.events.clear()
            self.requests.clear()
            self.faults.clear()
            self._seen.clear()
            return _json(200, {"reset": True})
        return _json(404, {"error": f"no route {method} {path}"})

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


def _json(status: int, value: Any) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(value).encode()


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handle: Any) -> None:
    """A minimal HTTP/1.1 keep-alive loop: Content-Length bodies, one request at a time."""
    try:
        while True:
            request_line = await reader.readline()
            if not request_line:
                return
            arrived = time.time()
            headers: dict[str, str] = {}
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0") or 0)
            body = await reader.readexactly(length) if length else b""
            method, path, _ = request_line.decode("latin-1").split(" ", 2)
            answer = await handle(method, path, headers, body, arrived)
            if answer is None:
                return  # drop the connection without answering
            status, extra, payload = answer
            head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
            head.append(f"Content-Length: {len(payload)}")
            head.extend(f"{key}: {value}" for key, value in extra.items())
            if "Content-Type" not in extra:
                head.append("Content-Type: application/json")
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, ValueError):
        return
    finally:
        writer.close()


class SandboxThread:
    """Runs a sandbox on an event loop in a daemon thread (tests, the demo)."""

    def __init__(self, sandbox: TikTokSandbox) -> None:
        self.sandbox = sandbox
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sandbox", daemon=True)

    def start(self) -> TikTokSandbox:
        """Start and return the sandbox once it listens."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.sandbox.start(), self._loop).result(timeout=10)
        return self.sandbox

    def stop(self) -> None:
        """Stop the sandbox and its loop."""
        asyncio.run_coroutine_threadsafe(self.sandbox.stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


async def serve_forever(sandbox: TikTokSandbox) -> None:
    """`dispatcher sandbox`: run until cancelled."""
    await sandbox.start()
    log.info(
        "TikTok sandbox listening",
        extra={"api": sandbox.url, "control": f"http://{sandbox.host}:{sandbox.control_port}"},
    )
    try:
        await asyncio.Event().wait()
    finally:
        await sandbox.stop()


class SandboxProcess:
    """`dispatcher sandbox` as a child process, with a client for its control port.

    A process of its own keeps the sandbox's timestamps honest while the caller is busy (the
    benchmark and the chaos suite produce events at the same time).
    """

    def __init__(
        self,
        log_path: str | None = None,
        token: str | None = None,
        record_payloads: bool = False,
    ) -> None:
        self.port, self.control_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}/open_api/v1.3/event/track/"
        self.control = f"http://127.0.0.1:{self.control_port}"
        self._log_path = log_path
        self._token = token
        self._record_payloads = record_payloads
        self._process: subprocess.Popen[bytes] | None = None
        self._client = httpx.Client(timeout=60)

    def start(self, timeout_s: float = 30) -> SandboxProcess:
        """Start it and wait until the control port answers."""
        command = [sys.executable, "-m", "dispatcher", "sandbox", "--port", str(self.port),
                   "--control-port", str(self.control_port)]  # fmt: skip
        env = dict(os.environ)
        if self._token:
            command += ["--token-env", "SANDBOX_ACCESS_TOKEN"]
            env["SANDBOX_ACCESS_TOKEN"] = self._token
        if not self._record_payloads:
            command.append("--no-payloads")
        with contextlib.ExitStack() as stack:
            log = stack.enter_context(open(self._log_path, "ab")) if self._log_path else None
            self._process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=log or subprocess.DEVNULL, env=env
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                self.stats()
                return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("the sandbox did not start")

    def stop(self) -> None:
        """Stop the process."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._client.close()

    def _get(self, path: str) -> Any:
        return self._client.get(f"{self.control}{path}").raise_for_status().json()

    def _post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._client.post(f"{self.control}{path}", json=body or {}).raise_for_status().json()

    def stats(self) -> dict[str, int]:
        """Counts: requests, events, unique_event_ids, duplicates."""
        result: dict[str, int] = self._get("/stats")
        return result

    def events(self) -> list[ReceivedEvent]:
        """Every event accepted, in arrival order."""
        return [ReceivedEvent(**entry) for entry in self._get("/events")["events"]]

    def requests(self) -> list[RequestRecord]:
        """Every request answered (or dropped)."""
        return [RequestRecord(**entry) for entry in self._get("/requests")["requests"]]

    def add_faults(self, faults: list[dict[str, Any]]) -> None:
        """Queue faults (see `Fault`)."""
        self._post("/faults", {"faults": faults})

    def clear_faults(self) -> None:
        """Drop every queued fault."""
        self._client.delete(f"{self.control}/faults").raise_for_status()

    def listener_down(self, seconds: float | None = None) -> None:
        """Refuse connections, for `seconds` or until `listener_up`."""
        self._post("/listener", {"down_for_s": seconds})

    def listener_up(self) -> None:
        """Accept connections again."""
        self._post("/listener", {"up": True})

    def reset(self) -> None:
        """Forget what was received and every fault."""
        self._post("/reset")
