"""A partner app held on a setup answer, on httpx's MockTransport with the channel's
clock and sleep in the test's hands: a wait of a minute passes at once, or, with `hold=True`,
lasts until something wakes the channel (a probe's interval never passes by itself)."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from dispatcher.delivery import PartnerChannel, Settled, WorkItem
from dispatcher.metrics import Metrics
from dispatcher.outcomes import Outcome
from dispatcher.settle import Coordinates, Settlement
from tests.factories import make_partner
from tests.test_delivery import TOKEN, Letters, ids, item, ok_body, tiktok_channel, until

SETUP = httpx.Response(200, json=ok_body(40105, "Access token is incorrect or revoked."))
OK = httpx.Response(200, json=ok_body())
APP, OTHER_APP = "7300000000000000001", "7300000000000000002"


class Held:
    """A channel whose clock is the test's: each sleep moves it on at once, or (`hold=True`)
    never ends. Requests are recorded with the clock's time; `answer` decides each one."""

    def __init__(
        self, answer: Callable[[httpx.Request], httpx.Response], hold: bool = False
    ) -> None:
        # From the real clock on: items are queued at `time.monotonic()` and linger from there
        self.now = self.start = time.monotonic()
        self.started_at = time.time() - self.now  # the wall clock moves with `now`
        self.hold = hold
        self.answer = answer
        self.sent: list[tuple[float, str, list[str]]] = []  # (time, destination, event ids)
        self.final: list[Coordinates] = []
        self.letters = Letters()
        self.metrics = Metrics()
        self.settled: list[Settled] = []

        def settle(settled: Settled) -> None:
            self.settled.append(settled)
            self.settlement.settle(settled)

        self._settle = settle
        self.settlement = Settlement(
            self.metrics, self.letters, self.final.extend,
            lambda ack: self.settlement.settle(ack),  # noqa: PLW0108 - not built yet
        )  # fmt: skip

    def clock(self) -> float:
        return self.now

    def wall_clock(self) -> float:
        return self.started_at + self.now

    async def sleep(self, seconds: float) -> None:
        if self.hold:
            await asyncio.Event().wait()  # until cancelled
        self.now += seconds
        await asyncio.sleep(0)

    def channel(self, **delivery: Any) -> PartnerChannel:
        def record(request: httpx.Request) -> httpx.Response:
            body = json.loads(request.content)
            self.sent.append((self.now, body["event_source_id"], ids(body)))
            return self.answer(request)

        settings = {"batch_linger_ms": 0, "backoff_initial_s": 0.5, "backoff_max_s": 1,
                    "max_requests_per_s": 1000, "setup_retry_s": 60, "hold_max_s": 3600,
                    "max_attempts": 2} | delivery  # fmt: skip
        apps = [
            {"app_id": "id1", "tiktok_app_id": APP},
            {"app_id": "id2", "tiktok_app_id": OTHER_APP},
        ]
        partner = make_partner(*apps, delivery=settings)
        return tiktok_channel(
            record, partner, self.metrics, self._settle,
            clock=self.clock, wall_clock=self.wall_clock, sleep=self.sleep,
        )  # fmt: skip

    def held(self, destination: str = APP) -> float | None:
        return self.metrics.registry.get_sample_value(
            "dispatcher_partner_held", {"partner": "tiktok", "destination": destination}
        )

    def attempts(self, result: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "dispatcher_delivery_attempts_total", {"partner": "tiktok", "result": result}
        )
        return value or 0.0


def answers(*responses: httpx.Response) -> Callable[[httpx.Request], httpx.Response]:
    """Each answer in turn, then OK forever."""
    queue = list(responses)
    return lambda request: queue.pop(0) if queue else OK


