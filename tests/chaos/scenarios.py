"""Chaos scenarios: the real worker (`dispatcher run` processes), the real broker (Tansu) and the
TikTok sandbox (a process of its own), under faults. Each scenario is bounded in time, checks that
no owed event is lost, reports duplicates, and checks that the access token leaked nowhere.

Used by `tests/chaos/test_chaos.py` (pytest, marker `chaos`) and `python -m tests.chaos` (prints
the table and writes docs/reliability.md).
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from kafka import KafkaProducer

from dispatcher.devtools.broker import LocalBroker, LocalS3
from dispatcher.devtools.harness import TANSU_GROUP_TIMING
from dispatcher.devtools.sandbox import SandboxProcess
from dispatcher.worker import NO_PARTITIONS
from tests.chaos.fuzz import Fuzzer
from tests.factories import app_dict, event_dict, event_id_of
from tests.pipeline import (
    IN_FLIGHT_S,
    TOKEN,
    Topics,
    WorkerProcess,
    most_in_any_window,
    produce,
    read_all,
    read_log,
    retry_after_violations,
    wait_until,
    write_config,
)

MAX_RSS_MB = 300  # the memory bound of the throughput issue, checked under an outage here


@dataclass(frozen=True)
class Profile:
    """How hard each scenario pushes. `short` runs in CI; `full` is the documented long run."""

    name: str
    kill_events: int
    kill_rate: float
    kills: int
    outage_s: float
    outage_rate: float
    throttle_s: float
    throttle_rate: float
    slow_s: float
    malformed: int
    valid_mixed: int
    seed: int = 20261125
    broker_outage_s: float = 10.0
    broker_events: int = 3_000
    # scale_out and rolling_restart: a stream of `group_rate` owed events a second for
    # `group_stream_s`, a membership change every `group_step_s`
    group_rate: float = 300
    group_stream_s: float = 60
    group_step_s: float = 5
    # slow_partner_big_batch: a backlog, then a stream at `big_batch_rate` while full batches
    # time out for `big_batch_slow_s`
    big_batch_backlog: int = 6_000
    big_batch_rate: float = 200
    big_batch_slow_s: float = 20
    # broker_stall: how long the broker answers nothing; at least 1.5 times the workers' session
    # timeout. Past kafka-python's 30 s request timeout (the full profile), the workers' own
    # requests time out too: they drop their connections and mark the coordinator dead.
    broker_stall_s: float = 10.0


PROFILES = {
    "short": Profile(
        "short",
        20_000,
        250,
        5,
        10,
        400,
        10,
        300,
        6,
        10_000,
        1_000,
        group_rate=300,
        group_stream_s=60,
        group_step_s=5,
        big_batch_backlog=6_000,
        big_batch_rate=200,
        big_batch_slow_s=20,
        broker_stall_s=10.0,
    ),
    "full": Profile(
        "full",
        50_000,
        600,
        5,
        60,
        1_000,
        30,
        300,
        15,
        10_000,
        2_000,
        broker_outage_s=30.0,
        broker_events=10_000,
        group_rate=600,
        group_stream_s=180,
        group_step_s=15,
        big_batch_backlog=20_000,
        big_batch_rate=400,
        big_batch_slow_s=60,
        broker_stall_s=40.0,
    ),
}


@dataclass
class Result:
    """One scenario's figures and the checks that failed (none: it passed)."""

    name: str
    bound: str
    figures: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    def check(self, condition: bool, message: str) -> None:
        if not condition:
            self.failures.append(message)


class ChaosEnv:
    """The broker, a sandbox process, a working directory; helpers to run workers."""

    def __init__(self, broker: LocalBroker, workdir: Path) -> None:
        self.broker = broker
        self.workdir = workdir
        self.sandbox = SandboxProcess(log_path=str(workdir / "sandbox.log"), token=TOKEN).start()

    def close(self) -> None:
        self.sandbox.stop()

    def topics(self, name: str, partitions: int = 3) -> Topics:
        return Topics.create(self.broker, name, partitions)

    def config(self, name: str, topics: Topics, **overrides: Any) -> Path:
        directory = self.workdir / name
        directory.mkdir(parents=True, exist_ok=True)
        return write_config(directory, self.broker, topics, self.sandbox.url, **overrides)

    def worker(self, config: Path, label: str, ready_within_s: float | None = 30) -> WorkerProcess:
        """Start a worker; unless `ready_within_s` is None, wait until it is consuming and fail
        loudly (with its log) when it is not."""
        worker = WorkerProcess(config, config.parent / f"worker-{label}.log").start()
        if ready_within_s is not None and not wait_until(worker.is_ready, ready_within_s, 0.1):
            tail = "\n".join(worker.log().splitlines()[-10:])
            raise RuntimeError(f"worker {label} not ready within {ready_within_s} s:\n{tail}")
        return worker


# --- helpers -------------------------------------------------------------------------------------


def owed_event(kind: str = "install") -> dict[str, Any]:
    """An event the default test app is owed a postback for (TikTok click, inside every window)."""
    return event_dict(kind)


def not_owed_event() -> dict[str, Any]:
    """An organic install: skipped under `scope: attributed`."""
    return event_dict("install", media_source="organic")


class SteadyProducer(threading.Thread):
    """Writes messages at a steady rate from a thread; `produced` counts what the broker has."""

    def __init__(
        self, broker: LocalBroker, messages: list[tuple[str, bytes | None, bytes]], rate: float
    ):
        super().__init__(daemon=True)
        self.broker, self.messages, self.rate = broker, messages, rate
        self.produced = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            producer = KafkaProducer(bootstrap_servers=self.broker.bootstrap, linger_ms=5)
            started = time.monotonic()
            for n, (topic, key, value) in enumerate(self.messages):
                ahead = started + n / self.rate - time.monotonic()
                if ahead > 0.002:
                    time.sleep(ahead)
                producer.send(topic, key=key, value=value)
                self.produced = n + 1
            producer.flush()
            producer.close()
        except BaseException as exc:  # surfaced by the scenario
            self.error = exc


def encode(
    topics: Topics, events: Iterable[dict[str, Any]]
) -> list[tuple[str, bytes | None, bytes]]:
    return [
        (topics.installs if e["event_type"] == "install" else topics.in_app,
         str(e["appsflyer_id"]).encode(), json.dumps(e).encode())
        for e in events
    ]  # fmt: skip


