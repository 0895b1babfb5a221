"""Delivery to one partner over httpx's MockTransport: batching, order, retries, outcomes; each
batch's final word settled as the worker settles it (metrics, dead letters, final offsets)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from dispatcher.delivery import PartnerChannel, PartnerHttp, Settled, WorkItem
from dispatcher.metrics import Metrics
from dispatcher.outcomes import Outcome
from dispatcher.partners.tiktok import TikTokAdapter
from dispatcher.settle import Coordinates, Settlement
from schemas.dead_letter import DeadLetter
from tests.factories import make_partner

TOKEN = "tok-9f8e7d6c5b4a"


class Letters:
    """Dead-letter sink that acknowledges at once."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    def submit(self, letter: DeadLetter, key: bytes | None, on_ack: Callable[[], None]) -> None:
        self.letters.append(letter)
        on_ack()


def item(n: int, partition: int = 0, destination: str = "7300000000000000001") -> WorkItem:
    payload = {
        "event": "Purchase",
        "event_time": 1763632800,
        "event_id": f"e-{n}",
        "app": {"app_id": "id1"},
    }
    raw = json.dumps({"event_id": f"e-{n}", "app_id": "id1"}).encode()
    return WorkItem(
        "in-app", partition, n, b"key", raw, "tiktok", destination, payload, "Purchase",
        time.time(), time.monotonic(),
    )  # fmt: skip


def ok_body(code: int = 0, message: str = "OK") -> dict[str, Any]:
    return {"code": code, "message": message, "request_id": "r", "data": {}}


def tiktok_channel(
    handler: Callable[[httpx.Request], Any], partner: Any, metrics: Metrics,
    on_settled: Callable[[Settled], None], **timing: Any,
) -> PartnerChannel:  # fmt: skip
    """A TikTok channel whose requests `handler` answers (httpx's MockTransport); `timing` is
    the channel's clock and sleep, when a test keeps time itself."""
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    adapter = TikTokAdapter()
    return PartnerChannel(
        partner,
        adapter,
        TOKEN,
        PartnerHttp(client, adapter, time.time),
        metrics,
        on_settled,
        **timing,
    )