def test_a_setup_answer_holds_the_app_and_probes_it_until_it_is_delivered() -> None:
    async def scenario() -> Held:
        # Given a partner that answers "invalid token" three times, and max_attempts 2
        h = Held(answers(SETUP, SETUP, SETUP))
        channel = h.channel()
        channel.submit([item(1), item(2)])
        await until(lambda: len(h.sent) == 1, "the first answer")
        await until(lambda: h.held() == 1, "held")
        await until(lambda: len(h.final) == 2, "delivered")
        await channel.close()
        return h

    h = asyncio.run(scenario())
    # Then the same batch went again, one probe every setup_retry_s, past max_attempts
    assert [events for _, _, events in h.sent] == [["e-1", "e-2"]] * 4
    times = [at for at, _, _ in h.sent]
    assert [b - a for a, b in itertools.pairwise(times)] == [60, 60, 60]
    # nothing dead-lettered, delivered once the answer changed; the hold is over
    assert h.letters.letters == []
    [settled] = h.settled
    assert (settled.result.outcome, settled.result.attempts) == (Outcome.DELIVERED, 4)
    assert h.held() == 0
    assert (h.attempts("setup"), h.attempts("ok")) == (3, 1)


def test_while_held_no_other_batch_of_the_app_is_sent_and_other_apps_go_on() -> None:
    async def scenario() -> Held:
        fixed = asyncio.Event()

        def answer(request: httpx.Request) -> httpx.Response:
            held_app = json.loads(request.content)["event_source_id"] == APP
            return SETUP if held_app and not fixed.is_set() else OK

        h = Held(answer, hold=True)
        channel = h.channel()
        # Given the app is held on partition 0's batch
        channel.submit([item(1, 0)])
        await until(lambda: h.held() == 1, "held")
        # When more of its events come, on other partitions too, and another app's
        channel.submit([item(2, 0), item(3, 1), item(4, 2, OTHER_APP)])
        await until(lambda: len(h.final) == 1, "the other app delivered")
        for _ in range(50):
            await asyncio.sleep(0)
        assert [events for _, _, events in h.sent] == [["e-1"], ["e-4"]]
        # Then nothing of the held app left; once it is fixed and probed, everything goes
        fixed.set()
        channel.resume_held()
        await until(lambda: len(h.final) == 4, "all delivered")
        await channel.close()
        return h

    h = asyncio.run(scenario())
    sent = [events for _, _, events in h.sent]
    assert sent[2] == ["e-1"]  # the probe: the held batch itself
    assert sorted(e for events in sent[3:] for e in events) == ["e-2", "e-3"]
    assert h.letters.letters == []
    assert (h.held(APP), h.held(OTHER_APP)) == (0, None)


@pytest.mark.parametrize("how", ["resume_held", "new_token", "same_token"])
def test_sighup_or_a_new_token_probes_at_once(how: str) -> None:
    async def scenario() -> tuple[Held, int]:
        # Given a held app whose next probe is a minute away (the test's sleeps never end)
        h = Held(answers(SETUP), hold=True)
        channel = h.channel()
        channel.submit([item(1)])
        await until(lambda: h.held() == 1, "held")
        # When the operator acts: SIGHUP, or a new token (or a reload with the same token)
        if how == "resume_held":
            channel.resume_held()
        else:
            token = "rotated-token-1" if how == "new_token" else TOKEN
            channel.configure(channel.partner, token)
        if how != "same_token":
            await until(lambda: len(h.final) == 1, "delivered")
        for _ in range(50):
            await asyncio.sleep(0)
        sent = len(h.sent)
        await channel.close()
        return h, sent

    h, sent = asyncio.run(scenario())
    # Then the held batch is probed at once (without the minute) and delivered; a reload that
    # changed no token is no reason to probe
    if how == "same_token":
        assert (sent, h.held()) == (1, 1)
    else:
        assert (sent, h.held(), h.now) == (2, 0, h.start)


