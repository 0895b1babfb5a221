"""Settling in one place: metrics of outcomes, dead letters, and final only once acknowledged."""

from __future__ import annotations

import time
from collections.abc import Callable

from dispatcher.delivery import Settled, WorkItem
from dispatcher.inputs import BadInput
from dispatcher.metrics import Metrics
from dispatcher.outcomes import AttemptKind, AttemptResult, BatchResult, Outcome
from dispatcher.settle import Acknowledged, BadInputRead, Coordinates, Settlement
from schemas.dead_letter import DeadLetter


class HeldLetters:
    """A dead-letter sink that acknowledges only when the test says so."""

    def __init__(self) -> None:
        self.letters: list[tuple[DeadLetter, bytes | None, Callable[[], None]]] = []

    def submit(self, letter: DeadLetter, key: bytes | None, on_ack: Callable[[], None]) -> None:
        self.letters.append((letter, key, on_ack))

    def acknowledge_all(self) -> None:
        for _, _, on_ack in self.letters:
            on_ack()


def setup() -> tuple[Settlement, HeldLetters, list[Coordinates], list[Acknowledged], Metrics]:
    metrics, letters, final, acks = Metrics(), HeldLetters(), [], []
    settlement = Settlement(metrics, letters, final.extend, acks.append)
    return settlement, letters, final, acks, metrics


def work(offset: int) -> WorkItem:
    return WorkItem("in-app", 2, offset, b"k", b'{"app_id": "id1"}', "tiktok", "7300000000000000001",
                    {"event": "Purchase"}, "Purchase", time.time() - 5, 0.0)  # fmt: skip


def result(outcome: Outcome, kind: AttemptKind, code: int | None) -> BatchResult:
    return BatchResult(outcome, 3, AttemptResult(kind, 200, code, "said so"))


def count(metrics: Metrics, outcome: str) -> float:
    labels = {"partner": "tiktok", "event": "Purchase", "outcome": outcome}
    return metrics.registry.get_sample_value("dispatcher_postbacks_total", labels) or 0.0


def test_a_delivered_batch_is_final_at_once_and_counted() -> None:
    settlement, letters, final, _, metrics = setup()
    settlement.settle(
        Settled([work(7), work(8)], result(Outcome.DELIVERED, AttemptKind.OK, 0), time.time())
    )
    assert final == [("in-app", 2, 7), ("in-app", 2, 8)]
    assert letters.letters == []
    assert count(metrics, "delivered") == 2


def test_a_rejected_batch_is_dead_lettered_and_final_only_once_acknowledged() -> None:
    settlement, letters, final, acks, metrics = setup()
    rejected = result(Outcome.REJECTED, AttemptKind.FATAL, 40001)
    settlement.settle(Settled([work(7), work(8)], rejected, time.time()))
    assert final == []  # not before the dead-letter topic has them
    assert [(letter.reason, letter.source_offset, letter.last_code, letter.attempts, key)
            for letter, key, _ in letters.letters] == [
        ("partner_rejected", 7, 40001, 3, b"k"), ("partner_rejected", 8, 40001, 3, b"k")]  # fmt: skip
    assert count(metrics, "rejected") == 2
    letters.acknowledge_all()
    assert acks == [Acknowledged([("in-app", 2, 7)]), Acknowledged([("in-app", 2, 8)])]
    for ack in acks:
        settlement.settle(ack)
    assert final == [("in-app", 2, 7), ("in-app", 2, 8)]


def test_an_exhausted_batch_is_dead_lettered_as_such() -> None:
    settlement, letters, _, _, metrics = setup()
    gave_up = result(Outcome.GAVE_UP, AttemptKind.RETRYABLE, None)
    settlement.settle(Settled([work(1)], gave_up, time.time()))
    assert [letter.reason for letter, _, _ in letters.letters] == ["retries_exhausted"]
    assert count(metrics, "gave_up") == 1


def test_bad_input_is_an_outcome_like_the_others() -> None:
    settlement, letters, final, acks, _ = setup()
    bad = BadInput("missing required field app_id", b'{"x": 1}', {"x": 1})
    settlement.settle(BadInputRead("installs", 0, 41, b"key", bad))
    [(letter, key, _)] = letters.letters
    assert (letter.reason, letter.detail, letter.source_offset, letter.raw, key) == (
        "bad_input", "missing required field app_id", 41, '{"x": 1}', b"key")  # fmt: skip
    assert final == []
    letters.acknowledge_all()
    settlement.settle(acks[0])
    assert final == [("installs", 0, 41)]
