"""The offline commands, run as an operator runs them: `dispatcher check-config` and `explain`."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from kafka import KafkaConsumer

from dispatcher.config_loader import load_settings
from dispatcher.devtools.broker import LocalBroker
from dispatcher.devtools.processes import free_port
from dispatcher.explain import NotJsonError, read_events
from dispatcher.logs import ClientNoiseFilter
from tests.factories import app_dict, event_dict, partner_dict

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config" / "dispatcher.yaml"
TOKEN = "s3cret-token-value"


def dispatcher(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("DISPATCHER_", "TIKTOK_"))}
    return subprocess.run(
        [sys.executable, "-m", "dispatcher", *args],
        capture_output=True, text=True, env=environ | (env or {}), input=stdin, timeout=60, check=False,
    )  # fmt: skip


def test_check_config_accepts_the_example() -> None:
    result = dispatcher(
        "check-config", "--config", str(EXAMPLE), env={"TIKTOK_ACCESS_TOKEN": TOKEN}
    )
    assert result.returncode == 0, result.stderr
    assert "partner tiktok" in result.stdout
    assert TOKEN not in result.stdout + result.stderr


def test_check_config_lists_every_error_and_exits_2(tmp_path: Path) -> None:
    (tmp_path / "partners").mkdir()
    partner = partner_dict(app_dict(click_lookback="60d", in_app={"events": [
        {"sdk_event": "af_purchase", "partner_event": "Purchase"}]}))  # fmt: skip
    (tmp_path / "partners" / "tiktok.yaml").write_text(yaml.safe_dump(partner))
    config = tmp_path / "dispatcher.yaml"
    config.write_text(yaml.safe_dump({"kafka": {"bootstrap_servers": "k:9092", "group": "x"}}))
    result = dispatcher("check-config", "--config", str(config))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0] == "configuration errors (4):"
    partner_file = str((tmp_path / "partners" / "tiktok.yaml").resolve())
    assert (
        f"  {partner_file}: apps[0].click_lookback: 60d is out of range; allowed: 1h to 30d"
        in lines
    )
    assert any(
        line.startswith(
            f"  {partner_file}: apps[0].in_app_postbacks.events[0].partner_event: 'Purchase'"
        )
        for line in lines
    )
    assert (
        f"  {config}: kafka.group: unknown key; allowed: bootstrap_servers, group_id, "
        in "\n".join(lines)
    )
    assert any("TIKTOK_ACCESS_TOKEN is not set" in line for line in lines)


def test_check_config_can_skip_secrets() -> None:
    result = dispatcher("check-config", "--config", str(EXAMPLE), "--skip-secrets")
    assert result.returncode == 0, result.stderr


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = dispatcher("check-config", "--config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "nope.yaml: cannot read" in result.stderr


# The moment the explained factory events are decided at: the day after their install.
NOW = "2025-11-20T09:00:00Z"


def test_explain_shows_decision_rule_and_payload_with_the_token_redacted(tmp_path: Path) -> None:
    event = event_dict("in-app-event", event_id="explain-1")
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    result = dispatcher(
        "explain", "--config", str(EXAMPLE), "--now", NOW, str(path),
        env={"TIKTOK_ACCESS_TOKEN": TOKEN},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "decision: send (attributed)" in result.stdout
    assert "rule 9 (revenue)" in result.stdout
    assert "Access-Token: ***redacted***" in result.stdout
    assert '"event": "Purchase"' in result.stdout
    assert TOKEN not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("example", "header", "body"),
    [
        ("install.json", "event a3664e30b158858632cbbe9ce85929b2 (derived): install record, a first install",
         '"callback": "E.C.P.CmQKSH7gS2xv8Xh0dGVzdA"'),
        ("in-app-event.json", "event 42182de401938723396ff69c9fdf3bf0 (derived): in-app event af_purchase",
         '"value": 9.99'),
    ],
)  # fmt: skip
def test_explain_reads_the_readmes_appsflyer_examples(example: str, header: str, body: str) -> None:
    result = dispatcher(
        "explain", "--config", str(EXAMPLE), "--now", "2025-11-21T00:00:00Z",
        str(REPO / "config" / "examples" / example),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == header
    assert "decision: send (attributed)" in result.stdout
    assert body in result.stdout


def test_explain_names_the_new_reasons() -> None:
    reinstall = event_dict("install", event_type="reinstall", event_name="reinstall")
    secondary = event_dict("in-app-event", is_primary_attribution=False, media_source="organic")
    lines = "\n".join(json.dumps(record) for record in (reinstall, secondary))
    result = dispatcher("explain", "--config", str(EXAMPLE), "--json", "-", stdin=lines)
    assert result.returncode == 0, result.stderr
    first, second = json.loads(result.stdout)
    assert first["conversion"] == "reinstall"
    for decision in first["decisions"]:  # both partners
        assert decision["reason"] == "not_a_new_install"
        assert decision["detail"] == "a reinstall record, not a first install"
    assert second["primary"] is False
    for decision in second["decisions"]:  # the example apps: scope attributed
        assert decision["reason"] == "out_of_scope"
    text = dispatcher("explain", "--config", str(EXAMPLE), "-", stdin=lines).stdout
    assert "install record, a reinstall" in text
    assert "in-app event af_purchase, secondary attribution copy" in text


def test_explain_json_for_a_skip_and_for_stdin() -> None:
    event = event_dict("install", media_source="organic")
    result = dispatcher("explain", "--config", str(EXAMPLE), "--json", "-", stdin=json.dumps(event))
    assert result.returncode == 0, result.stderr
    decisions = {entry["partner"]: entry for entry in json.loads(result.stdout)["decisions"]}
    assert decisions.keys() == {"tiktok", "oceanengine"}  # the example config's partners
    assert decisions["oceanengine"]["reason"] == "out_of_scope"
    assert decisions["tiktok"] == {
        "partner": "tiktok",
        "app_id": "id1234567890",
        "decision": "skip",
        "reason": "out_of_scope",
        "rule": 4,
        "rule_title": "attribution scope and primary copy",
        "detail": "scope is attributed, but not attributed to tiktok: organic install",
    }


def test_explain_reports_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(event_dict("install", event_time=1763632800)))
    result = dispatcher("explain", "--config", str(EXAMPLE), str(path))
    assert result.returncode == 0
    assert result.stdout.startswith(
        "bad input on the installs topic -> dead letter (reason bad_input): event_time"
    )


def test_explain_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(event_dict("install")) for _ in range(3)))
    result = dispatcher("explain", "--config", str(EXAMPLE), "--json", str(path))
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 3


@pytest.mark.parametrize(
    ("text", "line"),
    [("this is not an event\n", 1), ('{"app_id": "id1"}\nnot json at all\n{"app_id": "id2"}\n', 2)],
)
def test_explain_refuses_text_that_is_not_json_naming_the_line(
    tmp_path: Path, text: str, line: int
) -> None:
    path = tmp_path / "events.txt"
    path.write_text(text)
    result = dispatcher("explain", "--config", str(EXAMPLE), str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"{path}: neither one JSON document" in result.stderr
    assert f"line {line} is not JSON (Expecting value)" in result.stderr


def test_explain_json_lines_name_the_line_of_each_event(tmp_path: Path) -> None:
    # Given JSON lines whose third line (after a blank one) is bad input
    good = json.dumps(event_dict("install", media_source="organic"))
    bad = json.dumps(event_dict("install", event_time="yesterday"))
    path = tmp_path / "events.jsonl"
    path.write_text(f"{good}\n\n{bad}\n")
    # When explained, as text and as JSON
    text = dispatcher("explain", "--config", str(EXAMPLE), str(path))
    as_json = dispatcher("explain", "--config", str(EXAMPLE), "--json", str(path))
    # Then every entry says which line it is
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("line 1: event ")
    assert (
        "\nline 3: bad input on the installs topic -> dead letter (reason bad_input): event_time"
        in text.stdout
    )
    first, second = json.loads(as_json.stdout)
    assert (first["line"], second["line"]) == (1, 3)
    assert second["dead_letter_reason"] == "bad_input"


def test_every_command_has_help() -> None:
    for command in ["check-config", "explain"]:
        result = dispatcher(command, "--help")
        assert result.returncode == 0
        assert "--config" in result.stdout
    assert dispatcher().returncode == 2
    assert dispatcher("no-such-command").returncode == 2


def test_an_unreachable_broker_at_start_says_where_waits_a_stated_time_and_exits_1(
    tmp_path: Path,
) -> None:
    """The first line names the broker and the wait; kafka-python's retries show once each; the
    allocator's thresholds are set (here: left to the environment) before the clients start."""
    port = free_port()  # nothing listens there
    (tmp_path / "partners").mkdir()
    (tmp_path / "partners" / "tiktok.yaml").write_text(yaml.safe_dump(partner_dict()))
    config = tmp_path / "dispatcher.yaml"
    config.write_text(yaml.safe_dump({
        "kafka": {"bootstrap_servers": f"127.0.0.1:{port}", "connect_timeout_s": 3},
        "metrics": {"host": "127.0.0.1", "port": 0},
    }))  # fmt: skip
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "dispatcher", "run", "--config", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "TIKTOK_ACCESS_TOKEN": "t",
             "GLIBC_TUNABLES": "glibc.malloc.tcache_count=7"},  # glibc's default, named
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert elapsed < 15
    lines = result.stderr.splitlines()
    assert f"connecting to Kafka at 127.0.0.1:{port} (giving up after 3 s" in lines[0]
    assert f"cannot reach Kafka at 127.0.0.1:{port}" in lines[-1]
    # the allocator's thresholds are the operator's when the environment sets them
    assert any("memory allocator: thresholds left to GLIBC_TUNABLES" in line for line in lines)
    client_lines = [line for line in lines if " kafka." in line]
    assert len(client_lines) <= 6, "\n".join(client_lines)


