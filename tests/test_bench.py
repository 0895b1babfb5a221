"""The benchmark's own pieces that a wrong figure would hide behind: the send-time stamp of the
latency phase, the latency phase itself on the real broker, the ceilings, the record shapes, the
parsing sink, and the tables (median and range of several runs)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from bench.records import SENT_AT_PLACEHOLDER, SHAPES, stamp
from bench.run import Topics, ceiling, latency, produce, render, spread
from bench.sink import SinkProcess
from dispatcher.devtools.broker import LocalBroker
from dispatcher.devtools.samples import APPSFLYER_FIELDS
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


def test_every_ceiling_reads_every_event_once(broker: LocalBroker) -> None:
    """The consume-only reader, plain, with the worker's Kafka reads and allocator thresholds
    (`--worker-io`) and with kafka-python's default settings (`--defaults`), on the real broker
    and a topic of 4 partitions: each reads the whole topic and says which it was."""
    topics = Topics.create(broker, "ceiling-test", partitions=4)
    produce(broker.bootstrap, topics.in_app, 2_000, "c", SHAPES["full"])
    for worker_io, defaults in ((False, False), (True, False), (False, True)):
        result = ceiling(broker, topics, 2_000, worker_io=worker_io, defaults=defaults)
        assert (result["events"], result["worker_io"], result["defaults"]) == (
            2_000,
            worker_io,
            defaults,
        )
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
    full = kind | {
        "records": "full", "partitions": 4, "sink": "json",
        "workers": [run(8_000) | {"sink_cpu_us_per_event": us} for us in (20.0, 25.0, 22.0)],
        "default_ceilings": [run(17_000), run(19_000), run(18_000)],
        "default_ratios": [0.47, 0.44, 0.5],
    }  # fmt: skip
    full_text = render({"kinds": [full]})
    assert "records: full on 4 partitions, 3 runs" in full_text
    default_row = next(line for line in full_text.splitlines() if "default consumer" in line)
    assert default_row.endswith("18,000 (17,000-19,000) events/s")
    assert "0.47 (0.44-0.50)" in full_text
    sink_row = next(line for line in full_text.splitlines() if "partner sink (json)" in line)
    assert sink_row.endswith("22 (20-25) µs")
    assert "default consumer" not in text  # results written before it
    assert "partner sink" not in text
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
    assert "worker, default settings: delivered" in text
    processes_text = render({"kinds": [kind | {"partitions": 8, "processes": 2}]})
    assert "records: appsflyer on 8 partitions, worker.processes: 2, 3 runs" in processes_text
    assert "worker, 2 processes, otherwise default settings: delivered" in processes_text


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


def test_a_full_record_fills_in_appsflyer_fields_and_leaves_blank_ones_out() -> None:
    """`full`: only AppsFlyer's field names, none of them null, about 2.7 KB (AppsFlyer-shaped
    records elsewhere carry the whole list, most of it null, in about 3.8 KB)."""
    record = SHAPES["full"](7, "tp")
    assert set(record) <= set(APPSFLYER_FIELDS)
    assert None not in record.values()
    assert 2_500 < len(json.dumps(record)) < 2_900
    assert len(json.dumps(SHAPES["appsflyer"](7, "tp"))) > 3_500


def test_the_json_sink_parses_and_counts_like_the_sandbox(tmp_path: Path) -> None:
    """The benchmark's parsing sink (`--sink json`): it accepts and counts what the sandbox
    does, answers a body that is not JSON as the sandbox does, and reports its CPU seconds."""
    sink = SinkProcess(log_path=str(tmp_path / "sink.log"), sink="json").start()
    try:
        body = {"event_source": "app", "event_source_id": "7300000000000000001",
                "data": [{"event": "Purchase", "event_time": 1, "event_id": i,
                          "app": {"app_id": "id1"}} for i in ("e1", "e2")]}  # fmt: skip
        answer = httpx.post(sink.url, json=body, timeout=10).json()
        bad = httpx.post(sink.url, content=b"{not json", timeout=10).json()
        assert (answer["code"], bad["code"]) == (0, 40002)
        assert sink.stats()["unique_event_ids"] == 2
        assert sink.cpu_s() > 0
    finally:
        sink.stop()
