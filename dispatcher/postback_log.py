"""The postback log: each owed postback's final outcome as a record on `kafka.postback_log_topic`
(`schemas/postback_log.py`), and the reading of it.

Writing: `PostbackLog.records` turns a settled batch into Kafka records holding its postbacks'
records as JSON lines (never a token; the user object of the payload only with
`postback_log.include_user`). One Kafka record per request, not per postback: kafka-python
spends as much CPU on each record it sends as the worker spends on an event, so a record per
postback would halve what a worker delivers. The worker writes them with the same acknowledged
publisher as dead letters, and an event is final only once its record is acknowledged, so a
crash loses no record and the log never says delivered for what was not.

Reading: `read_log` reads every partition of the log from a time to its end as it was when the
read began; `final_in` (what a newly assigned partition need not send again) and
`delivered_ids` (what a replay need not send again) are built on it, as is
`dispatcher postbacks`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import msgspec
import orjson

from dispatcher.delivery.items import WorkItem
from dispatcher.offsets import Partition
from dispatcher.outcomes import BatchResult
from schemas.config import PostbackLogConfig

log = logging.getLogger(__name__)

# Where each partner's payload keeps the user's identifiers, IP and user agent: left out of the
# logged payload unless `postback_log.include_user`.
USER_PATHS: Mapping[str, tuple[tuple[str, ...], ...]] = {
    "tiktok": (("user",),),
    "oceanengine": (("context", "device"),),
}
# A log record's value stays under Kafka's default message.max.bytes (about 1 MB).
MAX_RECORD_BYTES = 900_000
FINAL_OUTCOMES = frozenset({"delivered", "rejected", "gave_up", "too_old", "partner_setup"})


def iso(seconds: float | None) -> str | None:
    """Unix seconds as ISO 8601 in UTC, to the millisecond (`2026-12-01T10:00:00.000Z`).

    Called for every logged postback, and the events of a stream fall in few seconds: each
    second is formatted once (`datetime` would cost three times as much each call). Rounded to
    the microsecond, then cut to the millisecond, as `datetime` does."""
    if seconds is None:
        return None
    fraction, whole_s = math.modf(seconds)
    whole, micros = int(whole_s), round(fraction * 1_000_000)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    elif micros < 0:
        whole, micros = whole - 1, micros + 1_000_000
    prefix = _SECONDS.get(whole)
    if prefix is None:
        if len(_SECONDS) >= 8192:
            _SECONDS.clear()
        prefix = _SECONDS[whole] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    return f"{prefix}.{micros // 1000:03d}Z"


_SECONDS: dict[int, str] = {}  # Unix second -> "YYYY-MM-DDTHH:MM:SS"


def without_user(payload: Mapping[str, Any], paths: Iterable[tuple[str, ...]]) -> Mapping[str, Any]:
    """`payload` less the objects at `paths` (each a chain of keys); the objects on the way are
    copied, `payload` itself is not changed (and is returned as it is when it has none)."""
    for path in paths:
        if path[0] in payload:
            break
    else:
        return payload
    result = dict(payload)
    for path in paths:
        parent: dict[str, Any] = result
        for key in path[:-1]:
            child = parent.get(key)
            if not isinstance(child, Mapping):
                break
            parent[key] = parent = dict(child)
        else:
            parent.pop(path[-1], None)
    return result


class PostbackLog:
    """Builds the log's records (keys and JSON values) of settled batches and skips."""

    def __init__(self, config: PostbackLogConfig) -> None:
        self.include_user = config.include_user
        self.skips = config.skips

    def records(
        self, items: list[WorkItem], result: BatchResult, at: float
    ) -> list[tuple[bytes, bytes]]:
        """The Kafka records (key, value) of a settled batch: `result` is its final word, `at`
        when. Each value holds the batch's postbacks as JSON lines (one postback record a
        line), up to `MAX_RECORD_BYTES`, keyed by the partner app and the first event's source
        partition (`_key`)."""
        lines = list(self._lines(items, result, at))
        first = items[0]
        key = _key(first.partner, first.destination, (first.topic, first.partition))
        records: list[tuple[bytes, bytes]] = []
        chunk: list[bytes] = []
        size = 0
        for line in lines:
            if chunk and size + len(line) + 1 > MAX_RECORD_BYTES:
                records.append((key, b"\n".join(chunk)))
                chunk, size = [], 0
            chunk.append(line)
            size += len(line) + 1
        if chunk:
            records.append((key, b"\n".join(chunk)))
        return records

    def _lines(self, items: list[WorkItem], result: BatchResult, at: float) -> Iterator[bytes]:
        """Each item's postback record, as one line of JSON. The fields every postback of the
        batch shares are encoded once and joined to each item's own: key order means nothing
        in JSON, and this halves what a line costs."""
        last = result.last
        common = _dumps({
            "outcome": result.outcome.value,
            "reason": None,
            "attempts": result.attempts,
            "http_status": last.status,
            "partner_code": last.code,
            "partner_message": last.message or None,
            "partner_request_id": last.request_id,
            "first_attempt_at": iso(result.first_attempt_at),
            "final_at": iso(at),
        })  # fmt: skip
        tail = b"," + common[1:]  # `,"outcome":...}`: closes each item's object
        for item in items:
            payload = item.payload
            if not self.include_user:
                payload = without_user(payload, USER_PATHS.get(item.partner, ()))
            record = {
                "event_id": item.event_id,
                "partner": item.partner,
                "destination": item.destination,
                "app_id": item.app_id,
                "appsflyer_id": item.install_id or None,
                "event": item.event_label,
                "sdk_event": item.sdk_event,
                "event_time": iso(item.event_time_s),
                "source": {"topic": item.topic, "partition": item.partition,
                           "offset": item.offset},
                "replay": item.replay,
                "payload": payload,
            }  # fmt: skip
            yield _dumps(record)[:-1] + tail

    def skip_record(
        self, partner: str, destination: str, reason: str, source: Partition,
        offset: int, event: Any, replay: bool, at: float,
    ) -> tuple[bytes, bytes]:  # fmt: skip
        """(key, value) of a decision not to send (`postback_log.skips`); `destination` is where
        the postback would have gone (`PartnerConfig.destination_of`)."""
        record = {
            "event_id": event.event_id,
            "partner": partner,
            "destination": destination,
            "app_id": event.app_id,
            "appsflyer_id": event.install_id or None,
            "event": None,
            "sdk_event": event.event_name if event.is_in_app else "install",
            "event_time": iso(event.event_time_s),
            "outcome": "skipped",
            "reason": reason,
            "attempts": 0,
            "final_at": iso(at),
            "source": {"topic": source[0], "partition": source[1], "offset": offset},
            "replay": replay,
            "payload": None,
        }
        return _key(partner, destination, source), _dumps(record)


