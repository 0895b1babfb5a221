"""`dispatcher demo`: the whole pipeline on this machine, with nothing set up beforehand.

A local Kafka-compatible broker (Tansu), a local sandbox of both partners (TikTok and Ocean
Engine), the worker as `dispatcher run` would start it, and a realistic sample of events; live
progress, then a summary per partner.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

import httpx
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from dispatcher.devtools.broker import LocalBroker, free_port
from dispatcher.devtools.harness import WorkerConfig, WorkerProcess
from dispatcher.devtools.samples import DEMO_APP, DEMO_APP_ALL, DEMO_TIKTOK_IDS, SampleGenerator
from dispatcher.devtools.sandbox import PartnerSandbox, SandboxThread
from dispatcher.partners import adapter_for
from dispatcher.partners.tiktok.wire import TIKTOK_EVENTS

DEMO_TOKEN = "demo-access-token"  # noqa: S105 - the sandbox's; the demo never calls TikTok
TOPICS = {"installs": "installs", "in_app_events": "in-app-events"}
DEAD_LETTER_TOPIC = "postbacks-dead-letter"
LOG_TOPIC = "postbacks-log"
PARTITIONS = 3


def demo_config(
    workdir: Path, broker: LocalBroker, endpoint: str, oceanengine_endpoint: str, metrics_port: int
) -> Path:
    """The embedded default: the example config, pointed at the local broker and sandbox."""
    events = [
        {"sdk_event": "af_purchase", "partner_event": "Pay(Purchase)", "send_revenue": True},
        {"sdk_event": "af_complete_registration", "partner_event": "Registration"},
        {"sdk_event": "af_add_to_cart", "partner_event": "Add_to_cart", "send_revenue": False},
    ]
    apps = [
        {"app_id": DEMO_APP, "tiktok_app_id": DEMO_TIKTOK_IDS[DEMO_APP], "view_through": False,
         "click_lookback": "7d", "install_postbacks": {"scope": "attributed"},
         "in_app_postbacks": {"enabled": True, "scope": "attributed", "window": "180d",
                              "events": events}},
        {"app_id": DEMO_APP_ALL, "tiktok_app_id": DEMO_TIKTOK_IDS[DEMO_APP_ALL],
         "view_through": True, "view_through_lookback": "1d",
         "install_postbacks": {"scope": "all"},
         "in_app_postbacks": {"enabled": True, "scope": "all", "window": "lifetime",
                              "events": events}},
    ]  # fmt: skip
    ocean_events = [
        {"sdk_event": "af_purchase", "partner_event": "active_pay", "send_revenue": True},
        {"sdk_event": "af_complete_registration", "partner_event": "active_register"},
    ]
    oceanengine = {
        "partner": "oceanengine", "media_sources": ["bytedance_int"],
        "endpoint": oceanengine_endpoint,
        "delivery": {"max_requests_per_s": 200, "max_concurrent_requests": 16},
        "apps": [{"app_id": DEMO_APP, "click_lookback": "7d",
                  "install_postbacks": {"scope": "attributed"},
                  "in_app_postbacks": {"enabled": True, "scope": "attributed", "window": "30d",
                                       "events": ocean_events}}],
    }  # fmt: skip
    return WorkerConfig(
        broker.bootstrap, TOPICS["installs"], TOPICS["in_app_events"], DEAD_LETTER_TOPIC,
        "postback-dispatcher-demo", endpoint, apps,
        delivery={"batch_max_events": 1000, "batch_linger_ms": 100, "max_requests_per_s": 50},
        worker={"commit_interval_ms": 500, "rebalance_drain_s": 2},
        metrics_port=metrics_port, log_format="text", partner_files=(oceanengine,),
        kafka={"fetch_max_wait_ms": broker.fetch_max_wait_ms}, postback_log=LOG_TOPIC,
    ).write(workdir)  # fmt: skip


@dataclass
class Snapshot:
    """The figures the demo shows, read from the worker's /metrics."""

    consumed: float = 0
    inflight: float = 0
    delivered: Counter[tuple[str, str]] = field(default_factory=Counter)  # (partner, event)
    skipped: Counter[tuple[str, str]] = field(default_factory=Counter)  # (partner, reason)
    dead_letters: Counter[str] = field(default_factory=Counter)
    failed: Counter[tuple[str, str]] = field(default_factory=Counter)
    revenue_unsent: Counter[str] = field(default_factory=Counter)

    @classmethod
    def parse(cls, text: str) -> Snapshot:
        snap = cls()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                name, labels, value = sample.name, sample.labels, sample.value
                if name == "dispatcher_events_consumed_total":
                    snap.consumed += value
                elif name == "dispatcher_inflight_events":
                    snap.inflight = value
                elif name == "dispatcher_postbacks_total" and value:
                    target = snap.delivered if labels["outcome"] == "delivered" else snap.failed
                    target[(labels["partner"], labels["event"])] += int(value)
                elif (
                    name == "dispatcher_decisions_total" and labels["decision"] == "skip" and value
                ):
                    snap.skipped[(labels["partner"], labels["reason"])] += int(value)
                elif name == "dispatcher_revenue_unsent_total" and value:
                    snap.revenue_unsent[labels["partner"]] += int(value)
                elif name == "dispatcher_dead_letters_total" and value:
                    snap.dead_letters[labels["reason"]] += int(value)
        return snap


