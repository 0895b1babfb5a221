"""`dispatcher postbacks`: finding postbacks in the postback log. The filters and formats of
`dispatcher/postbacks.py` without Kafka, then the command on the real broker."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kafka import KafkaProducer

from dispatcher.devtools.broker import LocalBroker
from dispatcher.postbacks import (
    CSV_COLUMNS,
    Found,
    Query,
    Tally,
    cut,
    search,
    write_csv,
    write_json,
    write_table,
)
from schemas.postback_log import PostbackRecord
from tests.factories import partner_dict

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC).timestamp()


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def record_dict(**overrides: Any) -> dict[str, Any]:
    """A postback log record as the worker writes it: a delivered TikTok purchase."""
    final_s = overrides.pop("final_s", NOW - 600)
    data: dict[str, Any] = {
        "event_id": "ev-1",
        "partner": "tiktok",
        "destination": "7312345678901234567",
        "app_id": "id1234567890",
        "appsflyer_id": "1700000000000-1234567",
        "event": "Purchase",
        "sdk_event": "af_purchase",
        "event_time": iso(final_s - 5),
        "outcome": "delivered",
        "reason": None,
        "attempts": 1,
        "http_status": 200,
        "partner_code": 0,
        "partner_message": "OK",
        "partner_request_id": "2026120110000000A1B2C3",
        "first_attempt_at": iso(final_s - 0.2),
        "final_at": iso(final_s),
        "source": {"topic": "in-app-events", "partition": 2, "offset": 4711},
        "replay": False,
        "payload": {"event": "Purchase", "event_id": "ev-1", "properties": {"value": 9.99}},
    }
    return data | overrides


def stored(**overrides: Any) -> bytes:
    return json.dumps(record_dict(**overrides), separators=(",", ":")).encode()


def found(**overrides: Any) -> Found:
    value = stored(**overrides)
    return Found(PostbackRecord.model_validate_json(value), value)


def rejected() -> dict[str, Any]:
    return record_dict(event_id="ev-2", outcome="rejected", attempts=1, http_status=200,
                       partner_code=40002, partner_message="Invalid value for event_time.",
                       partner_request_id="req-2")  # fmt: skip


def matching(query: Query, *values: bytes, limit: int | None = None) -> list[str]:
    return [f.record.event_id for f in search([(None, v) for v in values], query, limit)]


# --- filters --------------------------------------------------------------------------------


def test_each_filter_matches_its_field_and_no_other_record() -> None:
    values = [
        stored(),
        stored(event_id="ev-2", appsflyer_id="other-install", outcome="rejected"),
        stored(
            event_id="ev-3",
            partner="oceanengine",
            destination="1800000000000001",
            app_id="com.example.game",
            event="active_pay",
        ),
    ]
    assert matching(Query(), *values) == ["ev-1", "ev-2", "ev-3"]
    assert matching(Query(event_id="ev-2"), *values) == ["ev-2"]
    assert matching(Query(appsflyer_id="other-install"), *values) == ["ev-2"]
    assert matching(Query(partner="oceanengine"), *values) == ["ev-3"]
    assert matching(Query(outcome="rejected"), *values) == ["ev-2"]
    assert matching(Query(outcome="gave_up"), *values) == []
    assert matching(Query(event_id="ev-2", outcome="delivered"), *values) == []  # every filter


def test_app_matches_the_appsflyer_app_id_or_the_partner_app() -> None:
    values = [
        stored(),
        stored(
            event_id="ev-3",
            partner="oceanengine",
            destination="1800000000000001",
            app_id="com.example.game",
        ),
    ]
    assert matching(Query(app="id1234567890"), *values) == ["ev-1"]
    assert matching(Query(app="7312345678901234567"), *values) == ["ev-1"]
    assert matching(Query(app="1800000000000001"), *values) == ["ev-3"]
    assert matching(Query(app="com.example.game"), *values) == ["ev-3"]
    assert matching(Query(app="id999"), *values) == []


def test_a_skip_without_a_destination_matches_by_app_id() -> None:
    skip = stored(event_id="ev-s", outcome="skipped", reason="not_attributed_to_partner",
                  destination=None, event=None, attempts=0, http_status=None, partner_code=None,
                  partner_message=None, partner_request_id=None, first_attempt_at=None,
                  payload=None)  # fmt: skip
    assert matching(Query(app="id1234567890", outcome="skipped"), skip) == ["ev-s"]
    assert matching(Query(app="7312345678901234567"), skip) == []


def test_since_reads_the_log_timestamp_and_until_the_final_at() -> None:
    old, new = stored(event_id="old", final_s=NOW - 3 * 86400), stored(event_id="new")
    records = [(int((NOW - 3 * 86400) * 1000), old), (int((NOW - 600) * 1000), new)]

    def ids(query: Query) -> list[str]:
        return [f.record.event_id for f in search(records, query)]

    assert ids(Query(since_s=NOW - 86400)) == ["new"]
    assert ids(Query(since_s=NOW - 4 * 86400)) == ["old", "new"]
    assert ids(Query(until_s=NOW - 86400)) == ["old"]
    assert ids(Query(since_s=NOW - 4 * 86400, until_s=NOW - 601)) == ["old"]
    assert ids(Query(since_s=NOW - 4 * 86400, until_s=NOW - 600)) == ["old", "new"]  # inclusive
    # a record without a timestamp (-1: an old message format) is judged by its final_at
    assert [f.record.event_id for f in search([(-1, old)], Query(since_s=NOW - 86400))] == []
    assert [f.record.event_id for f in search([(-1, new)], Query(since_s=NOW - 86400))] == ["new"]


def test_records_that_are_not_of_the_model_are_skipped_and_counted() -> None:
    values: list[tuple[int | None, bytes | None]] = [
        (None, b"not json"),
        (None, b"[1, 2]"),
        (None, json.dumps(record_dict(outcome="lost")).encode()),  # not a logged outcome
        (None, json.dumps({"event_id": "ev-x"}).encode()),  # fields missing
        (None, None),  # a tombstone: not counted
        (None, stored()),
    ]
    tally = Tally()
    assert [f.record.event_id for f in search(values, Query(), tally=tally)] == ["ev-1"]
    assert (tally.read, tally.invalid, tally.matched, tally.limited) == (6, 4, 1, False)


def test_limit_stops_after_n_matches_and_reads_no_further() -> None:
    read: list[int] = []

    def records() -> Any:
        for n in range(10):
            read.append(n)
            yield None, stored(event_id=f"ev-{n}", outcome="delivered" if n % 2 else "rejected")

    tally = Tally()
    hits = list(search(records(), Query(outcome="delivered"), limit=2, tally=tally))
    assert [f.record.event_id for f in hits] == ["ev-1", "ev-3"]
    assert read == [0, 1, 2, 3]
    assert tally.limited


def test_the_no_match_line_names_the_filters() -> None:
    assert Query(event_id="ev-1", app="id1", outcome="delivered").describe() == (
        "event_id=ev-1, app=id1, outcome=delivered"
    )
    assert Query(since_s=NOW).describe() == ""


# --- formats --------------------------------------------------------------------------------


def test_table_has_a_header_and_one_line_per_record_with_what_the_partner_said() -> None:
    out = io.StringIO()
    rows = [found(), Found(PostbackRecord.model_validate(rejected()), b"{}")]
    assert write_table(rows, out, width=200) == 2
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["final_at", "outcome", "partner", "destination", "event",
                                "event_id", "tries", "status", "request_id", "message"]  # fmt: skip
    assert lines[1].split() == ["2026-12-01T09:50:00Z", "delivered", "tiktok",
                                "7312345678901234567", "af_purchase", "->", "Purchase", "ev-1",
                                "1", "200/0", "2026120110000000A1B2C3", "OK"]  # fmt: skip
    assert re.split(r"\s{2,}", lines[2])[-3:] == ["200/40002", "req-2",
                                                 "Invalid value for event_time."]  # fmt: skip
    # the columns line up
    assert len({line.index("tiktok") for line in lines[1:]}) == 1
    assert lines[0].index("partner") == lines[1].index("tiktok")


def test_table_cuts_the_message_to_fit_and_keeps_it_on_one_line() -> None:
    long = "line one\nline two " + "x" * 300
    out = io.StringIO()
    write_table([found(partner_message=long)], out, width=180)
    row = out.getvalue().splitlines()[1]
    assert len(row) == 180
    assert row.endswith("...")
    assert "line one line two xxx" in row
    assert cut("中文消息" * 10, 11) == "中文消息..."  # wide characters take two columns
    narrow = io.StringIO()
    write_table([found(partner_message=long)], narrow, width=40)  # the message keeps 40 columns
    assert narrow.getvalue().splitlines()[1].endswith("  line one line two " + "x" * 19 + "...")


def test_table_shows_a_skip_with_its_reason_and_a_replay() -> None:
    skip = found(outcome="skipped", reason="not_attributed_to_partner", event=None,
                 http_status=None, partner_code=None, partner_message=None,
                 partner_request_id=None, attempts=0)  # fmt: skip
    replayed = found(event_id="ev-r", replay=True, attempts=2)
    out = io.StringIO()
    write_table([skip, replayed], out, width=200)
    _, skip_line, replay_line = out.getvalue().splitlines()
    assert "af_purchase -> -" in skip_line
    assert skip_line.split()[-4:] == ["0", "-", "-", "not_attributed_to_partner"]
    assert replay_line.endswith("(replay) OK")


def test_json_writes_each_record_as_stored_one_per_line() -> None:
    extra = json.dumps(record_dict() | {"field_of_a_later_version": 1}).encode()
    pretty = json.dumps(record_dict(event_id="ev-2"), indent=2).encode()
    out = io.StringIO()
    rows = [Found(PostbackRecord.model_validate_json(v), v) for v in (extra, pretty)]
    assert write_json(rows, out) == 2
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0] == extra.decode()  # as stored, with what the model does not read
    assert json.loads(lines[1]) == record_dict(event_id="ev-2")


def test_csv_has_a_header_flat_fields_and_quotes_what_needs_it() -> None:
    message = 'Invalid "event_time", expected\nseconds, got ms'
    out = io.StringIO()
    rows = [found(), found(event_id="ev-2", outcome="rejected", partner_message=message,
                           appsflyer_id=None, payload=None)]  # fmt: skip
    assert write_csv(rows, out) == 2
    text = out.getvalue()
    assert text.splitlines()[0] == ",".join(CSV_COLUMNS)
    assert '"Invalid ""event_time"", expected\nseconds, got ms"' in text
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert len(parsed) == 2
    first, second = parsed
    assert first["source_topic"] == "in-app-events"
    assert (first["source_partition"], first["source_offset"]) == ("2", "4711")
    assert json.loads(first["payload"]) == record_dict()["payload"]
    assert (first["http_status"], first["partner_code"], first["replay"]) == ("200", "0", "false")
    assert second["partner_message"] == message
    assert (second["appsflyer_id"], second["payload"], second["reason"]) == ("", "", "")


def test_no_record_writes_nothing_in_any_format() -> None:
    for write in (write_table, write_json, write_csv):
        out = io.StringIO()
        assert write([], out) == 0
        assert out.getvalue() == ""


# --- the command ----------------------------------------------------------------------------


def dispatcher(*args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("DISPATCHER_", "TIKTOK_"))}
    return subprocess.run(
        [sys.executable, "-m", "dispatcher", *args],
        capture_output=True, text=True, env=environ, timeout=60, check=False,
    )  # fmt: skip


def write_config(directory: Path, bootstrap: str, log_topic: str | None) -> Path:
    (directory / "partners").mkdir()
    (directory / "partners" / "tiktok.yaml").write_text(yaml.safe_dump(partner_dict()))
    config = directory / "dispatcher.yaml"
    config.write_text(yaml.safe_dump({"kafka": {"bootstrap_servers": bootstrap,
                                                "postback_log_topic": log_topic}}))  # fmt: skip
    return config


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    config = write_config(tmp_path, "127.0.0.1:1", None)
    bad_since = dispatcher("postbacks", "--config", str(config), "--since", "yesterday")
    assert bad_since.returncode == 2
    assert bad_since.stderr.startswith("--since: 'yesterday' is not a moment")
    backwards = dispatcher("postbacks", "--config", str(config), "--since", "1h", "--until", "2h")
    assert backwards.returncode == 2
    assert "is before --since" in backwards.stderr
    assert dispatcher("postbacks", "--config", str(config), "--outcome", "lost").returncode == 2
    assert dispatcher("postbacks", "--config", str(config), "--limit", "0").returncode == 2
    off = dispatcher("postbacks", "--config", str(config))  # the log is off: nothing to read
    assert off.returncode == 2
    assert "kafka.postback_log_topic is null" in off.stderr
    helped = dispatcher("postbacks", "--help")
    assert helped.returncode == 0
    assert "default: 24h" in " ".join(helped.stdout.split())


@pytest.mark.broker
def test_postbacks_finds_records_in_the_log_on_the_broker(
    broker: LocalBroker, tmp_path: Path
) -> None:
    topic = f"postbacks-log-{uuid.uuid4().hex[:8]}"
    broker.create_topics({topic: 3})
    now_s = time.time()
    old_s = now_s - 3 * 86400
    records = [
        (now_s - 600, record_dict(event_id="ev-purchase", final_s=now_s - 600)),
        (now_s - 300, rejected() | {"final_at": iso(now_s - 300)}),
        (now_s - 120, record_dict(event_id="ev-oe", partner="oceanengine", app_id="com.ex.game",
                                  destination="1800000000000001", final_s=now_s - 120)),
        (old_s, record_dict(event_id="ev-old", final_s=old_s)),
    ]  # fmt: skip
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    for at, record in records:
        key = f"{record['partner']}/{record['destination']}".encode()
        producer.send(topic, key=key, value=json.dumps(record).encode(),
                      timestamp_ms=int(at * 1000))  # fmt: skip
    producer.send(topic, key=b"junk", value=b"not a record", timestamp_ms=int(now_s * 1000))
    producer.flush()
    producer.close()
    config = str(write_config(tmp_path, broker.bootstrap, topic))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return dispatcher("postbacks", "--config", config, *args)

    by_id = run("--event-id", "ev-purchase")
    assert by_id.returncode == 0, by_id.stderr
    header, row = by_id.stdout.splitlines()
    assert header.startswith("final_at")
    assert row.split()[1:8] == ["delivered", "tiktok", "7312345678901234567", "af_purchase",
                                "->", "Purchase", "ev-purchase"]  # fmt: skip
    assert "skipped 1 records that are not postback log records" in by_id.stderr

    by_app = run("--app", "1800000000000001", "--format", "json")
    assert by_app.returncode == 0, by_app.stderr
    assert [json.loads(line)["event_id"] for line in by_app.stdout.splitlines()] == ["ev-oe"]
    by_app_id = run("--app", "id1234567890", "--format", "csv")
    assert by_app_id.returncode == 0, by_app_id.stderr
    ids = {row["event_id"] for row in csv.DictReader(io.StringIO(by_app_id.stdout))}
    assert ids == {"ev-purchase", "ev-2"}  # not the 3-day-old one: --since defaults to 24h

    by_outcome = run("--outcome", "rejected", "--format", "json")
    assert by_outcome.returncode == 0, by_outcome.stderr
    (line,) = by_outcome.stdout.splitlines()
    assert json.loads(line)["partner_message"] == "Invalid value for event_time."

    assert run("--event-id", "ev-old").returncode == 1  # older than --since's default
    old = run("--event-id", "ev-old", "--since", "4d")
    assert old.returncode == 0, old.stderr
    assert "ev-old" in old.stdout
    assert run("--event-id", "ev-old", "--since", "4d", "--until", "2d").returncode == 0
    assert run("--event-id", "ev-purchase", "--since", "4d", "--until", "2d").returncode == 1

    limited = run("--since", "4d", "--limit", "2", "--format", "json")
    assert limited.returncode == 0, limited.stderr
    assert len(limited.stdout.splitlines()) == 2
    assert "stopped at --limit 2" in limited.stderr

    nothing = run("--event-id", "no-such-event", "--since", "2026-01-01T00:00:00Z")
    assert nothing.returncode == 1
    assert nothing.stdout == ""
    assert nothing.stderr.splitlines()[-1].startswith(
        f"no postback with event_id=no-such-event in {topic} from 2026-01-01T00:00:00Z to now "
        "(5 records read in "
    )


@pytest.mark.broker
def test_postbacks_on_a_log_topic_that_does_not_exist_exits_1(
    broker: LocalBroker, tmp_path: Path
) -> None:
    config = write_config(tmp_path, broker.bootstrap, f"no-such-log-{uuid.uuid4().hex[:8]}")
    result = dispatcher("postbacks", "--config", str(config))
    assert result.returncode == 1
    assert "does not exist" in result.stderr