def _key(partner: str, destination: str, source: Partition) -> bytes:
    """A log record's Kafka key: the partner app and the source partition, which spreads a busy
    partner app over the log's partitions."""
    return f"{partner}/{destination}/{source[0]}/{source[1]}".encode()


def _dumps(record: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(record)
    except orjson.JSONEncodeError:  # an integer past 64 bits from an event_value
        return orjson.dumps(record, default=str, option=orjson.OPT_PASSTHROUGH_SUBCLASS)


# --- reading --------------------------------------------------------------------------------


class _Source(msgspec.Struct):
    topic: str
    partition: int
    offset: int


class Seen(msgspec.Struct):
    """The fields of a log record a lookup reads (the payload is skipped unread)."""

    event_id: str
    partner: str
    destination: str | None
    outcome: str
    source: _Source


_read_seen = msgspec.json.Decoder(Seen).decode


def read_log(
    consumer: Any,
    topic: str,
    since_s: float | None,
    progress: Callable[[int], None] | None = None,
    budget_s: float | None = None,
) -> Iterator[Any]:
    """The log's records (kafka-python `ConsumerRecord`s) from `since_s` (Unix seconds; None:
    from the start) to each partition's end as it was when the read began; `consumer` is a
    consumer of no group, assigned here. Stops early (with a warning) past `budget_s`."""
    return read_topics(consumer, [topic], since_s, None, progress, budget_s)


# Records of one partition are in the order they were written, their timestamps nearly so: a
# read up to a time goes this far past it before it takes a partition as done.
DISORDER_S = 60.0


def read_topics(
    consumer: Any,
    topics: list[str],
    since_s: float | None,
    until_s: float | None = None,
    progress: Callable[[int], None] | None = None,
    budget_s: float | None = None,
    stop: Callable[[], bool] | None = None,
) -> Iterator[Any]:
    """Every partition's records of `topics` from the first one at `since_s` (Unix seconds;
    None: the start) to its end as it was when the read began, or, with `until_s`, until a
    record later than `until_s` + `DISORDER_S`. Records outside the times may come too: the
    caller filters by `record.timestamp`. `consumer` is of no group, assigned here. Stops early
    (with a warning) past `budget_s`, or when `stop()` says so."""
    from kafka import TopicPartition  # noqa: PLC0415 - kafka only where a topic is read

    tps: list[Any] = []
    for topic in topics:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise LookupError(f"the topic {topic!r} does not exist")
        tps.extend(TopicPartition(topic, p) for p in sorted(partitions))
    consumer.assign(tps)
    ends = consumer.end_offsets(tps)
    starts: dict[Any, int] = {}
    if since_s is None:
        beginnings = consumer.beginning_offsets(tps)
        starts = {tp: beginnings[tp] for tp in tps}
    else:
        found = consumer.offsets_for_times({tp: int(since_s * 1000) for tp in tps})
        for tp in tps:
            hit = found.get(tp)
            starts[tp] = hit.offset if hit is not None else ends[tp]
    for tp in tps:
        consumer.seek(tp, starts[tp])
    # Each partition's end as it was when the read began: the first high watermark a fetch
    # reports (`end_offsets` may answer short of the last records: some brokers give the last
    # batch's base offset + 1).
    end_at: dict[Any, int] = {}
    past_ms = None if until_s is None else int((until_s + DISORDER_S) * 1000)
    pending = set(tps)
    read = idle = 0
    started = time.monotonic()
    while pending:
        batch = consumer.poll(timeout_ms=200, max_records=5000)
        for tp, records in batch.items():
            if tp not in pending:
                continue
            for record in records:
                if past_ms is not None and record.timestamp > past_ms:
                    pending.discard(tp)
                    consumer.pause(tp)
                    break
                yield record
                read += 1
        for tp in list(pending):
            if tp not in end_at and (highwater := consumer.highwater(tp)) is not None:
                end_at[tp] = max(highwater, ends[tp])
            if tp in end_at and consumer.position(tp) >= end_at[tp]:
                pending.discard(tp)
        idle = 0 if batch else idle + 1
        if idle >= 25:  # 5 s without a record and no end in sight: nothing more will come
            log.warning("the end of %s was not found; read %d records", ", ".join(topics), read)
            return
        if progress is not None:
            progress(read)
        if stop is not None and stop():
            return
        if budget_s is not None and time.monotonic() - started > budget_s:
            log.warning(
                "reading %s took longer than %.0fs; stopped after %d records",
                ", ".join(topics), budget_s, read,
            )  # fmt: skip
            return


def postbacks_in(records: Iterable[Any]) -> Iterator[bytes]:
    """The postback records (JSON, one a line) of the log's Kafka records."""
    for record in records:
        value = record.value
        if value:
            yield from (line for line in value.split(b"\n") if line)


def final_in(
    consumer: Any,
    topic: str,
    since_s: float,
    starts: Mapping[Partition, int],
    budget_s: float,
) -> dict[Partition, dict[int, set[tuple[str, str | None]]]]:
    """For each source partition in `starts`, the offsets at or past its start that the log
    shows as final for a partner app: offset → {(partner, destination)}."""
    found: dict[Partition, dict[int, set[tuple[str, str | None]]]] = {}
    for line in postbacks_in(read_log(consumer, topic, since_s, budget_s=budget_s)):
        try:
            seen = _read_seen(line)
        except (msgspec.DecodeError, TypeError):
            continue
        if seen.outcome not in FINAL_OUTCOMES:
            continue
        source = seen.source
        tp = (source.topic, source.partition)
        start = starts.get(tp)
        if start is None or source.offset < start:
            continue
        found.setdefault(tp, {}).setdefault(source.offset, set()).add(
            (seen.partner, seen.destination)
        )
    return found


def delivered_ids(consumer: Any, topic: str, since_s: float | None) -> set[tuple[str, str]]:
    """(partner, event_id) of every postback the log shows as delivered since `since_s`."""
    delivered: set[tuple[str, str]] = set()
    for line in postbacks_in(read_log(consumer, topic, since_s)):
        try:
            seen = _read_seen(line)
        except (msgspec.DecodeError, TypeError):
            continue
        if seen.outcome == "delivered":
            delivered.add((seen.partner, seen.event_id))
    return delivered
