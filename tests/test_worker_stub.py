"""The worker in-process on the stub consumer and producer (dramatiq's stub-broker idea): the
loop's bookkeeping — decisions, settling, dead letters, commits, rebalances, stop — in
milliseconds. The real-broker tests in test_worker.py stay for what only a broker shows."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kafka import TopicPartition

from dispatcher.config_loader import load_partners, load_settings
from dispatcher.devtools.stub_kafka import StubConsumer, StubProducer
from dispatcher.health import Health
from dispatcher.metrics import Metrics
from dispatcher.worker import HANDLE_CHUNK, Worker, chunked
from schemas.dead_letter import REPLAY_PARTNER_HEADER
from tests.factories import (
    app_dict,
    click_id_of,
    event_dict,
    event_id_of,
    oceanengine_event_dict,
    oe_partner_dict,
    partner_dict,
    raw,
)

TOKEN = "stub-token-77"
INSTALLS, IN_APP, DEAD_LETTERS = "installs", "in-app-events", "postbacks-dead-letter"
LOG = "postbacks-log"


class Partner:
    """TikTok and Ocean Engine stand-ins on httpx's MockTransport: record every TikTok event id
    and every Ocean Engine callback accepted."""

    def __init__(self) -> None:
        self.event_ids: list[str] = []
        self.callbacks: list[str] = []
        self.lock = threading.Lock()
        self.delay_s = 0.0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        time.sleep(self.delay_s)
        with self.lock:
            if request.url.host == "oceanengine.test":
                self.callbacks.append(body["context"]["ad"]["callback"])
                return httpx.Response(200, json={"code": 0, "message": "ok", "request_id": "r"})
            self.event_ids += [entry["event_id"] for entry in body["data"]]
        return httpx.Response(200, json={"code": 0, "message": "OK", "request_id": "r", "data": {}})


class AnsweringLater(Partner):
    """The partner stand-in, answering `later_s` after each request without holding up the
    delivery loop (an asynchronous handler): requests wait on the wire while more queue."""

    def __init__(self, later_s: float) -> None:
        super().__init__()
        self.later_s = later_s

    async def __call__(self, request: httpx.Request) -> httpx.Response:  # type: ignore[override]
        await asyncio.sleep(self.later_s)
        return super().__call__(request)


class Running:
    """A worker on its own thread, with its stubs."""

    def __init__(
        self, tmp_path: Path, producer: StubProducer, tiktok_app: dict[str, Any] | None = None,
        ocean: bool = False, answers: Partner | None = None, delivery: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic, token_file: Path | None = None,
        postback_log: bool = False, log_skips: bool = False,
    ) -> None:  # fmt: skip
        (tmp_path / "partners").mkdir()
        # (`max_event_age: lifetime`: the factories' events are dated 2025)
        fast = {"batch_linger_ms": 5, "backoff_initial_s": 0.01, "backoff_max_s": 0.02,
                "max_event_age": "lifetime"}  # fmt: skip
        fast |= delivery or {}
        partner = partner_dict(tiktok_app or app_dict(),
                               endpoint="http://tiktok.test/open_api/v1.3/event/track/",
                               delivery=fast)  # fmt: skip
        environ = {"TIKTOK_ACCESS_TOKEN": TOKEN}
        if token_file is not None:  # the token from a file, not the environment
            del partner["access_token_env"]
            partner["access_token_file"] = str(token_file)
            environ = {}
        (tmp_path / "partners" / "tiktok.yaml").write_text(yaml.safe_dump(partner))
        if ocean:
            other = oe_partner_dict(endpoint="http://oceanengine.test/api/v2/conversion",
                                    delivery=fast | {"batch_linger_ms": 0})  # fmt: skip
            (tmp_path / "partners" / "oceanengine.yaml").write_text(yaml.safe_dump(other))
        config = tmp_path / "dispatcher.yaml"
        config.write_text(yaml.safe_dump({
            "kafka": {"bootstrap_servers": "stub:9092", "topics": {"installs": INSTALLS, "in_app_events": IN_APP},
                      "dead_letter_topic": DEAD_LETTERS,
                      "postback_log_topic": LOG if postback_log else None},
            "worker": {"commit_interval_ms": 10, "shutdown_timeout_s": 5},
            "postback_log": {"skips": log_skips},
        }))  # fmt: skip
        settings = load_settings(config, environ)
        self.consumer = StubConsumer({INSTALLS: 2, IN_APP: 2, DEAD_LETTERS: 1, LOG: 2})
        self.producer = producer
        self.partner = answers or Partner()
        self.metrics = Metrics()
        self.worker = Worker(
            settings, self.consumer, producer, self.metrics, Health(),
            load_partners=lambda: load_partners(tmp_path / "partners", environ),
            transport=httpx.MockTransport(self.partner),
            clock=clock,
        )  # fmt: skip
        self.thread = threading.Thread(target=self.worker.run, daemon=True)

    def produce(
        self,
        topic: str,
        record: dict[str, Any] | bytes,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        value = raw(record) if isinstance(record, dict) else record
        key = str(record["appsflyer_id"]).encode() if isinstance(record, dict) else None
        self.consumer.produce(topic, value, key, headers)

    def committed(self) -> dict[TopicPartition, int]:
        return dict(self.consumer.committed_offsets)

    def ends(self) -> dict[TopicPartition, int]:
        return {
            tp: len(log)
            for tp, log in self.consumer.logs.items()
            if log and tp.topic not in (DEAD_LETTERS, LOG)
        }

    def metric(self, name: str, **labels: str) -> float:
        return sum(
            sample.value
            for family in self.metrics.registry.collect()
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        )

    def stop(self) -> None:
        self.worker.request_stop()
        self.thread.join(timeout=20)
        assert not self.thread.is_alive()


def until(condition: Callable[[], Any], what: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    worker = Running(tmp_path, StubProducer())
    worker.thread.start()
    yield worker
    if worker.thread.is_alive():
        worker.stop()


def test_owed_postbacks_go_out_and_every_offset_is_committed(running: Running) -> None:
    # Given AppsFlyer records of every kind, and bad input
    owed = [event_dict("install") for _ in range(20)] + [
        event_dict("in-app-event") for _ in range(20)
    ]
    skipped = [event_dict("install", media_source="organic") for _ in range(10)]
    for record in owed + skipped:
        running.produce(INSTALLS if record["event_type"] == "install" else IN_APP, record)
    running.produce(INSTALLS, b"not json")
    # When the worker has read them all
    until(lambda: running.committed() == running.ends(), "every offset committed")
    # Then exactly the owed events went out, once each, under their derived ids
    assert sorted(running.partner.event_ids) == sorted(event_id_of(r) for r in owed)
    assert running.metric("dispatcher_decisions_total", reason="out_of_scope") == 10
    [(topic, value, key)] = running.producer.sent
    letter = json.loads(value)
    assert (topic, letter["reason"], letter["raw"], key) == (
        DEAD_LETTERS,
        "bad_input",
        "not json",
        None,
    )
    running.stop()
    assert running.consumer.closed


def test_a_large_poll_is_committed_as_it_is_handled_not_only_at_its_end(tmp_path: Path) -> None:
    """A poll of thousands takes a few hundred ms to handle: what became final meanwhile is
    committed between its chunks, or a crash before the end would send it all again."""
    # Given 1,000 records in one partition, read by one poll, on a clock where every look at
    # it finds the commit interval passed
    ticks = itertools.count(step=1.0)
    worker = Running(tmp_path, StubProducer(), clock=lambda: float(next(ticks)))
    organic = raw(event_dict("install", media_source="organic"))  # final as soon as decided
    for _ in range(1_000):
        worker.consumer.produce(INSTALLS, organic)
    # When the worker has read them
    worker.thread.start()
    until(lambda: worker.committed() == worker.ends(), "every offset committed")
    worker.stop()
    # Then each chunk of the poll was committed as soon as it was handled
    partition = TopicPartition(INSTALLS, 0)
    offsets = [
        commit[partition] for commit in worker.consumer.commit_history if partition in commit
    ]
    assert offsets == [HANDLE_CHUNK * n for n in range(1, 1_000 // HANDLE_CHUNK + 1)]


def test_a_poll_is_handled_in_chunks_each_partition_in_order() -> None:
    a, b = TopicPartition("t", 0), TopicPartition("t", 1)
    records = {a: list(range(5)), b: list(range(10, 13))}
    assert list(chunked(records, 3)) == [
        {a: [0, 1, 2]}, {a: [3, 4], b: [10]}, {b: [11, 12]},
    ]  # fmt: skip
    assert list(chunked(records, 8)) == [records]
    assert list(chunked({}, 3)) == []


def test_a_dead_lettered_event_is_committed_only_once_acknowledged(tmp_path: Path) -> None:
    # Given a broker that has not yet acknowledged dead letters
    worker = Running(tmp_path, StubProducer(auto_ack=False))
    worker.thread.start()
    bad = event_dict("install", event_time="yesterday")
    worker.produce(INSTALLS, bad)
    key = str(bad["appsflyer_id"]).encode()
    later = event_dict("install", appsflyer_id=bad["appsflyer_id"])  # same key: same partition
    worker.produce(INSTALLS, later)
    until(lambda: event_id_of(later) in worker.partner.event_ids, "the later event delivered")
    until(lambda: len(worker.producer.sent) == 1, "the dead letter sent")
    time.sleep(0.1)
    # Then nothing of that partition is committed: the bad input below it is not final
    [tp] = [tp for tp, log in worker.consumer.logs.items() if log and tp.topic == INSTALLS]
    assert worker.committed().get(tp, 0) == 0
    assert worker.producer.sent[0][2] == key
    # When the broker acknowledges, both become committed
    worker.producer.acknowledge()
    until(lambda: worker.committed().get(tp) == 2, "committed past both")
    worker.stop()


def test_a_refused_commit_is_tried_again_until_it_goes_through(running: Running) -> None:
    running.consumer.fail_commits = 3
    for _ in range(5):
        running.produce(INSTALLS, event_dict("install"))
    until(lambda: running.committed() == running.ends(), "committed after refusals")
    assert running.metric("dispatcher_offset_commits_total", result="error") == 3
    # (the answer to an asynchronous commit is counted on the loop's next turn)
    until(lambda: running.metric("dispatcher_offset_commits_total", result="success") >= 1,
          "the successful commit counted")  # fmt: skip


def test_after_a_rebalance_records_read_again_are_not_sent_again(running: Running) -> None:
    # Given deliveries whose commits the group keeps refusing
    running.consumer.fail_commits = 10**6
    records = [event_dict("install") for _ in range(30)]
    for record in records:
        running.produce(INSTALLS, record)
    until(lambda: len(running.partner.event_ids) == 30, "first deliveries")
    # When a rebalance hands the same partitions back, to be read again from offset 0 (as
    # after they went to another member and came back)
    running.consumer.reassign(list(running.consumer.logs), reread=True)
    until(lambda: running.metric("dispatcher_rereads_skipped_total") == 30, "records read again")
    # Then none went out twice, and once the group accepts commits, everything is committed
    running.consumer.fail_commits = 0
    until(lambda: running.committed() == running.ends(), "committed")
    assert sorted(running.partner.event_ids) == sorted(event_id_of(r) for r in records)


def test_a_revocation_finishes_in_flight_work_and_commits_it_before_letting_go(
    running: Running,
) -> None:
    # Given installs on the wire to a partner answering in 0.3 s (one install's copies: one
    # partition, one request)
    running.partner.delay_s = 0.3
    records = [event_dict("install", appsflyer_id="af-same") for _ in range(6)]
    for record in records:
        running.produce(INSTALLS, record)
    until(lambda: running.metric("dispatcher_inflight_events") == 6, "all six in flight")
    time.sleep(0.1)  # past the linger: the request has left
    # When a rebalance takes the installs partitions away (in-app stays)
    running.consumer.reassign(tp for tp in running.consumer.logs if tp.topic == IN_APP)
    # Then the revocation waited for the answers and committed them before letting go: nothing
    # else commits a partition no longer ours
    until(lambda: len(running.partner.event_ids) == 6, "the deliveries answered")
    installs_ends = {tp: end for tp, end in running.ends().items() if tp.topic == INSTALLS}
    until(
        lambda: (
            {tp: o for tp, o in running.committed().items() if tp.topic == INSTALLS}
            == installs_ends
        ),
        "the revoked partitions committed",
    )
    assert running.metric("dispatcher_rereads_skipped_total") == 0
    running.stop()


def test_a_revocation_sends_nothing_more_and_what_it_dropped_is_sent_when_read_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given postbacks going out two at a time to a partner answering in 0.3 s, most still queued
    caplog.set_level(logging.INFO, logger="dispatcher.delivery.service")
    worker = Running(tmp_path, StubProducer(), answers=AnsweringLater(0.3),
                     delivery={"batch_max_events": 2, "max_concurrent_requests": 1})  # fmt: skip
    worker.thread.start()
    records = [event_dict("install") for _ in range(12)]
    for record in records:
        worker.produce(INSTALLS, record)
    until(lambda: len(worker.partner.event_ids) >= 2, "the first answers")
    # When a rebalance revokes every partition and hands them back
    worker.consumer.reassign(list(worker.consumer.logs))
    until(lambda: worker.committed() == worker.ends(), "everything committed", timeout_s=20)
    worker.stop()
    assert "partitions let go: their queued postbacks are not sent here" in caplog.text
    # Then the postbacks dropped at the revocation were sent after the records were read again
    # (kafka-python keeps a kept partition's position: the worker seeks back): each exactly once
    assert sorted(worker.partner.event_ids) == sorted(event_id_of(r) for r in records)


def test_partitions_back_after_another_member_had_them_are_read_from_the_groups_offset(
    running: Running,
) -> None:
    """A join answered in a later generation than the one after the revocation (Tansu does
    this when a member is slow to rejoin): another member owned the partitions meanwhile, yet
    kafka-python 3 kept this worker's old positions. Reading on from them re-sent what the
    other member had delivered (the chaos suite's rolling restarts caught it)."""
    first = [event_dict("install") for _ in range(10)]
    for record in first:
        running.produce(INSTALLS, record)
    until(lambda: len(running.partner.event_ids) == 10, "first deliveries")
    until(lambda: running.committed() == running.ends(), "committed")
    theirs = [event_dict("install") for _ in range(10)]
    handed_back = threading.Event()

    def other_member() -> None:  # reads, delivers and commits these while it has them
        for record in theirs:
            running.produce(INSTALLS, record)
        running.consumer.committed_offsets.update(running.ends())
        handed_back.set()

    # When the partitions come back to this worker two generations later
    sources = [tp for tp in running.consumer.logs if tp.topic in (INSTALLS, IN_APP)]
    running.consumer.reassign(sources, skipped=1, meanwhile=other_member)
    assert handed_back.wait(5)
    later = [event_dict("install") for _ in range(5)]
    for record in later:
        running.produce(INSTALLS, record)
    until(lambda: len(running.partner.event_ids) >= 15, "the later deliveries")
    until(lambda: running.committed() == running.ends(), "committed again")
    # Then this worker sent its own events and the later ones, none of the other member's
    assert sorted(running.partner.event_ids) == sorted(event_id_of(r) for r in first + later)


def test_stop_finishes_in_flight_work_and_commits(running: Running) -> None:
    for _ in range(50):
        running.produce(IN_APP, event_dict("in-app-event"))
    until(lambda: running.metric("dispatcher_events_consumed_total") == 50, "all read")
    running.stop()
    assert len(running.partner.event_ids) == 50
    assert running.committed() == running.ends()


class Down(Partner):
    """TikTok answering 503 to everything."""

    def __call__(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(503)


def test_stop_does_not_wait_for_a_retry_that_would_come_after_the_deadline(
    tmp_path: Path,
) -> None:
    # Given TikTok down, a batch whose next attempt is a minute away, and shutdown_timeout_s 5
    worker = Running(tmp_path, StubProducer(), answers=Down(),
                     delivery={"backoff_initial_s": 120, "backoff_max_s": 240})  # fmt: skip
    worker.thread.start()
    worker.produce(INSTALLS, event_dict("install"))
    until(lambda: worker.metric("dispatcher_delivery_attempts_total", result="retryable") == 1,
          "the first attempt failed")  # fmt: skip
    # When the worker is stopped
    started = time.monotonic()
    worker.stop()
    # Then it stops at once (not after 5 s), leaving the event uncommitted to be read again
    assert time.monotonic() - started < 2.5
    assert all(offset == 0 for offset in worker.committed().values())
    assert worker.metric("dispatcher_postbacks_total") == 0  # neither delivered nor dead-lettered
    assert worker.producer.sent == []
    assert worker.consumer.closed


def test_a_record_replayed_for_one_partner_is_decided_for_that_partner_alone(
    tmp_path: Path,
) -> None:
    """A dead letter replayed for Ocean Engine must not send TikTok its postback again, even
    where TikTok is owed the record too (scope: all)."""
    worker = Running(tmp_path, StubProducer(), app_dict(install_scope="all"), ocean=True)
    worker.thread.start()
    try:
        record = oceanengine_event_dict("install")
        click_id = click_id_of(record)
        # Given a record owed to both partners, delivered to both
        worker.produce(INSTALLS, record)
        until(lambda: worker.partner.callbacks == [click_id], "the Ocean Engine conversion")
        until(lambda: worker.partner.event_ids == [event_id_of(record)], "the TikTok postback")
        # When it comes back replayed for Ocean Engine, then for a partner no longer configured
        worker.produce(INSTALLS, record, [(REPLAY_PARTNER_HEADER, b"oceanengine")])
        worker.produce(INSTALLS, record, [(REPLAY_PARTNER_HEADER, b"gone")])
        until(lambda: worker.partner.callbacks == [click_id] * 2, "the replayed conversion")
        until(lambda: worker.committed() == worker.ends(), "every offset committed")
        # Then TikTok was not sent it again, and nobody got the third copy
        assert worker.partner.event_ids == [event_id_of(record)]
        assert worker.partner.callbacks == [click_id] * 2
        assert worker.metric("dispatcher_decisions_total", partner="tiktok") == 1
        assert worker.metric("dispatcher_decisions_total", partner="oceanengine") == 2
    finally:
        worker.stop()


def test_a_source_topic_gone_from_the_cluster_is_reported_and_a_metadata_gap_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a worker that looks at its topics every 50 ms, and records in flight on both topics
    monkeypatch.setattr("dispatcher.worker.LAG_INTERVAL_S", 0.05)
    running = Running(tmp_path, StubProducer())
    health = running.worker._health
    running.thread.start()
    running.produce(INSTALLS, event_dict("install"))
    running.produce(IN_APP, event_dict("in-app-event"))
    until(lambda: running.committed() == running.ends(), "every offset committed")
    until(lambda: health.ready, "ready")
    # When one metadata answer leaves the installs topic out, though the cluster still lists it
    running.consumer.metadata_gaps.add(INSTALLS)
    time.sleep(0.3)
    # Then nothing is reported
    assert health.ready
    assert running.metric("dispatcher_source_topic_deleted", topic=INSTALLS) == 0
    # When the topic is really deleted (gone from the metadata and from the topic list)
    running.consumer.metadata_gaps.clear()
    running.consumer.delete_topic(INSTALLS)
    # Then it is reported, and the worker stays not ready although the rebalance that follows
    # says ready
    until(
        lambda: running.metric("dispatcher_source_topic_deleted", topic=INSTALLS) == 1,
        "the deletion reported",
    )
    time.sleep(0.3)
    assert (health.ready, health.reason) == (
        False, f"source topic {INSTALLS!r} was deleted while the worker runs",
    )  # fmt: skip
    assert running.metric("dispatcher_source_topic_deleted", topic=IN_APP) == 0
    # And events on the other topic still go out
    record = event_dict("in-app-event")
    running.produce(IN_APP, record)
    until(lambda: event_id_of(record) in running.partner.event_ids, "the in-app event sent")
    running.stop()


class Tokens(Partner):
    """TikTok answering "invalid token" (40105, a setup answer) to any token but `valid`, and,
    with `allowlisted` False, "not allowlisted" (40118) to every request."""

    def __init__(self, valid: str = TOKEN) -> None:
        super().__init__()
        self.valid = valid
        self.allowlisted = True
        self.requests = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if request.headers["Access-Token"] != self.valid:
            body = {"code": 40105, "message": "Access token is incorrect or revoked."}
            return httpx.Response(200, json=body | {"request_id": "r", "data": {}})
        if not self.allowlisted:
            body = {"code": 40118, "message": "App is not in the allowlist."}
            return httpx.Response(200, json=body | {"request_id": "r", "data": {}})
        return super().__call__(request)


def held(worker: Running) -> float:
    return worker.metric("dispatcher_partner_held", partner="tiktok")


def test_a_rotated_token_file_resumes_a_held_app_without_a_restart(tmp_path: Path) -> None:
    # Given a token file holding a revoked token (its next probe an hour away)
    token = tmp_path / "token"
    token.write_text("revoked-token\n")
    answers = Tokens()
    worker = Running(tmp_path, StubProducer(), answers=answers, token_file=token,
                     delivery={"setup_retry_s": 3600})  # fmt: skip
    worker.thread.start()
    record = event_dict("install")
    worker.produce(INSTALLS, record)
    # Then the app is held: nothing dead-lettered, nothing committed past the event
    until(lambda: held(worker) == 1, "held")
    time.sleep(0.3)
    assert worker.producer.sent == []
    assert all(offset == 0 for offset in worker.committed().values())
    # When the Secret is rotated (the file rewritten in place)
    token.write_text(TOKEN + "\n")
    # Then the new token is read within a few seconds, the app probed at once and delivered
    until(lambda: event_id_of(record) in answers.event_ids, "delivered", timeout_s=10)
    until(lambda: worker.committed() == worker.ends(), "committed")
    assert held(worker) == 0
    assert worker.metric("dispatcher_postbacks_total", outcome="partner_setup") == 0
    worker.stop()
    assert worker.producer.sent == []


def test_sighup_probes_a_held_app_at_once(tmp_path: Path) -> None:
    # Given an app held on "not allowlisted", its next probe an hour away
    answers = Tokens()
    answers.allowlisted = False
    worker = Running(tmp_path, StubProducer(), answers=answers, delivery={"setup_retry_s": 3600})
    worker.thread.start()
    record = event_dict("install")
    worker.produce(INSTALLS, record)
    until(lambda: held(worker) == 1, "held")
    # When TikTok allowlists the app and the operator sends SIGHUP
    answers.allowlisted = True
    worker.worker.request_reload()
    # Then the held batch is sent again at once and delivered, with no dead letter
    until(lambda: event_id_of(record) in answers.event_ids, "delivered")
    until(lambda: worker.committed() == worker.ends(), "committed")
    assert (held(worker), answers.requests) == (0, 2)
    worker.stop()
    assert worker.producer.sent == []


def test_start_up_names_the_apps_in_test_mode(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An app sending to TikTok's Test Events is counted nowhere: the log says so at start-up."""
    caplog.set_level(logging.WARNING, logger="dispatcher.worker")
    Running(tmp_path, StubProducer(), tiktok_app=app_dict(test_event_code="TEST12345"))
    assert [r.getMessage() for r in caplog.records if "test mode" in r.getMessage()] == [
        "app id1234567890 is in test mode for tiktok: test_event_code TEST12345: its events show "
        "in TikTok Events Manager's Test Events and are not counted"
    ]
