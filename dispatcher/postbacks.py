"""`dispatcher postbacks`: find postbacks in the postback log and print them.

The filtering (`Query`, `search`) and the formats (`write_table`, `write_json`, `write_csv`) are
pure: they take records as (Kafka timestamp in ms, value bytes) and write to a text stream. The
command (`dispatcher/cli.py`) reads the log with `dispatcher.postback_log.read_log`.
"""

from __future__ import annotations

import csv
import json
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TextIO

from pydantic import ValidationError

from schemas.postback_log import PostbackRecord

FORMATS = ("table", "json", "csv")
DEFAULT_SINCE = "24h"

# The table sizes its columns on this many rows, then prints as it reads (a later, longer value
# shifts its line; the message is cut so a line fits the terminal).
TABLE_SIZING_ROWS = 100
MIN_MESSAGE_WIDTH = 40

CSV_COLUMNS = (
    "event_id", "partner", "destination", "app_id", "appsflyer_id", "event", "sdk_event",
    "event_time", "outcome", "reason", "attempts", "http_status", "partner_code",
    "partner_message", "partner_request_id", "first_attempt_at", "final_at", "source_topic",
    "source_partition", "source_offset", "replay", "payload",
)  # fmt: skip
TABLE_COLUMNS = ("final_at", "outcome", "partner", "destination", "event", "event_id",
                 "tries", "status", "request_id", "message")  # fmt: skip


def iso_z(seconds: float) -> str:
    """Unix seconds as ISO 8601 in UTC, to the second (`2026-12-01T10:00:00Z`)."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def moment_s(text: str) -> float | None:
    """Unix seconds of a record's ISO 8601 time; None when it is not one."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass(frozen=True)
class Query:
    """What the operator asked for; None matches anything."""

    event_id: str | None = None
    appsflyer_id: str | None = None
    app: str | None = None  # the AppsFlyer app id (app_id) or the partner app (destination)
    partner: str | None = None
    outcome: str | None = None
    since_s: float | None = None  # the record's Kafka timestamp (its final_at without one)
    until_s: float | None = None  # the record's final_at

    def matches(self, record: PostbackRecord, timestamp_ms: int | None = None) -> bool:
        """Whether `record` (written to the log at `timestamp_ms`) is one asked for."""
        if self.event_id is not None and record.event_id != self.event_id:
            return False
        if self.appsflyer_id is not None and record.appsflyer_id != self.appsflyer_id:
            return False
        if self.app is not None and self.app not in (record.app_id, record.destination):
            return False
        if self.partner is not None and record.partner != self.partner:
            return False
        if self.outcome is not None and record.outcome != self.outcome:
            return False
        if self.since_s is not None:
            # The read starts at the offsets of `since` by timestamp; a broker may answer that
            # lookup short, and a partition's timestamps need not rise: each record is checked.
            at = timestamp_ms / 1000 if timestamp_ms is not None and timestamp_ms >= 0 else None
            at = moment_s(record.final_at) if at is None else at
            if at is None or at < self.since_s:
                return False
        if self.until_s is not None:
            final = moment_s(record.final_at)
            if final is None or final > self.until_s:
                return False
        return True

    def describe(self) -> str:
        """The filters as `event_id=...`, for the no-match line; empty without any."""
        named = [
            ("event_id", self.event_id),
            ("appsflyer_id", self.appsflyer_id),
            ("app", self.app),
            ("partner", self.partner),
            ("outcome", self.outcome),
        ]
        return ", ".join(f"{name}={value}" for name, value in named if value is not None)


@dataclass
class Tally:
    """What a search read: records, those that are not records of the model, matches."""

    read: int = 0
    invalid: int = 0
    matched: int = 0
    limited: bool = False  # stopped at the limit


@dataclass(frozen=True)
class Found:
    """A matching record, and its value as stored."""

    record: PostbackRecord
    stored: bytes = field(repr=False)


def search(
    records: Iterable[tuple[int | None, bytes | None]],
    query: Query,
    limit: int | None = None,
    tally: Tally | None = None,
) -> Iterator[Found]:
    """The records of `records` ((Kafka timestamp in ms, value)) that `query` matches, in the
    order read, up to `limit`; a value that is not JSON of a `PostbackRecord` is counted in
    `tally.invalid` and skipped (a tombstone, a None value, is skipped uncounted)."""
    tally = Tally() if tally is None else tally
    if limit is not None and limit <= 0:
        return
    for timestamp_ms, value in records:
        tally.read += 1
        if value is None:
            continue
        try:
            record = PostbackRecord.model_validate_json(value)
        except ValidationError:
            tally.invalid += 1
            continue
        if not query.matches(record, timestamp_ms):
            continue
        tally.matched += 1
        yield Found(record, value)
        if limit is not None and tally.matched >= limit:
            tally.limited = True
            return


