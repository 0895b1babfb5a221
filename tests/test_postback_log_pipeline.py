"""The postback log end to end: real broker (Tansu), real HTTP sandbox, `dispatcher run` as a
process. A partner that rejects one app's events leaves a `delivered` record per delivered
postback with the partner's request id and a `rejected` record per rejection with its code;
`dispatcher postbacks` finds them; replaying by reason, then everything, delivers each rejected
event exactly once; a worker started again sends nothing the log shows as delivered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from dispatcher.devtools.broker import LocalBroker
from dispatcher.devtools.sandbox import Fault, PartnerSandbox
from schemas.postback_log import PostbackRecord
from tests.factories import app_dict, event_dict, event_id_of
from tests.pipeline import (
    Topics,
    WorkerProcess,
    produce,
    read_all,
    sandbox_ids,
    wait_for,
    write_config,
)
from tests.test_replay import replay

pytestmark = pytest.mark.broker

OTHER_APP = app_dict(app_id="com.example.other", tiktok_app_id="7300000000000000002")


def logged(broker: LocalBroker, topics: Topics) -> list[PostbackRecord]:
    return [PostbackRecord.model_validate(r) for r in read_all(broker, topics.log, timeout_s=3)]


def postbacks(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISPATCHER_", "TIKTOK_"))}
    return subprocess.run(
        [sys.executable, "-m", "dispatcher", "postbacks", "--config", str(config), *args],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip


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
