"""`dispatcher run` with `worker.processes` above 1: that many worker processes, one supervisor.

One worker process spends most of its time in Python code that holds the interpreter lock
(decoding, deciding, building payloads), so it uses about one core however many the machine
has. With `processes: N` the supervisor starts N workers, each an ordinary `dispatcher run`
and a member of the same consumer group: the group spreads the partitions over them, and what
makes scaling out safe between machines (rebalances, the postback log's look-up) applies
between them unchanged.

The supervisor owns the configured metrics address: `/metrics` is every worker's metrics with a
`process` label ("0" to "N-1"), `/healthz` and `/readyz` answer 200 only when every worker's
do. Each worker serves its own on a loopback port it picks and writes to a pipe the supervisor
reads (not a file: the root filesystem may be read-only). SIGTERM/SIGINT/SIGHUP are passed on
to the workers. When a worker exits that was not asked to, the supervisor stops the others and
exits with its code (1 for 0), so the orchestrator restarts the whole. A worker is sent SIGTERM
by the kernel if the supervisor dies (Linux), so none is left behind by a `kill -9`.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import FrameType

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from dispatcher.health import NOT_FOUND, Answer, HttpEndpoints

log = logging.getLogger(__name__)

# What a worker process is told on top of the supervisor's own environment: serve its metrics
# on a loopback port of its choosing, and be one process.
WORKER_OVERRIDES = {
    "DISPATCHER_METRICS__HOST": "127.0.0.1",
    "DISPATCHER_METRICS__PORT": "0",
    "DISPATCHER_WORKER__PROCESSES": "1",
}
INSTANCE_ID_ENV = "DISPATCHER_KAFKA__GROUP_INSTANCE_ID"
PROCESS_LABEL = "process"
SCRAPE_TIMEOUT_S = 2.0
_PR_SET_PDEATHSIG = 1


def tell_port(fd: int, port: int) -> None:
    """Tell the supervisor, over the pipe it gave this worker, where the worker serves."""
    try:
        os.write(fd, f"{port}\n".encode())
    finally:
        os.close(fd)


class WorkerProcesses:
    """The worker processes: started, signalled, watched, asked over HTTP."""

    def __init__(
        self, argv: Sequence[str], count: int, environ: Mapping[str, str],
        group_instance_id: str | None = None,
    ) -> None:  # fmt: skip
        self._argv = list(argv)
        self._count = count
        self._environ = dict(environ) | WORKER_OVERRIDES
        self._group_instance_id = group_instance_id
        self.processes: list[subprocess.Popen[bytes]] = []
        self._ports: dict[int, int] = {}
        self._pipes: dict[int, tuple[int, bytearray]] = {}  # index: (read end, read so far)
        self._lock = threading.Lock()

    def start(self) -> None:
        for index in range(self._count):
            read_end, write_end = os.pipe()
            os.set_blocking(read_end, False)
            command = [
                *(sys.executable, "-m", "dispatcher", *self._argv),
                *("--process-index", str(index), "--port-fd", str(write_end)),
            ]
            try:
                # A process group of its own: a terminal's Ctrl-C reaches the supervisor alone,
                # which passes it on once (twice would stop a worker without waiting). And
                # preexec_fn: started before the supervisor starts a thread of its own.
                process = subprocess.Popen(
                    command,
                    env=self.environment(index),
                    pass_fds=(write_end,),
                    process_group=0,
                    preexec_fn=_die_with_parent,  # noqa: PLW1509
                )
            finally:
                os.close(write_end)
            self._pipes[index] = (read_end, bytearray())
            self.processes.append(process)
            log.info("worker process %d started (pid %d)", index, process.pid)

    def serving(self, index: int, port: int) -> None:
        """Worker `index` serves on `port`."""
        with self._lock:
            self._ports[index] = port

    def environment(self, index: int) -> dict[str, str]:
        """Worker `index`'s environment: the supervisor's, its metrics on loopback, and with
        static membership a name of its own in the group (`<group_instance_id>-<index>`)."""
        if not self._group_instance_id:
            return self._environ
        return self._environ | {INSTANCE_ID_ENV: f"{self._group_instance_id}-{index}"}

    def port(self, index: int) -> int | None:
        """Where worker `index` serves, once it has said so."""
        with self._lock:
            if index not in self._ports and index in self._pipes:
                fd, received = self._pipes[index]
                with contextlib.suppress(BlockingIOError):
                    received += os.read(fd, 64)
                if received.endswith(b"\n"):
                    with contextlib.suppress(ValueError):
                        self._ports[index] = int(received)
                    os.close(fd)
                    del self._pipes[index]
            return self._ports.get(index)

    def signal(self, signum: int) -> None:
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signum)

    def exited(self) -> Iterator[tuple[int, int]]:
        """(index, exit code) of each worker that has exited."""
        for index, process in enumerate(self.processes):
            code = process.poll()
            if code is not None:
                yield index, code

    def wait(self, timeout_s: float) -> None:
        """Wait for every worker to exit; SIGKILL those still running after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        for process in self.processes:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker process %d did not stop in time: killing it", process.pid)
                process.kill()
                process.wait()

    def close(self) -> None:
        """Close the pipes of workers that never said where they serve."""
        with self._lock:
            for fd, _ in self._pipes.values():
                os.close(fd)
            self._pipes.clear()

    def ask(self, index: int, path: str) -> tuple[int, bytes]:
        """(status, body) of worker `index`'s `path`; 503 when it does not serve yet or does
        not answer."""
        port = self.port(index)
        if port is None:
            return 503, b"starting\n"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"http://127.0.0.1:{port}{path}", timeout=SCRAPE_TIMEOUT_S) as answer:
                return int(answer.status), answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError as exc:
            return 503, f"does not answer ({getattr(exc, 'reason', None) or exc})\n".encode()

    @property
    def count(self) -> int:
        return self._count


