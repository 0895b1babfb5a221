"""Metrics endpoints and the rule that metrics never break the pipeline."""

from __future__ import annotations

import httpx

from dispatcher.health import Health, MetricsServer
from dispatcher.metrics import Metrics
from dispatcher.outcomes import AttemptKind, Outcome


def test_endpoints() -> None:
    metrics, health = Metrics(), Health()
    server = MetricsServer(metrics, health, "127.0.0.1", 0)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        metrics.consumed("installs", 3)
        body = httpx.get(f"{base}/metrics").text
        assert 'dispatcher_events_consumed_total{topic="installs"} 3.0' in body
        assert 'dispatcher_dead_letters_total{reason="bad_input"} 0.0' in body
        assert httpx.get(f"{base}/healthz").status_code == 200
        assert httpx.get(f"{base}/readyz").status_code == 503
        health.set_ready(True, "consuming 6 partitions")
        ready = httpx.get(f"{base}/readyz")
        assert (ready.status_code, ready.text) == (200, "ready: consuming 6 partitions\n")
        assert httpx.get(f"{base}/nope").status_code == 404
    finally:
        server.stop()


def test_health_goes_stale_when_the_loop_stops_turning() -> None:
    now = [0.0]
    health = Health(stale_after_s=30, clock=lambda: now[0])
    health.beat()
    now[0] = 29
    assert health.is_alive()
    now[0] = 31
    assert not health.is_alive()


def test_a_failing_metric_update_is_logged_not_raised(caplog) -> None:  # type: ignore[no-untyped-def]
    metrics = Metrics()
    metrics.decided({("tiktok", "install"): 1})  # type: ignore[dict-item]  # wrong label count
    assert "metric update decided failed" in caplog.text


def test_label_sets_are_bounded_by_design() -> None:
    metrics = Metrics()
    metrics.start_partner("tiktok", "InstallApp")
    metrics.finished("tiktok", Outcome.DELIVERED, {"Purchase": 2}, [99.9, 99.8], 100.0)
    names = {sample.name for family in metrics.registry.collect() for sample in family.samples}
    label_names = {
        label
        for family in metrics.registry.collect()
        for sample in family.samples
        for label in sample.labels
    }
    assert "dispatcher_event_to_postback_seconds_count" in names
    assert label_names <= {"topic", "partner", "event_type", "decision", "reason", "event", "outcome",
                           "result", "partition", "app_id", "active", "version", "le",
                           "destination"}  # fmt: skip


def test_attempts_count_throttled_and_setup_answers_apart() -> None:
    metrics = Metrics()
    metrics.start_partner("tiktok", "InstallApp")
    metrics.attempted("tiktok", AttemptKind.RETRYABLE, 0.1, throttled=True)
    metrics.attempted("tiktok", AttemptKind.RETRYABLE, 0.1)
    metrics.attempted("tiktok", AttemptKind.SETUP, 0.1)

    def attempts(result: str) -> float | None:
        return metrics.registry.get_sample_value(
            "dispatcher_delivery_attempts_total", {"partner": "tiktok", "result": result}
        )

    assert [attempts(r) for r in ("throttled", "retryable", "setup", "ok", "fatal")] == [
        1, 1, 1, 0, 0,
    ]  # fmt: skip


def test_a_held_app_shows_one_while_held_and_zero_after() -> None:
    metrics = Metrics()
    labels = {"partner": "tiktok", "destination": "7300000000000000001"}
    metrics.held("tiktok", "7300000000000000001", True)
    assert metrics.registry.get_sample_value("dispatcher_partner_held", labels) == 1
    metrics.held("tiktok", "7300000000000000001", False)
    assert metrics.registry.get_sample_value("dispatcher_partner_held", labels) == 0


def test_the_batch_histogram_agrees_with_prometheus_client() -> None:
    # Given the same latencies observed one by one in a prometheus_client Histogram
    from prometheus_client import CollectorRegistry, Histogram

    from dispatcher.metrics import LATENCY_BUCKETS_S

    latencies = [0.0, 0.05, 0.07, 0.1, 0.3, 1.0, 2.4, 59.0, 86400.0, 100000.0]
    reference_registry = CollectorRegistry()
    reference = Histogram(
        "dispatcher_event_to_postback_seconds", "ref", ["partner"],
        buckets=LATENCY_BUCKETS_S, registry=reference_registry,
    )  # fmt: skip
    for latency in latencies:
        reference.labels("tiktok").observe(latency)
    # When the dispatcher's histogram gets them as one batch
    metrics = Metrics()
    # (now = 0 keeps `now - (now - x)` exact, so bucket edges compare exactly)
    metrics.finished("tiktok", Outcome.DELIVERED, {"Purchase": 10}, [-x for x in latencies], 0.0)

    def samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
        return {
            (s.name, s.labels.get("le", "")): s.value
            for family in registry.collect()
            if family.name == "dispatcher_event_to_postback_seconds"
            for s in family.samples
            if not s.name.endswith("_created")
        }

    # Then every bucket, the count and the sum agree
    ours, theirs = samples(metrics.registry), samples(reference_registry)
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        assert abs(ours[key] - value) < 1e-6, key
