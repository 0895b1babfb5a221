"""A partner sink that `json.loads` every request body before the sandbox reads it, as an outside
harness's sink that parses what it receives; the rest is the sandbox (`dispatcher sandbox`): its
TikTok contract validates every body (pydantic-core reads all of it) and counts the events.

    python -m bench.sink --port P --control-port C     # what `JsonSandboxProcess` starts
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from dispatcher.allocator import tune_garbage_collector
from dispatcher.devtools.processes import free_port
from dispatcher.devtools.sandbox import PartnerSandbox, SandboxProcess, serve_forever
from dispatcher.devtools.sandbox.contracts import TikTokContract, Verdict


class JsonLoadsTikTok(TikTokContract):
    """TikTok's contract, after a `json.loads` of the whole body."""

    def read(self, headers: dict[str, str], body: bytes, keep_payloads: bool) -> Verdict:
        with contextlib.suppress(ValueError):  # not JSON: the contract answers it as TikTok does
            json.loads(body)
        return super().read(headers, body, keep_payloads)


class SinkProcess(SandboxProcess):
    """A sandbox process: the sandbox itself (`sink="sandbox"`) or this module's (`"json"`);
    both with their CPU seconds."""

    def __init__(self, log_path: str | None = None, sink: str = "sandbox") -> None:
        super().__init__(log_path=log_path)
        self.sink = sink

    def start(self, timeout_s: float = 30) -> SinkProcess:
        """Start it and wait until the control port answers."""
        if self.sink == "sandbox":
            super().start(timeout_s)
            return self
        for _attempt in range(3):
            command = [sys.executable, "-m", "bench.sink", "--port", str(self.port),
                       "--control-port", str(self.control_port)]  # fmt: skip
            with contextlib.ExitStack() as stack:
                log = stack.enter_context(open(self._log_path, "ab")) if self._log_path else None
                self._process = process = subprocess.Popen(
                    command, stdout=subprocess.DEVNULL, stderr=log or subprocess.DEVNULL
                )
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    self.stats()
                    return self
                except httpx.HTTPError:
                    time.sleep(0.1)
            if process.poll() is None:
                break
            # it exited: a port taken between `free_port` and its bind; two others
            self.port, self.control_port = free_port(), free_port()
            self.url = f"http://127.0.0.1:{self.port}/open_api/v1.3/event/track/"
            self.oceanengine_url = f"http://127.0.0.1:{self.port}/api/v2/conversion"
            self.control = f"http://127.0.0.1:{self.control_port}"
        self.stop()
        raise RuntimeError("the sink did not start")

    def cpu_s(self) -> float:
        """User + system CPU seconds so far (Linux)."""
        process = self._process
        if process is None:
            return 0.0
        fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sink")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--control-port", type=int, required=True)
    args = parser.parse_args()
    tune_garbage_collector()  # as `dispatcher sandbox`
    sandbox = PartnerSandbox(args.host, args.port, args.control_port, record_payloads=False)
    sandbox.tiktok = JsonLoadsTikTok(None)
    asyncio.run(serve_forever(sandbox))


if __name__ == "__main__":
    main()
