"""Helpers for tests that run the real worker against the real broker and the sandbox."""

from __future__ import annotations

import bisect
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from dispatcher.devtools import harness
from dispatcher.devtools.broker import LocalBroker
from dispatcher.devtools.harness import WorkerConfig, log_topic_of
from tests.factories import app_dict

TOKEN = "test-access-token-5f1d2c"
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Topics:
    """One test's own topics and group."""

    installs: str
    in_app: str
    dead_letters: str
    group: str

    @classmethod
    def create(cls, broker: LocalBroker, name: str, partitions: int = 3) -> Topics:
        suffix = uuid.uuid4().hex[:8]
        topics = cls(
            f"{name}-installs-{suffix}",
            f"{name}-in-app-{suffix}",
            f"{name}-dlq-{suffix}",
            f"{name}-{suffix}",
        )
        broker.create_topics(
            {topics.installs: partitions, topics.in_app: partitions, topics.dead_letters: 1,
             topics.log: partitions}
        )  # fmt: skip
        return topics

    @property
    def log(self) -> str:
        """The postback log topic (the harness's name for it)."""
        return log_topic_of(self.dead_letters)


def write_config(
    directory: Path,
    broker: LocalBroker,
    topics: Topics,
    endpoint: str,
    *,
    apps: list[dict[str, Any]] | None = None,
    delivery: dict[str, Any] | None = None,
    worker: dict[str, Any] | None = None,
    partner_files: tuple[dict[str, Any], ...] = (),
    kafka: dict[str, Any] | None = None,
) -> Path:
    """dispatcher.yaml + partners/tiktok.yaml (+ `partner_files`) for a test; returns the
    dispatcher.yaml path."""
    return WorkerConfig(
        broker.bootstrap, topics.installs, topics.in_app, topics.dead_letters, topics.group,
        endpoint, apps or [app_dict()],
        # (`max_event_age: lifetime`: the factories' events are dated 2025; tests of age set one)
        delivery={"batch_linger_ms": 20, "backoff_initial_s": 0.05, "backoff_max_s": 0.5,
                  "max_requests_per_s": 500, "timeout_s": 5, "max_event_age": "lifetime"}
        | (delivery or {}),
        worker={"commit_interval_ms": 200, "shutdown_timeout_s": 10, "rebalance_drain_s": 2}
        | (worker or {}), partner_files=partner_files,
        kafka={"fetch_max_wait_ms": broker.fetch_max_wait_ms} | (kafka or {}),
    ).write(directory)  # fmt: skip


def produce(broker: LocalBroker, topic: str, messages: Iterable[dict[str, Any] | bytes]) -> int:
    """Write messages (dicts are JSON-encoded and keyed by appsflyer_id); return how many."""
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    count = 0
    for message in messages:
        if isinstance(message, dict):
            key = str(message.get("appsflyer_id", "")).encode() or None
            producer.send(topic, key=key, value=json.dumps(message).encode())
        else:
            producer.send(topic, value=message)
        count += 1
    producer.flush()
    producer.close()
    return count


def read_all(broker: LocalBroker, topic: str, timeout_s: float = 10) -> list[Any]:
    """Every record of a topic from the beginning (JSON-decoded values), without a group."""
    return [json.loads(value) for value in read_values(broker, topic, timeout_s)]


def read_log(broker: LocalBroker, topic: str, timeout_s: float = 10) -> list[dict[str, Any]]:
    """Every postback record of a postback log topic (each Kafka record holds a request's
    postbacks, one JSON object a line)."""
    return [
        json.loads(line)
        for value in read_values(broker, topic, timeout_s)
        for line in value.split(b"\n")
        if line
    ]


def read_values(broker: LocalBroker, topic: str, timeout_s: float = 10) -> list[bytes]:
    """Every record's value of a topic from the beginning, without a group."""
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    partitions = [
        TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])
    ]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    values: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    quiet_polls = 0
    while time.monotonic() < deadline and quiet_polls < 3:
        batch = consumer.poll(timeout_ms=300)
        if not batch:
            quiet_polls += 1
            continue
        quiet_polls = 0
        for messages in batch.values():
            values.extend(m.value for m in messages)
    consumer.close()
    return values