def test_past_hold_max_the_held_events_are_dead_lettered_partner_setup() -> None:
    async def scenario() -> tuple[Held, PartnerChannel]:
        # Given a partner that answers "invalid token" whatever happens
        h = Held(lambda request: SETUP)
        channel = h.channel(setup_retry_s=60, hold_max_s=600)
        channel.submit([item(1), item(2)])
        await until(lambda: len(h.final) == 2, "dead-lettered")
        # When another event comes after the hold expired
        channel.submit([item(3)])
        await until(lambda: len(h.final) == 3, "dead-lettered at once")
        await channel.close()
        return h, channel

    h, _ = asyncio.run(scenario())
    # Then, probed every minute for ten minutes, the held batch is dead-lettered partner_setup
    started = h.sent[0][0]
    assert [at - started for at, _, _ in h.sent[:10]] == [60 * n for n in range(10)]
    assert [(s.result.outcome, len(s.items)) for s in h.settled] == [
        (Outcome.PARTNER_SETUP, 2), (Outcome.PARTNER_SETUP, 1),
    ]  # fmt: skip
    assert [letter.reason for letter in h.letters.letters] == ["partner_setup"] * 3
    assert h.letters.letters[0].last_code == 40105
    # the event that came after it had one attempt, and the app is still reported held
    assert len(h.sent) == 11
    assert h.held() == 1


def test_an_expired_hold_ends_on_the_first_answer_that_is_not_setup() -> None:
    async def scenario() -> Held:
        fixed = False

        def answer(request: httpx.Request) -> httpx.Response:
            return OK if fixed else SETUP

        h = Held(answer)
        channel = h.channel(setup_retry_s=60, hold_max_s=120)
        channel.submit([item(1)])
        await until(lambda: len(h.final) == 1, "dead-lettered")
        assert h.held() == 1
        fixed = True
        channel.submit([item(2)])
        await until(lambda: len(h.final) == 2, "delivered")
        await channel.close()
        return h

    h = asyncio.run(scenario())
    assert [s.result.outcome for s in h.settled] == [Outcome.PARTNER_SETUP, Outcome.DELIVERED]
    assert h.held() == 0


def test_a_transient_answer_to_a_probe_does_not_end_the_hold() -> None:
    async def scenario() -> Held:
        # Given a held app whose probe is answered 503, then "invalid token" again, then OK
        h = Held(answers(SETUP, httpx.Response(503), SETUP))
        channel = h.channel(max_attempts=2)
        channel.submit([item(1)])
        await until(lambda: len(h.final) == 1, "delivered")
        await channel.close()
        return h

    h = asyncio.run(scenario())
    # Then it stays held throughout: one request a minute (the retry after the 503 too), and
    # the policy counts the 503 alone (max_attempts 2: not given up)
    times = [at for at, _, _ in h.sent]
    assert len(times) == 4
    assert all(b - a >= 60 for a, b in itertools.pairwise(times))
    assert h.letters.letters == []
    assert h.held() == 0


def test_stopping_leaves_a_held_batch_unsettled() -> None:
    async def scenario() -> tuple[Held, PartnerChannel]:
        h = Held(answers(SETUP), hold=True)
        channel = h.channel()
        # Given a held batch, and events of the held app queued behind it
        channel.submit([item(1)])
        await until(lambda: h.held() == 1, "held")
        channel.submit([item(2, 1)])
        # When the worker stops with plenty of time left
        channel.stop_by(h.now + 30)
        await until(channel.is_idle, "idle")
        await channel.close()
        return h, channel

    h, channel = asyncio.run(scenario())
    # Then nothing is settled (uncommitted: read again after the restart), nothing more sent
    assert h.settled == []
    assert len(h.sent) == 1
    assert channel.queued() == 0


def test_events_past_max_event_age_while_held_are_too_old() -> None:
    async def scenario() -> Held:
        h = Held(answers(SETUP, SETUP))
        channel = h.channel(max_event_age="1h")
        old: WorkItem = item(1)
        old.event_time_s -= 3600 - 30  # passes max_event_age before the first probe
        channel.submit([old, item(2)])
        await until(lambda: len(h.final) == 2, "settled")
        await channel.close()
        return h

    h = asyncio.run(scenario())
    assert [(s.result.outcome, [i.offset for i in s.items]) for s in h.settled] == [
        (Outcome.TOO_OLD, [1]), (Outcome.DELIVERED, [2]),
    ]  # fmt: skip
