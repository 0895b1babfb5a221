"""`dispatcher health`: the container health check asks the worker on the port dispatcher.yaml
(and its DISPATCHER_ overrides) configures, not on a fixed 9108. A real server, a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from dispatcher.devtools.processes import free_port
from dispatcher.health import Health, MetricsServer
from dispatcher.metrics import Metrics


@pytest.fixture
def served() -> Iterator[tuple[MetricsServer, Health, list[float]]]:
    now = [0.0]
    health = Health(stale_after_s=30, clock=lambda: now[0])
    server = MetricsServer(Metrics(), health, "127.0.0.1", free_port())
    server.start()
    yield server, health, now
    server.stop()


def config(tmp_path: Path, port: int) -> Path:
    # No partners directory: the probe reads dispatcher.yaml alone.
    path = tmp_path / "dispatcher.yaml"
    path.write_text(yaml.safe_dump({"kafka": {"bootstrap_servers": "k:9092"},
                                    "metrics": {"host": "0.0.0.0", "port": port}}))  # fmt: skip
    return path


def probe(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCHER_")}
    return subprocess.run(
        [sys.executable, "-m", "dispatcher", "health", *args], capture_output=True, text=True,
        env=environ | (env or {}), timeout=60, check=False,
    )  # fmt: skip


def test_a_live_worker_on_the_configured_port_is_healthy(
    served: tuple[MetricsServer, Health, list[float]], tmp_path: Path
) -> None:
    server, _, _ = served
    result = probe("--config", str(config(tmp_path, server.port)))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"http://127.0.0.1:{server.port}/healthz: ok\n"


def test_the_port_follows_the_environment_override_and_dispatcher_config(
    served: tuple[MetricsServer, Health, list[float]], tmp_path: Path
) -> None:
    server, _, _ = served
    # Given a file that says 9108 (where nothing of ours listens) and the override that says not
    path = config(tmp_path, 9108)
    env = {"DISPATCHER_CONFIG": str(path), "DISPATCHER_METRICS__PORT": str(server.port)}
    assert probe(env=env).returncode == 0


def test_a_stalled_loop_a_worker_not_ready_or_no_worker_is_unhealthy(
    served: tuple[MetricsServer, Health, list[float]], tmp_path: Path
) -> None:
    server, health, now = served
    path = str(config(tmp_path, server.port))
    # not ready yet: alive, but /readyz says no
    assert probe("--config", path).returncode == 0
    ready = probe("--config", path, "--ready")
    assert ready.returncode == 1
    assert ready.stderr == f"http://127.0.0.1:{server.port}/readyz: 503 not ready: starting\n"
    health.set_ready(True, "consuming 6 partitions")
    assert probe("--config", path, "--ready").returncode == 0
    # the main loop stuck for longer than stale_after_s
    health.beat()
    now[0] = 31
    stalled = probe("--config", path)
    assert stalled.returncode == 1
    assert "503 loop stalled" in stalled.stderr
    # nothing listening on the configured port
    nobody = probe("--config", str(config(tmp_path, free_port())))
    assert nobody.returncode == 1
    assert "refused" in nobody.stderr.lower()


def test_port_zero_cannot_be_probed(tmp_path: Path) -> None:
    result = probe("--config", str(config(tmp_path, 0)))
    assert result.returncode == 2
    assert "metrics.port is 0" in result.stderr
