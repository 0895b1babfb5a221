"""Running a sandbox: on a loop in a thread (tests, the demo), as `dispatcher sandbox` until
cancelled, or as a child process with a client for its control port (benchmark, chaos suite)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
from typing import Any

import httpx

from dispatcher.devtools.processes import free_port, stop_process
from dispatcher.devtools.sandbox.server import PartnerSandbox, ReceivedEvent, RequestRecord

log = logging.getLogger(__name__)


class SandboxThread:
    """Runs a sandbox on an event loop in a daemon thread (tests, the demo)."""

    def __init__(self, sandbox: PartnerSandbox) -> None:
        self.sandbox = sandbox
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sandbox", daemon=True)

    def start(self) -> PartnerSandbox:
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


async def serve_forever(sandbox: PartnerSandbox) -> None:
    """`dispatcher sandbox`: run until cancelled."""
    await sandbox.start()
    log.info(
        "partner sandbox listening",
        extra={
            "tiktok": sandbox.url,
            "oceanengine": sandbox.oceanengine_url,
            "control": f"http://{sandbox.host}:{sandbox.control_port}",
        },
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
        self.oceanengine_url = f"http://127.0.0.1:{self.port}/api/v2/conversion"
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
        if process is not None:
            stop_process(process)
        self._client.close()

    def _get(self, path: str) -> Any:
        return self._client.get(f"{self.control}{path}").raise_for_status().json()

    def _post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._client.post(f"{self.control}{path}", json=body or {}).raise_for_status().json()

    def stats(self) -> dict[str, int]:
        """Counts: requests, events, unique_event_ids, duplicates."""
        result: dict[str, int] = self._get("/stats")
        return result

    def events(self, partner: str | None = None) -> list[ReceivedEvent]:
        """Every event accepted (by one partner, or all), in arrival order."""
        query = f"?partner={partner}" if partner else ""
        return [ReceivedEvent(**entry) for entry in self._get(f"/events{query}")["events"]]

    def requests(self, partner: str | None = None) -> list[RequestRecord]:
        """Every request answered (or dropped)."""
        query = f"?partner={partner}" if partner else ""
        return [RequestRecord(**entry) for entry in self._get(f"/requests{query}")["requests"]]

    def add_faults(self, faults: list[dict[str, Any]], partner: str = "tiktok") -> None:
        """Queue faults for one partner's requests (see `Fault`)."""
        self._post("/faults", {"partner": partner, "faults": faults})

    def faults(self) -> dict[str, Any]:
        """Per partner, the faults still queued and the bad events (`GET /faults`)."""
        result: dict[str, Any] = self._get("/faults")
        return result

    def reject_events(
        self, event_ids: list[str], code: int = 40002, message: str = "Invalid parameter",
        partner: str = "tiktok",
    ) -> None:  # fmt: skip
        """Answer `code` to every request carrying one of these events, until faults are
        cleared (a bad event: the worker splits its batch until it stands alone)."""
        self.add_faults([{"code": code, "message": message, "event_ids": event_ids}], partner)

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