class Harness:
    """A channel on a mock transport; records requests and finished items."""

    def __init__(self, handler: Callable[[httpx.Request], Any], **delivery: Any) -> None:
        self.handler = handler
        self.delivery = {"batch_linger_ms": 0, "backoff_initial_s": 0.01, "backoff_max_s": 0.02,
                         "max_requests_per_s": 1000} | delivery  # fmt: skip
        self.requests: list[dict[str, Any]] = []
        self.request_times: list[float] = []
        self.final: list[Coordinates] = []
        self.letters = Letters()
        self.metrics = Metrics()
        self.settlement = Settlement(
            self.metrics,
            self.letters,
            self.final.extend,
            lambda ack: self.settlement.settle(ack),  # noqa: PLW0108 - not built yet
        )

    def channel(self, partner: Any) -> PartnerChannel:
        return tiktok_channel(self._record, partner, self.metrics, self.settlement.settle)

    def _record(self, request: httpx.Request) -> Any:
        self.requests.append(json.loads(request.content))
        self.request_times.append(time.monotonic())
        assert request.headers["Access-Token"] == TOKEN
        return self.handler(request)

    async def run(self, items: list[WorkItem], expect_final: int, timeout_s: float = 10) -> None:
        channel = self.channel(make_partner(**{"delivery": self.delivery}))
        channel.submit(items)
        deadline = time.monotonic() + timeout_s
        while len(self.final) < expect_final and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        await channel.close()

    def sample(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        return value or 0.0


def run(
    harness: Harness, items: list[WorkItem], expect_final: int, timeout_s: float = 10
) -> Harness:
    asyncio.run(harness.run(items, expect_final, timeout_s))
    return harness


def respond(*answers: httpx.Response | Exception) -> Callable[[httpx.Request], Any]:
    """Answer with each in turn, then 200/OK forever."""
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        if queue:
            answer = queue.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        return httpx.Response(200, json=ok_body())

    return handler


def ids(request: dict[str, Any]) -> list[str]:
    return [entry["event_id"] for entry in request["data"]]


# --- batching and order --------------------------------------------------------------------------


def test_batches_are_capped_and_keep_offset_order() -> None:
    h = run(Harness(respond(), batch_max_events=4), [item(n) for n in range(10)], expect_final=10)
    assert [len(r["data"]) for r in h.requests] == [4, 4, 2]
    assert [i for r in h.requests for i in ids(r)] == [f"e-{n}" for n in range(10)]
    assert h.requests[0]["event_source"] == "app"
    assert h.requests[0]["event_source_id"] == "7300000000000000001"
    assert (
        h.sample(
            "dispatcher_postbacks_total", partner="tiktok", event="Purchase", outcome="delivered"
        )
        == 10
    )


def test_destinations_never_share_a_request_and_idle_partitions_join_one() -> None:
    items = [item(0, 0, "111"), item(1, 0, "222"), item(2, 1, "111"), item(3, 0, "111")]
    h = run(Harness(respond(), batch_max_events=10), items, expect_final=4)
    batches = sorted((r["event_source_id"], tuple(ids(r))) for r in h.requests)
    # partition 0's lane has room: partition 1's queued event rides along, after its own
    assert batches == [("111", ("e-0", "e-3", "e-2")), ("222", ("e-1",))]


def test_a_joined_batch_fills_only_its_spare_room_each_lane_in_order() -> None:
    # Three partitions of one destination, five events each, batches of up to eight
    items = [item(10 * p + n, p) for p in range(3) for n in range(5)]
    h = run(Harness(respond(), batch_max_events=8), items, expect_final=15)
    assert all(len(r["data"]) <= 8 for r in h.requests)
    sent = [i for r in h.requests for i in ids(r)]
    assert sorted(sent) == sorted(f"e-{i.offset}" for i in items)  # each once
    for p in range(3):  # each partition's events in offset order across the requests
        mine = [i for i in sent if int(i[2:]) // 10 == p]
        assert mine == [f"e-{10 * p + n}" for n in range(5)]
    # the first request is full: its own five, then three of the next lane's
    assert ids(h.requests[0]) == ["e-0", "e-1", "e-2", "e-3", "e-4", "e-10", "e-11", "e-12"]


class Gate:
    """A partner that answers each request only when the test opens the gate, and tells which
    requests were sent before which answers."""

    def __init__(self, *answers: httpx.Response) -> None:
        self.open = asyncio.Event()
        self.log: list[tuple[str, list[str]]] = []
        self.answers = list(answers)

    async def handler(self, request: httpx.Request) -> httpx.Response:
        events = ids(json.loads(request.content))
        self.log.append(("sent", events))
        await self.open.wait()
        self.log.append(("answered", events))
        if self.answers:
            return self.answers.pop(0)
        return httpx.Response(200, json=ok_body())

    def channel(self, **delivery: Any) -> tuple[PartnerChannel, list[Settled]]:
        settled: list[Settled] = []
        delivery = {"batch_linger_ms": 0, "backoff_initial_s": 0.01, "backoff_max_s": 0.02,
                    "max_requests_per_s": 1000, "batch_max_events": 10} | delivery  # fmt: skip
        partner = make_partner(delivery=delivery)
        return tiktok_channel(self.handler, partner, Metrics(), settled.append), settled


@pytest.mark.parametrize("first_answer", [200, 503], ids=["delivered", "retried"])
def test_a_joined_partition_sends_nothing_more_until_the_request_carrying_it_is_settled(
    first_answer: int,
) -> None:
    async def scenario() -> Gate:
        gate = Gate(httpx.Response(first_answer, json=ok_body()))
        channel, settled = gate.channel()
        # Given one request in flight carrying partition 0's and partition 1's first events
        channel.submit([item(0, 0), item(1, 1)])
        await until(lambda: len(gate.log) == 1, "the first request")
        # When each partition gets another event while it is unanswered (and, for "retried",
        # while its first answer is a 503 and it is sent again)
        channel.submit([item(2, 1), item(3, 2)])
        await until(lambda: len(gate.log) == 2, "the free partition's request")
        for _ in range(50):
            await asyncio.sleep(0)
        gate.open.set()
        await until(lambda: sum(len(s.items) for s in settled) == 4, "all settled")
        await channel.close()
        return gate

    gate = asyncio.run(scenario())
    first = ["e-0", "e-1"]
    # Then partition 2, with nothing in flight, went at once; partition 1's next event only
    # after the request that carried its first was answered (every attempt of it)
    assert gate.log[:2] == [("sent", first), ("sent", ["e-3"])]
    sent_second = gate.log.index(("sent", ["e-2"]))
    last_answer_of_first = max(
        n for n, entry in enumerate(gate.log) if entry == ("answered", first)
    )
    assert sent_second > last_answer_of_first
    assert gate.log.count(("sent", first)) == (2 if first_answer == 503 else 1)


def test_a_busy_lane_is_not_joined() -> None:
    async def scenario() -> Gate:
        gate = Gate()
        channel, settled = gate.channel()
        channel.submit([item(0, 0)])
        await until(lambda: len(gate.log) == 1, "partition 0's request")
        # Given partition 0 has a request in flight and one more event queued
        channel.submit([item(1, 0)])
        # When partition 1's request leaves with room to spare
        channel.submit([item(2, 1)])
        await until(lambda: len(gate.log) == 2, "partition 1's request")
        gate.open.set()
        await until(lambda: sum(len(s.items) for s in settled) == 3, "all settled")
        await channel.close()
        return gate

    gate = asyncio.run(scenario())
    # Then it does not take partition 0's queued event, which would overtake the one in flight
    assert [events for what, events in gate.log if what == "sent"] == [["e-0"], ["e-2"], ["e-1"]]


def test_linger_gathers_a_batch() -> None:
    async def go(h: Harness) -> None:
        channel = h.channel(make_partner(delivery=h.delivery))
        channel.submit([item(0)])
        await asyncio.sleep(0.05)
        channel.submit([item(1)])  # within the linger: same batch
        while len(h.final) < 2:
            await asyncio.sleep(0.01)
        await channel.close()

    h = Harness(respond(), batch_linger_ms=300, batch_max_events=10)
    asyncio.run(go(h))
    assert [ids(r) for r in h.requests] == [["e-0", "e-1"]]


# --- retries ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "result"),
    [
        pytest.param(httpx.Response(503, text="unavailable"), "retryable", id="http-503"),
        pytest.param(
            httpx.Response(200, json=ok_body(40100, "too many requests")), "throttled",
            id="body-40100",
        ),
        pytest.param(
            httpx.Response(200, json=ok_body(40132, "request frequency limited")), "throttled",
            id="body-40132",
        ),
        pytest.param(
            httpx.Response(200, json=ok_body(61000, "too many requests")), "throttled",
            id="body-61000",
        ),
        pytest.param(httpx.Response(200, json=ok_body(50001, "internal")), "retryable",
                     id="body-50001"),
        pytest.param(httpx.Response(429), "throttled", id="http-429"),
        pytest.param(httpx.ConnectError("refused"), "retryable", id="connection-refused"),
        pytest.param(httpx.ReadTimeout("slow"), "retryable", id="read-timeout"),
        pytest.param(httpx.Response(200, text="<html>gateway</html>"), "retryable",
                     id="not-tiktok-json"),
    ],
)  # fmt: skip
def test_retryable_failures_are_retried_until_delivered(failure: Any, result: str) -> None:
    # (one event: a batch of more that times out is sent again as halves, tested below)
    h = run(Harness(respond(failure, failure)), [item(1)], expect_final=1)
    assert len(h.requests) == 3
    assert all(ids(r) == ["e-1"] for r in h.requests)
    assert h.letters.letters == []
    assert h.sample("dispatcher_delivery_attempts_total", partner="tiktok", result=result) == 2
    assert h.sample("dispatcher_delivery_attempts_total", partner="tiktok", result="ok") == 1


def test_resends_after_unknown_fate_are_counted() -> None:
    h = run(Harness(respond(httpx.ReadTimeout("slow"), httpx.ConnectError("no"))), [item(1)], 1)
    # the timeout may have arrived: its retry is a possible duplicate; a refused connection is not
    assert h.sample("dispatcher_resent_events_total", partner="tiktok") == 1


def test_retry_after_is_honoured() -> None:
    limited = httpx.Response(429, headers={"Retry-After": "1"})
    h = run(Harness(respond(limited)), [item(1)], expect_final=1)
    assert h.request_times[1] - h.request_times[0] >= 1.0


def test_throttling_lowers_the_request_rate() -> None:
    h = run(
        Harness(respond(httpx.Response(200, json=ok_body(40100, "slow"))), max_requests_per_s=100),
        [item(1)],
        1,
    )
    assert h.sample("dispatcher_request_rate_limit", partner="tiktok") < 100


# --- final failures --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "code", "status"),
    [
        # (a bad-event code splits the batch first: test_one_bad_event_does_not_sink_its_batch)
        (httpx.Response(400, text="bad request"), None, 400),
        (httpx.Response(404, text="not found"), None, 404),
    ],
)
def test_rejections_are_dead_lettered_at_once(
    answer: httpx.Response, code: int | None, status: int
) -> None:
    h = run(Harness(lambda request: answer), [item(1), item(2)], expect_final=2)
    assert len(h.requests) == 1
    assert [letter.reason for letter in h.letters.letters] == ["partner_rejected"] * 2
    letter = h.letters.letters[0]
    assert (letter.last_code, letter.last_status, letter.attempts) == (code, status, 1)
    assert letter.partner == "tiktok"
    assert letter.event == {"event_id": "e-1", "app_id": "id1"}
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == ("in-app", 0, 1)
    assert TOKEN not in letter.model_dump_json()
    assert (
        h.sample(
            "dispatcher_postbacks_total", partner="tiktok", event="Purchase", outcome="rejected"
        )
        == 2
    )


