"""The throughput benchmark, in one run on the real broker (Tansu) and the local TikTok sandbox.

    .venv/bin/python -m bench                 # the full run (several minutes)
    .venv/bin/python -m bench --repeat 3      # three runs of the ceiling and the worker
    .venv/bin/python -m bench --quick         # a smoke run with small numbers

For each kind of record (AppsFlyer Push API records first, then the first benchmark's small
ones), each on its own topic:
  1. consume-only ceiling: read + json.loads of N events in a process of its own; the same
     with the worker's Kafka reads and allocator thresholds (`bench.ceiling --worker-io`); and
     the same with kafka-python's default consumer settings (`bench.ceiling --defaults`);
  2. the worker with default settings on the same N events: delivered events/s, ratio to each
     ceiling, CPU per event (the worker's and the partner sink's), peak RSS (1 and 2 `--repeat`
     times; the table shows median and range);
  3. latency: events produced at half the worker's rate, event-to-postback p50/p99 (`--repeat`
     times too).
Then, on AppsFlyer records:
  4. per-event mode (batch_max_events: 1) against what httpx alone does per process;
  5. horizontal scale: two workers in one group against one;
  6. peak RSS with a large backlog while TikTok refuses connections, then the drain.
Prints one table per kind of record and one for the rest; writes bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Producer as RdKafkaProducer
from kafka import KafkaProducer

from bench.records import APP_ID, SENT_AT_PLACEHOLDER, SHAPES, stamp
from bench.sink import SinkProcess
from dispatcher.devtools.broker import LocalBroker
from dispatcher.devtools.harness import WorkerConfig, WorkerProcess, log_topic_of
from dispatcher.devtools.sandbox import ReceivedEvent, SandboxProcess
from dispatcher.inputs.appsflyer import AppsFlyerDecoder, derive_event_id, event_value_text

PARTITIONS = 8
TOKEN = "bench-token"
RESULTS = Path(__file__).resolve().parent / "results"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the pieces ------------------------------------------------------------------------------


def start_sandbox(workdir: Path, sink: str = "sandbox") -> SinkProcess:
    return SinkProcess(log_path=str(workdir / "sandbox.log"), sink=sink).start()


def wait(condition: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)


Shape = Callable[..., dict[str, Any]]  # (n, run, sent_at=None) -> a record


def produce(bootstrap: str, topic: str, count: int, run: str, event: Shape) -> float:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=512 * 1024)
    started = time.perf_counter()
    for n in range(count):
        value = event(n, run)
        producer.send(topic, key=value["appsflyer_id"].encode(), value=json.dumps(value).encode())
    producer.flush()
    producer.close()
    return time.perf_counter() - started


@dataclass
class Topics:
    in_app: str
    installs: str
    dead_letters: str
    partitions: int = PARTITIONS

    @classmethod
    def create(cls, broker: LocalBroker, name: str, partitions: int = PARTITIONS) -> Topics:
        suffix = uuid.uuid4().hex[:6]
        topics = cls(f"{name}-in-app-{suffix}", f"{name}-installs-{suffix}", f"{name}-dlq-{suffix}",
                     partitions)  # fmt: skip
        broker.create_topics(
            {topics.in_app: partitions, topics.installs: partitions, topics.dead_letters: 1,
             log_topic_of(topics.dead_letters): partitions}
        )  # fmt: skip
        return topics


def start_worker(
    workdir: Path, name: str, broker: LocalBroker, topics: Topics, sandbox: SandboxProcess, group: str,
    delivery: dict[str, Any] | None = None, worker: dict[str, Any] | None = None,
    postback_log: bool = True, processes: int = 1,
) -> WorkerProcess:  # fmt: skip
    directory = workdir / name
    # The postback log of this group alone: a worker does not send again what the log shows
    # final, so a second run on the same topic with the log of the first would send nothing.
    log_topic = f"{topics.dead_letters}-log-{group}" if postback_log else None
    if log_topic:
        broker.create_topics({log_topic: topics.partitions})
    apps = [{"app_id": APP_ID, "tiktok_app_id": "7300000000000000001",
             "in_app_postbacks": {"enabled": True, "window": "lifetime", "events": [
                 {"sdk_event": "af_purchase", "partner_event": "Pay(Purchase)", "send_revenue": True}]}}]  # fmt: skip
    config = WorkerConfig(
        broker.bootstrap, topics.installs, topics.in_app, topics.dead_letters, group,
        sandbox.url, apps, delivery=delivery or {},
        worker=(worker or {}) | ({"processes": processes} if processes > 1 else {}),
        kafka={"fetch_max_wait_ms": broker.fetch_max_wait_ms}, postback_log=log_topic,
    ).write(directory)  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    return WorkerProcess(config, directory / "worker.log", {"TIKTOK_ACCESS_TOKEN": TOKEN}).start()


def delivered_window(
    sandbox: SandboxProcess, expected: int, timeout_s: float
) -> tuple[float, float, list[ReceivedEvent]]:
    """Wait for `expected` unique events; return (first, last) receive times and the events."""
    wait(
        lambda: sandbox.stats()["unique_event_ids"] >= expected,
        timeout_s,
        f"{expected} events delivered",
        0.25,
    )
    events = sandbox.events()
    times = [e.received_at for e in events]
    return min(times), max(times), events


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# --- the phases ------------------------------------------------------------------------------


def ceiling(
    broker: LocalBroker, topics: Topics, count: int, worker_io: bool = False,
    defaults: bool = False,
) -> dict[str, Any]:  # fmt: skip
    output = subprocess.run(
        [sys.executable, "-m", "bench.ceiling", "--bootstrap", broker.bootstrap, "--topic", topics.in_app,
         "--count", str(count), "--group", f"ceiling-{uuid.uuid4().hex[:6]}",
         *(["--worker-io"] if worker_io else []), *(["--defaults"] if defaults else [])],
        capture_output=True, text=True, check=True, timeout=600,
    ).stdout  # fmt: skip
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


def throughput(workdir: Path, name: str, broker: LocalBroker, topics: Topics, sandbox: SinkProcess,
               count: int, workers: int = 1, delivery: dict[str, Any] | None = None,
               postback_log: bool = True, processes: int = 1) -> dict[str, Any]:  # fmt: skip
    sandbox.reset()
    group = f"{name}-{uuid.uuid4().hex[:6]}"
    started = [
        start_worker(
            workdir,
            f"{name}-{i}",
            broker,
            topics,
            sandbox,
            group,
            delivery,
            postback_log=postback_log,
            processes=processes,
        )
        for i in range(workers)
    ]
    try:
        # CPU from the first delivery on: start-up (imports, the group join) is not per event
        wait(lambda: sandbox.stats()["unique_event_ids"] > 0, 120, "a first delivery", 0.05)
        cpu_at_first = [w.cpu_s() for w in started]
        sink_cpu_at_first = sandbox.cpu_s()
        first, last, _ = delivered_window(sandbox, count, timeout_s=max(120, count / 200))
        cpu_used = [w.cpu_s() - at_first for w, at_first in zip(started, cpu_at_first, strict=True)]
        sink_cpu_used = sandbox.cpu_s() - sink_cpu_at_first
        stats = sandbox.stats()
        time.sleep(0.5)  # the last commits of the run
        commits = sum(
            w.metric("dispatcher_offset_commits_total", result="success") for w in started
        )
        return {
            "commits": commits,
            "commits_per_s": commits / (last - first) if last > first else float("nan"),
            "events": count,
            "seconds": last - first,
            "rate": count / (last - first) if last > first else float("nan"),
            "duplicates": stats["duplicates"],
            "requests": stats["requests"],
            "peak_rss_mb": [round(w.peak_rss_mb(), 1) for w in started],
            "cpu_s": [round(w.cpu_s(), 2) for w in started],
            "cpu_us_per_event": sum(cpu_used) / count * 1e6,
            # the sink's from the first delivery to the control port's answer that all arrived
            "sink_cpu_us_per_event": sink_cpu_used / count * 1e6,
        }
    finally:
        for worker in started:
            worker.stop()


def latency(
    workdir: Path, broker: LocalBroker, sandbox: SandboxProcess, rate: float, seconds: float,
    event: Shape, processes: int = 1,
) -> dict[str, Any]:  # fmt: skip
    """Events produced at `rate`, each stamped with its send time; event-to-postback p50/p99.

    The records are generated and encoded before the clock starts (an AppsFlyer record costs
    the generator far more than its send), and stamped at send time by a same-width
    replacement, so the producer keeps the rate asked of it."""
    topics = Topics.create(broker, "latency")
    sandbox.reset()
    total = int(rate * seconds)
    encoded = [
        (value["appsflyer_id"].encode(), json.dumps(value).encode())
        for value in (event(n, "latency", sent_at=SENT_AT_PLACEHOLDER) for n in range(total))
    ]
    worker = start_worker(
        workdir, "latency", broker, topics, sandbox, f"latency-{uuid.uuid4().hex[:6]}",
        processes=processes,
    )  # fmt: skip
    try:
        wait(worker.is_ready, 60, "latency worker ready")
        # librdkafka's producer, not kafka-python's: at 3,000 records/s kafka-python's takes
        # ~60 % of a core and librdkafka's ~16 %, and this producer stands in for AppsFlyer's
        # pipeline, which does not share the worker's two cores in production. Its default
        # 5 ms linger (part of the latency measured: records are stamped before it) keeps the
        # broker's CPU down too: at 1 ms Tansu took ~78 % of a core for the produce requests.
        failures: list[str] = []
        settings = {"bootstrap.servers": broker.bootstrap, "partitioner": "murmur2_random",
                    "log_level": 3}  # fmt: skip
        producer = RdKafkaProducer(settings)

        def delivered(error: Any, message: Any) -> None:
            if error is not None:
                failures.append(str(error))

        behind = 0
        started = time.perf_counter()
        for n, (key, value) in enumerate(encoded):
            ahead = started + n / rate - time.perf_counter()
            if ahead > 0.002:
                time.sleep(ahead)
            elif ahead < -0.1:
                behind += 1  # more than 100 ms late: the producer could not keep the rate
            producer.produce(
                topics.in_app, key=key, value=stamp(value, time.time()), on_delivery=delivered
            )
            producer.poll(0)
        unsent = producer.flush(60)
        achieved = total / (time.perf_counter() - started)
        producer.close()
        if unsent or failures:
            raise RuntimeError(f"latency: {unsent} records unsent, failures: {failures[:3]}")
        _, _, events = delivered_window(sandbox, total, timeout_s=120)
        latencies = [e.received_at - e.sent_at for e in events if e.sent_at is not None]
        return {
            "target_rate": rate,
            "produced_rate": achieved,
            "produced_late": behind,
            "events": len(latencies),
            "p50_s": statistics.median(latencies),
            "p99_s": percentile(latencies, 0.99),
            "max_s": max(latencies),
        }
    finally:
        worker.stop()


def httpx_alone(sandbox: SandboxProcess, concurrency: int, seconds: float) -> dict[str, Any]:
    sandbox.reset()
    output = subprocess.run(
        [sys.executable, "-m", "bench.httpx_alone", "--url", sandbox.url, "--concurrency", str(concurrency),
         "--seconds", str(seconds)],
        capture_output=True, text=True, check=True, timeout=seconds + 120,
    ).stdout  # fmt: skip
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


def backlog(
    workdir: Path, broker: LocalBroker, sandbox: SandboxProcess, count: int, hold_s: float,
    event: Shape,
) -> dict[str, Any]:  # fmt: skip
    topics = Topics.create(broker, "backlog")
    log(f"backlog: producing {count} events")
    produce(broker.bootstrap, topics.in_app, count, "backlog", event)
    sandbox.reset()
    sandbox.listener_down()  # connection refused until reopened
    worker = start_worker(workdir, "backlog", broker, topics, sandbox, f"backlog-{uuid.uuid4().hex[:6]}",
                          delivery={"backoff_max_s": 2, "max_attempts": 1000})  # fmt: skip
    try:
        wait(lambda: worker.metric("dispatcher_paused_partitions") > 0, 120, "paused partitions")
        time.sleep(hold_s)
        down = {
            "peak_rss_mb": round(worker.peak_rss_mb(), 1),
            "consumed": worker.metric("dispatcher_events_consumed_total"),
            "inflight": worker.metric("dispatcher_inflight_events"),
            "paused_partitions": worker.metric("dispatcher_paused_partitions"),
        }
        log(f"backlog: TikTok down, {down}; reopening")
        sandbox.listener_up()
        opened = time.monotonic()
        wait(
            lambda: sandbox.stats()["unique_event_ids"] >= count,
            max(600, count / 500),
            "backlog drained",
            1.0,
        )
        drain_s = time.monotonic() - opened
        return {
            "events": count,
            "while_down": down,
            "drain_seconds": drain_s,
            "drain_rate": count / drain_s,
            "peak_rss_mb_overall": round(worker.peak_rss_mb(), 1),
            "duplicates": sandbox.stats()["duplicates"],
        }
    finally:
        worker.stop()


def decoding(event: Shape, count: int = 20_000) -> dict[str, Any]:
    """In one process, per event: decoding a record of this shape, and deriving its event id."""
    messages = [json.dumps(event(n, "decode")).encode() for n in range(count)]
    decoder = AppsFlyerDecoder()
    started = time.perf_counter()
    for message in messages:
        decoder.decode(message, "in-app-event")
    decode_s = time.perf_counter() - started
    records = [json.loads(message) for message in messages]
    started = time.perf_counter()
    for r in records:
        derive_event_id(r["app_id"], r["appsflyer_id"], r["event_name"], r["event_time"],
                        event_value_text(r["event_value"]))  # fmt: skip
    derive_s = time.perf_counter() - started
    return {
        "record_bytes": statistics.mean(len(message) for message in messages),
        "decode_us": decode_s / count * 1e6,
        "derive_id_us": derive_s / count * 1e6,
    }


# --- the run -----------------------------------------------------------------------------------


def records_run(
    workdir: Path, broker: LocalBroker, sandbox: SinkProcess, shape: str, args: argparse.Namespace
) -> dict[str, Any]:  # fmt: skip
    """One kind of record: decoding cost, the ceiling and the worker (`--repeat` times each, on
    the same topic), their ratio, and latency at half the worker's median rate."""
    event = SHAPES[shape]
    result: dict[str, Any] = {"records": shape, "decoding": decoding(event)}
    topics = Topics.create(broker, f"throughput-{shape}", args.partitions)
    result["partitions"], result["sink"] = args.partitions, args.sink
    result["postback_log"] = not args.no_postback_log
    result["processes"] = args.processes
    log(f"{shape}: producing {args.events} owed in-app events")
    result["produce_seconds"] = produce(broker.bootstrap, topics.in_app, args.events, "tp", event)
    result["ceilings"], result["io_ceilings"], result["workers"] = [], [], []
    result["default_ceilings"] = []
    for run in range(1, args.repeat + 1):
        log(f"{shape}: consume-only ceiling, run {run}")
        result["ceilings"].append(ceiling(broker, topics, args.events))
        log(f"{shape}: consume-only ceiling with the worker's reads and allocator, run {run}")
        result["io_ceilings"].append(ceiling(broker, topics, args.events, worker_io=True))
        log(f"{shape}: consume-only ceiling with kafka-python's defaults, run {run}")
        result["default_ceilings"].append(ceiling(broker, topics, args.events, defaults=True))
        log(f"{shape}: the worker, default settings, run {run}")
        result["workers"].append(
            throughput(
                workdir,
                f"worker-{shape}-{run}",
                broker,
                topics,
                sandbox,
                args.events,
                postback_log=not args.no_postback_log,
                processes=args.processes,
            )
        )
    result["ceiling"] = median_run(result["ceilings"])
    result["worker"] = median_run(result["workers"])
    result["ratios"] = ratios(result["workers"], result["ceilings"])
    result["ratio_to_ceiling"] = statistics.median(result["ratios"])
    result["io_ratios"] = ratios(result["workers"], result["io_ceilings"])
    result["default_ratios"] = ratios(result["workers"], result["default_ceilings"])
    if "latency" not in args.skip:
        half = result["worker"]["rate"] / 2
        if args.quick:
            half = min(half, 2000)  # a few thousand events give no real maximum rate
        result["latencies"] = []
        for run in range(1, args.repeat + 1):
            log(f"{shape}: latency at {half:.0f} events/s, run {run}")
            result["latencies"].append(
                latency(workdir, broker, sandbox, half, args.latency_seconds, event, args.processes)
            )
        result["latency"] = median_run(result["latencies"], "p99_s")
    return result


