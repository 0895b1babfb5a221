"""Retries meet age: a batch still retrying when its events pass the partner's `max_event_age`
stops for those events, which are dead-lettered `too_old`; the others go on."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from typing import Any

import httpx

from dispatcher.outcomes import Outcome
from tests.test_delivery import Harness, item, ok_body


def test_events_that_pass_their_age_while_retrying_are_dead_lettered_too_old() -> None:
    # Given TikTok failing for a while, and a batch whose first half turns one hour old in 0.1 s
    failing_until = time.monotonic() + 0.4

    def answer(request: httpx.Request) -> Any:
        if time.monotonic() < failing_until:
            return httpx.Response(500, json={"code": 50000, "message": "internal error"})
        return httpx.Response(200, json=ok_body())

    harness = Harness(answer, max_event_age="1h", max_attempts=1000, batch_max_events=10)
    almost_old = time.time() - 3600 + 0.1
    items = [item(n) for n in range(10)]
    items[:5] = [dataclasses.replace(i, event_time_s=almost_old) for i in items[:5]]
    # When it is delivered
    asyncio.run(harness.run(items, expect_final=10))
    # Then the old half is dead-lettered too_old, the rest delivered, each once
    assert sorted(letter.source_offset for letter in harness.letters.letters) == [0, 1, 2, 3, 4]
    assert {letter.reason for letter in harness.letters.letters} == {"too_old"}
    assert harness.letters.letters[0].detail.startswith(
        "older than tiktok's max_event_age while retrying; last answer code 50000"
    )
    assert sorted(offset for _, _, offset in harness.final) == list(range(10))
    last = harness.requests[-1]
    assert [event["event_id"] for event in last["data"]] == [f"e-{n}" for n in range(5, 10)]
    assert (
        harness.sample(
            "dispatcher_postbacks_total",
            partner="tiktok",
            event="Purchase",
            outcome=Outcome.TOO_OLD,
        )
        == 5
    )
    assert (
        harness.sample(
            "dispatcher_postbacks_total", partner="tiktok", event="Purchase", outcome="delivered"
        )
        == 5
    )


def test_a_batch_whose_events_all_pass_their_age_stops_retrying() -> None:
    requests: list[float] = []

    def answer(request: httpx.Request) -> Any:
        requests.append(time.monotonic())
        return httpx.Response(503, json={"code": 50002, "message": "timeout"})

    harness = Harness(answer, max_event_age="1h", max_attempts=1000)
    almost_old = time.time() - 3600 + 0.05
    items = [dataclasses.replace(item(n), event_time_s=almost_old) for n in range(3)]
    asyncio.run(harness.run(items, expect_final=3))
    assert [letter.reason for letter in harness.letters.letters] == ["too_old"] * 3
    stopped_at = len(requests)
    assert stopped_at > 1  # it was retried until the events were too old, then no more
    assert json.loads(json.dumps(harness.final)) == [["in-app", 0, n] for n in range(3)]