def test_exhausted_retries_are_dead_lettered() -> None:
    h = run(Harness(lambda request: httpx.Response(502), max_attempts=3), [item(1)], expect_final=1)
    assert len(h.requests) == 3
    [letter] = h.letters.letters
    assert (letter.reason, letter.attempts, letter.last_status) == ("retries_exhausted", 3, 502)
    assert (
        h.sample(
            "dispatcher_postbacks_total", partner="tiktok", event="Purchase", outcome="gave_up"
        )
        == 1
    )


def test_one_bad_event_does_not_sink_its_batch() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if "e-2" in ids(json.loads(request.content)):
            return httpx.Response(200, json=ok_body(40002, "data[0].event_time: invalid"))
        return httpx.Response(200, json=ok_body())

    h = run(Harness(handler, batch_max_events=8), [item(n) for n in range(5)], expect_final=5)
    assert [letter.source_offset for letter in h.letters.letters] == [2]
    delivered = {i for r in h.requests[1:] for i in ids(r)} - {"e-2"}
    assert delivered == {"e-0", "e-1", "e-3", "e-4"}


@pytest.mark.parametrize(("status", "code"), [(400, 40000), (200, 40105)], ids=["rejected", "held"])
def test_token_is_never_in_logs_or_letters(
    caplog: pytest.LogCaptureFixture, status: int, code: int
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        message = f"token {request.headers['Access-Token']} is not allowed"
        return httpx.Response(status, json=ok_body(code, message))

    with caplog.at_level("DEBUG"):
        # (held: nothing becomes final; the hold's log line is written by the first answer)
        h = run(Harness(handler), [item(1)], expect_final=1, timeout_s=0.5 if code == 40105 else 10)
    assert "is not allowed" in caplog.text
    assert TOKEN not in caplog.text
    assert all(TOKEN not in letter.model_dump_json() for letter in h.letters.letters)


def fail_the_first_encoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Encoding the first request fails (a defect, not a partner answer); later ones work."""
    original = TikTokAdapter.encode_request
    calls = {"n": 0}

    def flaky(self: TikTokAdapter, destination: str, payloads: Any) -> bytes:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return original(self, destination, payloads)

    monkeypatch.setattr(TikTokAdapter, "encode_request", flaky)


def test_a_defect_while_sending_loses_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given encoding the request fails once
    fail_the_first_encoding(monkeypatch)
    # Then the batch is put back and delivered on the next turn
    h = run(Harness(respond()), [item(1), item(2)], expect_final=2)
    assert [ids(r) for r in h.requests] == [["e-1", "e-2"]]
    assert h.letters.letters == []


def test_a_defect_puts_a_joined_batch_back_in_each_lane(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> Gate:
        gate = Gate()
        gate.open.set()
        channel, settled = gate.channel()
        fail_the_first_encoding(monkeypatch)
        # Given partition 0's request carries partition 1's events too, and encoding it fails
        channel.submit([item(0, 0), item(1, 0), item(2, 1), item(3, 1)])
        await until(lambda: sum(len(s.items) for s in settled) == 4, "all settled")
        await channel.close()
        return gate

    gate = asyncio.run(scenario())
    # Then each lane gets its own events back: partition 1, free again while partition 0 pauses
    # after the defect, leads the next request with its own events and carries partition 0's
    assert [events for what, events in gate.log if what == "sent"] == [["e-2", "e-3", "e-0", "e-1"]]


# --- stopping ------------------------------------------------------------------------------------


class Stopping:
    """A channel whose clock and sleep are the test's: a retry's wait passes at once (the clock
    jumps), or, with `hold=True`, lasts until the channel is told to stop."""

    def __init__(self, answers: Callable[[httpx.Request], Any], hold: bool = False) -> None:
        self.now = time.monotonic()
        self.waits: list[float] = []
        self.requests = 0
        self.settled: list[Settled] = []
        self.hold = hold
        self.answers = answers

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.hold:
            await asyncio.Event().wait()  # until cancelled
        self.now += seconds
        await asyncio.sleep(0)

    def channel(self) -> PartnerChannel:
        def answer(request: httpx.Request) -> Any:
            self.requests += 1
            return self.answers(request)

        # The first retry waits 10 to 20 s (backoff with equal jitter)
        delivery = {"batch_linger_ms": 0, "backoff_initial_s": 20, "backoff_max_s": 60,
                    "max_requests_per_s": 1000}  # fmt: skip
        return tiktok_channel(
            answer, make_partner(delivery=delivery), Metrics(), self.settled.append,
            clock=self.clock, sleep=self.sleep,
        )  # fmt: skip


async def until(condition: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    """Turn the loop until `condition` holds. Bounded by the clock, not by a number of turns:
    a retry's backoff (10 ms in `Gate.channel`) waits for real, and a fast machine turns the
    loop 2,000 times in less than that."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}")
        await asyncio.sleep(0)