def end_offsets(
    broker: LocalBroker, topics: Iterable[str], timeout_s: float = 10
) -> dict[tuple[str, int], int]:
    """The true end of each partition (from fetch high watermarks; Tansu's ListOffsets is off)."""
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    partitions = [
        TopicPartition(topic, p)
        for topic in topics
        for p in sorted(consumer.partitions_for_topic(topic) or [])
    ]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        consumer.poll(timeout_ms=200)
        if all(consumer.highwater(tp) is not None for tp in partitions) and all(
            consumer.position(tp) >= (consumer.highwater(tp) or 0) for tp in partitions
        ):
            break
    ends = {(tp.topic, tp.partition): consumer.highwater(tp) or 0 for tp in partitions}
    consumer.close()
    return ends


def committed_offsets(broker: LocalBroker, topics: Topics) -> dict[tuple[str, int], int]:
    """The group's committed offsets on the source topics (partitions with none are left out)."""
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id=topics.group, enable_auto_commit=False
    )
    try:
        offsets = {}
        for topic in (topics.installs, topics.in_app):
            for partition in sorted(consumer.partitions_for_topic(topic) or []):
                committed = consumer.committed(TopicPartition(topic, partition))
                if committed is not None and committed >= 0:
                    offsets[(topic, partition)] = committed
        return offsets
    finally:
        consumer.close(autocommit=False)


def wait_until(condition: Callable[[], Any], timeout_s: float, interval_s: float = 0.1) -> Any:
    """Poll until `condition()` is truthy or `timeout_s` passed; its last value."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()) and time.monotonic() < deadline:
        time.sleep(interval_s)
    return value


def wait_for(
    condition: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.1
) -> Any:
    """Poll until `condition()` is truthy; fail with `what` after `timeout_s`."""
    value = wait_until(condition, timeout_s, interval_s)
    if not value:
        raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
    return value


def most_in_any_window(times: Iterable[float], window_s: float = 1.0) -> int:
    """The most of `times` inside any window of `window_s` (closed at its start, open at its
    end, so two times exactly `window_s` apart never share one)."""
    ordered = sorted(times)
    return max(
        (bisect.bisect_left(ordered, t + window_s - 1e-9) - i for i, t in enumerate(ordered)),
        default=0,
    )


class WorkerProcess(harness.WorkerProcess):
    """The harness's worker process, holding the tests' token."""

    def __init__(self, config: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        super().__init__(config, log_path, {"TIKTOK_ACCESS_TOKEN": TOKEN} | (env or {}))


def dispatcher_command(
    command: str, config: Path, *args: str, token: bool = False, timeout_s: float = 180
) -> subprocess.CompletedProcess[str]:
    """`dispatcher COMMAND --config CONFIG ARGS...` as an operator runs it, without the caller's
    DISPATCHER_ overrides; with `token`, the tests' TikTok token in its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISPATCHER_", "TIKTOK_"))}
    if token:
        env["TIKTOK_ACCESS_TOKEN"] = TOKEN
    return subprocess.run(
        [sys.executable, "-m", "dispatcher", command, "--config", str(config), *args],
        capture_output=True, text=True, env=env, timeout=timeout_s, check=False,
    )  # fmt: skip


def sandbox_ids(sandbox: Any) -> list[str]:
    """Every event id the sandbox accepted, in arrival order (duplicates included)."""
    return [event.event_id for event in list(sandbox.events)]


IN_FLIGHT_S = 0.05  # a request that arrives this soon after a 429 was sent before it was read


def retry_after_violations(requests: list[Any]) -> list[tuple[float, float]]:
    """(answer time, offending request time) for requests that arrived while a Retry-After that
    the sandbox had asked for was still running."""
    arrivals = sorted(r.at for r in requests)
    violations = []
    for record in requests:
        wait_s = record.retry_after_s
        if not wait_s:
            continue
        answered = record.answered_at if record.answered_at is not None else record.at
        start, end = answered + IN_FLIGHT_S, answered + wait_s - 0.01
        violations += [(answered, other) for other in arrivals if start < other < end]
    return violations
