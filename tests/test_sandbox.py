"""The local partner sandbox speaks TikTok's and Ocean Engine's contracts and injects the
faults tests ask for, per partner."""

from __future__ import annotations

import time

import httpx
import pytest

from dispatcher.devtools.sandbox import PartnerSandbox
from tests.pipeline import TOKEN  # the token the shared `sandbox` fixture requires


def body(*event_ids: str) -> dict[str, object]:
    return {
        "event_source": "app",
        "event_source_id": "7300000000000000001",
        "data": [
            {"event": "Purchase", "event_time": 1, "event_id": i, "app": {"app_id": "id1"}}
            for i in event_ids
        ],
    }


def post(sandbox: PartnerSandbox, payload: object, token: str = TOKEN) -> httpx.Response:
    return httpx.post(sandbox.url, json=payload, headers={"Access-Token": token}, timeout=10)


def control(
    sandbox: PartnerSandbox, method: str, path: str, payload: object = None
) -> dict[str, object]:
    url = f"http://127.0.0.1:{sandbox.control_port}{path}"
    response = httpx.request(method, url, json=payload, timeout=10)
    response.raise_for_status()
    result: dict[str, object] = response.json()
    return result


def test_accepts_a_valid_request_and_records_it(sandbox: PartnerSandbox) -> None:
    response = post(sandbox, body("a", "b"))
    assert response.status_code == 200
    assert response.json()["code"] == 0
    events = control(sandbox, "GET", "/events")["events"]
    assert [e["event_id"] for e in events] == ["a", "b"]  # type: ignore[index,union-attr]
    assert control(sandbox, "GET", "/stats") == {
        "requests": 1,
        "events": 2,
        "unique_event_ids": 2,
        "duplicates": 0,
    }


@pytest.mark.parametrize(
    ("payload", "token", "code"),
    [
        (body("a"), "wrong", 40105),
        ({"event_source": "web", "event_source_id": "1", "data": []}, TOKEN, 40002),
        (body(*[str(n) for n in range(1001)]), TOKEN, 40002),
        ({"event_source": "app", "event_source_id": "1", "data": [{"event": "X"}]}, TOKEN, 40002),
    ],
)
def test_errors_come_as_http_200_with_a_code(
    sandbox: PartnerSandbox, payload: object, token: str, code: int
) -> None:
    response = post(sandbox, payload, token)
    assert (response.status_code, response.json()["code"]) == (200, code)
    assert control(sandbox, "GET", "/stats")["events"] == 0


def test_faults_apply_in_turn(sandbox: PartnerSandbox) -> None:
    control(sandbox, "POST", "/faults", {"faults": [
        {"status": 503, "count": 2},
        {"status": 429, "retry_after": "3", "count": 1},
        {"code": 40100},
    ]})  # fmt: skip
    answers = [post(sandbox, body("x")) for _ in range(5)]
    assert [a.status_code for a in answers] == [503, 503, 429, 200, 200]
    assert answers[2].headers["retry-after"] == "3"
    assert [a.json()["code"] for a in answers[3:]] == [40100, 0]
    assert control(sandbox, "GET", "/stats")["events"] == 1


def test_timed_faults_and_slow_answers(sandbox: PartnerSandbox) -> None:
    control(sandbox, "POST", "/faults", {"faults": [{"delay_s": 0.3, "for_s": 0.5}]})
    started = time.monotonic()
    assert post(sandbox, body("slow")).json()["code"] == 0
    assert time.monotonic() - started >= 0.3
    time.sleep(0.6)
    started = time.monotonic()
    post(sandbox, body("fast"))
    assert time.monotonic() - started < 0.3


def test_listener_down_refuses_connections_then_comes_back(sandbox: PartnerSandbox) -> None:
    control(sandbox, "POST", "/listener", {"down_for_s": 0.5})
    with pytest.raises(httpx.ConnectError):
        post(sandbox, body("a"))
    time.sleep(0.8)
    assert post(sandbox, body("a")).json()["code"] == 0


def test_duplicates_are_counted(sandbox: PartnerSandbox) -> None:
    post(sandbox, body("a", "b"))
    post(sandbox, body("b"))
    assert control(sandbox, "GET", "/stats")["duplicates"] == 1
    control(sandbox, "POST", "/reset")
    assert control(sandbox, "GET", "/stats")["events"] == 0


# --- Ocean Engine --------------------------------------------------------------------------------


def conversion(callback: str = "cb-1", **overrides: object) -> dict[str, object]:
    return {
        "event_type": "active_pay",
        "context": {"ad": {"callback": callback, "match_type": 0},
                    "device": {"oaid": "o-1"}},
        "properties": {"pay_amount": 6800},
        "timestamp": 1_763_632_800_000,
    } | overrides  # fmt: skip


def post_ocean(sandbox: PartnerSandbox, payload: object) -> httpx.Response:
    return httpx.post(sandbox.oceanengine_url, json=payload, timeout=10)


