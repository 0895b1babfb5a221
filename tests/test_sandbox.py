"""The local TikTok sandbox speaks TikTok's contract and injects the faults tests ask for."""

from __future__ import annotations

import time

import httpx
import pytest

from dispatcher.devtools.sandbox import TikTokSandbox
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


def post(sandbox: TikTokSandbox, payload: object, token: str = TOKEN) -> httpx.Response:
    return httpx.post(sandbox.url, json=payload, headers={"Access-Token": token}, timeout=10)


def control(
    sandbox: TikTokSandbox, method: str, path: str, payload: object = None
) -> dict[str, object]:
    url = f"http://127.0.0.1:{sandbox.control_port}{path}"
    response = httpx.request(method, url, json=payload, timeout=10)
    response.raise_for_status()
    result: dict[str, object] = response.json()
    return result


def test_accepts_a_valid_request_and_records_it(sandbox: TikTokSandbox) -> None:
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
    sandbox: TikTokSandbox, payload: object, token: str, code: int
) -> None:
    response = post(sandbox, payload, token)
    assert (response.status_code, response.json()["code"]) == (200, code)
    assert control(sandbox, "GET", "/stats")["events"] == 0


def test_faults_apply_in_turn(sandbox: TikTokSandbox) -> None:
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


def test_timed_faults_and_slow_answers(sandbox: TikTokSandbox) -> None:
    control(sandbox, "POST", "/faults", {"faults": [{"delay_s": 0.3, "for_s": 0.5}]})
    started = time.monotonic()
    assert post(sandbox, body("slow")).json()["code"] == 0
    assert time.monotonic() - started >= 0.3
    time.sleep(0.6)
    started = time.monotonic()
    post(sandbox, body("fast"))
    assert time.monotonic() - started < 0.3


def test_listener_down_refuses_connections_then_comes_back(sandbox: TikTokSandbox) -> None:
    control(sandbox, "POST", "/listener", {"down_for_s": 0.5})
    with pytest.raises(httpx.ConnectError):
        post(sandbox, body("a"))
    time.sleep(0.8)
    assert post(sandbox, body("a")).json()["code"] == 0


def test_duplicates_are_counted(sandbox: TikTokSandbox) -> None:
    post(sandbox, body("a", "b"))
    post(sandbox, body("b"))
    assert control(sandbox, "GET", "/stats")["duplicates"] == 1
    control(sandbox, "POST", "/reset")
    assert control(sandbox, "GET", "/stats")["events"] == 0
