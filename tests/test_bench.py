"""The benchmark's own pieces that a wrong figure would hide behind: the send-time stamp of the
latency phase, the latency phase itself on the real broker, and the tables (median and range of
several runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.records import SENT_AT_PLACEHOLDER, SHAPES, stamp
from bench.run import Topics, ceiling, latency, produce, render, spread
from dispatcher.devtools.broker import LocalBroker
from dispatcher.devtools.sandbox import SandboxProcess
from dispatcher.inputs import DECODERS


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_a_record_encoded_ahead_carries_the_send_time_it_is_stamped_with(shape: str) -> None:
    encoded = json.dumps(SHAPES[shape](7, "lat", sent_at=SENT_AT_PLACEHOLDER)).encode()
    stamped = stamp(encoded, 1764250000.123456)
    event = DECODERS["appsflyer"].decode(stamped, "in-app-event")
    assert not hasattr(event, "detail"), event  # not bad input
    assert event.params["bench_sent_at"] == 1764250000.123456  # type: ignore[union-attr]


def test_the_latency_phase_times_every_event_it_produces(
    broker: LocalBroker, tmp_path: Path
) -> None:
    """The phase's producer (librdkafka) on the real broker, a worker process and the sandbox:
    every event produced is delivered and timed once, at the rate asked."""
    sandbox = SandboxProcess(log_path=str(tmp_path / "sandbox.log")).start()
    try:
        result = latency(tmp_path, broker, sandbox, 200, 2, SHAPES["appsflyer"])
    finally:
        sandbox.stop()
    assert result["events"] == 400
    assert result["produced_rate"] == pytest.approx(200, rel=0.25)
    assert 0 < result["p50_s"] <= result["p99_s"] <= result["max_s"] < 30


def test_both_ceilings_read_every_event_once(broker: LocalBroker) -> None:
    """The consume-only reader, plain and with the worker's Kafka reads and allocator thresholds
    (`--worker-io`), on the real broker: each reads the whole topic and says which it was."""
    topics = Topics.create(broker, "ceiling-test")
    produce(broker.bootstrap, topics.in_app, 2_000, "c", SHAPES["appsflyer"])
    for worker_io in (False, True):
        result = ceiling(broker, topics, 2_000, worker_io=worker_io)
        assert (result["events"], result["worker_io"]) == (2_000, worker_io)
        assert result["rate"] > 0


@pytest.mark.parametrize(
    ("values", "shown"),
    [([0.61], "0.61"), ([0.7, 0.5, 0.6], "0.60 (0.50-0.70)"), ([2.0, 1.0], "1.50 (1.00-2.00)")],
)
def test_several_runs_show_their_median_and_range(values: list[float], shown: str) -> None:
    assert spread(values, ".2f") == shown


def test_the_tables_name_each_kind_of_record_and_its_ratio() -> None:
    def run(rate: float) -> dict[str, object]:
        return {"rate": rate, "cpu_us_per_event": 90.0, "peak_rss_mb": [120.0], "duplicates": 0,
                "commits_per_s": 4.0, "events": 1000}  # fmt: skip

    kind = {
        "records": "appsflyer",
        "decoding": {"record_bytes": 3751, "decode_us": 30.0, "derive_id_us": 3.0},
        "ceilings": [run(10_000), run(12_000), run(11_000)],
        "workers": [run(8_000), run(9_000), run(8_500)],
        "ratios": [0.8, 0.75, 0.77],
        "io_ceilings": [run(13_000), run(12_500), run(14_000)],
        "io_ratios": [0.62, 0.68, 0.65],
        "latency": {"produced_rate": 4_200, "p50_s": 0.2, "p99_s": 0.6, "produced_late": 0},
    }
    text = render({"kinds": [kind, kind | {"records": "small"}]})
    io_row = next(
        line for line in text.splitlines() if "worker's Kafka reads and allocator" in line
    )
    assert io_row.endswith("13,000 (12,500-14,000) events/s")
    assert "0.65 (0.62-0.68)" in text
    assert "records: appsflyer, 3 runs: median (min-max)" in text
    assert "records: small, 3 runs" in text
    assert "0.77 (0.75-0.80)" in text
    assert "8,500 (8,000-9,000) events/s" in text
    assert "event-to-postback at 4,200 events/s: p50" in text


def test_the_latency_rows_show_the_spread_of_several_runs() -> None:
    def run(rate: float, p50: float, p99: float) -> dict[str, object]:
        return {"produced_rate": rate, "p50_s": p50, "p99_s": p99, "produced_late": 1}

    worker = {"rate": 8_000.0, "cpu_us_per_event": 90.0, "peak_rss_mb": [120.0], "duplicates": 0,
              "commits_per_s": 4.0}  # fmt: skip
    kind = {
        "records": "appsflyer",
        "decoding": {"record_bytes": 3751, "decode_us": 30.0, "derive_id_us": 3.0},
        "ceilings": [{"rate": 10_000.0}],
        "workers": [worker],
        "ratios": [0.8],
        "latency": run(3_000, 0.2, 0.5),
        "latencies": [run(3_000, 0.2, 0.5), run(2_990, 0.3, 0.9), run(3_010, 0.25, 0.4)],
    }
    text = render({"kinds": [kind]})
    assert "event-to-postback at 3,000 (2,990-3,010) events/s: p50" in text
    assert "250 (200-300) ms" in text
    assert "500 (400-900) ms" in text
    late = next(line for line in text.splitlines() if "produced more than 100 ms late" in line)
    assert late.split()[-1] == "3"