def test_stopping_gives_up_a_batch_whose_retry_would_come_after_the_deadline() -> None:
    async def scenario() -> Stopping:
        s = Stopping(lambda request: httpx.Response(503))
        channel = s.channel()
        # Given a stop deadline 5 s away, and a partner that answers 503
        channel.submit([item(1), item(2), item(3, partition=0)])
        channel.stop_by(s.now + 5)
        # When the first attempt fails (its retry would come 10 to 20 s later)
        await until(lambda: s.requests == 1 and channel.is_idle(), "idle after one attempt")
        await channel.close()
        return s

    s = asyncio.run(scenario())
    # Then the batch is given up at once: not waited for, not settled (offsets stay uncommitted)
    assert s.waits == []
    assert s.settled == []
    assert s.requests == 1


@pytest.mark.parametrize(
    ("first", "behind"),
    [
        pytest.param([item(1)], [item(2)], id="one-partition"),
        pytest.param([item(1, 0), item(2, 1)], [item(3, 0), item(4, 1)], id="joined-batch"),
    ],
)
def test_stopping_ends_a_retry_wait_that_would_pass_the_deadline(
    first: list[WorkItem], behind: list[WorkItem]
) -> None:
    async def scenario() -> tuple[Stopping, PartnerChannel]:
        s = Stopping(lambda request: httpx.Response(503), hold=True)
        channel = s.channel()
        # Given a batch (of one partition, or of two joined) waiting 10 to 20 s to retry, and
        # events queued behind it in each of its partitions
        channel.submit(first)
        await until(lambda: len(s.waits) == 1, "the retry's wait")
        channel.submit(behind)
        assert not channel.is_idle()
        # When the stop comes with 5 s left
        channel.stop_by(s.now + 5)
        await until(channel.is_idle, "idle")
        await channel.close()
        return s, channel

    s, channel = asyncio.run(scenario())
    # Then the wait ends at once, the batch unsettled, and what is behind it not sent either,
    # in any of its lanes (it would be read and sent again after the restart all the same)
    assert s.settled == []
    assert s.requests == 1
    assert channel.queued() == 0


