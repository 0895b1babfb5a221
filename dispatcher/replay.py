"""`dispatcher replay-dead-letters`: re-publish chosen dead letters to their source topics.

Progress is kept per reason selection in a consumer group of its own
(`<group_id>-replay-<reasons>`), so running the same replay twice does not publish twice;
`--from-beginning` starts over. `bad_input` is replayed only when asked for by name.

A dead letter of one partner is re-published with the header `REPLAY_PARTNER_HEADER` naming it:
the worker then decides that record for that partner alone, so a replay of Ocean Engine's
rejection never sends TikTok its postback a second time. With the postback log on, a dead
letter whose event the log shows as delivered to that partner since it was dead-lettered (an
earlier replay got it through) is not published again (`already_delivered`).
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata
from pydantic import ValidationError

from dispatcher.config_loader import Settings
from dispatcher.errors import PermanentError
from dispatcher.inputs import BadInput, source_topics
from dispatcher.kafka_clients import make_log_reader, make_producer, make_replay_consumer
from dispatcher.postback_log import delivered_ids
from schemas.dead_letter import (
    DEAD_LETTER_REASONS,
    DEFAULT_REPLAY_REASONS,
    REPLAY_PARTNER_HEADER,
    DeadLetter,
)

log = logging.getLogger(__name__)

DEFAULT_REASONS = DEFAULT_REPLAY_REASONS


@dataclass
class ReplayReport:
    """What a replay did (or, with --dry-run, would do)."""

    scanned: int = 0
    replayed: int = 0
    skipped_other_reason: int = 0
    skipped_other_partner: int = 0
    already_delivered: int = 0  # the postback log shows the event delivered to that partner
    unreplayable: int = 0
    by_topic: dict[str, int] = field(default_factory=dict)
    by_partner: dict[str, int] = field(default_factory=dict)  # "-" for bad input (no partner)


def replay_value(letter: DeadLetter) -> bytes | None:
    """The message to publish again: the event as it arrived, or the raw bytes of bad input."""
    if letter.reason == "bad_input":
        if letter.raw_truncated:
            return None
        if letter.raw_base64 is not None:
            return base64.b64decode(letter.raw_base64)
        return letter.raw.encode() if letter.raw is not None else None
    if letter.event is None:
        return None
    return json.dumps(letter.event).encode()


def replay_group(settings: Settings, reasons: Iterable[str], partner: str | None = None) -> str:
    """The consumer group that remembers how far a replay of these reasons (for one partner,
    or all) got."""
    group = f"{settings.runtime.kafka.group_id}-replay-{'-'.join(sorted(reasons))}"
    return f"{group}-{partner}" if partner else group


def replay_dead_letters(
    settings: Settings,
    reasons: tuple[str, ...],
    limit: int | None,
    dry_run: bool,
    from_beginning: bool,
    progress: Callable[[ReplayReport], None],
    partner: str | None = None,
) -> ReplayReport:
    """Read the dead-letter topic from where the last replay of these reasons stopped; with
    `partner`, replay only that partner's dead letters."""
    unknown = set(reasons) - set(DEAD_LETTER_REASONS)
    if unknown:
        raise PermanentError(f"unknown reason(s) {sorted(unknown)}; allowed: {DEAD_LETTER_REASONS}")
    kafka = settings.runtime.kafka
    consumer = make_replay_consumer(settings, replay_group(settings, reasons, partner))
    producer = None if dry_run else make_producer(settings)
    report = ReplayReport()
    try:
        partitions = consumer.partitions_for_topic(kafka.dead_letter_topic)
        if not partitions:
            raise PermanentError(f"dead-letter topic {kafka.dead_letter_topic!r} does not exist")
        tps = [TopicPartition(kafka.dead_letter_topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        for tp in tps:
            committed = None if from_beginning else consumer.committed(tp)
            if committed is None or committed < 0:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)
        wanted = _Wanted(reasons, partner)
        chosen: list[_Chosen] = []
        next_offsets = _scan(consumer, tps, wanted, limit, chosen, report, progress)
        delivered = _delivered(settings, chosen)
        for one in chosen:
            if (one.letter.partner, _event_id(settings, one)) in delivered:
                report.already_delivered += 1
                continue
            _publish(one, producer, report)
        if producer is not None:
            producer.flush(timeout=30)
            if next_offsets:
                consumer.commit(
                    {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in next_offsets.items()}
                )
    finally:
        consumer.close(autocommit=False)
        if producer is not None:
            producer.close(timeout=10)
    return report


@dataclass(frozen=True)
class _Wanted:
    reasons: tuple[str, ...]
    partner: str | None


@dataclass(frozen=True)
class _Chosen:
    """A dead letter chosen for replay: its record's key, the letter, and the value to publish."""

    key: bytes | None
    letter: DeadLetter
    value: bytes


def _scan(
    consumer: KafkaConsumer,
    tps: list[TopicPartition],
    wanted: _Wanted,
    limit: int | None,
    chosen: list[_Chosen],
    report: ReplayReport,
    progress: Callable[[ReplayReport], None],
) -> dict[TopicPartition, int]:
    """Choose matching records until the end of the topic or the limit; return next offsets."""
    next_offsets: dict[TopicPartition, int] = {}
    idle_polls = 0
    last_progress = 0.0
    while idle_polls < 3:
        batch = consumer.poll(timeout_ms=500, max_records=500)
        if not batch:
            # The fetch high watermark tells where the end is (ListOffsets may not).
            at_end = all(
                (hw := consumer.highwater(tp)) is not None and consumer.position(tp) >= hw
                for tp in tps
            )
            idle_polls += 2 if at_end else 1
            continue
        idle_polls = 0
        for tp, records in batch.items():
            for record in records:
                if limit is not None and len(chosen) >= limit:
                    return next_offsets
                report.scanned += 1
                next_offsets[tp] = record.offset + 1
                one = _choose(record, wanted, report)
                if one is not None:
                    chosen.append(one)
        if time.monotonic() - last_progress > 1:
            progress(report)
            last_progress = time.monotonic()
    return next_offsets


def _choose(record: Any, wanted: _Wanted, report: ReplayReport) -> _Chosen | None:
    try:
        letter = DeadLetter.model_validate_json(record.value)
    except ValidationError:
        log.warning(
            "offset %d of the dead-letter topic is not a dead letter; skipped", record.offset
        )
        report.unreplayable += 1
        return None
    if letter.reason not in wanted.reasons:
        report.skipped_other_reason += 1
        return None
    if wanted.partner is not None and letter.partner != wanted.partner:
        report.skipped_other_partner += 1
        return None
    value = replay_value(letter)
    if value is None:
        log.warning(
            "dead letter at offset %d cannot be replayed (no event, or truncated raw input)",
            record.offset,
        )
        report.unreplayable += 1
        return None
    return _Chosen(record.key, letter, value)


def _delivered(settings: Settings, chosen: list[_Chosen]) -> set[tuple[str | None, str]]:
    """(partner, event id) of what the postback log shows delivered since the oldest chosen
    letter failed; nothing without a log (or chosen partner letters)."""
    topic = settings.runtime.kafka.postback_log_topic
    times = [_failed_at(one.letter) for one in chosen if one.letter.partner is not None]
    if topic is None or not times:
        return set()
    since_s = min(times) - settings.runtime.postback_log.lookback_margin_s
    reader = make_log_reader(settings)
    try:
        return set(delivered_ids(reader, topic, since_s))
    except LookupError as exc:
        raise PermanentError(f"{exc}; create it with `dispatcher topics create`") from exc
    finally:
        reader.close(autocommit=False)


def _failed_at(letter: DeadLetter) -> float:
    try:
        return datetime.fromisoformat(letter.failed_at.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0  # unreadable: look from the log's start


def _event_id(settings: Settings, one: _Chosen) -> str | None:
    """The event id the worker gives the replayed record (the decoder derives it when the
    record has none)."""
    source = source_topics(settings.runtime.kafka).get(one.letter.source_topic)
    if source is None:
        return None
    event_type, decoder = source
    event = decoder.decode(one.value, event_type)
    return None if isinstance(event, BadInput) else event.event_id


def _publish(one: _Chosen, producer: Any, report: ReplayReport) -> None:
    letter, value = one.letter, one.value
    if producer is not None:
        headers = (
            [(REPLAY_PARTNER_HEADER, letter.partner.encode())] if letter.partner is not None else []
        )
        producer.send(letter.source_topic, key=one.key, value=value, headers=headers)
    report.replayed += 1
    report.by_topic[letter.source_topic] = report.by_topic.get(letter.source_topic, 0) + 1
    partner = letter.partner or "-"
    report.by_partner[partner] = report.by_partner.get(partner, 0) + 1
