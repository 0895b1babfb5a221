"""`dispatcher replay-dead-letters` against the real broker, then the worker delivering replays."""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path

import pytest
from kafka import KafkaProducer

from dispatcher.dead_letters import utc_now_iso
from dispatcher.devtools.broker import LocalBroker
from dispatcher.devtools.sandbox import Fault, PartnerSandbox
from schemas.dead_letter import DeadLetter
from tests.factories import event_dict, event_id_of
from tests.pipeline import (
    TOKEN,
    Topics,
    WorkerProcess,
    dispatcher_command,
    produce,
    read_all,
    sandbox_ids,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.broker


def letter(
    reason: str, topics: Topics, event: dict[str, object] | None = None, **extra: object
) -> DeadLetter:
    return DeadLetter(
        reason=reason, detail="test", partner=None if reason == "bad_input" else "tiktok",
        source_topic=topics.installs, source_partition=0, source_offset=0, event=event,
        failed_at=utc_now_iso(), **extra,  # type: ignore[arg-type]
    )  # fmt: skip


def write_letters(broker: LocalBroker, topic: str, letters: list[DeadLetter]) -> None:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    for item in letters:
        producer.send(topic, key=b"k", value=item.model_dump_json().encode())
    producer.flush()
    producer.close()


def replay(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return dispatcher_command("replay-dead-letters", config, *args)


def test_replay_publishes_chosen_records_once(
    broker: LocalBroker, sandbox: PartnerSandbox, tmp_path: Path
) -> None:
    topics = Topics.create(broker, "replay")
    rejected = [event_dict("install") for _ in range(3)]
    exhausted = event_dict("install")
    raw_bad = b"\xff not json"
    write_letters(broker, topics.dead_letters, [
        *(letter("partner_rejected", topics, event) for event in rejected),
        letter("retries_exhausted", topics, exhausted),
        letter("bad_input", topics, raw="\\xff not json", raw_base64=base64.b64encode(raw_bad).decode()),
        letter("bad_input", topics, raw="cut", raw_truncated=True),
    ])  # fmt: skip
    config = write_config(tmp_path, broker, topics, sandbox.url)

    # A dry run publishes nothing
    result = replay(config, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("4 would be replayed")
    assert read_all(broker, topics.installs, timeout_s=2) == []
    # ... and does not claim to have replayed anything while it scans
    assert re.search(r"scanned \d+ dead letters", result.stderr), result.stderr
    assert " replayed" not in result.stderr

    # --limit, then the rest; a third run finds nothing new
    assert replay(config, "--limit", "2").stdout.startswith("2 replayed")
    assert replay(config).stdout.startswith("2 replayed")
    assert replay(config).stdout.startswith("0 replayed")
    replayed = read_all(broker, topics.installs)
    assert sorted(event_id_of(e) for e in replayed) == sorted(
        event_id_of(e) for e in [*rejected, exhausted]
    )

    # bad_input only when asked, byte for byte; a truncated record cannot be replayed
    result = replay(config, "--reason", "bad_input")
    assert result.stdout.startswith("1 replayed"), result.stdout
    assert "not replayable 1" in result.stdout

    # The worker picks the replays up and delivers them with their event_id
    with WorkerProcess(config, tmp_path / "worker.log") as worker:
        wait_for(
            lambda: set(sandbox_ids(sandbox)) >= {event_id_of(e) for e in [*rejected, exhausted]},
            60,
            "replayed events delivered",
        )
        wait_for(
            lambda: worker.metric("dispatcher_dead_letters_total", reason="bad_input") == 1,
            30,
            "bad input again",
        )
        assert worker.stop() == 0


def test_rejected_then_replayed_end_to_end(
    broker: LocalBroker, sandbox: PartnerSandbox, tmp_path: Path
) -> None:
    # Given TikTok rejects the first request's event (e.g. a parameter fixed since)
    topics = Topics.create(broker, "replay-e2e")
    sandbox.add_faults([Fault(code=40002, message="Batch.0.app.app_id: invalid", count=1)])
    event = event_dict("install")
    produce(broker, topics.installs, [event])
    config = write_config(tmp_path, broker, topics, sandbox.url)
    with WorkerProcess(config, tmp_path / "worker.log") as worker:
        wait_for(
            lambda: worker.metric("dispatcher_dead_letters_total", reason="partner_rejected") == 1,
            60,
            "dead letter",
        )
        # When the operator replays it
        result = replay(config, "--reason", "partner_rejected")
        assert result.returncode == 0, result.stderr
        # Then it is delivered with the same event_id
        wait_for(lambda: sandbox_ids(sandbox) == [event_id_of(event)], 60, "delivered after replay")
        assert worker.stop() == 0
    assert TOKEN not in json.dumps(read_all(broker, topics.dead_letters))


def test_unknown_dead_letter_topic_is_an_error(
    broker: LocalBroker, sandbox: PartnerSandbox, tmp_path: Path
) -> None:
    topics = Topics.create(broker, "replay-missing")
    config = write_config(tmp_path, broker, topics, sandbox.url)
    text = config.read_text().replace(topics.dead_letters, "missing-dlq-topic")
    config.write_text(text)
    result = replay(config)
    assert result.returncode == 1
    assert "dead-letter topic 'missing-dlq-topic' does not exist" in result.stderr
