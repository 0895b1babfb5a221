"""`dispatcher replay --from --to` on the real broker (Tansu) and the real HTTP sandbox: a stream
decided under a config with one app inactive, then replayed under the config that activates
it: `--dry-run` sends nothing, a replay sends that app's owed events once, a second sends
nothing (the postback log shows them delivered)."""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from dispatcher.devtools.broker import LocalBroker
from dispatcher.devtools.sandbox import PartnerSandbox
from tests.factories import app_dict, event_dict, event_id_of
from tests.pipeline import (
    Topics,
    WorkerProcess,
    dispatcher_command,
    produce,
    read_log,
    sandbox_ids,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.broker

LATE = "com.example.late"


def replay_range(config: Path, *args: str, token: bool = True) -> subprocess.CompletedProcess[str]:
    return dispatcher_command("replay", config, *args, token=token)


def apps(late_active: bool) -> list[dict[str, object]]:
    return [app_dict(), app_dict(app_id=LATE, tiktok_app_id="7300000000000000009",
                                 active=late_active)]  # fmt: skip


def test_a_replayed_range_sends_what_a_new_config_owes_once(
    broker: LocalBroker, sandbox: PartnerSandbox, tmp_path: Path
) -> None:
    # Given a stream decided while one app was inactive
    topics = Topics.create(broker, "backfill")
    served = [event_dict("in-app-event") for _ in range(15)]
    late = [event_dict("in-app-event", app_id=LATE) for _ in range(9)]
    late += [event_dict("install", app_id=LATE) for _ in range(3)]
    organic = [event_dict("install", app_id=LATE, media_source="organic") for _ in range(4)]
    started = time.time()
    produce(broker, topics.in_app, [e for e in served + late if e["event_type"] != "install"])
    produce(broker, topics.installs, [e for e in late + organic if e["event_type"] == "install"])
    before = write_config(tmp_path / "before", broker, topics, sandbox.url, apps=apps(False))
    with WorkerProcess(before, tmp_path / "worker.log") as worker:
        wait_for(lambda: len(sandbox_ids(sandbox)) == 15, 60, "the served app's postbacks")
        wait_for(lambda: worker.metric("dispatcher_inflight_events") == 0, 20, "all final")
        # (inactive is rule 1: the organic installs are counted there too)
        assert worker.metric("dispatcher_decisions_total", reason="partner_inactive") == 16
        assert worker.stop() == 0
    after = write_config(tmp_path / "after", broker, topics, sandbox.url, apps=apps(True))
    window = ("--from", "1h", "--to", "0h")
    # When the range is replayed dry, under the config that activates the app
    dry = replay_range(after, *window, "--dry-run", token=False)
    assert dry.returncode == 0, dry.stderr
    # Then it counts what it would send, and sends nothing
    assert "would send 12;" in dry.stdout, dry.stdout
    assert "already_delivered 15" in dry.stdout, dry.stdout
    assert len(sandbox_ids(sandbox)) == 15
    # When it is replayed for real
    first = replay_range(after, *window)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "sent 12: delivered 12" in first.stdout, first.stdout
    # Then the late app's owed events arrive once each, logged as replays
    assert Counter(sandbox_ids(sandbox)) == Counter(event_id_of(e) for e in served + late)
    replays = [r for r in read_log(broker, topics.log, timeout_s=3) if r["replay"]]
    assert sorted(r["event_id"] for r in replays) == sorted(event_id_of(e) for e in late)
    # And a second replay sends nothing
    again = replay_range(after, *window)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "sent 0" in again.stdout, again.stdout
    assert "already_delivered 27" in again.stdout, again.stdout
    assert Counter(sandbox_ids(sandbox)) == Counter(event_id_of(e) for e in served + late)
    # And it is one partner app's and one partner's only when asked
    only = replay_range(after, *window, "--dry-run", "--app", "7300000000000000009", token=False)
    assert "would send 0;" in only.stdout, only.stdout
    assert "already_delivered 12" in only.stdout, only.stdout
    assert time.time() - started < 170


def test_a_range_with_no_record_says_so(
    broker: LocalBroker, sandbox: PartnerSandbox, tmp_path: Path
) -> None:
    topics = Topics.create(broker, "backfill-empty")
    config = write_config(tmp_path, broker, topics, sandbox.url)
    result = replay_range(config, "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-02T00:00:00Z",
                          "--dry-run", token=False)  # fmt: skip
    assert result.returncode == 1
    assert "no records from 2026-01-01T00:00:00Z to 2026-01-02T00:00:00Z" in result.stderr
    bad = replay_range(config, "--from", "1h", "--to", "2h", "--dry-run", token=False)
    assert bad.returncode == 2
    assert "--to is before --from" in bad.stderr
