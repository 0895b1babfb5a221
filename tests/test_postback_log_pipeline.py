"""The postback log end to end: real broker (Tansu), real HTTP sandbox, `dispatcher run` as a
process. A partner that rejects one app's events leaves a `delivered` record per delivered
postback with the partner's request id and a `rejected` record per rejection with its code;
`dispatcher postbacks` finds them; replaying by reason, then everything, delivers each rejected
event exactly once; a worker started again sends nothing the log shows as delivered."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from dispatcher.devtools.broker import LocalBroker
from dispatcher.devtools.sandbox import Fault, PartnerSandbox
from schemas.postback_log import PostbackRecord
from tests.factories import app_dict, event_dict, event_id_of
from tests.pipeline import (
    Topics,
    WorkerProcess,
    dispatcher_command,
    produce,
    read_all,
    read_log,
    sandbox_ids,
    wait_for,
    write_config,
)
from tests.test_replay import replay

pytestmark = pytest.mark.broker

OTHER_APP = app_dict(app_id="com.example.other", tiktok_app_id="7300000000000000002")


def logged(broker: LocalBroker, topics: Topics) -> list[PostbackRecord]:
    return [PostbackRecord.model_validate(r) for r in read_log(broker, topics.log, timeout_s=3)]


def postbacks(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return dispatcher_command("postbacks", config, *args)


def test_the_log_holds_every_outcome_and_replays_deliver_each_rejected_event_once(
    broker: LocalBroker, sandbox: PartnerSandbox, tmp_path: Path
) -> None:
    # Given purchases of two apps, and a partner that rejects every event of the second
    topics = Topics.create(broker, "postback-log")
    kept = [event_dict("in-app-event") for _ in range(12)]
    refused = [event_dict("in-app-event", app_id="com.example.other") for _ in range(6)]
    refused_ids = sorted(event_id_of(e) for e in refused)
    sandbox.add_faults([Fault(code=40002, message="invalid event", event_ids=refused_ids)])
    produce(broker, topics.in_app, kept + refused)
    config = write_config(tmp_path, broker, topics, sandbox.url, apps=[app_dict(), OTHER_APP])
    with WorkerProcess(config, tmp_path / "worker.log") as worker:
        wait_for(lambda: len(read_all(broker, topics.dead_letters, timeout_s=1)) == 6, 60,
                 "the second app's events dead-lettered")  # fmt: skip
        wait_for(lambda: worker.metric("dispatcher_inflight_events") == 0, 20, "all final")
        # Then the log has one delivered record per delivered postback, with TikTok's request
        # id, and one rejected record per rejection, with its code
        records = logged(broker, topics)
        delivered = [r for r in records if r.outcome == "delivered"]
        rejected = [r for r in records if r.outcome == "rejected"]
        assert sorted(r.event_id for r in delivered) == sorted(event_id_of(e) for e in kept)
        assert all(r.partner_request_id and r.partner_request_id.startswith("sandbox-")
                   for r in delivered)  # fmt: skip
        assert sorted(r.event_id for r in rejected) == refused_ids
        assert {(r.partner_code, r.destination) for r in rejected} == {
            (40002, "7300000000000000002")
        }
        assert len(records) == 18
        assert worker.metric("dispatcher_postback_log_records_total", outcome="delivered") == 12
        # And `dispatcher postbacks` finds one purchase by its id, the app's, and the outcome's
        one = postbacks(config, "--event-id", refused_ids[0], "--format", "json")
        assert one.returncode == 0, one.stderr
        [found] = [json.loads(line) for line in one.stdout.splitlines()]
        assert (found["event_id"], found["outcome"], found["partner_code"]) == (
            refused_ids[0], "rejected", 40002,
        )  # fmt: skip
        by_app = postbacks(config, "--app", "com.example.other", "--format", "json")
        assert len(by_app.stdout.splitlines()) == 6
        by_outcome = postbacks(config, "--outcome", "delivered", "--format", "json")
        assert len(by_outcome.stdout.splitlines()) == 12
        assert postbacks(config, "--event-id", "no-such-event").returncode == 1
        # When the partner accepts them again and they are replayed by reason, then everything
        sandbox.faults.clear()
        first = replay(config, "--reason", "partner_rejected")
        assert first.stdout.startswith("6 replayed"), first.stdout + first.stderr
        wait_for(lambda: set(refused_ids) <= set(sandbox_ids(sandbox)), 60, "replays delivered")
        wait_for(lambda: worker.metric("dispatcher_inflight_events") == 0, 20, "all final")
        wait_for(lambda: worker.metric("dispatcher_postback_log_records_total",
                                       outcome="delivered") == 18, 20, "replays logged")  # fmt: skip
        again = replay(config)
        assert again.returncode == 0, again.stderr
        assert again.stdout.startswith("0 replayed"), again.stdout
        assert "already_delivered 6" in again.stdout
        assert worker.stop() == 0
    # Then each rejected event was delivered exactly once, and logged delivered as a replay
    assert Counter(sandbox_ids(sandbox)) == Counter([event_id_of(e) for e in kept] + refused_ids)
    replays = [r for r in logged(broker, topics) if r.replay]
    assert sorted(r.event_id for r in replays) == refused_ids
    assert {r.outcome for r in replays} == {"delivered"}


def test_a_worker_started_again_skips_what_the_log_shows_delivered(
    broker: LocalBroker, sandbox: PartnerSandbox, tmp_path: Path
) -> None:
    """What a crash leaves uncommitted but logged is not sent again: the log is written as each
    answer comes, the offsets a moment later. Made here without a crash: a worker with its
    commits held back (`commit_interval_ms` of a minute) delivers and logs, is stopped with
    SIGKILL before any commit, and its successor in the same group reads everything again."""
    topics = Topics.create(broker, "log-restart", partitions=2)
    events = [event_dict("in-app-event") for _ in range(40)]
    produce(broker, topics.in_app, events)
    slow_commits = {"commit_interval_ms": 60_000}
    config = write_config(tmp_path, broker, topics, sandbox.url, worker=slow_commits)
    with WorkerProcess(config, tmp_path / "first.log") as first:
        wait_for(lambda: len(set(sandbox_ids(sandbox))) == 40, 60, "everything delivered")
        wait_for(lambda: first.metric("dispatcher_inflight_events") == 0, 20, "logged")
        first.kill()
    assert len(logged(broker, topics)) == 40
    with WorkerProcess(config, tmp_path / "second.log") as second:
        wait_for(lambda: second.metric("dispatcher_events_consumed_total") >= 40, 60,
                 "read again")  # fmt: skip
        wait_for(lambda: second.metric("dispatcher_duplicates_avoided_total") == 40, 20,
                 "every delivered postback skipped")  # fmt: skip
        assert second.stop() == 0
    assert Counter(sandbox_ids(sandbox)) == Counter(event_id_of(e) for e in events)


LOGGED_BEFORE_KILL_S = 0.5  # an answer logged this long before a kill had time to be read back


def test_three_kills_under_a_slow_partner_resend_nothing_logged_before_them(
    broker: LocalBroker, sandbox: PartnerSandbox, tmp_path: Path
) -> None:
    """kill -9 three times while 1,000-event batches take 1.2 s each to be answered: a batch
    answered while an earlier one is still out is uncommitted at the kill, but logged; the next
    worker reads the log and does not send it again. What is sent again is what was in flight
    (not logged, or logged less than a moment before the kill): at most 0.5 % of the events
    were logged earlier than that and sent again."""
    topics = Topics.create(broker, "log-kills", partitions=3)
    events = [event_dict("in-app-event") for _ in range(24_000)]
    produce(broker, topics.in_app, events)
    sandbox.add_faults([Fault(delay_s=1.2, for_s=3600)])
    config = write_config(tmp_path, broker, topics, sandbox.url,
                          delivery={"batch_max_events": 1000, "batch_linger_ms": 100,
                                    "timeout_s": 10})  # fmt: skip
    kills: list[float] = []
    for n in range(3):
        worker = WorkerProcess(config, tmp_path / f"worker-{n}.log").start()
        target = (n + 1) * 5000
        wait_for(lambda target=target: len(set(sandbox_ids(sandbox))) >= target, 120,
                 f"{target} delivered")  # fmt: skip
        worker.kill()
        kills.append(time.time())
    sandbox.faults.clear()
    with WorkerProcess(config, tmp_path / "worker-last.log") as last:
        wait_for(lambda: set(sandbox_ids(sandbox)) >= {event_id_of(e) for e in events}, 120,
                 "every event delivered")  # fmt: skip
        wait_for(lambda: last.metric("dispatcher_inflight_events") == 0, 30, "all final")
        assert last.stop() == 0
    # Each event's first delivered record: when its answer was logged
    first_logged: dict[str, float] = {}
    for record in logged(broker, topics):
        if record.outcome == "delivered":
            at = datetime.fromisoformat(record.final_at.replace("Z", "+00:00")).timestamp()
            first_logged[record.event_id] = min(at, first_logged.get(record.event_id, at))
    assert set(first_logged) == {event_id_of(e) for e in events}  # no record lost to a kill
    copies = Counter(sandbox_ids(sandbox))
    arrivals: dict[str, list[float]] = {}
    for event in sandbox.events:
        arrivals.setdefault(event.event_id, []).append(event.received_at)
    # Sent again after its answer was logged, and logged over a moment before the kill that
    # ended the worker that logged it (or with no kill after it at all)
    resent_after_logged = []
    for event_id, times in arrivals.items():
        logged_at = first_logged[event_id]
        if not any(at > logged_at + 0.05 for at in times):
            continue  # every copy was sent before the answer was logged: in flight
        ended = min((kill for kill in kills if kill >= logged_at), default=None)
        if ended is None or logged_at < ended - LOGGED_BEFORE_KILL_S:
            resent_after_logged.append(event_id)
    avoided = sum(int(n) for path in tmp_path.glob("worker-*.log")
                  for n in re.findall(r"(\d+) of their events are final already",
                                      path.read_text()))  # fmt: skip
    print(
        f"events {len(events)}, sent again {sum(copies.values()) - len(copies)}, "
        f"of them logged over {LOGGED_BEFORE_KILL_S} s before a kill "
        f"{len(resent_after_logged)}, not sent again thanks to the log {avoided}"
    )
    examples = [(event_id, first_logged[event_id], arrivals[event_id])
                for event_id in resent_after_logged[:5]]  # fmt: skip
    assert len(resent_after_logged) <= 0.005 * len(events), (kills, examples)
    assert avoided > 0  # the kills did land between an answer and its commit
