"""Prometheus metrics; `health.py` serves them with `/healthz` and `/readyz`.

Metrics observe, they do not decide: a failing metric call is logged, never fatal. Label sets are
bounded (partners, TikTok event names, reasons, topics, partitions) — never event or user ids.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import ParamSpec, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from dispatcher import __version__
from dispatcher.outcomes import AttemptKind, Outcome
from schemas.dead_letter import DEAD_LETTER_REASONS
from schemas.postback_log import LOGGED_OUTCOMES

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400)
REQUEST_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 750, 1000)
THROTTLED = "throttled"  # the `result` of an attempt the partner throttled (retried, paced down)


class BatchHistogram(Collector):
    """A labelled histogram fed a batch at a time: one lock per batch and a bisect per value,
    where prometheus_client takes a lock and walks the buckets for every observation (visible
    at tens of thousands of events per second)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: tuple[str, ...],
        buckets: Iterable[float],
        registry: CollectorRegistry,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = labelnames
        self._bounds = tuple(sorted(buckets))
        self._bucket_labels = [*map(floatToGoString, self._bounds), "+Inf"]
        self._series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}
        self._lock = threading.Lock()
        registry.register(self)

    def observe_since(self, labels: tuple[str, ...], starts: Iterable[float], now: float) -> None:
        """Observe `now - start` for every start."""
        bounds = self._bounds
        counts = [0] * (len(bounds) + 1)  # the last bucket is +Inf
        total = 0.0
        for start in starts:
            value = now - start
            counts[bisect.bisect_left(bounds, value)] += 1
            total += value
        with self._lock:
            series = self._series.get(labels)
            if series is None:
                series = self._series[labels] = ([0] * len(counts), [0.0])
            kept = series[0]
            for index, count in enumerate(counts):
                kept[index] += count
            series[1][0] += total

    def describe(self) -> list[Metric]:
        return [HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)]

    def collect(self) -> list[Metric]:
        family = HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)
        with self._lock:
            snapshot = [
                (labels, list(counts), sums[0]) for labels, (counts, sums) in self._series.items()
            ]
        for labels, counts, total in snapshot:
            cumulative, buckets = 0, []
            for bound, count in zip(self._bucket_labels, counts, strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            family.add_metric(list(labels), buckets, total)
        return [family]


def _never_fatal(method: Callable[P, None]) -> Callable[P, None]:
    """Log a failing metric update instead of raising it into the pipeline."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            method(*args, **kwargs)
        except Exception:
            log.warning("metric update %s failed", method.__name__, exc_info=True)

    return wrapper


class Metrics:
    """Every metric of the dispatcher, in its own registry (no global state)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.events_consumed = Counter(
            "dispatcher_events_consumed", "Messages read from the source topics.", ["topic"],
            registry=r,
        )  # fmt: skip
        self.decisions = Counter(
            "dispatcher_decisions",
            "Decisions per event and partner: send, or skip with the rule's reason.",
            ["partner", "event_type", "decision", "reason"],
            registry=r,
        )
        self.postbacks = Counter(
            "dispatcher_postbacks",
            "Postbacks that reached a final outcome: delivered, rejected or gave_up.",
            ["partner", "event", "outcome"],
            registry=r,
        )
        self.delivery_attempts = Counter(
            "dispatcher_delivery_attempts",
            "HTTP attempts by result: ok, retryable, throttled (the partner said too many "
            "requests), fatal, or setup (the partner app is held until an operator acts).",
            ["partner", "result"],
            registry=r,
        )
        self.dead_letters = Counter(
            "dispatcher_dead_letters",
            "Records acknowledged by the dead-letter topic, by reason.",
            ["reason"],
            registry=r,
        )
        self.request_duration = Histogram(
            "dispatcher_request_duration_seconds", "Duration of HTTP requests to partners.",
            ["partner"], buckets=REQUEST_BUCKETS_S, registry=r,
        )  # fmt: skip
        self.event_to_postback = BatchHistogram(
            "dispatcher_event_to_postback_seconds",
            "From the event's own event_time to its delivery.",
            ("partner",), LATENCY_BUCKETS_S, r,
        )  # fmt: skip
        self.batch_size = Histogram(
            "dispatcher_batch_size", "Events per request.", ["partner"],
            buckets=BATCH_BUCKETS, registry=r,
        )  # fmt: skip
        self.inflight_events = Gauge(
            "dispatcher_inflight_events", "Events read and not yet final.", registry=r
        )
        self.consumer_lag = Gauge(
            "dispatcher_consumer_lag",
            "High watermark minus the offset up to which every event is final.",
            ["topic", "partition"],
            registry=r,
        )
        self.paused_partitions = Gauge(
            "dispatcher_paused_partitions",
            "Partitions paused for back-pressure or shutdown.",
            registry=r,
        )
        self.config_reloads = Counter(
            "dispatcher_config_reloads", "Partner config reloads (SIGHUP).", ["result"], registry=r
        )
        self.config_info = Gauge(
            "dispatcher_config_info",
            "One series per configured partner app; the value is always 1.",
            ["partner", "app_id", "active"],
            registry=r,
        )
        self.resent_events = Counter(
            "dispatcher_resent_events",
            "Events sent again after an attempt whose fate is unknown (timeout, transport "
            "error, 5xx): possible duplicates at the partner.",
            ["partner"],
            registry=r,
        )
        self.revenue_unsent = Counter(
            "dispatcher_revenue_unsent",
            "Postbacks sent without the revenue their mapping keeps, because the partner reads "
            "no amount in the event's currency (Ocean Engine: CNY only).",
            ["partner"],
            registry=r,
        )
        self.rereads_skipped = Counter(
            "dispatcher_rereads_skipped",
            "Events read again after a rebalance that this worker had already handled; not sent "
            "again.",
            registry=r,
        )
        self.request_rate_limit = Gauge(
            "dispatcher_request_rate_limit",
            "Current request ceiling per second (lowered while the partner throttles).",
            ["partner"],
            registry=r,
        )
        self.offset_commits = Counter(
            "dispatcher_offset_commits", "Offset commits by result.", ["result"], registry=r
        )
        self.dead_letter_publish_errors = Counter(
            "dispatcher_dead_letter_publish_errors",
            "Failed attempts to write a dead letter (retried until acknowledged).",
            registry=r,
        )
        self.postback_log_records = Counter(
            "dispatcher_postback_log_records",
            "Postback log records the log topic acknowledged, by outcome (skipped only with "
            "postback_log.skips).",
            ["outcome"],
            registry=r,
        )
        self.postback_log_publish_errors = Counter(
            "dispatcher_postback_log_publish_errors",
            "Failed attempts to write a postback log record (retried until acknowledged).",
            registry=r,
        )
        self.rebalance_unfinished_events = Counter(
            "dispatcher_rebalance_unfinished_events",
            "Postbacks still out when their partition was revoked and worker.rebalance_drain_s "
            "ran out: the next owner may send them again.",
            registry=r,
        )
        self.batch_shrinks = Counter(
            "dispatcher_batch_shrinks",
            "Batches that timed out and were sent again as halves; the partner app's next "
            "batches stay that small, then grow back a quarter per request answered in time.",
            ["partner"],
            registry=r,
        )
        self.duplicates_avoided = Counter(
            "dispatcher_duplicates_avoided",
            "Postbacks not sent again after a partition was assigned (start-up, restart, "
            "rebalance): the postback log shows them final for that partner app.",
            ["partner"],
            registry=r,
        )
        self.source_topic_deleted = Gauge(
            "dispatcher_source_topic_deleted",
            "1 once a source topic was deleted while the worker runs (gone, or back under a new "
            "topic id); it stays 1 until the worker restarts.",
            ["topic"],
            registry=r,
        )
        self.partner_held = Gauge(
            "dispatcher_partner_held",
            "1 while a setup answer (a bad token, no permission, not allowlisted) holds a partner "
            "app: its postbacks wait, probed every delivery.setup_retry_s; 0 once it resumes.",
            ["partner", "destination"],
            registry=r,
        )
        self.build_info = Gauge(
            "dispatcher_build_info", "Version of the running dispatcher.", ["version"], registry=r
        )
        self.build_info.labels(__version__).set(1)
        for reason in DEAD_LETTER_REASONS:
            self.dead_letters.labels(reason)
        self._logged: dict[str, Counter] = {
            outcome: self.postback_log_records.labels(outcome) for outcome in LOGGED_OUTCOMES
        }
        for result in ("success", "error"):
            self.config_reloads.labels(result)
            self.offset_commits.labels(result)

    def start_partner(self, partner: str, install_event: str) -> None:
        """Create a partner's series at zero so rates and ratios exist before the first event."""
        for outcome in Outcome:
            self.postbacks.labels(partner, install_event, outcome.value)
        for kind in AttemptKind:
            self.delivery_attempts.labels(partner, kind.value)
        self.delivery_attempts.labels(partner, THROTTLED)
        self.resent_events.labels(partner)
        self.revenue_unsent.labels(partner)
        self.duplicates_avoided.labels(partner)
        self.batch_shrinks.labels(partner)

    @_never_fatal
    def consumed(self, topic: str, count: int) -> None:
        """Messages read from `topic`."""
        self.events_consumed.labels(topic).inc(count)

    @_never_fatal
    def decided(
        self,
        counts: Mapping[tuple[str, str, str, str], int],
        revenue_unsent: Mapping[str, int] | None = None,
    ) -> None:
        """Decisions of one poll, counted by (partner, event_type, decision, reason); and the
        postbacks owed whose revenue the partner cannot take, by partner."""
        for labels, count in counts.items():
            self.decisions.labels(*labels).inc(count)
        for partner, count in (revenue_unsent or {}).items():
            self.revenue_unsent.labels(partner).inc(count)

    @_never_fatal
    def finished(
        self,
        partner: str,
        outcome: Outcome,
        events: Mapping[str, int],
        event_times_s: Iterable[float],
        now_s: float,
    ) -> None:
        """A batch reached its outcome; `events` counts it by partner event name; delivered
        events add their event-time-to-delivery to the latency histogram."""
        for event, count in events.items():
            self.postbacks.labels(partner, event, outcome.value).inc(count)
        if outcome is Outcome.DELIVERED:
            self.event_to_postback.observe_since((partner,), event_times_s, now_s)

    @_never_fatal
    def attempted(
        self, partner: str, kind: AttemptKind, duration_s: float | None, throttled: bool = False
    ) -> None:
        """One HTTP attempt and how long it took (None: it never left); a retryable answer that
        said "too many requests" is counted as `throttled`."""
        result = THROTTLED if throttled and kind is AttemptKind.RETRYABLE else kind.value
        self.delivery_attempts.labels(partner, result).inc()
        if duration_s is not None:
            self.request_duration.labels(partner).observe(duration_s)

    @_never_fatal
    def batch_sent(self, partner: str, size: int) -> None:
        """A batch was formed and is about to be sent."""
        self.batch_size.labels(partner).observe(size)

    @_never_fatal
    def resent(self, partner: str, count: int) -> None:
        """Events about to be sent again after an attempt of unknown fate."""
        self.resent_events.labels(partner).inc(count)

    @_never_fatal
    def dead_lettered(self, reason: str, count: int = 1) -> None:
        """The dead-letter topic acknowledged a record."""
        self.dead_letters.labels(reason).inc(count)

    @_never_fatal
    def logged(self, outcome: str, count: int = 1) -> None:
        """The postback log topic acknowledged a record of `count` postbacks."""
        self._logged[outcome].inc(count)

    @_never_fatal
    def log_failed(self) -> None:
        """Writing a postback log record failed; it will be tried again."""
        self.postback_log_publish_errors.inc()

    @_never_fatal
    def rebalance_unfinished(self, count: int) -> None:
        """Postbacks still out when a revocation had to let go."""
        self.rebalance_unfinished_events.inc(count)

    @_never_fatal
    def shrunk(self, partner: str) -> None:
        """A batch timed out and goes again as halves."""
        self.batch_shrinks.labels(partner).inc()

    @_never_fatal
    def avoided_duplicates(self, partner: str, count: int) -> None:
        """Postbacks a newly assigned partition did not send: the log shows them final."""
        self.duplicates_avoided.labels(partner).inc(count)

    @_never_fatal
    def dead_letter_failed(self) -> None:
        """Writing a dead letter failed; it will be tried again."""
        self.dead_letter_publish_errors.inc()

    @_never_fatal
    def rate_limit(self, partner: str, rate: float) -> None:
        """The current request ceiling of a partner."""
        self.request_rate_limit.labels(partner).set(rate)

    @_never_fatal
    def held(self, partner: str, destination: str, held: bool) -> None:
        """A partner app (destination) is held on a setup answer, or no longer."""
        self.partner_held.labels(partner, destination).set(1 if held else 0)

    @_never_fatal
    def set_inflight(self, count: int) -> None:
        """Events read and not yet final."""
        self.inflight_events.set(count)

    @_never_fatal
    def set_paused(self, count: int) -> None:
        """Partitions currently paused."""
        self.paused_partitions.set(count)

    @_never_fatal
    def set_lag(self, lags: Mapping[tuple[str, int], int], gone: Iterable[tuple[str, int]]) -> None:
        """Per-partition lag; partitions no longer ours lose their series."""
        for (topic, partition), lag in lags.items():
            self.consumer_lag.labels(topic, str(partition)).set(lag)
        for topic, partition in gone:
            with contextlib.suppress(KeyError):
                self.consumer_lag.remove(topic, str(partition))

    @_never_fatal
    def reloaded(self, ok: bool) -> None:
        """A partner config reload succeeded or failed."""
        self.config_reloads.labels("success" if ok else "error").inc()

    @_never_fatal
    def committed(self, ok: bool) -> None:
        """An offset commit succeeded or failed."""
        self.offset_commits.labels("success" if ok else "error").inc()

    @_never_fatal
    def watch_topics(self, topics: Iterable[str]) -> None:
        """The source topics, none deleted yet (so the alert's series exist from the start)."""
        for topic in topics:
            self.source_topic_deleted.labels(topic).set(0)

    @_never_fatal
    def topic_deleted(self, topic: str) -> None:
        """A source topic was deleted while the worker runs."""
        self.source_topic_deleted.labels(topic).set(1)

    @_never_fatal
    def reread_skipped(self, count: int) -> None:
        """Events read again after a rebalance and not sent again."""
        self.rereads_skipped.inc(count)

    @_never_fatal
    def describe_config(self, apps: Iterable[tuple[str, str, bool]]) -> None:
        """`dispatcher_config_info`: one series per (partner, app, active), replaced on reload."""
        self.config_info.clear()
        for partner, app_id, active in apps:
            self.config_info.labels(partner, app_id, "true" if active else "false").set(1)