def test_stopping_still_retries_what_fits_before_the_deadline() -> None:
    async def scenario() -> Stopping:
        s = Stopping(respond(httpx.Response(503)))
        channel = s.channel()
        channel.submit([item(1)])
        channel.stop_by(s.now + 100)
        await until(lambda: len(s.settled) == 1, "settled")
        await channel.close()
        return s

    s = asyncio.run(scenario())
    [settled] = s.settled
    assert settled.result.outcome is Outcome.DELIVERED
    assert s.requests == 2
    assert 10 <= sum(s.waits) <= 20


# --- timeouts shrink batches ------------------------------------------------------------------


def slower_than_the_timeout_above(size: int) -> Callable[[httpx.Request], Any]:
    """A partner that answers requests of up to `size` events, and lets bigger ones time out."""

    def handler(request: httpx.Request) -> httpx.Response:
        if len(json.loads(request.content)["data"]) > size:
            raise httpx.ReadTimeout("no answer in time", request=request)
        return httpx.Response(200, json=ok_body())

    return handler


def test_a_timed_out_batch_is_sent_again_in_halves_down_to_what_is_answered() -> None:
    # Given a partner that answers requests of at most 2 events in time
    h = run(Harness(slower_than_the_timeout_above(2), batch_max_events=8), [item(n) for n in range(8)],
            expect_final=8)  # fmt: skip
    # Then 8 timed out, then 4, then each pair went through, in offset order
    sizes = [len(r["data"]) for r in h.requests]
    assert sizes == [8, 4, 2, 2, 4, 2, 2]
    delivered = [ids(r) for r in h.requests if len(r["data"]) <= 2]
    assert [i for batch in delivered for i in batch] == [f"e-{n}" for n in range(8)]
    assert h.sample("dispatcher_batch_shrinks_total", partner="tiktok") == 3
    assert h.sample("dispatcher_postbacks_total", partner="tiktok", event="Purchase",
                    outcome="delivered") == 8  # fmt: skip
    # each timed-out event may have been processed: counted as possibly re-sent
    assert h.sample("dispatcher_resent_events_total", partner="tiktok") == 8 + 4 + 4