def ratios(workers: list[dict[str, Any]], ceilings: list[dict[str, Any]]) -> list[float]:
    """Each worker run's rate over the ceiling run beside it."""
    return [w["rate"] / c["rate"] for w, c in zip(workers, ceilings, strict=True)]


def median_run(runs: list[dict[str, Any]], figure: str = "rate") -> dict[str, Any]:
    """The run of median `figure`."""
    return sorted(runs, key=lambda run: run[figure])[len(runs) // 2]


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--events", type=int, default=100_000, help="events for the throughput phases"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of the ceiling and the worker per record kind"
    )
    parser.add_argument("--per-event-events", type=int, default=20_000)
    parser.add_argument("--latency-seconds", type=float, default=20)
    parser.add_argument("--backlog-events", type=int, default=1_000_000)
    parser.add_argument("--backlog-hold-s", type=float, default=20)
    parser.add_argument(
        "--skip", action="append", default=[], choices=["latency", "per-event", "backlog", "scale"]
    )
    parser.add_argument(
        "--records",
        choices=list(SHAPES),
        action="append",
        help="record kinds, the first the main one (default: appsflyer, then small): appsflyer "
        "are Push API V2 records (~3.8 KB, no event id); full the same purchase with every field "
        "such an event carries filled in and the blank ones left out (~2.7 KB); small the first "
        "benchmark's (~0.8 KB)",
    )
    parser.add_argument(
        "--partitions",
        type=int,
        default=PARTITIONS,
        help=f"partitions of each kind's in-app topic (default {PARTITIONS})",
    )
    parser.add_argument(
        "--sink", choices=["sandbox", "json"], default="sandbox",
        help="the partner: the sandbox (validates each body with pydantic), or json: the same "
        "after a json.loads of each whole body (bench/sink.py)",
    )  # fmt: skip
    parser.add_argument(
        "--no-postback-log", action="store_true",
        help="the throughput workers without the postback log (kafka.postback_log_topic: null)",
    )  # fmt: skip
    parser.add_argument(
        "--processes", type=int, default=1,
        help="worker.processes of the throughput and latency workers (default 1: one process)",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="small numbers: a smoke run")
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args()
    args.records = args.records or ["appsflyer", "small"]
    if args.quick:
        args.events, args.per_event_events, args.latency_seconds = 5000, 1000, 4
        args.backlog_events, args.backlog_hold_s = 20000, 3
    workdir = Path(tempfile.mkdtemp(prefix="dispatcher-bench-"))
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "command": " ".join(["python -m bench", *sys.argv[1:]]),
        "records": args.records[0],
    }
    event = SHAPES[args.records[0]]
    with LocalBroker(log_path=workdir / "broker.log") as broker:
        sandbox = start_sandbox(workdir, args.sink)
        try:
            results["kinds"] = [
                records_run(workdir, broker, sandbox, shape, args) for shape in args.records
            ]
            main_kind = results["kinds"][0]
            if "per-event" not in args.skip:
                log("per-event mode against httpx alone")
                per_event_topics = Topics.create(broker, "per-event")
                produce(
                    broker.bootstrap, per_event_topics.in_app, args.per_event_events, "pe", event
                )
                per_event = {"batch_max_events": 1, "batch_linger_ms": 0, "max_requests_per_s": 100000,
                             "max_concurrent_requests": 8}  # fmt: skip
                results["per_event"] = throughput(
                    workdir,
                    "per-event",
                    broker,
                    per_event_topics,
                    sandbox,
                    args.per_event_events,
                    delivery=per_event,
                )
                results["httpx_alone"] = httpx_alone(sandbox, concurrency=8, seconds=10)
                results["per_event_ratio_to_httpx"] = (
                    results["per_event"]["rate"] / results["httpx_alone"]["rate"]
                )
            if "scale" not in args.skip:
                log("two workers in one group")
                scale_topics = Topics.create(broker, "scale")
                produce(broker.bootstrap, scale_topics.in_app, args.events, "sc", event)
                results["two_workers"] = throughput(
                    workdir, "scale", broker, scale_topics, sandbox, args.events, workers=2
                )
                results["scale_factor"] = (
                    results["two_workers"]["rate"] / main_kind["worker"]["rate"]
                )
            if "backlog" not in args.skip:
                log(f"backlog of {args.backlog_events} while TikTok is down")
                results["backlog"] = backlog(
                    workdir, broker, sandbox, args.backlog_events, args.backlog_hold_s, event
                )
        finally:
            sandbox.stop()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2))
    print(render(results))
    print(f"\nJSON: {args.output}")
    return 0