def _scrape(url: str) -> Snapshot | None:
    try:
        return Snapshot.parse(httpx.get(url, timeout=2).text)
    except httpx.HTTPError:
        return None


def _port(preferred: int, say: Any) -> int:
    """`preferred` when it is free; else a free port, saying why it moved."""
    if not preferred:
        return free_port()
    with contextlib.suppress(OSError):
        import socket  # noqa: PLC0415

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", preferred))
            return preferred
    port = free_port()
    say(f"  metrics port {preferred} is in use (another worker or demo?): using {port}")
    return port


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def _owning_children() -> Iterator[None]:
    """SIGTERM and SIGHUP (a closed terminal) stop the demo as Ctrl-C does, so that what it
    started, the broker, the sandbox and the worker, is stopped with it; the worker would take
    a SIGHUP of its own as a reload and stay up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_demo(events: int, keep_running: bool, metrics_port: int, out: IO[str] = sys.stdout) -> int:
    """Run the demo; return the exit code."""

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="dispatcher-demo-"))
    say(f"postback dispatcher demo (files in {workdir}, removed at the end unless it fails)")
    code = 1
    summarised: list[bool] = []  # set once the summary is out: a stop after it is the normal end
    try:
        with _owning_children():
            code = _run(workdir, events, keep_running, metrics_port, say, summarised)
    except KeyboardInterrupt:
        say("stopped: the broker, the sandbox and the worker are stopped")
        code = 0 if summarised else 130
    if code == 0:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        say(f"files kept for a look: {workdir}")
    return code


def _run(
    workdir: Path,
    events: int,
    keep_running: bool,
    metrics_port: int,
    say: Any,
    summarised: list[bool],
) -> int:
    say("  starting a local Kafka-compatible broker (Tansu, memory storage) ...")
    with LocalBroker(log_path=workdir / "broker.log") as broker:
        broker.create_topics(
            {
                TOPICS["installs"]: PARTITIONS,
                TOPICS["in_app_events"]: PARTITIONS,
                DEAD_LETTER_TOPIC: 1,
                LOG_TOPIC: PARTITIONS,
            }
        )
        say(f"  broker on {broker.bootstrap}; topics: installs, in-app-events, "
            f"{DEAD_LETTER_TOPIC}, {LOG_TOPIC}")  # fmt: skip
        sandbox_thread = SandboxThread(PartnerSandbox(token=DEMO_TOKEN))
        sandbox = sandbox_thread.start()
        say(f"  partner sandbox: TikTok on {sandbox.url}")
        say(f"                   Ocean Engine on {sandbox.oceanengine_url}")
        port = _port(metrics_port, say)
        config = demo_config(workdir, broker, sandbox.url, sandbox.oceanengine_url, port)
        metrics_url = f"http://127.0.0.1:{port}/metrics"
        try:
            with WorkerProcess(
                config, workdir / "worker.log", {"TIKTOK_ACCESS_TOKEN": DEMO_TOKEN}
            ) as worker:
                say(f"  worker: dispatcher run --config {config}")
                cases = _produce(broker.bootstrap, events)
                say(f"  produced {events} sample events: {_describe_cases(cases)}")
                say()
                started = time.monotonic()
                snapshot = _follow(metrics_url, events, worker, say)
                if snapshot is None:
                    say(f"the worker did not finish; see {workdir / 'worker.log'}")
                    return 1
                elapsed = time.monotonic() - started
                say()
                received = Counter(event.partner for event in list(sandbox.events))
                _summary(snapshot, events, elapsed, received, say)
                summarised.append(True)
                say(f"metrics:  {metrics_url}  (also /healthz and /readyz)")
                if keep_running:
                    say(f"logs:     {workdir / 'worker.log'}")
                    say("everything keeps running; press Ctrl-C to stop")
                    with contextlib.suppress(KeyboardInterrupt):
                        worker.wait(timeout_s=None)
                else:
                    say("stopping (--keep-running keeps the broker, the worker and /metrics up)")
                worker.stop()
        finally:
            sandbox_thread.stop()
    return 0


def _produce(bootstrap: str, count: int) -> Counter[str]:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    cases: Counter[str] = Counter()
    for sample in SampleGenerator().generate(count):
        topic = TOPICS["installs"] if sample.event_type == "install" else TOPICS["in_app_events"]
        producer.send(topic, key=sample.key(), value=sample.encode())
        cases[sample.case] += 1
    producer.flush()
    producer.close()
    return cases


def _describe_cases(cases: Counter[str]) -> str:
    installs = sum(n for case, n in cases.items() if case.startswith("install"))
    in_app = sum(n for case, n in cases.items() if case.startswith("in_app"))
    return f"{installs} installs, {in_app} in-app events, {cases['bad_input']} malformed"


def _follow(url: str, total: int, worker: WorkerProcess, say: Any) -> Snapshot | None:
    """Print progress until every event is consumed and final; None if the worker died or hung."""
    deadline = time.monotonic() + 120
    last_line = ""
    while time.monotonic() < deadline:
        if worker.exited():
            return None
        snapshot = _scrape(url)
        if snapshot is not None:
            line = (
                f"  consumed {int(snapshot.consumed):>6}/{total}"
                f"   sent {sum(snapshot.delivered.values()):>6}"
                f"   not owed {sum(snapshot.skipped.values()):>6} (each partner decides)"
                f"   dead-lettered {sum(snapshot.dead_letters.values()):>4}"
                f"   in flight {int(snapshot.inflight):>5}"
            )
            if line != last_line:
                say(line)
                last_line = line
            if snapshot.consumed >= total and snapshot.inflight == 0:
                return snapshot
        time.sleep(0.5)
    return None


def _summary(
    snap: Snapshot, total: int, elapsed_s: float, received: Counter[str], say: Any
) -> None:
    rows: list[tuple[str, int]] = [("events consumed", int(snap.consumed))]
    rows.append(("dead-lettered", sum(snap.dead_letters.values())))
    rows += [(f"    {reason}", n) for reason, n in snap.dead_letters.most_common()]
    partners = sorted({p for p, _ in snap.delivered} | {p for p, _ in snap.skipped})
    for partner in partners:
        delivered = {event: n for (p, event), n in snap.delivered.items() if p == partner}
        skipped = Counter({reason: n for (p, reason), n in snap.skipped.items() if p == partner})
        failed = sum(n for (p, _), n in snap.failed.items() if p == partner)
        rows.append((f"{_TITLES.get(partner, partner)}: postbacks sent (delivered)",
                     sum(delivered.values())))  # fmt: skip
        rows += sorted((f"    {_event_name(partner, event)}", n)
                       for event, n in delivered.items() if n)  # fmt: skip
        if snap.revenue_unsent[partner]:
            rows.append(("    sent without revenue (currency)", snap.revenue_unsent[partner]))
        rows.append((f"{_TITLES.get(partner, partner)}: skipped (not owed)",
                     sum(skipped.values())))  # fmt: skip
        rows += [(f"    {reason}", n) for reason, n in skipped.most_common()]
        if failed:
            rows.append((f"{_TITLES.get(partner, partner)}: postbacks failed", failed))
    width = max(len(label) for label, _ in rows) + 2
    say(f"summary: {total} events in {elapsed_s:.1f}s")
    say("  " + "-" * (width + 8))
    for label, count in rows:
        say(f"  {label:<{width}}{count:>8}")
    say("  " + "-" * (width + 8))
    for partner in partners:
        say(f"  the {_TITLES.get(partner, partner)} sandbox accepted {received[partner]} events")


_TITLES = {"tiktok": "TikTok", "oceanengine": "Ocean Engine"}
# The metrics label a postback with the name the partner receives; the config's `partner_event`
# takes the identifier, which differs for TikTok (`Add_to_cart` is sent as `AddToCart`).
_IDENTIFIERS = {"tiktok": {wire: identifier for identifier, wire in TIKTOK_EVENTS.items()}}


def _event_name(partner: str, label: str) -> str:
    """A delivered event as a partner file names it, with the name sent when that differs:
    `Add_to_cart (AddToCart)`; installs are sent on their own (`install (InstallApp)`)."""
    if label == adapter_for(partner).install_event:
        return f"install ({label})"
    identifier = _IDENTIFIERS.get(partner, {}).get(label, label)
    return identifier if identifier == label else f"{identifier} ({label})"
