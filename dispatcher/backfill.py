"""`dispatcher replay --from T --to T`: the source topics' records of a time range decided again
with today's config and today's time, and what is owed and not already delivered sent through
the worker's own delivery code (retries, pacing, held apps, dead letters, postback log).

For a partner added late, a mapping fixed, an outage that outlived the retries. It reads with a
consumer of no group (never the workers'), commits nothing, and skips what the postback log
shows as delivered to that partner (`already_delivered`), so a second run sends nothing the
first delivered. `--dry-run` only counts.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from dispatcher.config_loader import Settings
from dispatcher.dead_letters import AckedPublisher, DeadLetterPublisher
from dispatcher.delivery import DeliveryService, Settled, WorkItem
from dispatcher.errors import PermanentError
from dispatcher.inputs import BadInput, source_topics
from dispatcher.kafka_clients import make_log_reader, make_producer
from dispatcher.metrics import Metrics
from dispatcher.owed import owed_item
from dispatcher.partners import PartnerAdapter, adapter_for
from dispatcher.postback_log import PostbackLog, delivered_ids, read_topics
from dispatcher.rules import Send, decide
from dispatcher.settle import Completion, Coordinates, Settlement
from schemas.config import PartnerConfig

log = logging.getLogger(__name__)

SUBMIT_CHUNK = 500


@dataclass
class RangeReport:
    """What a replay of a time range did (or, dry, would do)."""

    read: int = 0  # records read (some may fall outside the range)
    in_range: int = 0
    bad_input: int = 0
    # (partner, destination, "send" or "skip", reason) → events
    decisions: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    already_delivered: Counter[tuple[str, str]] = field(default_factory=Counter)
    sent: int = 0  # owed, not delivered before, handed to delivery
    outcomes: Counter[str] = field(default_factory=Counter)  # final outcomes of what was sent
    last_s: float | None = None  # the time of the last record handled
    stopped: bool = False  # interrupted before the end of the range


def replay_range(
    settings: Settings,
    from_s: float,
    to_s: float,
    *,
    partner: str | None = None,
    app: str | None = None,
    dry_run: bool = False,
    progress: Callable[[RangeReport], None] = lambda report: None,
    stopping: Callable[[], bool] = lambda: False,
    now_s: float | None = None,
) -> RangeReport:
    """Decide the range's records with today's config at `now_s` (default: now) and send what
    is owed and not already delivered (unless `dry_run`); `stopping()` ends it early."""
    pairs = _pairs(settings, partner)
    now_s = time.time() if now_s is None else now_s
    kafka = settings.runtime.kafka
    topics = source_topics(kafka)
    report = RangeReport()
    delivered = _delivered(settings, from_s)
    sender = None if dry_run else _Sender(settings, report)
    reader = make_log_reader(settings)
    from_ms, to_ms = from_s * 1000, to_s * 1000
    batch: list[WorkItem] = []
    try:
        last_progress = time.monotonic()
        for record in read_topics(reader, list(topics), from_s, to_s, stop=stopping):
            report.read += 1
            if time.monotonic() - last_progress > 1:
                progress(report)
                last_progress = time.monotonic()
            if not from_ms <= record.timestamp <= to_ms:
                continue
            report.in_range += 1
            report.last_s = record.timestamp / 1000
            event_type, decoder = topics[record.topic]
            event = decoder.decode(record.value, event_type)
            if isinstance(event, BadInput):
                report.bad_input += 1
                continue
            for config, adapter in pairs:
                decision = decide(event, config, adapter, now_s)
                if isinstance(decision, Send):
                    destination = decision.destination
                    if app is not None and app not in (event.app_id, destination):
                        continue
                    report.decisions[(config.name, destination, "send", decision.reason)] += 1
                    if (config.name, event.event_id) in delivered:
                        report.already_delivered[(config.name, destination)] += 1
                    elif sender is not None:
                        batch.append(owed_item(record, config.name, adapter, decision, event,
                                               time.monotonic(), True))  # fmt: skip
                    else:
                        report.sent += 1  # would be sent
                    continue
                destination = config.destination_of(event.app_id)
                if app is not None and app not in (event.app_id, destination):
                    continue
                report.decisions[(config.name, destination, "skip", decision.reason)] += 1
            if sender is not None and len(batch) >= SUBMIT_CHUNK:
                sender.submit(batch, stopping)
                batch = []
            if stopping():
                break
        if sender is not None and batch and not stopping():
            sender.submit(batch, stopping)
        report.stopped = stopping()
        if sender is not None:
            if report.stopped:
                sender.give_up()
            sender.finish(progress)
    finally:
        reader.close(autocommit=False)
        if sender is not None:
            sender.close()
    return report


def _pairs(settings: Settings, partner: str | None) -> list[tuple[PartnerConfig, PartnerAdapter]]:
    configs = settings.partners.partners
    if partner is not None:
        configs = tuple(p for p in configs if p.name == partner)
        if not configs:
            names = ", ".join(p.name for p in settings.partners.partners)
            raise PermanentError(f"no partner {partner!r} is configured; configured: {names}")
    return [(config, adapter_for(config.name)) for config in configs]


def _delivered(settings: Settings, from_s: float) -> set[tuple[str, str]]:
    """(partner, event id) of what the postback log shows delivered since the range began."""
    topic = settings.runtime.kafka.postback_log_topic
    if topic is None:
        return set()
    reader = make_log_reader(settings)
    try:
        return delivered_ids(
            reader, topic, from_s - settings.runtime.postback_log.lookback_margin_s
        )
    except LookupError as exc:
        raise PermanentError(f"{exc}; create it with `dispatcher topics create`") from exc
    finally:
        reader.close(autocommit=False)


class _Sender:
    """The worker's delivery, settlement, dead letters and postback log, on records that are
    not the worker's: nothing is committed; a unit of work is done once final."""

    def __init__(self, settings: Settings, report: RangeReport) -> None:
        runtime = settings.runtime
        self._report = report
        self._bound = runtime.worker.max_inflight_events
        self._outstanding = 0
        self._completions: queue.SimpleQueue[Completion] = queue.SimpleQueue()
        metrics = Metrics()
        self._producer = make_producer(settings)
        self._dead_letters = DeadLetterPublisher(
            self._producer, runtime.kafka.dead_letter_topic, metrics
        )
        self._publishers: list[AckedPublisher] = [self._dead_letters]
        postback_log = None
        if runtime.kafka.postback_log_topic is not None:
            records = AckedPublisher(
                self._producer, runtime.kafka.postback_log_topic, "postback log record",
                metrics.logged, metrics.log_failed, partition_by_key=True,
            )  # fmt: skip
            self._publishers.append(records)
            postback_log = (PostbackLog(runtime.postback_log), records)
        self._settlement = Settlement(
            metrics, self._dead_letters, self._final, self._completions.put, postback_log
        )
        self._delivery = DeliveryService(settings.partners, metrics, self._completions.put)
        self._delivery.start()
        self._shutdown_s = runtime.worker.shutdown_timeout_s

    def submit(self, items: list[WorkItem], stopping: Callable[[], bool]) -> None:
        """Hand items over, first waiting while too many are unfinished (or until stopping)."""
        while self._outstanding + len(items) > self._bound and not stopping():
            self._turn(0.05)
        if stopping():
            return
        self._outstanding += len(items)
        self._report.sent += len(items)
        self._delivery.submit(items)

    def finish(self, progress: Callable[[RangeReport], None]) -> None:
        """Until everything handed over is final; stopping, give up what cannot finish within
        `worker.shutdown_timeout_s`."""
        self._delivery.flush()
        last = time.monotonic()
        while self._outstanding:
            self._turn(0.05)
            if time.monotonic() - last > 1:
                progress(self._report)
                last = time.monotonic()
            if self._report.stopped and self._delivery.finished():
                break

    def give_up(self) -> None:
        """Stopping: what has not left yet is not sent; what is out may finish (bounded)."""
        self._delivery.wind_down(self._shutdown_s)

    def close(self) -> None:
        self._delivery.stop(self._shutdown_s)
        for publisher in self._publishers:
            publisher.flush(10.0)
        self._drain(0.0)
        self._producer.close(timeout=5)

    def _turn(self, timeout_s: float) -> None:
        self._drain(timeout_s)
        for publisher in self._publishers:
            publisher.pump()

    def _drain(self, timeout_s: float) -> None:
        try:
            completion = (
                self._completions.get(timeout=timeout_s)
                if timeout_s
                else (self._completions.get_nowait())
            )
        except queue.Empty:
            return
        while True:
            if isinstance(completion, Settled):
                self._report.outcomes[completion.result.outcome.value] += len(completion.items)
            self._settlement.settle(completion)
            try:
                completion = self._completions.get_nowait()
            except queue.Empty:
                return

    def _final(self, units: list[Coordinates]) -> None:
        self._outstanding -= len(units)