def spread(values: list[float], fmt: str) -> str:
    """`median (min-max)` of several runs, or the value of one."""
    if len(values) == 1:
        return format(values[0], fmt)
    ordered = sorted(values)
    return f"{format(statistics.median(ordered), fmt)} ({format(ordered[0], fmt)}-{format(ordered[-1], fmt)})"


def render_kind(kind: dict[str, Any]) -> list[tuple[str, str]]:
    """The table rows of one kind of record."""
    decoding = kind["decoding"]
    workers, ceilings = kind["workers"], kind["ceilings"]
    runs = f", {len(workers)} runs: median (min-max)" if len(workers) > 1 else ""
    layout = f" on {kind['partitions']} partitions" if "partitions" in kind else ""
    if kind.get("postback_log") is False:
        layout += ", no postback log"
    if kind.get("processes", 1) > 1:
        layout += f", worker.processes: {kind['processes']}"
    rows = [
        (f"records: {kind['records']}{layout}{runs}", f"{decoding['record_bytes']:,.0f} bytes"),
        ("  decoding, per event (one process)", f"{decoding['decode_us']:.1f} µs"),
        ("  of which deriving the event id", f"{decoding['derive_id_us']:.1f} µs"),
        ("consume-only ceiling (read + json.loads)",
         spread([c["rate"] for c in ceilings], ",.0f") + " events/s"),
        (("worker, default settings" if kind.get("processes", 1) == 1
          else f"worker, {kind['processes']} processes, otherwise default settings") + ": delivered",
         spread([w["rate"] for w in workers], ",.0f") + " events/s"),
        ("  ratio to the ceiling (target >= 0.8, stretch 1.0)", spread(kind["ratios"], ".2f")),
        ("  worker CPU per event (after the first delivery)",
         spread([w["cpu_us_per_event"] for w in workers], ".0f") + " µs"),
        *([(f"  partner sink ({kind.get('sink', 'sandbox')}) CPU per event",
            spread([w["sink_cpu_us_per_event"] for w in workers], ".0f") + " µs")]
          if all("sink_cpu_us_per_event" in w for w in workers) else []),
        ("  peak RSS", spread([w["peak_rss_mb"][0] for w in workers], ".0f") + " MB"),
        ("  duplicates", f"{sum(w['duplicates'] for w in workers)}"),
        ("  offset commits per second", spread([w["commits_per_s"] for w in workers], ".1f")),
    ]  # fmt: skip
    if kind.get("io_ceilings"):  # results written before 2026-12-03 have none
        rows += [
            ("ceiling with the worker's Kafka reads and allocator",
             spread([c["rate"] for c in kind["io_ceilings"]], ",.0f") + " events/s"),
            ("  the worker's ratio to it", spread(kind["io_ratios"], ".2f")),
        ]  # fmt: skip
    if kind.get("default_ceilings"):  # results written before 2026-12-06 have none
        rows += [
            ("ceiling with kafka-python's default consumer settings",
             spread([c["rate"] for c in kind["default_ceilings"]], ",.0f") + " events/s"),
            ("  the worker's ratio to it", spread(kind["default_ratios"], ".2f")),
        ]  # fmt: skip
    if "latency" in kind:
        lat_runs = kind.get("latencies") or [kind["latency"]]
        rate = spread([lat["produced_rate"] for lat in lat_runs], ",.0f")
        rows += [
            (
                f"event-to-postback at {rate} events/s: p50",
                spread([lat["p50_s"] * 1000 for lat in lat_runs], ".0f") + " ms",
            ),
            (
                "  p99 (target < 1 s)",
                spread([lat["p99_s"] * 1000 for lat in lat_runs], ".0f") + " ms",
            ),
            (
                "  produced more than 100 ms late",
                f"{sum(lat['produced_late'] for lat in lat_runs)}",
            ),
        ]
    return rows