def test_client_noise_filter_lets_one_line_of_each_kind_through_per_window() -> None:
    now = [0.0]
    noise = ClientNoiseFilter(window_s=60, clock=lambda: now[0])

    def record(name: str, message: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.WARNING, "", 0, message, None, None)

    kinds = ["failed (backoff 0.09 secs)", "failed (backoff 1.38 secs)", "not ready; waiting 5 s"]
    passed = [noise.filter(record("kafka.net.manager", k)) for k in kinds]
    assert passed == [True, False, True]  # numbers aside, the first two are the same line
    assert noise.filter(record("dispatcher.worker", "failed (backoff 1 secs)"))  # ours: always
    assert noise.filter(record("dispatcher.worker", "failed (backoff 1 secs)"))
    now[0] = 61
    assert noise.filter(record("kafka.net.manager", "failed (backoff 29.05 secs)"))


@pytest.mark.parametrize("events", ["-5", "0", "many"])
def test_the_demo_refuses_a_sample_size_below_one(events: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dispatcher", "demo", "--events", events],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--events" in result.stderr


@pytest.mark.broker
def test_topics_create_makes_the_configured_topics_once_and_reports_what_exists(
    broker: LocalBroker, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:6]
    kafka = {"bootstrap_servers": broker.bootstrap,
             "topics": {"installs": f"i-{suffix}", "in_app_events": f"e-{suffix}"},
             "dead_letter_topic": f"d-{suffix}", "postback_log_topic": f"l-{suffix}"}  # fmt: skip
    (tmp_path / "partners").mkdir()
    (tmp_path / "partners" / "tiktok.yaml").write_text(yaml.safe_dump(partner_dict()))
    config = tmp_path / "dispatcher.yaml"
    config.write_text(yaml.safe_dump({"kafka": kafka}))
    first = dispatcher("topics", "create", "--config", str(config), "--partitions", "4")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        f"i-{suffix}: created (4 partitions, replication 1)",
        f"e-{suffix}: created (4 partitions, replication 1)",
        f"d-{suffix}: created (1 partition, replication 1)",
        f"l-{suffix}: created (4 partitions, replication 1)",
    ]
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    try:
        assert len(consumer.partitions_for_topic(f"i-{suffix}") or ()) == 4
        assert len(consumer.partitions_for_topic(f"l-{suffix}") or ()) == 4
    finally:
        consumer.close()

    again = dispatcher("topics", "create", "--config", str(config))
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [f"i-{suffix}: exists", f"e-{suffix}: exists",
                                         f"d-{suffix}: exists", f"l-{suffix}: exists"]  # fmt: skip


