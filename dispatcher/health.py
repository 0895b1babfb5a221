"""Liveness and readiness, and the HTTP server of `/metrics`, `/healthz` and `/readyz`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from dispatcher.metrics import Metrics


class Health:
    """Liveness (the loop keeps turning) and readiness (consuming, not stopping, and no lasting
    fault such as a deleted source topic)."""

    def __init__(self, stale_after_s: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._stale_after_s = stale_after_s
        self._last_beat: float | None = None
        self._ready = False
        self._reason = "starting"
        self._faults: dict[str, str] = {}

    def beat(self) -> None:
        """The main loop went round once."""
        self._last_beat = self._clock()

    def is_alive(self) -> bool:
        """True until the loop has been stuck for `stale_after_s`."""
        return self._last_beat is None or self._clock() - self._last_beat < self._stale_after_s

    def set_ready(self, ready: bool, reason: str) -> None:
        """Ready or not, and why (shown by /readyz)."""
        self._ready, self._reason = ready, reason

    def add_fault(self, name: str, reason: str) -> None:
        """A lasting fault: not ready, whatever `set_ready` says, until the process restarts."""
        # A new dict, never a mutated one: /readyz reads it from the HTTP server's thread.
        self._faults = {**self._faults, name: reason}

    @property
    def ready(self) -> bool:
        """Ready to be counted as a working member: consuming, and no fault."""
        return self._ready and not self._faults

    @property
    def reason(self) -> str:
        """Why ready or not: the faults first, when there are any."""
        return "; ".join(self._faults.values()) if self._faults else self._reason


# (status, body, content type) of a GET
Answer = tuple[int, bytes, str]
NOT_FOUND: Answer = (404, b"not found; try /metrics, /healthz or /readyz\n", "text/plain")


class HttpEndpoints:
    """A small HTTP server on a daemon thread: each GET answered by `answer(path)`."""

    def __init__(self, host: str, port: int, answer: Callable[[str], Answer]) -> None:
        self._server = ThreadingHTTPServer((host, port), _handler(answer))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-http", daemon=True
        )

    @property
    def port(self) -> int:
        """The port listened on (useful with port 0)."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Start serving."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()


class MetricsServer(HttpEndpoints):
    """Serves `/metrics`, `/healthz` and `/readyz`."""

    def __init__(self, metrics: Metrics, health: Health, host: str, port: int) -> None:
        def answer(path: str) -> Answer:
            if path == "/metrics":
                return 200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST
            if path == "/healthz":
                alive = health.is_alive()
                return 200 if alive else 503, b"ok\n" if alive else b"loop stalled\n", "text/plain"
            if path == "/readyz":
                body = f"{'ready' if health.ready else 'not ready'}: {health.reason}\n".encode()
                return 200 if health.ready else 503, body, "text/plain"
            return NOT_FOUND

        super().__init__(host, port, answer)


def _handler(answer: Callable[[str], Answer]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body, content_type = answer(self.path.split("?", 1)[0])
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # scrapes every few seconds would flood the log

    return Handler