def merged_metrics(texts: Iterable[tuple[int, str]]) -> list[Metric]:
    """Each worker's metric families (`(index, exposition text)`) as one set of families, each
    sample labelled with its worker's index."""
    families: dict[str, Metric] = {}
    for index, text in texts:
        for family in text_string_to_metric_families(text):
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(
                    family.name, family.documentation, family.type, family.unit
                )
            label = str(index)
            merged.samples.extend(
                Sample(s.name, {PROCESS_LABEL: label, **s.labels}, s.value, s.timestamp, s.exemplar)
                for s in family.samples
            )
    return list(families.values())


class _Merged(Collector):
    def __init__(self, workers: WorkerProcesses) -> None:
        self._workers = workers

    def collect(self) -> Iterable[Metric]:
        texts = []
        for index in range(self._workers.count):
            status, body = self._workers.ask(index, "/metrics")
            if status == 200:
                texts.append((index, body.decode("utf-8", "replace")))
        return merged_metrics(texts)


def health_of(workers: WorkerProcesses, path: str) -> tuple[int, bytes]:
    """`/healthz` or `/readyz` of the whole: 200 when every worker answers 200; else 503 and
    what each one that does not says."""
    problems = []
    for index in range(workers.count):
        status, body = workers.ask(index, path)
        if status != 200:
            problems.append(f"process {index}: {body.decode('utf-8', 'replace').strip()}")
    if problems:
        return 503, ("\n".join(problems) + "\n").encode()
    word = "ok" if path == "/healthz" else "ready"
    return 200, f"{word}: {workers.count} worker processes\n".encode()


class SupervisorServer(HttpEndpoints):
    """The configured metrics address, answered from the workers'."""

    def __init__(self, workers: WorkerProcesses, host: str, port: int) -> None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Merged(workers))

        def answer(path: str) -> Answer:
            if path == "/metrics":
                return 200, generate_latest(registry), CONTENT_TYPE_LATEST
            if path in ("/healthz", "/readyz"):
                return (*health_of(workers, path), "text/plain")
            return NOT_FOUND

        super().__init__(host, port, answer)


def supervise(
    argv: Sequence[str], count: int, host: str, port: int, shutdown_timeout_s: float,
    environ: Mapping[str, str], group_instance_id: str | None = None,
) -> int:  # fmt: skip
    """Run `count` worker processes until asked to stop or one exits; the exit code. With
    static membership (`group_instance_id`), worker N's instance id is `<id>-N`."""
    workers = WorkerProcesses(argv, count, environ, group_instance_id)
    try:
        server = SupervisorServer(workers, host, port)
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", host, port, exc)
        return 1
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("received %s: passed on to the worker processes", signal.Signals(signum).name)
        stopping.set()
        workers.signal(signum)

    def reload(signum: int, frame: FrameType | None) -> None:
        log.info("received SIGHUP: passed on to the worker processes")
        workers.signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
    workers.start()
    if stopping.is_set():  # asked while they were starting: those started after it were not
        workers.signal(signal.SIGTERM)
    server.start()
    log.info("%d worker processes; metrics on http://%s:%d/metrics (also /healthz, /readyz)",
             count, host, server.port)  # fmt: skip
    code = 0
    try:
        while not stopping.is_set():
            ended = next(workers.exited(), None)
            if ended is not None:
                index, code = ended
                log.error("worker process %d exited with code %d unasked: stopping the others",
                          index, code)  # fmt: skip
                code = _exit_code(code)
                workers.signal(signal.SIGTERM)
                break
            stopping.wait(0.2)
        # each worker finishes within its own shutdown_timeout_s; a margin for its exit
        workers.wait(shutdown_timeout_s + 30)
        if not code:
            code = next((_exit_code(c) for _, c in workers.exited() if c), 0)
    finally:
        server.stop()
        workers.close()
    return code


def _exit_code(returncode: int) -> int:
    """A worker's exit as the supervisor's: a code as it is, a signal as a shell writes it
    (128 + its number), and 1 for a worker that ended with 0 unasked."""
    if returncode < 0:
        return 128 - returncode
    return returncode or 1


def _die_with_parent() -> None:
    """In the child, before it runs: SIGTERM when the supervisor dies (Linux's
    PR_SET_PDEATHSIG); elsewhere nothing."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
