"""One harness for the demo, the tests and the benchmark: write a worker's configuration, run
`dispatcher run` as a child process, read its metrics, and stop processes within a bound."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from dispatcher.devtools.processes import free_port, stop_process

# Tansu completes a consumer-group join in seconds only with short group timeouts. Its fetch
# wait depends on its storage: the caller passes LocalBroker.fetch_max_wait_ms in `kafka`.
TANSU_GROUP_TIMING = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000,
                      "max_poll_interval_ms": 10000}  # fmt: skip
MEDIA_SOURCES = ["bytedanceglobal_int", "tiktokglobal_int"]


def log_topic_of(dead_letters: str) -> str:
    """The postback log topic the harness gives a worker whose dead-letter topic is named so."""
    return f"{dead_letters}-log"


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker's `dispatcher.yaml` and `partners/tiktok.yaml` say; `partner_files` are
    more partner files, written as given (`partners/<partner>.yaml`)."""

    bootstrap: str
    installs: str
    in_app: str
    dead_letters: str
    group: str
    endpoint: str
    apps: list[dict[str, Any]]
    delivery: dict[str, Any] = field(default_factory=dict)
    worker: dict[str, Any] = field(default_factory=dict)
    metrics_port: int = 0  # 0: a free port now
    log_format: str = "json"
    partner_files: tuple[dict[str, Any], ...] = ()
    kafka: dict[str, Any] = field(default_factory=dict)  # over TANSU_GROUP_TIMING
    # The postback log topic: by default the dead-letter topic's name + "-log" (`log_topic`);
    # None turns the log off.
    postback_log: str | None = ""

    @property
    def log_topic(self) -> str | None:
        if self.postback_log == "":
            return log_topic_of(self.dead_letters)
        return self.postback_log

    def write(self, directory: Path) -> Path:
        """Write both files under `directory`; the dispatcher.yaml path."""
        (directory / "partners").mkdir(parents=True, exist_ok=True)
        partner: dict[str, Any] = {
            "partner": "tiktok", "media_sources": MEDIA_SOURCES, "endpoint": self.endpoint,
            "access_token_env": "TIKTOK_ACCESS_TOKEN", "apps": self.apps,
        }  # fmt: skip
        if self.delivery:
            partner["delivery"] = self.delivery
        (directory / "partners" / "tiktok.yaml").write_text(
            yaml.safe_dump(partner, sort_keys=False)
        )
        for other in self.partner_files:
            (directory / "partners" / f"{other['partner']}.yaml").write_text(
                yaml.safe_dump(other, sort_keys=False)
            )
        runtime: dict[str, Any] = {
            "kafka": {
                "bootstrap_servers": self.bootstrap, "group_id": self.group,
                "topics": {"installs": self.installs, "in_app_events": self.in_app},
                "dead_letter_topic": self.dead_letters, "postback_log_topic": self.log_topic,
                **TANSU_GROUP_TIMING, **self.kafka,
            },
            "partners_dir": "partners",
            "metrics": {"host": "127.0.0.1", "port": self.metrics_port or free_port()},
            "log": {"format": self.log_format},
        }  # fmt: skip
        if self.worker:
            runtime["worker"] = self.worker
        path = directory / "dispatcher.yaml"
        path.write_text(yaml.safe_dump(runtime, sort_keys=False))
        return path


def metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` in a scrape whose labels include `labels` (0: none)."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


class WorkerProcess:
    """`dispatcher run` as a child process, as operators run it."""

    def __init__(self, config: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.log_path = log_path
        self.metrics_port = int(yaml.safe_load(config.read_text())["metrics"]["port"])
        environ = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
        self.env = environ | (env or {})
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        """Start the worker; its output goes to the log file."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "dispatcher", "run", "--config", str(self.config)],
                stdout=log, stderr=log, env=self.env,
            )  # fmt: skip
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        """kill -9: no chance to finish or commit anything."""
        self.signal(signal.SIGKILL)
        self.wait(10)

    def stop(self, timeout_s: float = 30) -> int:
        """SIGTERM and wait (then kill); the exit code."""
        if self.process is None:
            return 0
        return stop_process(self.process, timeout_s)

    def wait(self, timeout_s: float | None) -> int:
        """Wait for the process to end (`None`: for as long as it takes); its exit code."""
        assert self.process is not None
        return self.process.wait(timeout=timeout_s)

    def exited(self) -> bool:
        """True once the process has ended."""
        return self.process is not None and self.process.poll() is not None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.metrics_port}{path}"

    def scrape(self) -> str:
        return httpx.get(self.url("/metrics"), timeout=5).text

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels` (0 when absent or when
        the endpoint does not answer yet)."""
        try:
            return metric_sum(self.scrape(), name, **labels)
        except httpx.HTTPError:
            return 0.0

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url(path), timeout=5)

    def is_ready(self) -> bool:
        """`/readyz` answers 200 (False while the endpoint is not up yet)."""
        try:
            return self.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def peak_rss_mb(self) -> float:
        """The process's peak resident memory, with its worker processes' when it supervises
        some (each one's peak, added up; Linux)."""
        total = 0.0
        for pid in _process_tree(self.pid):
            with contextlib.suppress(OSError):
                status = Path(f"/proc/{pid}/status").read_text()
                line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
                total += int(line.split()[1]) / 1024
        return total

    def cpu_s(self) -> float:
        """User + system CPU seconds so far, with its worker processes' (Linux)."""
        ticks = 0
        for pid in _process_tree(self.pid):
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def children(self) -> list[int]:
        """The pids of the processes it started (a supervisor's workers)."""
        return _process_tree(self.pid)[1:]

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            stop_process(self.process, 10, signal.SIGKILL)


def _process_tree(pid: int) -> list[int]:
    """`pid` and its descendants, parents first (Linux)."""
    tree, index = [pid], 0
    while index < len(tree):
        parent = tree[index]
        index += 1
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{parent}/task").iterdir():
                tree += [int(child) for child in (task / "children").read_text().split()]
    return tree