def render(r: dict[str, Any]) -> str:
    tables = [render_kind(kind) for kind in r["kinds"]]
    rows: list[tuple[str, str]] = []
    if "per_event" in r:
        rows += [
            ("per-event mode (batch_max_events: 1)", f"{r['per_event']['rate']:,.0f} events/s"),
            (
                "httpx alone, same concurrency, one process",
                f"{r['httpx_alone']['rate']:,.0f} requests/s",
            ),
            ("  ratio (target >= 0.8)", f"{r['per_event_ratio_to_httpx']:.2f}"),
            ("  peak RSS", f"{r['per_event']['peak_rss_mb'][0]:.0f} MB"),
        ]
    if "two_workers" in r:
        rows += [
            ("two workers, one group: delivered", f"{r['two_workers']['rate']:,.0f} events/s"),
            ("  factor over one worker", f"{r['scale_factor']:.2f}"),
        ]
    if "backlog" in r:
        b = r["backlog"]
        rows += [
            (
                f"backlog of {b['events']:,} with TikTok down: peak RSS (target < 300 MB)",
                f"{b['while_down']['peak_rss_mb']:.0f} MB",
            ),
            ("  consumed while down (paused, not buffered)", f"{b['while_down']['consumed']:,.0f}"),
            (
                "  drain after TikTok returns",
                f"{b['drain_rate']:,.0f} events/s ({b['drain_seconds']:.0f} s)",
            ),
            ("  peak RSS over the drain", f"{b['peak_rss_mb_overall']:.0f} MB"),
        ]
    if rows:
        tables.append(rows)
    width = max(len(label) for table in tables for label, _ in table) + 2
    out: list[str] = []
    for table in tables:
        out += [f"{'figure':<{width}}value", "-" * (width + 30)]
        out += [f"{label:<{width}}{value}" for label, value in table]
        out.append("")
    return "\n".join(out).rstrip()
