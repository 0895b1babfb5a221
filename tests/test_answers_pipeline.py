"""TikTok's answers end to end: real broker (Tansu), the sandbox answering
the codes on demand, `dispatcher run` as a process. Throttled answers delay and lose nothing; a
setup answer holds the app (nothing dead-lettered, nothing committed) until the answer changes,
SIGHUP or a new token; one bad event in a batch of 500 is the only dead letter."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import yaml

from dispatcher.devtools import harness
from dispatcher.devtools.broker import LocalBroker
from dispatcher.devtools.sandbox import Fault, PartnerSandbox
from tests.factories import event_dict, event_id_of
from tests.pipeline import (
    TOKEN,
    Topics,
    WorkerProcess,
    committed_offsets,
    end_offsets,
    produce,
    read_all,
    sandbox_ids,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.broker

SETUP_MESSAGE = "Access token is incorrect or revoked."


def everything_committed(broker: LocalBroker, topics: Topics) -> bool:
    ends = {tp: end for tp, end in end_offsets(broker, [topics.installs]).items() if end}
    return {tp: committed_offsets(broker, topics).get(tp) for tp in ends} == ends


def held(worker: harness.WorkerProcess) -> float:
    return worker.metric("dispatcher_partner_held", partner="tiktok")


def test_throttled_answers_delay_but_lose_nothing(
    broker: LocalBroker, sandbox: PartnerSandbox, tmp_path: Path
) -> None:
    # Given TikTok answers "request frequency limited" (40132), "too many requests" (61000) and
    # HTTP 429 for a while
    topics = Topics.create(broker, "throttled")
    sandbox.add_faults([
        Fault(code=40132, message="Request frequency limited", count=3),
        Fault(code=61000, message="Too many requests", count=3),
        Fault(status=429, retry_after="1", count=2),
    ])  # fmt: skip
    events = [event_dict("install") for _ in range(300)]
    produce(broker, topics.installs, events)
    config = write_config(tmp_path, broker, topics, sandbox.url, delivery={"batch_max_events": 50})
    with WorkerProcess(config, tmp_path / "worker.log") as worker:
        # Then every event arrives, the throttled attempts are counted as such, no dead letter
        wait_for(
            lambda: set(sandbox_ids(sandbox)) >= {event_id_of(e) for e in events}, 60, "all events"
        )
        wait_for(lambda: everything_committed(broker, topics), 30, "every offset committed")
        assert worker.metric("dispatcher_delivery_attempts_total", result="throttled") == 8
        assert worker.metric("dispatcher_delivery_attempts_total", result="setup") == 0
        assert worker.metric("dispatcher_dead_letters_total") == 0
        assert worker.stop() == 0
    assert read_all(broker, topics.dead_letters) == []


def test_a_setup_answer_holds_the_app_until_the_answer_changes(
    broker: LocalBroker, sandbox: PartnerSandbox, tmp_path: Path
) -> None:
    # Given TikTok answers "invalid token" (40105) until told otherwise, probes every 2 s
    topics = Topics.create(broker, "held")
    sandbox.add_faults([Fault(code=40105, message=SETUP_MESSAGE, until_reset=True)])
    events = [event_dict("install") for _ in range(200)]
    produce(broker, topics.installs, events)
    config = write_config(tmp_path, broker, topics, sandbox.url,
                          delivery={"batch_max_events": 50, "setup_retry_s": 2})  # fmt: skip
    with WorkerProcess(config, tmp_path / "worker.log") as worker:
        # Then the app is held: nothing delivered, dead-lettered or committed, and it is probed
        # with one request every 2 s (beside the few requests in flight when the hold began)
        wait_for(lambda: held(worker) == 1, 60, "the app held")
        before = len(sandbox.requests)
        time.sleep(7)
        probes = len(sandbox.requests) - before
        assert 2 <= probes <= 5, probes
        assert sandbox_ids(sandbox) == []
        assert worker.metric("dispatcher_dead_letters_total") == 0
        assert all(offset == 0 for offset in committed_offsets(broker, topics).values())
        assert worker.metric("dispatcher_delivery_attempts_total", result="setup") >= 3
        # When TikTok accepts the app's requests again
        sandbox.faults.clear()
        # Then the next probe resumes it: everything delivered, nothing dead-lettered
        wait_for(
            lambda: set(sandbox_ids(sandbox)) >= {event_id_of(e) for e in events}, 60, "all events"
        )
        wait_for(lambda: everything_committed(broker, topics), 30, "every offset committed")
        assert held(worker) == 0
        assert worker.metric("dispatcher_dead_letters_total") == 0
        log = worker.log()
        assert worker.stop() == 0
    assert read_all(broker, topics.dead_letters) == []
    assert log.count("partner app held") == 1
    assert log.count("partner app no longer held") == 1
    assert TOKEN not in log


def test_sighup_resumes_a_held_app_before_its_next_probe(
    broker: LocalBroker, sandbox: PartnerSandbox, tmp_path: Path
) -> None:
    # Given an app held on "invalid token", its next probe ten minutes away
    topics = Topics.create(broker, "sighup")
    sandbox.add_faults([Fault(code=40105, message=SETUP_MESSAGE, until_reset=True)])
    events = [event_dict("install") for _ in range(50)]
    produce(broker, topics.installs, events)
    config = write_config(tmp_path, broker, topics, sandbox.url, delivery={"setup_retry_s": 600})
    with WorkerProcess(config, tmp_path / "worker.log") as worker:
        wait_for(lambda: held(worker) == 1, 60, "the app held")
        # When the operator fixes it and sends SIGHUP
        sandbox.faults.clear()
        started = time.monotonic()
        worker.signal(signal.SIGHUP)
        # Then the held app is probed at once and everything delivered, long before ten minutes
        wait_for(
            lambda: set(sandbox_ids(sandbox)) >= {event_id_of(e) for e in events}, 30, "all events"
        )
        assert time.monotonic() - started < 30
        wait_for(lambda: held(worker) == 0, 10, "the hold ended")
        assert worker.metric("dispatcher_dead_letters_total") == 0
        assert worker.stop() == 0
    assert read_all(broker, topics.dead_letters) == []


def test_a_rotated_token_file_resumes_a_held_app(
    broker: LocalBroker, sandbox: PartnerSandbox, tmp_path: Path
) -> None:
    # Given the token comes from a file that holds a revoked token (the sandbox answers 40105)
    topics = Topics.create(broker, "token-file")
    events = [event_dict("install") for _ in range(50)]
    produce(broker, topics.installs, events)
    config = write_config(tmp_path, broker, topics, sandbox.url, delivery={"setup_retry_s": 600})
    partner_file = tmp_path / "partners" / "tiktok.yaml"
    partner = yaml.safe_load(partner_file.read_text())
    del partner["access_token_env"]
    token = tmp_path / "secret" / "token"
    token.parent.mkdir()
    token.write_text("revoked-token\n")
    partner["access_token_file"] = str(token)
    partner_file.write_text(yaml.safe_dump(partner))
    with WorkerProcess(config, tmp_path / "worker.log", env={"TIKTOK_ACCESS_TOKEN": ""}) as worker:
        wait_for(lambda: held(worker) == 1, 60, "the app held")
        # When the Secret is rotated
        token.write_text(TOKEN + "\n")
        # Then the new token is read without a restart and everything delivered
        wait_for(
            lambda: set(sandbox_ids(sandbox)) >= {event_id_of(e) for e in events}, 30, "all events"
        )
        wait_for(lambda: held(worker) == 0, 10, "the hold ended")
        assert worker.metric("dispatcher_dead_letters_total") == 0
        log = worker.log()
        assert worker.stop() == 0
    assert "revoked-token" not in log
    assert TOKEN not in log


def test_one_bad_event_in_a_batch_of_500_is_the_only_dead_letter(
    broker: LocalBroker, sandbox: PartnerSandbox, tmp_path: Path
) -> None:
    # Given 500 events in one partition, one of which TikTok refuses (40002, a bad parameter)
    topics = Topics.create(broker, "bad-event", partitions=1)
    events = [event_dict("install") for _ in range(500)]
    bad = events[317]
    sandbox.add_faults([
        Fault(code=40002, message="data[317].user: invalid", event_ids=[event_id_of(bad)]),
    ])  # fmt: skip
    produce(broker, topics.installs, events)
    config = write_config(tmp_path, broker, topics, sandbox.url,
                          delivery={"batch_max_events": 500, "batch_linger_ms": 2000})  # fmt: skip
    with WorkerProcess(config, tmp_path / "worker.log") as worker:
        # Then the batch is split until the bad event stands alone: it alone is dead-lettered
        wait_for(lambda: len(set(sandbox_ids(sandbox))) == 499, 60, "the good events")
        wait_for(lambda: everything_committed(broker, topics), 30, "every offset committed")
        assert worker.metric("dispatcher_dead_letters_total", reason="partner_rejected") == 1
        assert worker.stop() == 0
    assert max(r.events for r in sandbox.requests) <= 500
    assert event_id_of(bad) not in sandbox_ids(sandbox)
    [letter] = read_all(broker, topics.dead_letters)
    assert (letter["reason"], letter["last_code"]) == ("partner_rejected", 40002)
    assert letter["event"] == bad
    assert letter["detail"] == "code 40002: data[317].user: invalid"