def test_after_a_timeout_batches_stay_small_then_grow_back() -> None:
    async def scenario() -> tuple[Harness, int]:
        h = Harness(slower_than_the_timeout_above(2), batch_max_events=8)
        channel = h.channel(make_partner(delivery=h.delivery))
        channel.submit([item(n) for n in range(4)])
        await until(lambda: len(h.final) == 4, "the first four")
        # Given the destination's batches shrank to 2 (4 timed out), and grew a step for each
        # half answered
        assert channel.batch_limit("7300000000000000001") == 4
        # When the partner answers again
        h.handler = respond()
        switched_at = len(h.requests)
        channel.submit([item(n) for n in range(4, 40)])
        await until(lambda: len(h.final) == 40, "the rest")
        await channel.close()
        return h, switched_at

    h, switched_at = asyncio.run(scenario())
    # Then the batches grow back a quarter (at least one event) per answered request
    after = [len(r["data"]) for r in h.requests[switched_at:]]
    assert after[:5] == [4, 5, 6, 7, 8]
    assert max(after) == 8


def test_a_single_event_that_times_out_is_retried_as_it_is() -> None:
    h = run(Harness(respond(httpx.ReadTimeout("slow")), batch_max_events=8), [item(1)],
            expect_final=1)  # fmt: skip
    assert [ids(r) for r in h.requests] == [["e-1"], ["e-1"]]
    assert h.sample("dispatcher_batch_shrinks_total", partner="tiktok") == 0