def test_the_postback_log_is_created_kept_by_time_not_compacted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Its keys name partner apps: compaction would keep one record per partner app. The local
    broker does not report topic configs: the request is checked instead."""
    from dispatcher import kafka_clients

    requested: list[Any] = []

    class Admin:
        def __init__(self, **_: Any) -> None:
            pass

        def list_topics(self) -> list[str]:
            return []

        def create_topics(self, topics: list[Any]) -> None:
            requested.extend(topics)

        def close(self) -> None:
            pass

    monkeypatch.setattr(kafka_clients, "KafkaAdminClient", Admin)
    (tmp_path / "partners").mkdir()
    (tmp_path / "partners" / "tiktok.yaml").write_text(yaml.safe_dump(partner_dict()))
    config = tmp_path / "dispatcher.yaml"
    config.write_text(yaml.safe_dump({"kafka": {"bootstrap_servers": "k:9092"}}))
    settings = load_settings(config, {"TIKTOK_ACCESS_TOKEN": "t"})
    kafka_clients.create_topics(settings, 6, 3)
    configs = {topic.name: topic.topic_configs for topic in requested}
    assert configs["postbacks-log"] == {"cleanup.policy": "delete"}  # by retention, said outright
    assert configs["postbacks-dead-letter"] == {}
    assert {topic.name: topic.num_partitions for topic in requested}["postbacks-log"] == 6


def test_explain_refuses_json_nested_too_deep_to_read_instead_of_crashing() -> None:
    deep = "[" * 5000 + "]" * 5000
    with pytest.raises(NotJsonError, match=r"^neither one JSON document \(maximum recursion depth"):
        read_events(deep)


@pytest.mark.broker
def test_broker_starts_the_local_broker_alone_and_stops_on_sigterm(broker: object) -> None:
    """`dispatcher broker`: the demo's and the tests' broker, for a local run of `dispatcher run`."""
    import signal
    import socket

    from kafka import KafkaConsumer

    from dispatcher.devtools.broker import free_port

    port = free_port()
    with subprocess.Popen(
        [sys.executable, "-m", "dispatcher", "broker", "--port", str(port), "--topic", "installs",
         "--topic", "in-app-events", "--partitions", "2"],
        stdout=subprocess.PIPE, text=True,
    ) as process:  # fmt: skip
        assert process.stdout is not None
        assert (
            process.stdout.readline().strip()
            == f"local broker (Tansu, memory storage) on 127.0.0.1:{port}"
        )
        consumer = KafkaConsumer(bootstrap_servers=f"127.0.0.1:{port}")
        try:
            assert consumer.partitions_for_topic("installs") == {0, 1}
        finally:
            consumer.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        process.stdout.read()
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0  # the broker went with it