# --- formats --------------------------------------------------------------------------------


def _width(text: str) -> int:
    """Columns `text` takes on a terminal (CJK wide characters take two)."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def cut(text: str, width: int) -> str:
    """`text` on one line, cut to `width` columns (ending `...` when cut)."""
    text = " ".join(text.split())
    if _width(text) <= width:
        return text
    kept, used = [], 0
    for ch in text:
        used += _width(ch)
        if used > width - 3:
            break
        kept.append(ch)
    return "".join(kept) + "..."


def _dash(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


def _to_the_second(text: str) -> str:
    """`2026-12-01T10:00:00.123Z` as `2026-12-01T10:00:00Z` (anything else as it is)."""
    at = moment_s(text)
    return text if at is None else iso_z(at)


def table_cells(record: PostbackRecord) -> list[str]:
    """One record's table cells, in `TABLE_COLUMNS` order (the message uncut)."""
    if record.http_status is None and record.partner_code is None:
        status = "-"
    else:
        status = f"{_dash(record.http_status)}/{_dash(record.partner_code)}"
    message = record.reason if record.outcome == "skipped" else record.partner_message
    message = _dash(message)
    if record.replay:
        message = f"(replay) {message}"
    return [
        _to_the_second(record.final_at),
        record.outcome,
        record.partner,
        _dash(record.destination),
        f"{record.sdk_event} -> {_dash(record.event)}",
        record.event_id,
        str(record.attempts),
        status,
        _dash(record.partner_request_id),
        message,
    ]


def write_table(found: Iterable[Found], out: TextIO, width: int = 160) -> int:
    """A header and one line per record, columns sized on the first rows, the message cut so a
    line fits `width` columns (but keeps at least 40); the number of records written."""
    rows: list[list[str]] = []
    iterator = iter(found)
    for item in iterator:
        rows.append(table_cells(item.record))
        if len(rows) >= TABLE_SIZING_ROWS:
            break
    if not rows:
        return 0
    widths = [max(_width(row[i]) for row in [list(TABLE_COLUMNS), *rows])
              for i in range(len(TABLE_COLUMNS) - 1)]  # fmt: skip
    message_width = max(MIN_MESSAGE_WIDTH, width - sum(widths) - 2 * len(widths))

    def line(cells: list[str]) -> str:
        padded = [cell + " " * (w - _width(cell)) for cell, w in zip(cells, widths, strict=False)]
        return "  ".join([*padded, cut(cells[-1], message_width)]).rstrip()

    out.write(line(list(TABLE_COLUMNS)) + "\n")
    for row in rows:
        out.write(line(row) + "\n")
    count = len(rows)
    for item in iterator:
        out.write(line(table_cells(item.record)) + "\n")
        count += 1
    return count


def write_json(found: Iterable[Found], out: TextIO) -> int:
    """Each record as stored, one JSON object per line; the number written."""
    count = 0
    for item in found:
        text = item.stored.decode("utf-8", errors="replace")
        if "\n" in text or "\r" in text:  # written across lines: one line of the same JSON
            text = json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":"))
        out.write(text.strip() + "\n")
        count += 1
    return count


def csv_row(record: PostbackRecord) -> list[str | int]:
    """One record's CSV cells, in `CSV_COLUMNS` order: None empty, payload as JSON text."""

    def cell(value: str | int | None) -> str | int:
        return "" if value is None else value

    payload = record.payload
    return [
        record.event_id, record.partner, cell(record.destination), record.app_id,
        cell(record.appsflyer_id), cell(record.event), record.sdk_event, record.event_time,
        record.outcome, cell(record.reason), record.attempts, cell(record.http_status),
        cell(record.partner_code), cell(record.partner_message),
        cell(record.partner_request_id), cell(record.first_attempt_at), record.final_at,
        record.source.topic, record.source.partition, record.source.offset,
        "true" if record.replay else "false",
        "" if payload is None else json.dumps(payload, ensure_ascii=False, separators=(",", ":")),
    ]  # fmt: skip


def write_csv(found: Iterable[Found], out: TextIO) -> int:
    """A header and one row per record (RFC 4180 quoting, `\\n` line ends); the number of
    records written. Nothing at all when nothing matched."""
    writer = csv.writer(out, lineterminator="\n")
    count = 0
    for item in found:
        if count == 0:
            writer.writerow(CSV_COLUMNS)
        writer.writerow(csv_row(item.record))
        count += 1
    return count


def writer_for(name: str, width: int) -> Callable[[Iterable[Found], TextIO], int]:
    """The writer of format `name` (one of `FORMATS`)."""
    if name == "table":
        return lambda found, out: write_table(found, out, width)
    if name == "json":
        return write_json
    if name == "csv":
        return write_csv
    raise ValueError(f"unknown format {name!r}; allowed: {', '.join(FORMATS)}")
