"""`dispatcher plan`: the per-event comparison and the report of `dispatcher/plan.py` without
Kafka, the command's usage and config errors, then the command on the real broker."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml

from dispatcher.cli import main
from dispatcher.devtools.broker import LocalBroker
from dispatcher.inputs import DECODERS
from dispatcher.plan import (
    MAX_EXAMPLES,
    Cell,
    Plan,
    Planner,
    json_lines,
    plan_records,
    summary,
    write_json,
    write_table,
)
from schemas.dead_letter import REPLAY_PARTNER_HEADER
from schemas.events import IN_APP_EVENT, INSTALL
from tests.factories import (
    APP_ID,
    INSTALL_TIME,
    NOW_S,
    TIKTOK_APP_ID,
    app_dict,
    event_dict,
    event_id_of,
    make_in_app,
    make_install,
    make_oe_in_app,
    make_oe_partner,
    make_partner,
    partner_dict,
    raw,
)
from tests.pipeline import Topics, produce, write_config

OTHER_APP, OTHER_TIKTOK_APP = "com.example.other", "7300000000000000002"


def other_app(**overrides: Any) -> dict[str, Any]:
    return app_dict(app_id=OTHER_APP, tiktok_app_id=OTHER_TIKTOK_APP, **overrides)


def cells(plan: Plan) -> dict[Cell, int]:
    return {cell: change.count for cell, change in plan.changes.items()}


# --- the comparison -------------------------------------------------------------------------


def test_an_app_switched_on_moves_its_owed_events_from_partner_inactive_to_send() -> None:
    before = [make_partner(app_dict(active=False), other_app())]
    after = [make_partner(app_dict(active=True), other_app())]
    planner = Planner(before, after, NOW_S)
    switched = [make_in_app() for _ in range(3)] + [make_install()]
    others = [make_in_app(app_id=OTHER_APP), make_install(app_id=OTHER_APP)]
    for event in [*switched, *others]:
        planner.add(event)
    plan = planner.plan
    assert cells(plan) == {
        Cell("tiktok", TIKTOK_APP_ID, "af_purchase", "skip:partner_inactive", "send"): 3,
        Cell("tiktok", TIKTOK_APP_ID, "install", "skip:partner_inactive", "send"): 1,
    }
    purchases = plan.changes[Cell("tiktok", TIKTOK_APP_ID, "af_purchase",
                                  "skip:partner_inactive", "send")]  # fmt: skip
    assert purchases.examples == [event.event_id for event in switched[:3]]
    assert plan.unchanged == 2  # the other app's two events: send under both
    assert (plan.events, plan.bad_input) == (6, 0)


def test_a_longer_window_sends_what_fell_outside_the_shorter_one() -> None:
    before = [make_partner(app_dict(in_app={"window": "1d"}))]
    after = [make_partner(app_dict(in_app={"window": "7d"}))]
    planner = Planner(before, after, NOW_S)
    late = make_in_app(event_time=INSTALL_TIME + timedelta(days=3))
    far = make_in_app(event_time=INSTALL_TIME + timedelta(days=9))
    early = make_in_app(event_time=INSTALL_TIME + timedelta(hours=2))
    for event in (late, far, early, make_install()):
        planner.add(event)
    plan = planner.plan
    cell = Cell("tiktok", TIKTOK_APP_ID, "af_purchase", "skip:outside_window", "send")
    assert cells(plan) == {cell: 1}
    assert plan.changes[cell].examples == [late.event_id]
    assert plan.unchanged == 3  # outside both windows, inside both, and the install


def test_a_partner_only_in_the_new_config_is_not_configured_in_the_running_one() -> None:
    tiktok = make_partner()
    oceanengine = make_oe_partner()
    planner = Planner([tiktok], [tiktok, oceanengine], NOW_S)
    oe_purchase, tiktok_purchase = make_oe_in_app(), make_in_app()
    planner.add(oe_purchase)
    planner.add(tiktok_purchase)
    plan = planner.plan
    assert cells(plan) == {
        # the app's id at Ocean Engine is the AppsFlyer app id
        Cell("oceanengine", APP_ID, "af_purchase", "skip:not_configured", "send"): 1,
        Cell("oceanengine", APP_ID, "af_purchase", "skip:not_configured",
             "skip:out_of_scope"): 1,
    }  # fmt: skip
    assert plan.unchanged == 2  # TikTok, the same file in both: counted without deciding
    # and the other way round: a partner whose file is gone
    gone = Planner([tiktok, oceanengine], [tiktok], NOW_S)
    gone.add(oe_purchase)
    assert cells(gone.plan) == {
        Cell("oceanengine", APP_ID, "af_purchase", "send", "skip:not_configured"): 1
    }


def test_an_unconfigured_app_is_named_by_its_appsflyer_app_id_and_a_new_destination_counts() -> (
    None
):
    before = [make_partner(app_dict())]
    after = [make_partner(app_dict(tiktok_app_id="7300000000000000099"))]
    planner = Planner(before, after, NOW_S)
    planner.add(make_in_app())  # sent, to another TikTok app
    planner.add(make_in_app(app_id=OTHER_APP))  # unknown_app under both: unchanged
    assert cells(planner.plan) == {
        Cell("tiktok", "7300000000000000099", "af_purchase", "send", "send"): 1
    }
    assert planner.plan.unchanged == 1
    dropped = Planner([make_partner(app_dict(), other_app())], [make_partner(app_dict())], NOW_S)
    dropped.add(make_in_app(app_id=OTHER_APP))
    # the new side's destination: the AppsFlyer app id of an app the new file lacks
    assert cells(dropped.plan) == {
        Cell("tiktok", OTHER_APP, "af_purchase", "send", "skip:unknown_app"): 1
    }


def test_examples_are_capped_at_five_and_the_first_ones_kept() -> None:
    planner = Planner([make_partner(app_dict(active=False))], [make_partner()], NOW_S)
    events = [make_in_app() for _ in range(MAX_EXAMPLES + 3)]
    for event in events:
        planner.add(event)
    ((_cell, change),) = planner.plan.changes.items()
    assert change.count == MAX_EXAMPLES + 3
    assert change.examples == [event.event_id for event in events[:MAX_EXAMPLES]]


def test_unchanged_counts_every_partner_decision_that_stays() -> None:
    tiktok = make_partner()
    oceanengine = make_oe_partner()
    planner = Planner([tiktok, oceanengine], [tiktok, oceanengine], NOW_S)
    for _ in range(4):
        planner.add(make_in_app())
    assert planner.plan.changes == {}
    assert planner.plan.unchanged == 8  # 4 events x 2 partners
    # a replayed dead letter is decided for its partner alone, as the worker does
    planner.add(make_in_app(), only_partner="tiktok")
    assert planner.plan.unchanged == 9


def test_deciding_without_payloads_decides_as_the_worker_does() -> None:
    from dispatcher.partners import adapter_for
    from dispatcher.plan import _decide_only
    from dispatcher.rules import decide

    events = [
        make_in_app(), make_install(), make_in_app(event_name="af_level_achieved"),
        make_in_app(event_time=INSTALL_TIME + timedelta(days=200)), make_oe_in_app(),
        make_in_app(app_id=OTHER_APP), make_in_app(gdpr_applies=True),
    ]  # fmt: skip
    for partner in (make_partner(app_dict(), other_app(active=False)), make_oe_partner()):
        real, lean = adapter_for(partner.name), _decide_only(partner.name)
        for event in events:
            want, got = decide(event, partner, real, NOW_S), decide(event, partner, lean, NOW_S)
            assert (type(got), got.reason, got[1]) == (type(want), want.reason, want[1])
    assert lean.name == "oceanengine"  # the rest is the adapter's own


class Record(NamedTuple):
    topic: str
    timestamp: int
    value: bytes
    headers: list[tuple[str, bytes]]


def test_records_are_decoded_as_the_worker_reads_them_and_filtered_by_time() -> None:
    decode = DECODERS["appsflyer"].decode
    topics = {"installs": (INSTALL, decode), "in-app": (IN_APP_EVENT, decode)}
    purchase, install = event_dict("in-app-event"), event_dict("install")
    records = [
        Record("in-app", 1_000, raw(purchase), []),
        Record("installs", 2_000, raw(install), []),
        Record("in-app", 2_500, b"not json", []),
        Record("in-app", 2_600, raw(purchase), [(REPLAY_PARTNER_HEADER, b"oceanengine")]),
        Record("in-app", 999, raw(purchase), []),  # before the range
        Record("in-app", 3_001, raw(purchase), []),  # after it
    ]
    planner = Planner([make_partner(app_dict(active=False))], [make_partner()], NOW_S)
    plan_records(planner, records, topics, 1_000, 3_000)
    plan = planner.plan
    assert cells(plan) == {
        Cell("tiktok", TIKTOK_APP_ID, "af_purchase", "skip:partner_inactive", "send"): 1,
        Cell("tiktok", TIKTOK_APP_ID, "install", "skip:partner_inactive", "send"): 1,
    }
    # the replay for Ocean Engine is not TikTok's to decide: an event with no decision
    assert (plan.events, plan.bad_input, plan.unchanged) == (3, 1, 0)
    assert (plan.first_ms, plan.last_ms) == (1_000, 2_600)
    assert plan.changes[Cell("tiktok", TIKTOK_APP_ID, "install", "skip:partner_inactive",
                             "send")].examples == [event_id_of(install)]  # fmt: skip


# --- the report -----------------------------------------------------------------------------


def sample_plan() -> Plan:
    before = [make_partner(app_dict(active=False), other_app(in_app={"window": "1d"}))]
    after = [make_partner(app_dict(), other_app(in_app={"window": "7d"}))]
    planner = Planner(before, after, NOW_S)
    for _ in range(7):
        planner.add(make_in_app())
    planner.add(make_install())
    for _ in range(2):
        planner.add(make_in_app(app_id=OTHER_APP, event_time=INSTALL_TIME + timedelta(days=3)))
    planner.add(make_in_app(app_id=OTHER_APP))
    return planner.plan


def test_json_lines_have_the_contract_shape() -> None:
    lines = [json.loads(line) for line in json_lines(sample_plan())]
    assert [list(line) for line in lines] == [
        ["partner", "destination", "event", "from", "to", "count", "examples"]
    ] * 3
    assert [(line["destination"], line["event"], line["from"], line["to"], line["count"])
            for line in lines] == [
        (TIKTOK_APP_ID, "af_purchase", "skip:partner_inactive", "send", 7),
        (TIKTOK_APP_ID, "install", "skip:partner_inactive", "send", 1),
        (OTHER_TIKTOK_APP, "af_purchase", "skip:outside_window", "send", 2),
    ]  # fmt: skip
    assert [len(line["examples"]) for line in lines] == [5, 1, 2]
    out = io.StringIO()
    write_json(sample_plan(), out)
    assert len(out.getvalue().splitlines()) == 3


def test_the_table_sorts_by_partner_app_event_then_count() -> None:
    out = io.StringIO()
    write_table(sample_plan(), out)
    header, *rows = out.getvalue().splitlines()
    assert header.split() == ["partner", "destination", "event", "from", "->", "to", "count",
                              "examples"]  # fmt: skip
    assert [row.split()[1:7] for row in rows] == [
        [TIKTOK_APP_ID, "af_purchase", "skip:partner_inactive", "->", "send", "7"],
        [TIKTOK_APP_ID, "install", "skip:partner_inactive", "->", "send", "1"],
        [OTHER_TIKTOK_APP, "af_purchase", "skip:outside_window", "->", "send", "2"],
    ]
    assert len({row.index("skip:") for row in rows}) == 1  # aligned
    nothing = io.StringIO()
    write_table(Plan(unchanged=4, events=4), nothing)
    assert nothing.getvalue() == "no decision changes\n"


def test_the_summary_says_what_stays_the_same_in_one_line() -> None:
    plan = Plan(unchanged=123_456, events=61_728, bad_input=3)
    assert summary(plan, "2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z") == (
        "unchanged: 123,456 decisions (61,728 events read from 2026-12-01T00:00:00Z to "
        "2026-12-02T00:00:00Z, 3 bad input)"
    )


# --- the command without a broker -----------------------------------------------------------


def write_files(directory: Path, partner: dict[str, Any], bootstrap: str = "127.0.0.1:1") -> Path:
    (directory / "partners").mkdir(parents=True)
    (directory / "partners" / "tiktok.yaml").write_text(yaml.safe_dump(partner))
    config = directory / "dispatcher.yaml"
    config.write_text(yaml.safe_dump({"kafka": {"bootstrap_servers": bootstrap}}))
    return config


def test_a_config_error_in_the_new_files_exits_2_as_check_config_reports_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [name for name in os.environ if name.startswith(("DISPATCHER_", "TIKTOK_"))]:
        monkeypatch.delenv(name)
    current = write_files(tmp_path / "current", partner_dict())
    broken = partner_dict(app_dict(in_app={"window": "forever"}), endpoint="ftp://x")
    new = write_files(tmp_path / "new", broken)
    assert main(["check-config", "--skip-secrets", "--config", str(new)]) == 2
    checked = capsys.readouterr().err
    assert "in_app_postbacks.window" in checked
    assert "endpoint" in checked
    for given in (new, new.parent / "partners", new.parent):
        assert main(["plan", "--config", str(current), "--with", str(given), "--from", "2h",
                     "--to", "1h"]) == 2  # fmt: skip
        assert capsys.readouterr().err == checked
    assert main(["plan", "--config", str(current), "--with", str(tmp_path / "nowhere"),
                 "--from", "2h", "--to", "1h"]) == 2  # fmt: skip
    assert "nowhere" in capsys.readouterr().err


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    current = str(write_files(tmp_path, partner_dict()))
    assert main(["plan", "--config", current, "--with", current, "--from", "yesterday",
                 "--to", "1h"]) == 2  # fmt: skip
    assert capsys.readouterr().err.startswith("--from: 'yesterday' is not a moment")
    assert main(["plan", "--config", current, "--with", current, "--from", "1h",
                 "--to", "2h"]) == 2  # fmt: skip
    assert "is before --from" in capsys.readouterr().err
    with pytest.raises(SystemExit) as missing:
        main(["plan", "--config", current, "--from", "2h", "--to", "1h"])  # no --with
    assert missing.value.code == 2


def test_ctrl_c_stops_the_read_and_reports_what_was_decided_so_far(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import dispatcher.kafka_clients
    import dispatcher.postback_log

    lifetime = {"max_event_age": "lifetime"}  # the factories' events are dated 2025
    running = write_files(tmp_path / "running",
                          partner_dict(app_dict(active=False), delivery=lifetime))  # fmt: skip
    new = write_files(tmp_path / "new", partner_dict(app_dict(), delivery=lifetime))
    now_ms = int(time.time() * 1000)
    first, second = event_dict("in-app-event"), event_dict("in-app-event")

    class Consumer:
        closed = False

        def close(self) -> None:
            Consumer.closed = True

    def read_topics(consumer: Any, topics: list[str], since_s: float, until_s: float,
                    progress: Any, stop: Any) -> Any:  # fmt: skip
        assert topics == ["installs", "in-app-events"]
        yield Record("in-app-events", now_ms - 60_000, raw(first), [])
        signal.raise_signal(signal.SIGINT)  # Ctrl-C while the read goes on
        assert stop()
        return
        yield Record("in-app-events", now_ms - 30_000, raw(second), [])

    monkeypatch.setattr(dispatcher.kafka_clients, "make_log_reader", lambda settings: Consumer())
    monkeypatch.setattr(dispatcher.postback_log, "read_topics", read_topics)
    before = signal.getsignal(signal.SIGINT)
    code = main(["plan", "--config", str(running), "--with", str(new), "--from", "1h", "--to",
                 "0m"])  # fmt: skip
    assert code == 1
    assert signal.getsignal(signal.SIGINT) is before
    assert Consumer.closed
    out, err = capsys.readouterr()
    (row,) = out.splitlines()[1:-1]
    assert row.split()[2:7] == ["af_purchase", "skip:partner_inactive", "->", "send", "1"]
    assert event_id_of(first) in row
    assert out.splitlines()[-1].startswith("unchanged: 0 decisions (1 events read from ")
    moment = datetime.fromtimestamp((now_ms - 60_000) / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert err.splitlines()[-1].startswith(f"interrupted: read the records up to {moment} ")


# --- the command on the broker --------------------------------------------------------------


def dispatcher(*args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("DISPATCHER_", "TIKTOK_"))}
    return subprocess.run(
        [sys.executable, "-m", "dispatcher", *args],
        capture_output=True, text=True, env=environ, timeout=120, check=False,
    )  # fmt: skip


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.broker
def test_plan_on_the_broker_lists_the_activated_apps_owed_events_and_nothing_else(
    broker: LocalBroker, tmp_path: Path
) -> None:
    topics = Topics.create(broker, "plan")
    endpoint = "http://127.0.0.1:1/open_api/v1.3/event/track/"
    running = write_config(tmp_path / "running", broker, topics, endpoint,
                           apps=[app_dict(active=False), other_app()])  # fmt: skip
    new = write_config(tmp_path / "new", broker, topics, endpoint,
                       apps=[app_dict(active=True), other_app()])  # fmt: skip
    started = time.time()
    purchases = [event_dict("in-app-event") for _ in range(8)]
    installs = [event_dict("install") for _ in range(3)]
    others = [event_dict("in-app-event", app_id=OTHER_APP) for _ in range(4)] + [
        event_dict("in-app-event", app_id=OTHER_APP, event_name="af_level_achieved")
    ]
    produce(broker, topics.in_app, [*purchases, *others, b"not an event"])
    produce(broker, topics.installs, installs)
    since, until = iso(started - 5), iso(time.time() + 5)

    def plan(*args: str) -> subprocess.CompletedProcess[str]:
        return dispatcher("plan", "--config", str(running), "--from", since, "--to", until, *args)

    table = plan("--with", str(new.parent / "partners"))
    assert table.returncode == 0, table.stderr
    header, *rows, last = table.stdout.splitlines()
    assert header.split()[:3] == ["partner", "destination", "event"]
    assert [row.split()[:7] for row in rows] == [
        ["tiktok", TIKTOK_APP_ID, "af_purchase", "skip:partner_inactive", "->", "send", "8"],
        ["tiktok", TIKTOK_APP_ID, "install", "skip:partner_inactive", "->", "send", "3"],
    ]
    assert last == (f"unchanged: 5 decisions (16 events read from {since} to {until}, "
                    "1 bad input)")  # fmt: skip

    as_json = plan("--with", str(new), "--json")
    assert as_json.returncode == 0, as_json.stderr
    lines = [json.loads(line) for line in as_json.stdout.splitlines()]
    counted: Counter[str] = Counter()
    for line in lines:
        assert (line["partner"], line["destination"], line["from"], line["to"]) == (
            "tiktok", TIKTOK_APP_ID, "skip:partner_inactive", "send")  # fmt: skip
        counted[line["event"]] = line["count"]
        owed = purchases if line["event"] == "af_purchase" else installs
        assert set(line["examples"]) <= {event_id_of(record) for record in owed}
        assert len(line["examples"]) == min(5, line["count"])
    assert counted == {"af_purchase": 8, "install": 3}
    assert as_json.stderr.splitlines()[-1].startswith("unchanged: 5 decisions (16 events")

    empty = dispatcher("plan", "--config", str(running), "--with", str(new),
                       "--from", "3d", "--to", "2d")  # fmt: skip
    assert empty.returncode == 1
    assert empty.stdout == ""
    (line,) = empty.stderr.splitlines()
    assert line.startswith(f"no records in {topics.installs}, {topics.in_app} from ")