class Sampler(threading.Thread):
    """Samples a worker's metrics and RSS every `interval_s`."""

    def __init__(self, worker: Callable[[], WorkerProcess], interval_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.worker, self.interval_s = worker, interval_s
        self.samples: list[dict[str, float]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            worker = self.worker()
            sample = {"t": time.monotonic(), "rss_mb": rss_mb(worker)}
            for name in ("dispatcher_paused_partitions", "dispatcher_inflight_events",
                         "dispatcher_events_consumed_total"):  # fmt: skip
                sample[name] = worker.metric(name)
            self.samples.append(sample)

    def stop(self) -> list[dict[str, float]]:
        self.stopped.set()
        self.join(timeout=5)
        return self.samples


def rss_mb(worker: WorkerProcess) -> float:
    """The worker's peak resident memory so far (VmHWM), in MB."""
    assert worker.process is not None
    try:
        status = Path(f"/proc/{worker.process.pid}/status").read_text()
    except FileNotFoundError:
        return 0.0
    line = next((line for line in status.splitlines() if line.startswith("VmHWM:")), "VmHWM: 0 kB")
    return int(line.split()[1]) / 1024


def delivered_ids(env: ChaosEnv) -> set[str]:
    return {event.event_id for event in env.sandbox.events()}


def all_delivered(env: ChaosEnv, owed: set[str]) -> bool:
    """Every owed event arrived. Polls the cheap counts first: listing every event holds the
    sandbox's loop for tens of milliseconds, which would skew the arrival times it records."""
    if env.sandbox.stats()["unique_event_ids"] < len(owed):
        return False
    return owed <= delivered_ids(env)


def token_leaks(
    workers: list[WorkerProcess], env: ChaosEnv, topics: Topics, metrics_text: str
) -> list[str]:
    """Where the access token shows up (it must show up nowhere)."""
    places = []
    for worker in workers:
        if TOKEN in worker.log():
            places.append(f"log {worker.log_path.name}")
    if TOKEN in json.dumps(read_all(env.broker, topics.dead_letters, timeout_s=3)):
        places.append("dead letters")
    if TOKEN in metrics_text:
        places.append("metrics")
    return places


def finish(result: Result, env: ChaosEnv, topics: Topics, workers: list[WorkerProcess],
           owed: set[str], not_owed: Iterable[str] = ()) -> None:  # fmt: skip
    """The checks every scenario ends with: loss, duplicates, no token anywhere, clean exit."""
    received = [event.event_id for event in env.sandbox.events()]
    unique = set(received)
    lost = owed - unique
    result.figures["owed"] = len(owed)
    result.figures["lost"] = len(lost)
    result.figures["duplicates"] = len(received) - len(unique)
    result.check(not lost, f"{len(lost)} owed events never arrived, e.g. {sorted(lost)[:3]}")
    wrongly_sent = set(not_owed) & unique
    result.check(not wrongly_sent, f"{len(wrongly_sent)} events that were not owed were sent")
    live = workers[-1]
    metrics_text = ""
    try:
        metrics_text = live.scrape()
    except httpx.HTTPError:
        result.failures.append("the last worker's /metrics did not answer")
    code = live.stop(timeout_s=60)
    result.check(code == 0, f"the last worker exited {code} on SIGTERM")
    leaks = token_leaks(workers, env, topics, metrics_text)
    result.figures["token_leaks"] = len(leaks)
    result.check(not leaks, f"the access token leaked into {leaks}")


_FINAL_ALREADY = re.compile(r"(\d+) of their events are final already")


def skipped_by_the_log(workers: list[WorkerProcess]) -> int:
    """Events the workers did not send again on start-up because the postback log showed them
    final (from their logs: a killed worker's metrics die with it)."""
    return sum(int(match) for worker in workers
               for match in _FINAL_ALREADY.findall(worker.log()))  # fmt: skip


AVOIDABLE_AFTER_S = 0.5  # answered this long before a kill, a re-send was avoidable
# A copy arriving this soon after a kill was sent by the killed worker (a request on the wire; a
# restarted worker needs seconds to join the group before it sends anything).
SENT_BEFORE_KILL_S = 1.0
MAX_AVOIDABLE_SHARE = 0.005  # of the events: the bound on avoidable duplicates after kill -9


def split_duplicates(
    arrivals: Iterable[tuple[str, float]], kills: list[float]
) -> tuple[int, int, int]:
    """(avoidable, in flight, other) re-arrivals of an event id, from (event id, arrival time)
    pairs in arrival order and the kill times (Unix seconds).

    The copy before a re-arrival was sent by the worker alive then (or, arriving within
    `SENT_BEFORE_KILL_S` after a kill, by the worker just killed); the first such kill ended
    that worker. The re-arrival is *avoidable* when that copy was answered more than
    `AVOIDABLE_AFTER_S` before that kill: the worker knew it was delivered and had not
    committed it. Otherwise it was *in flight* (its answer was still on the way, or came too
    shortly before the kill to be committed), even when its re-send came only after a later
    kill (the next worker was killed before it got to it). A re-arrival with no kill since the
    copy before it is *other* (a timed-out request sent again, or a re-read)."""
    last: dict[str, float] = {}
    avoidable = in_flight = other = 0
    for event_id, at in arrivals:
        previous = last.get(event_id)
        last[event_id] = at
        if previous is None:
            continue
        ended = [kill for kill in kills if previous - SENT_BEFORE_KILL_S <= kill <= at]
        if not ended:
            other += 1
        elif previous < ended[0] - AVOIDABLE_AFTER_S:
            avoidable += 1
        else:
            in_flight += 1
    return avoidable, in_flight, other


# --- scenarios -----------------------------------------------------------------------------------


def cpu_hog() -> subprocess.Popen[bytes]:
    """A process that spins on one core until killed: the worker shares the machine with it."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def kill_9(env: ChaosEnv, profile: Profile) -> Result:
    """kill -9 at random points of a stream, `kills` times, with a CPU hog beside the worker;
    the restarts lose nothing."""
    result = Result("kill -9, five times, mid-stream, a CPU hog beside the worker", "every owed "
                    "event delivered within 120 s of the last kill; each restart consuming "
                    f"within 30 s; avoidable duplicates <= {MAX_AVOIDABLE_SHARE:.1%} of the "
                    "events with one core spinning")  # fmt: skip
    started = time.monotonic()
    rnd = random.Random(profile.seed)
    env.sandbox.reset()
    topics = env.topics("kill9")
    config = env.config("kill9", topics, delivery={"batch_max_events": 200})
    events = [owed_event(rnd.choice(["install", "in-app-event"])) if rnd.random() < 0.9 else not_owed_event()
              for _ in range(profile.kill_events)]  # fmt: skip
    owed = {event_id_of(e) for e in events if e["media_source"] != "organic"}
    not_owed = {event_id_of(e) for e in events} - owed
    # A partner that takes its time (0.3 s an answer), and a stream that lasts through every
    # kill and restart, so each worker is killed in steady streaming with deliveries answered
    # well before the kill (which a prompt commit must have covered) and some on the wire.
    env.sandbox.add_faults([{"delay_s": 0.3, "for_s": 3600}])
    # The bound must hold for a worker that does not have the machine to itself: a loop that
    # falls behind takes in answers and starts commits late, and a kill then re-sends more.
    hog = cpu_hog()
    try:
        producer = SteadyProducer(env.broker, encode(topics, events), profile.kill_rate)
        workers = [env.worker(config, "0")]
        producer.start()
        ready_s: list[float] = []
        kill_times: list[float] = []
        for kill in range(profile.kills):
            # a random point: 2 to 5 s after the live worker began consuming
            time.sleep(rnd.uniform(2.0, 5.0))
            workers[-1].kill()
            kill_times.append(time.time())
            restarted = time.monotonic()
            workers.append(env.worker(config, str(kill + 1), ready_within_s=None))
            became_ready = wait_until(workers[-1].is_ready, 30, 0.1)
            ready_s.append(time.monotonic() - restarted)
            result.check(became_ready, f"restart {kill + 1} was not consuming within 30 s")
        producer.join(timeout=600)
        result.check(producer.error is None, f"producer failed: {producer.error}")
        drained = wait_until(lambda: all_delivered(env, owed), 120, 1.0)
        result.check(drained, "not every owed event arrived within 120 s of the last kill")
        result.check(hog.poll() is None, "the CPU hog ended before the stream did")
    finally:
        hog.kill()
        hog.wait(10)
    env.sandbox.clear_faults()
    result.figures |= {
        "events": len(events),
        "kills": profile.kills,
        "cpu_hog": 1,
        "restart_to_consuming_s": f"{min(ready_s):.1f}-{max(ready_s):.1f}",
        "peak_rss_mb": round(max(rss_mb(w) for w in workers[-1:]), 1),
    }
    arrivals = [(event.event_id, event.received_at) for event in env.sandbox.events()]
    avoidable, in_flight, other = split_duplicates(arrivals, kill_times)
    result.figures |= {"duplicates_avoidable": avoidable, "duplicates_in_flight": in_flight,
                       "duplicates_other": other,
                       "not_resent_thanks_to_the_log": skipped_by_the_log(workers)}  # fmt: skip
    bound = int(MAX_AVOIDABLE_SHARE * len(events))
    result.check(
        avoidable <= bound,
        f"{avoidable} avoidable duplicates (answered over {AVOIDABLE_AFTER_S} s before a kill, "
        f"then re-sent); at most {bound} ({MAX_AVOIDABLE_SHARE:.1%} of the events) allowed",
    )
    finish(result, env, topics, workers, owed, not_owed)
    check_the_log(result, env, topics, owed)
    result.seconds = time.monotonic() - started
    return result


def check_the_log(result: Result, env: ChaosEnv, topics: Topics, owed: set[str]) -> None:
    """The postback log lost no record and logged delivered nothing the partner did not get:
    its delivered event ids are exactly the owed ones, all received by the sandbox."""
    records = read_log(env.broker, topics.log, timeout_s=10)
    delivered = {r["event_id"] for r in records if r.get("outcome") == "delivered"}
    received = {event.event_id for event in env.sandbox.events()}
    result.figures["log_records"] = len(records)
    result.check(delivered >= owed, f"{len(owed - delivered)} delivered postbacks not in the log")
    result.check(delivered <= received,
                 f"{len(delivered - received)} logged delivered but never received")  # fmt: skip


def tiktok_down(env: ChaosEnv, profile: Profile) -> Result:
    """TikTok answers 503, then refuses connections; consumption pauses, memory stays bounded,
    the backlog drains once TikTok is back."""
    outage = profile.outage_s
    result = Result(f"TikTok down {outage:.0f} s (503, then connection refused)",
                    f"backlog drained within {max(60, outage):.0f} s of TikTok's return; "
                    f"peak RSS < {MAX_RSS_MB} MB")  # fmt: skip
    started = time.monotonic()
    env.sandbox.reset()
    topics = env.topics("down")
    config = env.config("down", topics, worker={"max_inflight_events": 2_000},
                        delivery={"backoff_max_s": 2, "max_attempts": 1000})  # fmt: skip
    lead_s, tail_s = 5.0, 10.0
    count = int(profile.outage_rate * (lead_s + outage + tail_s))
    events = [owed_event() for _ in range(count)]
    owed = {event_id_of(e) for e in events}
    workers = [env.worker(config, "0")]
    sampler = Sampler(lambda: workers[0])
    sampler.start()
    producer = SteadyProducer(env.broker, encode(topics, events), profile.outage_rate)
    producer.start()
    time.sleep(lead_s)
    outage_started = time.monotonic()
    env.sandbox.add_faults([{"status": 503, "message": "Service Unavailable", "for_s": outage / 2}])
    time.sleep(outage / 2)
    env.sandbox.clear_faults()
    env.sandbox.listener_down()
    time.sleep(outage / 2)
    env.sandbox.listener_up()
    back = time.monotonic()
    backlog = producer.produced - env.sandbox.stats()["unique_event_ids"]
    producer.join(timeout=600)
    drained = wait_until(lambda: all_delivered(env, owed), max(60, outage), 0.5)
    drain_s = time.monotonic() - back
    samples = sampler.stop()
    during = [s for s in samples if outage_started + 2 < s["t"] < back]
    after = [s for s in samples if s["t"] > back + drain_s - 1]
    paused_during = any(s["dispatcher_paused_partitions"] > 0 for s in during)
    resumed = bool(after) and after[-1]["dispatcher_paused_partitions"] == 0
    peak_rss = max((s["rss_mb"] for s in samples), default=0.0)
    result.check(paused_during, "consumption never paused while TikTok was down")
    result.check(resumed, "consumption did not resume after TikTok came back")
    result.check(drained, f"the backlog did not drain within {max(60, outage):.0f} s")
    result.check(peak_rss < MAX_RSS_MB, f"peak RSS {peak_rss:.0f} MB")
    dead = workers[0].metric("dispatcher_dead_letters_total")
    result.check(dead == 0, f"{dead} dead letters during a recoverable outage")
    result.figures |= {
        "events": count,
        "peak_rss_mb": round(peak_rss, 1),
        "max_inflight": max((s["dispatcher_inflight_events"] for s in samples), default=0),
        "paused_during_outage": paused_during,
        "backlog_at_return": backlog,
        "return_to_drained_s": round(drain_s, 1),
        "dead_letters": dead,
    }
    finish(result, env, topics, workers, owed)
    result.seconds = time.monotonic() - started
    return result


def busiest_window(times: list[float], window_s: float) -> str:
    """The arrival times (ms after the first of them) of the busiest window, for a failure."""
    ordered = sorted(times)
    best = max(range(len(ordered)), default=0,
               key=lambda i: sum(1 for t in ordered[i:] if t < ordered[i] + window_s))  # fmt: skip
    window = [t for t in ordered[best:] if t < ordered[best] + window_s] if ordered else []
    return ", ".join(f"{(t - window[0]) * 1000:.0f}" for t in window) + " ms"


def throttling(env: ChaosEnv, profile: Profile) -> Result:
    """429 storms with Retry-After and body code 40100 on HTTP 200: never faster than the
    ceiling, never before a Retry-After has passed (measured at the sandbox)."""
    ceiling, batch, cycles = 20, 10, int(profile.throttle_s)
    count = int(profile.throttle_rate * profile.throttle_s)
    # each storm cycle blocks sending for ~4.5 s; then the rest drains at the ceiling
    deadline_s = 60 + 5 * cycles + count / (ceiling * batch)
    result = Result(f"429 + Retry-After and 40100 storms ({cycles} cycles)",
                    f"<= {ceiling} requests in any second; no request while a Retry-After runs "
                    f"(requests on the wire within {IN_FLIGHT_S * 1000:.0f} ms excepted); "
                    f"drained within {deadline_s:.0f} s of the last event produced")  # fmt: skip
    started = time.monotonic()
    env.sandbox.reset()
    topics = env.topics("throttle")
    config = env.config("throttle", topics, delivery={
        "max_requests_per_s": ceiling, "batch_max_events": batch, "batch_linger_ms": 10,
        "backoff_initial_s": 0.2, "backoff_max_s": 2, "max_attempts": 1000,
    })  # fmt: skip
    storm: list[dict[str, Any]] = []
    for _ in range(cycles):
        storm += [
            {"status": 429, "retry_after": "1", "message": "Too Many Requests", "count": 2},
            {"count": 6},  # normal answers
            {"code": 40100, "message": "Too many requests. Please retry later.", "count": 3},
            {"count": 6},
            {"code": 40100, "retry_after": "2", "message": "Too many requests.", "count": 1},
        ]
    events = [owed_event() for _ in range(count)]
    owed = {event_id_of(e) for e in events}
    workers = [env.worker(config, "0")]
    env.sandbox.add_faults(storm)
    producer = SteadyProducer(env.broker, encode(topics, events), profile.throttle_rate)
    producer.start()
    producer.join(timeout=600)
    drained = wait_until(lambda: all_delivered(env, owed), deadline_s, 1.0)
    env.sandbox.clear_faults()
    requests = env.sandbox.requests()
    times = [r.at for r in requests]
    # A window IN_FLIGHT_S short of a second: two sends a second apart may arrive up to that much
    # closer (the first held up on its way, the second not), as the Retry-After check allows too
    window_s = 1.0 - IN_FLIGHT_S
    busiest = most_in_any_window(times, window_s)
    violations = retry_after_violations(requests)
    result.check(drained, f"not every owed event arrived within {deadline_s:.0f} s")
    result.check(
        busiest <= ceiling,
        f"{busiest} requests arrived within one second (ceiling {ceiling}), at "
        f"{busiest_window(times, window_s)}",
    )
    result.check(not violations, f"{len(violations)} requests arrived while a Retry-After ran")
    result.check(busiest >= ceiling * 0.75,
                 f"at most {busiest} requests in a second: the ceiling of {ceiling} was never tested")  # fmt: skip
    result.figures |= {
        "events": count,
        "requests": len(requests),
        "http_429": sum(1 for r in requests if r.status == 429),
        "code_40100": sum(1 for r in requests if r.code == 40100),
        f"most_requests_in_{window_s:g}s": busiest,
        "most_requests_in_1s": most_in_any_window(times, 1.0),
        "retry_after_violations": len(violations),
        "dead_letters": workers[0].metric("dispatcher_dead_letters_total"),
    }
    finish(result, env, topics, workers, owed)
    result.seconds = time.monotonic() - started
    return result


def stream_through_delays(
    env: ChaosEnv, result: Result, name: str, answers_after_s: float, for_s: float, rate: int,
    delivery: dict[str, Any],
) -> tuple[Topics, WorkerProcess, set[str]]:  # fmt: skip
    """A worker, answers that take `answers_after_s` for `for_s` seconds, a stream of owed
    events at `rate` for as long; checks they all arrived within 60 s of the slowdown's end."""
    env.sandbox.reset()
    topics = env.topics(name)
    config = env.config(name, topics, delivery=delivery)
    events = [owed_event() for _ in range(int(rate * for_s))]
    owed = {event_id_of(e) for e in events}
    worker = env.worker(config, "0")
    env.sandbox.add_faults([{"delay_s": answers_after_s, "for_s": for_s}])
    producer = SteadyProducer(env.broker, encode(topics, events), rate)
    producer.start()
    producer.join(timeout=600)
    drained = wait_until(lambda: all_delivered(env, owed), for_s + 60, 1.0)
    result.check(drained, "not every owed event arrived in time")
    result.figures["events"] = len(events)
    return topics, worker, owed


def slow_partner(env: ChaosEnv, profile: Profile) -> Result:
    """Every answer takes 2 s (under the 10 s timeout): slower, nothing lost, no duplicates."""
    result = Result("slow partner (2 s answers)", "every owed event delivered within 60 s of the "
                    "slowdown's end; no duplicates")  # fmt: skip
    started = time.monotonic()
    topics, worker, owed = stream_through_delays(
        env, result, "slow", 2.0, profile.slow_s, 200, {"timeout_s": 10}
    )
    duplicates = env.sandbox.stats()["duplicates"]
    result.check(duplicates == 0, f"{duplicates} duplicates although no request timed out")
    result.figures["requests"] = env.sandbox.stats()["requests"]
    finish(result, env, topics, [worker], owed)
    result.seconds = time.monotonic() - started
    return result


def timeouts(env: ChaosEnv, profile: Profile) -> Result:
    """Answers slower than timeout_s: retries after timeouts, possible duplicates, nothing lost."""
    result = Result("timeouts (3 s answers, timeout_s 1)", "every owed event delivered within 60 s "
                    "of the slowdown's end; duplicates reported")  # fmt: skip
    started = time.monotonic()
    delivery = {"timeout_s": 1, "backoff_initial_s": 0.2, "backoff_max_s": 1, "max_attempts": 1000}
    topics, worker, owed = stream_through_delays(
        env, result, "timeout", 3.0, profile.slow_s, 100, delivery
    )
    retryable = worker.metric("dispatcher_delivery_attempts_total", result="retryable")
    result.check(retryable > 0, "no attempt timed out: the scenario did not test timeouts")
    result.figures |= {"timed_out_attempts": retryable,
                       "resent_metric": worker.metric("dispatcher_resent_events_total"),
                       "dead_letters": worker.metric("dispatcher_dead_letters_total")}  # fmt: skip
    finish(result, env, topics, [worker], owed)
    result.seconds = time.monotonic() - started
    return result


def malformed(env: ChaosEnv, profile: Profile) -> Result:
    """Malformed messages among valid ones: no crash, each bad one dead-lettered once, every
    valid owed event delivered, unknown apps skipped."""
    result = Result(f"{profile.malformed:,} malformed messages among valid ones",
                    "no crash; each malformed message in the dead-letter topic exactly once; "
                    "valid events delivered within 120 s")  # fmt: skip
    started = time.monotonic()
    env.sandbox.reset()
    topics = env.topics("malformed")
    config = env.config("malformed", topics)
    bad = list(Fuzzer(profile.seed).generate(profile.malformed))
    valid = [
        owed_event(random.Random(n).choice(["install", "in-app-event"]))
        for n in range(profile.valid_mixed)
    ]
    unknown = [
        event_dict("install", app_id="com.unknown.app") for _ in range(profile.valid_mixed // 4)
    ]
    owed = {event_id_of(e) for e in valid}
    messages: list[tuple[str, bytes | None, bytes, bool]] = [
        (topics.installs if m.topic_kind == "install" else topics.in_app, None, m.value, True)
        for m in bad
    ] + [(t, k, v, False) for t, k, v in encode(topics, valid + unknown)]
    random.Random(profile.seed).shuffle(messages)
    producer = KafkaProducer(
        bootstrap_servers=env.broker.bootstrap, linger_ms=5, max_request_size=2_000_000
    )
    futures = [
        (producer.send(topic, key=key, value=value), is_bad)
        for topic, key, value, is_bad in messages
    ]
    producer.flush()
    bad_coordinates = set()
    for future, is_bad in futures:
        metadata = future.get(timeout=30)
        if is_bad:
            bad_coordinates.add((metadata.topic, metadata.partition, metadata.offset))
    producer.close()
    workers = [env.worker(config, "0")]
    expected_dead = len(bad_coordinates)
    done = wait_until(lambda: workers[0].metric("dispatcher_dead_letters_total") >= expected_dead
                      and all_delivered(env, owed), 120, 0.5)  # fmt: skip
    result.check(done, "the dead letters or the valid events did not all arrive within 120 s")
    alive = workers[0].process is not None and workers[0].process.poll() is None
    result.check(alive, "the worker crashed")
    letters = read_all(env.broker, topics.dead_letters, timeout_s=10)
    coordinates = [
        (letter["source_topic"], letter["source_partition"], letter["source_offset"])
        for letter in letters
    ]
    result.check(
        len(coordinates) == len(set(coordinates)), "a malformed message was dead-lettered twice"
    )
    result.check(set(coordinates) == bad_coordinates,
                 f"dead letters {len(set(coordinates))} != malformed messages {expected_dead}")  # fmt: skip
    result.check(
        {letter["reason"] for letter in letters} <= {"bad_input"},
        "a dead letter with another reason",
    )
    skipped_unknown = workers[0].metric("dispatcher_decisions_total", reason="unknown_app")
    result.check(
        skipped_unknown == len(unknown), f"unknown-app skips {skipped_unknown} != {len(unknown)}"
    )
    result.figures |= {"malformed": expected_dead, "dead_letters": len(letters),
                       "valid": len(valid), "unknown_app_skipped": skipped_unknown,
                       "kinds": len(Fuzzer.KINDS)}  # fmt: skip
    unknown_ids = {event_id_of(e) for e in unknown}
    finish(result, env, topics, workers, owed, unknown_ids)
    result.seconds = time.monotonic() - started
    return result


def reload(worker: WorkerProcess, partner_file: Path, data: Any, expect: str) -> bool:
    """Write the partner file, SIGHUP, and wait up to 10 s for the first reload counted with
    result `expect`."""
    partner_file.write_text(yaml.safe_dump(data))
    worker.signal(signal.SIGHUP)
    metric = "dispatcher_config_reloads_total"
    return wait_until(lambda: worker.metric(metric, result=expect) == 1, 10)


def config_changes(env: ChaosEnv, profile: Profile) -> Result:
    """A broken partner file stops start-up (exit 2, file and path named); a broken SIGHUP reload
    keeps the old config and is counted; a good one takes effect without a restart or a loss."""
    result = Result("a broken partner file at start-up; broken and good SIGHUP reloads",
                    "start-up refusal within 30 s; reloads applied within 10 s; no event lost")  # fmt: skip
    started = time.monotonic()
    env.sandbox.reset()
    topics = env.topics("config")
    # A broken partner file at start-up
    broken = env.config("config-broken", topics, apps=[app_dict(click_lookback="45d")])
    refused = env.worker(broken, "refused", ready_within_s=None)
    code = refused.wait(30)
    partner_file = broken.parent / "partners" / "tiktok.yaml"
    names = f"{partner_file}: apps[0].click_lookback: 45d is out of range" in refused.log()
    result.check(code == 2, f"a broken partner file exited {code}, not 2")
    result.check(names, "the start-up error did not name the file and the path")
    # A running worker and a stream of owed events across two reloads
    config = env.config("config", topics)
    partner_file = config.parent / "partners" / "tiktok.yaml"
    good_text = partner_file.read_text()
    workers = [env.worker(config, "0")]
    pid = workers[0].process.pid if workers[0].process else None
    stream = [owed_event() for _ in range(3_000)]
    producer = SteadyProducer(env.broker, encode(topics, stream), 300)
    producer.start()
    time.sleep(2)
    # Broken: one value out of range, beside a change that would make organic installs owed if
    # any of the file were applied
    broken_data = yaml.safe_load(good_text)
    broken_data["apps"][0] |= {"click_lookback": "90d", "install_postbacks": {"scope": "all"}}
    failed = reload(workers[0], partner_file, broken_data, "error")
    result.check(failed, "a broken reload was not counted as an error")
    organic_before = [not_owed_event() for _ in range(50)]
    produce(env.broker, topics.installs, organic_before)
    skipped = wait_until(
        lambda: workers[0].metric("dispatcher_decisions_total", reason="out_of_scope") >= 50, 20
    )
    result.check(skipped, "the organic installs after the broken reload were not all skipped")
    # The good change: installs of any source are now owed
    data = yaml.safe_load(good_text)
    data["apps"][0]["install_postbacks"] = {"scope": "all"}
    reloaded = reload(workers[0], partner_file, data, "success")
    result.check(reloaded, "a good reload was not applied within 10 s")
    organic_after = [not_owed_event() for _ in range(50)]
    produce(env.broker, topics.installs, organic_after)
    producer.join(timeout=600)
    owed = {event_id_of(e) for e in stream + organic_after}
    drained = wait_until(lambda: all_delivered(env, owed), 60, 1.0)
    result.check(drained, "events were lost across the reloads")
    same_process = workers[0].process is not None and workers[0].process.pid == pid
    result.check(same_process, "the worker restarted")
    result.figures |= {"stream_events": len(stream), "start_up_exit_code": code,
                       "reload_errors": 1 if failed else 0, "reloads_applied": 1 if reloaded else 0,
                       "organic_after_reload_sent": len({event_id_of(e) for e in organic_after} & delivered_ids(env))}  # fmt: skip
    finish(result, env, topics, workers, owed, {event_id_of(e) for e in organic_before})
    refused_leak = TOKEN in refused.log()
    result.check(not refused_leak, "the token leaked into the refused worker's log")
    result.seconds = time.monotonic() - started
    return result


def broker_restart(env: ChaosEnv, profile: Profile) -> Result:
    """The broker (durable: Tansu on S3 storage) is killed with -9 while events flow and while
    the partner rejects what is in flight, then restarted: the worker stays up, says it is not
    ready meanwhile, dead-letters the rejections once the broker is back, and loses nothing."""
    outage = profile.broker_outage_s
    result = Result(
        f"broker killed (-9) for {outage:.0f} s, then restarted, while rejections wait",
        "the worker stays up; /readyz not ready within 15 s of the kill and ready within 30 s "
        "of the restart; every owed event delivered or dead-lettered (once) within 120 s",
    )
    started = time.monotonic()
    rnd = random.Random(profile.seed + 7)
    workdir = env.workdir / "broker_restart"
    workdir.mkdir(parents=True, exist_ok=True)
    s3 = LocalS3(workdir / "s3.log").start()
    broker = LocalBroker(log_path=workdir / "tansu.log", s3=s3).start()
    worker: WorkerProcess | None = None
    try:
        env.sandbox.reset()
        topics = Topics.create(broker, "brokerdown", 3)
        # Two requests at a time, each answered in 0.5 s: the first half (30 requests of 50 in
        # the short profile) takes ~7 s, so a backlog is still in flight when the broker dies.
        # At 8 requests of 0.2 s it was all answered in under a second, and on a slow machine
        # the kill could come after the last answer, leaving nothing to reject.
        # (write_config gives this S3-backed broker's worker the fetch wait it needs: 500 ms)
        config = write_config(workdir, broker, topics, env.sandbox.url,
                              delivery={"batch_max_events": 50, "max_concurrent_requests": 2})  # fmt: skip
        events = [owed_event(rnd.choice(["install", "in-app-event"]))
                  for _ in range(profile.broker_events)]  # fmt: skip
        owed = {event_id_of(e) for e in events}
        half = len(events) // 2
        produce(broker, topics.installs, [e for e in events[:half] if e["event_type"] == "install"])
        produce(broker, topics.in_app, [e for e in events[:half] if e["event_type"] != "install"])
        env.sandbox.add_faults([{"delay_s": 0.5, "for_s": 3600}])  # a backlog stays in flight
        worker = env.worker(config, "0")
        wait_until(lambda: env.sandbox.stats()["events"] >= 100, 60)
        # When the broker dies, and the partner rejects everything meanwhile
        env.sandbox.clear_faults()
        # (HTTP 400: each batch rejected whole; a setup code such as 40001 would hold the app)
        env.sandbox.add_faults([{"status": 400, "message": "Bad Request", "for_s": outage}])
        broker.kill()
        killed = time.monotonic()
        backlog = half - env.sandbox.stats()["events"]
        result.check(backlog > 0, "every event was answered before the broker died (vacuous run)")
        not_ready = wait_until(lambda: not worker.is_ready(), 15, 0.2)
        result.check(bool(not_ready), "/readyz still said ready 15 s after the broker died")
        time.sleep(max(0.0, outage - (time.monotonic() - killed)))
        result.check(not worker.exited(), "the worker exited while the broker was down")
        env.sandbox.clear_faults()
        broker.start()
        restarted = time.monotonic()
        back = wait_until(worker.is_ready, 30, 0.2)
        result.check(bool(back), "/readyz not ready 30 s after the broker came back")
        ready_after_s = time.monotonic() - restarted
        # Then the stream goes on
        produce(broker, topics.installs, [e for e in events[half:] if e["event_type"] == "install"])
        produce(broker, topics.in_app, [e for e in events[half:] if e["event_type"] != "install"])

        def settled() -> bool:
            letters = read_all(broker, topics.dead_letters, timeout_s=2)
            lettered = {event_id_of(letter["event"]) for letter in letters if letter["event"]}
            return owed <= (delivered_ids(env) | lettered)

        wait_until(settled, 120, 2.0)
        letters = read_all(broker, topics.dead_letters, timeout_s=3)
        lettered = [event_id_of(letter["event"]) for letter in letters if letter["event"]]
        received = [event.event_id for event in env.sandbox.events()]
        lost = owed - set(received) - set(lettered)
        result.check(not lost, f"{len(lost)} owed events neither delivered nor dead-lettered")
        result.check(len(lettered) == len(set(lettered)), "an event was dead-lettered twice")
        result.check(bool(lettered), "nothing was rejected during the outage (vacuous run)")
        result.check(
            all(letter["reason"] == "partner_rejected" for letter in letters),
            "a dead letter with another reason than partner_rejected",
        )
        code = worker.stop(timeout_s=60)
        result.check(code == 0, f"the worker exited {code} on SIGTERM")
        leaked = TOKEN in worker.log() or TOKEN in json.dumps(letters)
        result.check(not leaked, "the access token leaked")
        result.figures |= {
            "events": len(events), "outage_s": outage, "unanswered_at_kill": backlog,
            "ready_again_s": round(ready_after_s, 1), "dead_letters": len(lettered),
            "owed": len(owed), "lost": len(lost),
            "duplicates": len(received) - len(set(received)), "token_leaks": int(leaked),
        }  # fmt: skip
    finally:
        if worker is not None and not worker.exited():
            worker.kill()
        broker.stop()
        s3.stop()
        env.sandbox.clear_faults()
    result.seconds = time.monotonic() - started
    return result


# --- group membership: scale-out, rolling restarts -------------------------------------------


def duplicates_by_cause(
    arrivals: Iterable[tuple[str, float]],
    kills: list[float],
    rebalances: list[tuple[float, float]],
    stalls: list[tuple[float, float]] | None = None,
) -> dict[str, int]:
    """Re-arrivals of an event id by cause, from (event id, arrival time) pairs in arrival order,
    the kill times and the spans of graceful group changes (Unix seconds): `avoidable` and
    `in_flight` as `split_duplicates` counts them (a kill since the copy before); `rebalance`
    when no kill but a graceful leave or a join overlaps the time between the copy before and
    this one (the span from the signal or the start until the group settled); with `stalls`
    given, `stall` when a broker stall overlaps it instead (from the stop until the group
    answered again); `timeout` with none of these (a request answered too late, sent again)."""
    last: dict[str, float] = {}
    causes = ("avoidable", "in_flight", "rebalance", *(("stall",) if stalls is not None else ()),
              "timeout")  # fmt: skip
    counts = dict.fromkeys(causes, 0)
    for event_id, at in arrivals:
        previous = last.get(event_id)
        last[event_id] = at
        if previous is None:
            continue
        ended = [kill for kill in kills if previous - SENT_BEFORE_KILL_S <= kill <= at]
        if ended:
            counts["avoidable" if previous < ended[0] - AVOIDABLE_AFTER_S else "in_flight"] += 1
        elif any(start <= at and previous <= end for start, end in stalls or ()):
            counts["stall"] += 1
        elif any(start <= at and previous <= end for start, end in rebalances):
            counts["rebalance"] += 1
        else:
            counts["timeout"] += 1
    return counts


_ASSIGNED = re.compile(r"partitions assigned:([^\"]*)")


@dataclass
class Group:
    """The members of one consumer group in a scenario, each `dispatcher run` with a config of
    its own (its own metrics port; the same topics, group and partner file), and what happened
    to the group: kill times, the spans of graceful changes, how long each join took."""

    env: ChaosEnv
    name: str
    topics: Topics
    delivery: dict[str, Any]
    workers: list[WorkerProcess] = field(default_factory=list)  # every member ever started
    live: list[WorkerProcess] = field(default_factory=list)  # oldest first
    kills: list[float] = field(default_factory=list)
    rebalances: list[tuple[float, float]] = field(default_factory=list)
    stalls: list[tuple[float, float]] | None = None  # broker stalls, for a cause of their own
    join_to_ready_s: list[float] = field(default_factory=list)
    join_to_assigned_s: list[float] = field(default_factory=list)
    exit_codes: list[int] = field(default_factory=list)  # of the graceful leaves
    joins_without_partitions: int = 0  # first assignment empty

    def start(self) -> WorkerProcess:
        """The first member (no rebalance of anyone else)."""
        label = str(len(self.workers))
        # written now: the free metrics port is taken before the next config picks one
        config = self.env.config(f"{self.name}-{label}", self.topics, delivery=self.delivery)
        worker = self.env.worker(config, label)
        self.workers.append(worker)
        self.live.append(worker)
        return worker

    def join(self, result: Result, within_s: float = 30) -> WorkerProcess:
        """Start one more member and time how long until it has partitions: its `/readyz` and
        its log's "partitions assigned" line."""
        label = str(len(self.workers))
        config = self.env.config(f"{self.name}-{label}", self.topics, delivery=self.delivery)
        started_at, started = time.time(), time.monotonic()
        worker = self.env.worker(config, label, ready_within_s=None)
        self.workers.append(worker)
        self.live.append(worker)
        ready_s = assigned_s = None
        while time.monotonic() - started < within_s and (ready_s is None or assigned_s is None):
            if ready_s is None and worker.is_ready():
                ready_s = time.monotonic() - started
            if assigned_s is None and (first := _ASSIGNED.search(worker.log())):
                assigned_s = time.monotonic() - started
                # Ready with nothing to do: more members than partitions of a topic
                self.joins_without_partitions += first.group(1).strip().startswith(NO_PARTITIONS)
            time.sleep(0.1)
        result.check(ready_s is not None and assigned_s is not None,
                     f"worker {label} had no partitions {within_s:.0f} s after it started")  # fmt: skip
        self.join_to_ready_s.append(within_s if ready_s is None else ready_s)
        self.join_to_assigned_s.append(within_s if assigned_s is None else assigned_s)
        settled = max(self.join_to_ready_s[-1], self.join_to_assigned_s[-1])
        self.rebalances.append((started_at, started_at + settled + SENT_BEFORE_KILL_S))
        return worker

    def leave(self, result: Result, worker: WorkerProcess | None = None) -> int:
        """SIGTERM a member (the oldest by default) and wait for it to exit: a graceful leave."""
        worker = worker or self.live[0]
        self.live.remove(worker)
        signalled = time.time()
        code = worker.stop(timeout_s=60)
        self.rebalances.append((signalled, time.time() + SENT_BEFORE_KILL_S))
        self.exit_codes.append(code)
        result.check(code == 0, f"worker {worker.log_path.stem} exited {code} on SIGTERM")
        return code

    def kill(self) -> None:
        """kill -9 the oldest member."""
        worker = self.live.pop(0)
        worker.kill()
        self.kills.append(time.time())

    def finish(self, result: Result, env: ChaosEnv, owed: set[str]) -> None:
        """Every member but the newest leaves gracefully, then `finish` (the newest leaves
        there) and the log's check; the duplicates by cause and the joins' figures."""
        for worker in self.live[:-1]:
            self.leave(result, worker)
        last = self.live[-1]
        self.workers.remove(last)
        self.workers.append(last)  # `finish` stops workers[-1]: the live one
        finish(result, env, self.topics, self.workers, owed)
        check_the_log(result, env, self.topics, owed)
        arrivals = [(event.event_id, event.received_at) for event in env.sandbox.events()]
        causes = duplicates_by_cause(arrivals, self.kills, self.rebalances, self.stalls)
        result.figures |= {f"duplicates_{cause}": n for cause, n in causes.items()}
        result.figures["not_resent_thanks_to_the_log"] = skipped_by_the_log(self.workers)
        if self.join_to_assigned_s:
            result.figures |= {
                "join_to_assigned_s": f"{min(self.join_to_assigned_s):.1f}-{max(self.join_to_assigned_s):.1f}",
                "join_to_ready_s": f"{min(self.join_to_ready_s):.1f}-{max(self.join_to_ready_s):.1f}",
                "joins_without_partitions": self.joins_without_partitions,
            }  # fmt: skip


def group_stream(profile: Profile, seed: int) -> list[dict[str, Any]]:
    """The owed events of a group scenario's stream (`group_rate` a second for `group_stream_s`)."""
    rnd = random.Random(seed)
    count = int(profile.group_rate * profile.group_stream_s)
    return [owed_event(rnd.choice(["install", "in-app-event"])) for _ in range(count)]


# scale_out and rolling_restart: re-sends after graceful leaves and joins. A loose bound: what
# a member had on the wire when Tansu answered another's join before this one let go is sent
# again (rare); a member reading on from its old position after another had the partition
# (kafka-python keeps it) re-sent far more than that.
MAX_REBALANCE_SHARE = 0.02


def check_rebalance_duplicates(result: Result, events: int) -> None:
    """Re-sends after graceful leaves and joins (`duplicates_rebalance`) within the bound."""
    rebalance, bound = result.figures["duplicates_rebalance"], int(MAX_REBALANCE_SHARE * events)
    result.check(
        rebalance <= bound,
        f"{rebalance} duplicates after graceful leaves and joins; at most {bound} "
        f"({MAX_REBALANCE_SHARE:.0%} of the events) allowed",
    )


def scale_out(env: ChaosEnv, profile: Profile) -> Result:
    """A slow partner (1,000-event batches answered in ~1 s) and a steady stream while the group
    grows 1 → 2 → 3, one member leaves (SIGTERM), one is killed (-9) and one joins again."""
    result = Result("scale-out 1 → 2 → 3, a SIGTERM, a kill -9, a join; 1 s answers",
                    "every owed event delivered within 120 s of the stream's end; each join "
                    "assigned partitions within 30 s; every leave exits 0; avoidable duplicates "
                    f"<= {MAX_AVOIDABLE_SHARE:.1%} and rebalance duplicates <= "
                    f"{MAX_REBALANCE_SHARE:.0%} of the events")  # fmt: skip
    started = time.monotonic()
    env.sandbox.reset()
    topics = env.topics("scale")
    group = Group(env, "scale", topics, {"batch_max_events": 1000})
    events = group_stream(profile, profile.seed + 11)
    owed = {event_id_of(e) for e in events}
    env.sandbox.add_faults([{"delay_s": 1.0, "for_s": 3600}])
    producer = SteadyProducer(env.broker, encode(topics, events), profile.group_rate)
    group.start()
    producer.start()
    for change in ("join", "join", "leave", "kill", "join"):
        time.sleep(profile.group_step_s)
        if change == "join":
            group.join(result)
        elif change == "leave":
            group.leave(result)
        else:
            group.kill()
    producer.join(timeout=600)
    result.check(producer.error is None, f"producer failed: {producer.error}")
    drained = wait_until(lambda: all_delivered(env, owed), 120, 1.0)
    result.check(drained, "not every owed event arrived within 120 s of the stream's end")
    env.sandbox.clear_faults()
    result.figures["events"] = len(events)
    group.finish(result, env, owed)
    avoidable, bound = (
        result.figures["duplicates_avoidable"],
        int(MAX_AVOIDABLE_SHARE * len(events)),
    )
    result.check(
        avoidable <= bound,
        f"{avoidable} avoidable duplicates (answered over {AVOIDABLE_AFTER_S} s before a kill, "
        f"then re-sent); at most {bound} ({MAX_AVOIDABLE_SHARE:.1%} of the events) allowed",
    )
    check_rebalance_duplicates(result, len(events))
    result.seconds = time.monotonic() - started
    return result


def rolling_restart(env: ChaosEnv, profile: Profile) -> Result:
    """Three members replaced in turn as Kubernetes rolls a Deployment: start the new one, wait
    until it is ready, SIGTERM the old one and wait for it to exit; a stream meanwhile."""
    result = Result("rolling restart of three workers; 1 s answers",
                    "every owed event delivered within 120 s of the stream's end; each new "
                    "worker ready within 30 s; every old one exits 0; rebalance duplicates "
                    f"<= {MAX_REBALANCE_SHARE:.0%} of the events")  # fmt: skip
    started = time.monotonic()
    env.sandbox.reset()
    topics = env.topics("rolling")
    group = Group(env, "rolling", topics, {"batch_max_events": 1000})
    events = group_stream(profile, profile.seed + 13)
    owed = {event_id_of(e) for e in events}
    env.sandbox.add_faults([{"delay_s": 1.0, "for_s": 3600}])
    group.start()
    for _ in range(2):
        group.join(result)
    group.join_to_ready_s.clear()  # the figures are the replacements' joins
    group.join_to_assigned_s.clear()
    group.rebalances.clear()
    producer = SteadyProducer(env.broker, encode(topics, events), profile.group_rate)
    producer.start()
    for _ in range(3):
        time.sleep(profile.group_step_s)
        old = group.live[0]
        group.join(result)
        group.leave(result, old)
    producer.join(timeout=600)
    result.check(producer.error is None, f"producer failed: {producer.error}")
    drained = wait_until(lambda: all_delivered(env, owed), 120, 1.0)
    result.check(drained, "not every owed event arrived within 120 s of the stream's end")
    env.sandbox.clear_faults()
    result.figures["events"] = len(events)
    result.figures["old_workers_exit_codes"] = ",".join(str(c) for c in group.exit_codes)
    group.finish(result, env, owed)
    check_rebalance_duplicates(result, len(events))
    result.seconds = time.monotonic() - started
    return result


STALL_READY_S = 30  # broker_stall: every worker ready again this soon after the resume
# kafka-python's request_timeout_ms (its default; the worker leaves it): a request to a broker that
# does not answer fails after this long, and with it the group coordinator is marked dead.
REQUEST_TIMEOUT_S = 30


class ReadinessSampler(threading.Thread):
    """Samples each worker's `/readyz` every `interval_s`: (Unix time, ready per worker)."""

    def __init__(self, workers: list[WorkerProcess], interval_s: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.workers, self.interval_s = list(workers), interval_s
        self.samples: list[tuple[float, list[bool]]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            self.samples.append((time.time(), [w.is_ready() for w in self.workers]))

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=10)

    def ready_again_at(self, since: float) -> list[float | None]:
        """Per worker, when its last run of ready samples after `since` began (None: not
        ready at the last sample)."""
        found: list[float | None] = []
        for n in range(len(self.workers)):
            began = None
            for at, ready in (s for s in list(self.samples) if s[0] >= since):
                began = (began or at) if ready[n] else None
            found.append(began)
        return found

    def steady_since(self, since: float, for_s: float) -> bool:
        """Every worker ready, without a break, for the last `for_s` or more (after `since`)."""
        now = time.time()
        return all(at is not None and now - at >= for_s for at in self.ready_again_at(since))

    def not_ready_during(self, start: float, end: float) -> list[bool]:
        """Per worker, whether any sample between `start` and `end` found it not ready."""
        during = [ready for at, ready in list(self.samples) if start <= at <= end]
        return [any(not ready[n] for ready in during) for n in range(len(self.workers))]


def broker_stall(env: ChaosEnv, profile: Profile) -> Result:
    """The broker stops answering (SIGSTOP: connections open, no answers) for longer than the
    session timeout under a group of two and a steady stream, then answers again (SIGCONT):
    the workers stay up, are ready again soon after, and lose nothing.

    Whether the group forms again is the broker's call: Tansu answers the heartbeats waiting at
    the resume and keeps both members (`assignments_after_stall` counts any new assignment). A
    stall longer than `REQUEST_TIMEOUT_S` must show on `/readyz`."""
    stall_s = profile.broker_stall_s
    session_s = TANSU_GROUP_TIMING["session_timeout_ms"] / 1000
    past_timeout = stall_s > REQUEST_TIMEOUT_S + 5
    result = Result(f"broker stalled (SIGSTOP) {stall_s:.0f} s under a group of two; 0.3 s answers",
                    "every owed event delivered within 120 s of the stream's end; the workers "
                    "stay up" + ("; /readyz not ready during the stall" if past_timeout else "")
                    + f"; each ready within {STALL_READY_S:.0f} s of the resume; every leave "
                    "exits 0; duplicates by cause reported")  # fmt: skip
    result.check(stall_s >= 1.5 * session_s,
                 f"a stall of {stall_s:.0f} s does not outlast the {session_s:.0f} s session")  # fmt: skip
    started = time.monotonic()
    env.sandbox.reset()
    topics = env.topics("stall")
    group = Group(env, "stall", topics, {"batch_max_events": 200}, stalls=[])
    lead_s, tail_s = 10.0, 20.0  # steady streaming before the stall; the stream after it
    rnd = random.Random(profile.seed + 17)
    events = [owed_event(rnd.choice(["install", "in-app-event"]))
              for _ in range(int(profile.group_rate * (lead_s + stall_s + tail_s)))]  # fmt: skip
    owed = {event_id_of(e) for e in events}
    env.sandbox.add_faults([{"delay_s": 0.3, "for_s": 3600}])
    readiness: ReadinessSampler | None = None
    try:
        group.start()
        group.join(result)
        group.join_to_ready_s.clear()  # the figures are the recovery's, not the first joins'
        group.join_to_assigned_s.clear()
        group.rebalances.clear()
        producer = SteadyProducer(env.broker, encode(topics, events), profile.group_rate)
        producer.start()
        time.sleep(lead_s)
        readiness = ReadinessSampler(group.live)
        readiness.start()
        assignments = [w.log().count("partitions assigned") for w in group.live]
        stalled_at = time.time()
        env.broker.pause()
        try:
            time.sleep(stall_s)
        finally:
            env.broker.resume()
        resumed_at, resumed = time.time(), time.monotonic()
        exited = [w.log_path.stem for w in group.live if w.exited()]
        result.check(not exited, f"{exited} exited while the broker was stalled")
        # Ready again: each worker's /readyz 200 for a second on end (a worker ready at the resume
        # may still be told to rejoin by its next heartbeat's answer)
        settled = wait_until(lambda: readiness.steady_since(resumed_at, 1.0), STALL_READY_S, 0.2)
        settled_s = time.monotonic() - resumed
        ready_s = [round(t - resumed_at, 1) if t is not None else None
                   for t in readiness.ready_again_at(resumed_at)]  # fmt: skip
        result.check(bool(settled),
                     f"not every worker ready {STALL_READY_S:.0f} s after the resume: {ready_s}")  # fmt: skip
        group.stalls = [(stalled_at, time.time() + SENT_BEFORE_KILL_S)]
        not_ready = readiness.not_ready_during(stalled_at, resumed_at)
        if past_timeout:
            result.check(all(not_ready), f"{not_ready.count(False)} workers said ready through "
                         f"a {stall_s:.0f} s stall, past the {REQUEST_TIMEOUT_S} s request timeout")  # fmt: skip
        producer.join(timeout=600)
        result.check(producer.error is None, f"producer failed: {producer.error}")
        drained = wait_until(lambda: all_delivered(env, owed), 120, 1.0)
        result.check(drained, "not every owed event arrived within 120 s of the stream's end")
        exited = [w.log_path.stem for w in group.live if w.exited()]
        result.check(not exited, f"{exited} exited after the stall")
        env.sandbox.clear_faults()
        result.figures |= {
            "events": len(events), "stall_s": stall_s, "session_timeout_s": session_s,
            "workers_not_ready_during_stall": sum(not_ready),
            "ready_again_s": ",".join(str(r) for r in ready_s),
            "partitions_lost": sum(w.log().count("partitions lost") for w in group.live),
            "assignments_after_stall": sum(w.log().count("partitions assigned") - before
                                           for w, before in zip(group.live, assignments, strict=True)),
            "resume_to_settled_s": round(settled_s, 1),
        }  # fmt: skip
        group.finish(result, env, owed)
    finally:
        env.broker.resume()  # never leave the shared broker stopped
        if readiness is not None:
            readiness.stop()
        for worker in group.workers:
            if not worker.exited():
                worker.kill()
        env.sandbox.clear_faults()
    result.seconds = time.monotonic() - started
    return result


MAX_COPIES_PER_EVENT = 2.0  # slow_partner_big_batch: copies received per event


def slow_partner_big_batch(env: ChaosEnv, profile: Profile) -> Result:
    """A partner slower than timeout_s for full batches: batches that time out go again as
    halves, then smaller batches until answered; nothing lost, few copies.

    The sandbox delays requests, not events: every request is answered in 3 s (timeout_s 2)
    for `big_batch_slow_s`, then the partner recovers, so the halving goes down as far as that
    time allows; a backlog makes the first batches full."""
    slow_s = profile.big_batch_slow_s
    result = Result(f"partner slower than timeout_s for {slow_s:.0f} s (3 s answers, timeout_s 2, "
                    "1,000-event batches)", "every owed event delivered within 60 s of the "
                    f"recovery; copies per event <= {MAX_COPIES_PER_EVENT:g}; duplicates <= "
                    "the events of the timed-out requests; batches shrank; no dead letter")  # fmt: skip
    started = time.monotonic()
    env.sandbox.reset()
    topics = env.topics("bigbatch")
    delivery = {"timeout_s": 2, "batch_max_events": 1000, "max_attempts": 1000,
                "backoff_initial_s": 0.2, "backoff_max_s": 1}  # fmt: skip
    config = env.config("bigbatch", topics, delivery=delivery)
    backlog = [owed_event() for _ in range(profile.big_batch_backlog)]
    stream = [owed_event() for _ in range(int(profile.big_batch_rate * (slow_s + 10)))]
    events = backlog + stream
    owed = {event_id_of(e) for e in events}
    produce(env.broker, topics.installs, backlog)
    # slow from the first request on, until cleared `slow_s` after the worker is consuming
    env.sandbox.add_faults([{"delay_s": 3.0, "until_reset": True}])
    worker = env.worker(config, "0")
    producer = SteadyProducer(env.broker, encode(topics, stream), profile.big_batch_rate)
    producer.start()
    time.sleep(slow_s)
    env.sandbox.clear_faults()
    recovered, recovered_at = time.monotonic(), time.time()
    producer.join(timeout=600)
    result.check(producer.error is None, f"producer failed: {producer.error}")
    drained = wait_until(lambda: all_delivered(env, owed), 60, 1.0)
    drain_s = time.monotonic() - recovered
    result.check(drained, "not every owed event arrived within 60 s of the recovery")
    received = env.sandbox.events()
    slow_requests = [r for r in env.sandbox.requests() if r.at < recovered_at]
    copies = len(received) / len(events)
    shrinks = worker.metric("dispatcher_batch_shrinks_total")
    dead = worker.metric("dispatcher_dead_letters_total")
    result.check(copies <= MAX_COPIES_PER_EVENT,
                 f"{copies:.2f} copies per event received; at most {MAX_COPIES_PER_EVENT:g}")  # fmt: skip
    result.check(shrinks > 0, "no batch shrank: the scenario did not test timeouts")
    result.check(dead == 0, f"{dead} dead letters")
    # Every request before the recovery was answered after timeout_s: each may have been
    # processed, and its events go again once (as halves), never more than one batch a timeout.
    timed_out_events = sum(r.events for r in slow_requests)
    duplicates = len(received) - len({event.event_id for event in received})
    result.check(duplicates <= timed_out_events,
                 f"{duplicates} duplicates; at most one batch per timeout: {timed_out_events}")  # fmt: skip
    result.figures |= {
        "events": len(events),
        "backlog": len(backlog),
        "slow_requests": len(slow_requests),
        "largest_slow_request": max((r.events for r in slow_requests), default=0),
        "timed_out_events": timed_out_events,
        "timed_out_attempts": worker.metric("dispatcher_delivery_attempts_total", result="retryable"),
        "batch_shrinks": shrinks,
        "resent_metric": worker.metric("dispatcher_resent_events_total"),
        "event_copies": len(received),
        "copies_per_event": round(copies, 2),
        "recovery_to_drained_s": round(drain_s, 1),
        "dead_letters": dead,
    }  # fmt: skip
    finish(result, env, topics, [worker], owed)
    arrivals = [(event.event_id, event.received_at) for event in received]
    causes = duplicates_by_cause(arrivals, [], [])
    result.figures |= {f"duplicates_{cause}": n for cause, n in causes.items()}
    result.seconds = time.monotonic() - started
    return result


SCENARIOS: dict[str, Callable[[ChaosEnv, Profile], Result]] = {
    "kill_9": kill_9,
    "tiktok_down": tiktok_down,
    "throttling": throttling,
    "slow_partner": slow_partner,
    "timeouts": timeouts,
    "malformed": malformed,
    "config": config_changes,
    "broker_restart": broker_restart,
    "scale_out": scale_out,
    "rolling_restart": rolling_restart,
    "broker_stall": broker_stall,
    "slow_partner_big_batch": slow_partner_big_batch,
}
