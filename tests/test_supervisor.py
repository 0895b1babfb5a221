"""`worker.processes`: several worker processes under one supervisor.

The merging of the workers' metrics and health is tested against real worker metrics servers
(`MetricsServer` over HTTP); the supervisor itself on the real broker (Tansu): both processes
own partitions and deliver every event once, their metrics come out of the configured port with
a `process` label, a SIGTERM stops all with 0, a worker that dies takes the whole down with its
code, and a supervisor killed with -9 leaves no worker behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dispatcher.devtools.broker import LocalBroker
from dispatcher.devtools.sandbox import Fault, PartnerSandbox
from dispatcher.health import Health, MetricsServer
from dispatcher.metrics import Metrics
from dispatcher.supervisor import (
    SupervisorServer,
    WorkerProcesses,
    health_of,
    merged_metrics,
    tell_port,
)
from dispatcher.worker import NO_PARTITIONS
from tests.factories import event_dict, event_id_of
from tests.pipeline import Topics, WorkerProcess, produce, sandbox_ids, wait_for, write_config


class _Workers:
    """Two metrics servers of real `Metrics` and `Health`, as a supervisor sees its workers."""

    def __init__(self, tmp_path: Path) -> None:
        self.metrics = [Metrics(), Metrics()]
        self.health = [Health(), Health()]
        self.servers = [MetricsServer(m, h, "127.0.0.1", 0)
                        for m, h in zip(self.metrics, self.health, strict=True)]  # fmt: skip
        self.processes = WorkerProcesses(["run"], 2, {})
        for index, server in enumerate(self.servers):
            server.start()
            self.processes.serving(index, server.port)

    def close(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture
def workers(tmp_path: Path):  # type: ignore[no-untyped-def]
    pair = _Workers(tmp_path)
    yield pair
    pair.close()


def test_each_workers_samples_carry_its_index_under_one_family(workers: _Workers) -> None:
    workers.metrics[0].consumed("in-app", 3)
    workers.metrics[1].consumed("in-app", 5)
    texts = [(i, workers.processes.ask(i, "/metrics")[1].decode()) for i in range(2)]
    families = {family.name: family for family in merged_metrics(texts)}
    consumed = families["dispatcher_events_consumed"]
    values = {s.labels["process"]: s.value for s in consumed.samples if s.name.endswith("_total")}
    assert values == {"0": 3.0, "1": 5.0}
    # one family each, as Prometheus requires, whatever the number of workers
    names = [family.name for family in merged_metrics(texts)]
    assert len(names) == len(set(names))


def test_the_supervisors_exposition_parses_back(workers: _Workers) -> None:
    workers.metrics[1].consumed("installs", 2)
    server = SupervisorServer(workers.processes, "127.0.0.1", 0)
    server.start()
    try:
        text = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5).text
    finally:
        server.stop()
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "dispatcher_events_consumed_total"]  # fmt: skip
    assert [(s.labels["process"], s.labels["topic"], s.value) for s in samples] == [
        ("1", "installs", 2.0)
    ]


def test_ready_only_when_every_worker_is(workers: _Workers) -> None:
    workers.health[0].set_ready(True, "consuming")
    workers.health[1].set_ready(False, "joining the consumer group")
    status, body = health_of(workers.processes, "/readyz")
    assert status == 503
    assert body.decode() == "process 1: not ready: joining the consumer group\n"
    workers.health[1].set_ready(True, "consuming")
    assert health_of(workers.processes, "/readyz") == (200, b"ready: 2 worker processes\n")


def test_a_worker_not_serving_yet_is_not_healthy(workers: _Workers) -> None:
    processes = WorkerProcesses(["run"], 2, {})
    processes.serving(1, workers.servers[1].port)
    assert health_of(processes, "/healthz") == (503, b"process 0: starting\n")
    processes.serving(0, workers.servers[0].port)
    assert health_of(processes, "/healthz") == (200, b"ok: 2 worker processes\n")


def test_a_worker_says_where_it_serves_over_its_pipe() -> None:
    processes = WorkerProcesses(["run"], 1, {})
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    processes._pipes[0] = (read_end, bytearray())
    assert processes.port(0) is None  # nothing written yet
    tell_port(write_end, 43210)
    assert processes.port(0) == 43210
    processes.close()


def test_static_members_get_a_name_each() -> None:
    named = WorkerProcesses(["run"], 2, {"PATH": "/bin"}, group_instance_id="dispatcher-0")
    dynamic = WorkerProcesses(["run"], 2, {"PATH": "/bin"})
    try:
        assert [named.environment(i)["DISPATCHER_KAFKA__GROUP_INSTANCE_ID"] for i in (0, 1)] == [
            "dispatcher-0-0",
            "dispatcher-0-1",
        ]
        assert "DISPATCHER_KAFKA__GROUP_INSTANCE_ID" not in dynamic.environment(1)
        assert dynamic.environment(1)["DISPATCHER_METRICS__HOST"] == "127.0.0.1"
        assert dynamic.environment(1)["PATH"] == "/bin"
    finally:
        named.close()
        dynamic.close()


# --- on the real broker ---------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.broker
def test_two_processes_share_the_partitions_and_send_each_event_once(
    broker: LocalBroker, sandbox: PartnerSandbox, tmp_path: Path
) -> None:
    topics = Topics.create(broker, "procs", partitions=4)
    events = [event_dict("in-app-event") for _ in range(3000)]
    produce(broker, topics.in_app, events)
    config = write_config(tmp_path, broker, topics, sandbox.url, worker={"processes": 2})
    with WorkerProcess(config, tmp_path / "worker.log") as supervisor:
        wait_for(lambda: set(sandbox_ids(sandbox)) >= {event_id_of(e) for e in events}, 120,
                 "every event delivered")  # fmt: skip
        wait_for(supervisor.is_ready, 30, "both workers ready")
        children = supervisor.children()
        assert len(children) == 2
        consumed = {
            s.labels["process"]: s.value
            for f in text_string_to_metric_families(supervisor.scrape())
            for s in f.samples
            if s.name == "dispatcher_events_consumed_total"
        }
        # each process read part of the stream: the group gave each its partitions
        assert set(consumed) == {"0", "1"}, consumed
        assert all(v > 0 for v in consumed.values()), consumed
        assert sum(consumed.values()) == len(events)
        assert supervisor.stop(timeout_s=60) == 0
        assert not any(_alive(pid) for pid in children)
    assert max(Counter(sandbox_ids(sandbox)).values()) == 1
    log = supervisor.log()
    assert '"worker_process": "1"' in log or "worker_process=1" in log


@pytest.mark.broker
def test_a_worker_that_dies_stops_the_whole_with_its_code(
    broker: LocalBroker, sandbox: PartnerSandbox, tmp_path: Path
) -> None:
    topics = Topics.create(broker, "procs-die", partitions=2)
    config = write_config(tmp_path, broker, topics, sandbox.url, worker={"processes": 2})
    with WorkerProcess(config, tmp_path / "worker.log") as supervisor:
        wait_for(supervisor.is_ready, 60, "both workers ready")
        first, second = supervisor.children()
        os.kill(first, signal.SIGKILL)
        assert supervisor.wait(timeout_s=60) == 128 + signal.SIGKILL
        assert not _alive(second)
    assert "worker process 0 exited with code -9 unasked" in supervisor.log()


@pytest.mark.broker
def test_no_worker_outlives_a_supervisor_killed_with_9(
    broker: LocalBroker, sandbox: PartnerSandbox, tmp_path: Path
) -> None:
    topics = Topics.create(broker, "procs-kill", partitions=2)
    config = write_config(tmp_path, broker, topics, sandbox.url, worker={"processes": 2})
    with WorkerProcess(config, tmp_path / "worker.log") as supervisor:
        wait_for(lambda: len(supervisor.children()) == 2, 30, "two workers started")
        children = supervisor.children()
        supervisor.signal(signal.SIGKILL)
        supervisor.wait(timeout_s=10)
        deadline = time.monotonic() + 60
        try:
            while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not any(_alive(pid) for pid in children)
        finally:
            for pid in filter(_alive, children):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.broker
def test_after_a_worker_is_killed_and_the_whole_restarted_nothing_is_lost(
    broker: LocalBroker, sandbox: PartnerSandbox, tmp_path: Path
) -> None:
    # Given two worker processes delivering a stream to a partner that answers in 0.2 s
    topics = Topics.create(broker, "procs-crash", partitions=4)
    events = [event_dict("in-app-event") for _ in range(6000)]
    produce(broker, topics.in_app, events)
    sandbox.add_faults([Fault(delay_s=0.2, for_s=3600)])
    config = write_config(tmp_path, broker, topics, sandbox.url,
                          delivery={"batch_max_events": 100}, worker={"processes": 2})  # fmt: skip
    wanted = {event_id_of(e) for e in events}
    with WorkerProcess(config, tmp_path / "first.log") as supervisor:
        wait_for(lambda: len(set(sandbox_ids(sandbox))) >= 1000, 60, "deliveries flowing")
        # When one worker is killed mid-stream (the supervisor stops the other and exits)
        os.kill(supervisor.children()[0], signal.SIGKILL)
        assert supervisor.wait(timeout_s=60) == 128 + signal.SIGKILL
    delivered_before = len(set(sandbox_ids(sandbox)))
    assert delivered_before < len(wanted)  # the kill came mid-stream
    # and the whole is started again, as its orchestrator would
    with WorkerProcess(config, tmp_path / "second.log") as again:
        # Then every event arrives
        wait_for(lambda: set(sandbox_ids(sandbox)) >= wanted, 120, "every event delivered")
        assert again.stop(timeout_s=60) == 0
    copies = Counter(sandbox_ids(sandbox))
    twice = sum(count - 1 for count in copies.values())
    print(f"events {len(events)}, delivered before the restart {delivered_before}, "
          f"sent twice {twice}")  # fmt: skip
    # at most what the killed worker had out, plus the other's batches answered meanwhile
    assert twice <= len(events) // 10, twice


@pytest.mark.broker
def test_ctrl_c_at_a_terminal_reaches_each_worker_once(
    broker: LocalBroker, sandbox: PartnerSandbox, tmp_path: Path
) -> None:
    """A terminal sends SIGINT to its whole foreground process group; a worker that got it from
    the terminal and again from the supervisor would stop without waiting for its deliveries."""
    topics = Topics.create(broker, "procs-ctrl-c", partitions=2)
    config = write_config(tmp_path, broker, topics, sandbox.url, worker={"processes": 2})
    supervisor = WorkerProcess(config, tmp_path / "worker.log")
    with open(supervisor.log_path, "ab") as log:
        supervisor.process = subprocess.Popen(
            [sys.executable, "-m", "dispatcher", "run", "--config", str(config)],
            stdout=log, stderr=log, env=supervisor.env, start_new_session=True,
        )  # fmt: skip  # a group of its own, as a shell gives a foreground job
    try:
        wait_for(supervisor.is_ready, 60, "both workers ready")
        os.killpg(supervisor.pid, signal.SIGINT)  # what Ctrl-C does
        assert supervisor.wait(timeout_s=60) == 0
    finally:
        if not supervisor.exited():
            os.killpg(supervisor.pid, signal.SIGKILL)
    received = re.findall(r'received SIGINT.*"worker_process": "(\d)"|received SIGINT.*'
                          r"worker_process=(\d)", supervisor.log())  # fmt: skip
    assert sorted(a or b for a, b in received) == ["0", "1"], supervisor.log()


@pytest.mark.broker
def test_more_processes_than_partitions_leaves_the_extra_ones_idle_but_ready(
    broker: LocalBroker, sandbox: PartnerSandbox, tmp_path: Path
) -> None:
    topics = Topics.create(broker, "procs-idle", partitions=1)
    config = write_config(tmp_path, broker, topics, sandbox.url, worker={"processes": 3})
    with WorkerProcess(config, tmp_path / "worker.log") as supervisor:
        wait_for(supervisor.is_ready, 60, "every worker ready, the idle ones too")
        # the range assignor's way: both topics' partition to one worker, none to the others
        assert supervisor.log().count(f"partitions assigned: {NO_PARTITIONS} (") == 2
        assert supervisor.stop(timeout_s=60) == 0