def test_ocean_engine_accepts_one_conversion_without_a_token(sandbox: PartnerSandbox) -> None:
    response = post_ocean(sandbox, conversion())
    assert response.status_code == 200
    assert response.json()["code"] == 0
    [event] = control(sandbox, "GET", "/events?partner=oceanengine")["events"]  # type: ignore[misc]
    assert event["partner"] == "oceanengine"
    assert (event["event"], event["event_source_id"]) == ("active_pay", "cb-1")
    assert event["payload"] == conversion()
    assert control(sandbox, "GET", "/events?partner=tiktok")["events"] == []
    [request] = control(sandbox, "GET", "/requests")["requests"]  # type: ignore[misc]
    assert (request["partner"], request["events"], request["code"]) == ("oceanengine", 1, 0)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param([conversion("a"), conversion("b")], id="a-batch"),
        pytest.param(conversion(""), id="blank-callback"),
        pytest.param(conversion(timestamp=1_763_632_800), id="seconds-not-milliseconds"),
        pytest.param(conversion(event_type=None), id="no-event-type"),
        pytest.param(conversion(properties={"pay_amount": 68.5}), id="fractional-fen"),
        pytest.param(conversion(event="Purchase"), id="unknown-field"),
    ],
)
def test_ocean_engine_rejects_what_its_contract_does_not_take(
    sandbox: PartnerSandbox, payload: object
) -> None:
    response = post_ocean(sandbox, payload)
    assert response.status_code == 200
    assert response.json()["code"] != 0
    assert control(sandbox, "GET", "/stats")["events"] == 0


def test_faults_are_per_partner(sandbox: PartnerSandbox) -> None:
    control(sandbox, "POST", "/faults", {"partner": "oceanengine", "faults": [
        {"status": 503, "count": 1}, {"code": 7, "message": "rejected", "count": 1},
    ]})  # fmt: skip
    assert post(sandbox, body("t1")).json()["code"] == 0  # TikTok is not affected
    assert post_ocean(sandbox, conversion("x")).status_code == 503
    rejected = post_ocean(sandbox, conversion("x")).json()
    assert (rejected["code"], rejected["message"]) == (7, "rejected")
    assert "data" not in rejected  # Ocean Engine's body, not TikTok's
    assert post_ocean(sandbox, conversion("x")).json()["code"] == 0
    answer = httpx.post(
        f"http://127.0.0.1:{sandbox.control_port}/faults",
        json={"partner": "nobody", "faults": []},
        timeout=10,
    )
    assert answer.status_code == 400


def test_ocean_engine_duplicates_are_the_same_conversion_again(sandbox: PartnerSandbox) -> None:
    post_ocean(sandbox, conversion("a"))
    post_ocean(sandbox, conversion("a"))
    post_ocean(sandbox, conversion("a", event_type="active_register"))
    post(sandbox, body("a"))  # a TikTok event id equal to a callback is another event
    stats = control(sandbox, "GET", "/stats")
    assert (stats["events"], stats["duplicates"]) == (4, 1)


def test_a_code_answered_until_the_faults_are_cleared_and_listed_meanwhile(
    sandbox: PartnerSandbox,
) -> None:
    # Given "invalid token" asked for until reset, after one 503
    control(sandbox, "POST", "/faults", {"faults": [
        {"status": 503}, {"code": 40105, "message": "Access token is incorrect or revoked.",
                          "until_reset": True},
    ]})  # fmt: skip
    listed = control(sandbox, "GET", "/faults")["tiktok"]
    assert [f["status"] for f in listed["queued"]] == [503, 200]  # type: ignore[index]
    # Then every request gets it, however many, until the faults are cleared
    answers = [post(sandbox, body("x")) for _ in range(4)]
    assert [a.status_code for a in answers] == [503, 200, 200, 200]
    assert [a.json()["code"] for a in answers[1:]] == [40105] * 3
    [fault] = control(sandbox, "GET", "/faults")["tiktok"]["queued"]  # type: ignore[index]
    assert (fault["code"], fault["until_reset"]) == (40105, True)  # type: ignore[index]
    control(sandbox, "DELETE", "/faults")
    assert post(sandbox, body("x")).json()["code"] == 0
    assert control(sandbox, "GET", "/faults") == {
        "tiktok": {"queued": [], "bad_events": {}},
        "oceanengine": {"queued": [], "bad_events": {}},
    }


def test_a_fault_for_the_next_seconds_shows_what_is_left(sandbox: PartnerSandbox) -> None:
    control(sandbox, "POST", "/faults", {"faults": [{"code": 61000, "for_s": 30}]})
    assert post(sandbox, body("x")).json()["code"] == 61000
    [fault] = control(sandbox, "GET", "/faults")["tiktok"]["queued"]  # type: ignore[index]
    assert 0 < fault["remaining_s"] <= 30  # type: ignore[index]


def test_a_bad_event_rejects_every_request_that_carries_it(sandbox: PartnerSandbox) -> None:
    # Given one bad event
    control(sandbox, "POST", "/faults", {"faults": [
        {"code": 40002, "message": "data[0].properties: invalid", "event_ids": ["bad"]},
    ]})  # fmt: skip
    # Then a request carrying it is refused whole, one without it is accepted
    refused = post(sandbox, body("a", "bad", "b"))
    assert (refused.status_code, refused.json()["code"]) == (200, 40002)
    assert refused.json()["message"] == "data[0].properties: invalid"
    assert post(sandbox, body("a", "b")).json()["code"] == 0
    assert post(sandbox, body("bad")).json()["code"] == 40002
    assert [e.event_id for e in sandbox.events] == ["a", "b"]
    assert [r.code for r in sandbox.requests] == [40002, 0, 40002]
    listed = control(sandbox, "GET", "/faults")["tiktok"]["bad_events"]
    assert list(listed) == ["bad"]  # type: ignore[call-overload]
    control(sandbox, "POST", "/reset")
    assert post(sandbox, body("bad")).json()["code"] == 0
