"""The offset owner: only offsets below which everything is final are committable."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.deadline import Deadline
from dispatcher.errors import CommitFailedError
from dispatcher.offsets import Checkpoint, OffsetTracker, PartitionOffsets

TP = ("installs", 0)


def test_nothing_read_nothing_to_commit() -> None:
    assert PartitionOffsets().committable() is None
    assert OffsetTracker().to_commit() == {}


def test_events_owing_nothing_are_final_at_once() -> None:
    state = PartitionOffsets()
    for offset in range(5):
        state.track(offset, 0)
    assert state.committable() == 5  # one past the last: Kafka's "next offset to read"


def test_commit_stops_at_the_lowest_unfinished_offset() -> None:
    state = PartitionOffsets()
    state.track(0, 0)
    state.track(1, 1)
    state.track(2, 0)
    state.track(3, 1)
    assert state.committable() == 1
    state.complete(3)  # a later one finishing first moves nothing
    assert state.committable() == 1
    state.complete(1)
    assert state.committable() == 4


def test_an_event_with_several_postbacks_is_final_after_the_last() -> None:
    state = PartitionOffsets()
    state.track(7, 2)
    assert state.complete(7) is False
    assert state.committable() == 7
    assert state.complete(7) is True
    assert state.committable() == 8


def test_offset_gaps_are_fine() -> None:
    state = PartitionOffsets()
    state.track(10, 1)
    state.track(15, 0)
    state.complete(10)
    assert state.committable() == 16


def test_reading_below_what_was_read_is_refused() -> None:
    state = PartitionOffsets()
    state.track(3, 0)
    assert state.has_seen(2)
    assert not state.has_seen(4)
    with pytest.raises(ValueError, match="read again"):
        state.track(3, 0)


def test_committed_offsets_only_move_forward() -> None:
    tracker = OffsetTracker()
    state = tracker.partition(TP)
    state.track(0, 0)
    state.track(1, 0)
    assert tracker.to_commit() == {TP: 2}
    tracker.mark_committed({TP: 2})
    assert tracker.to_commit() == {}  # nothing new
    tracker.mark_committed({TP: 1})  # an older answer arriving late
    assert tracker.committed(TP) == 2


def test_state_survives_a_rebalance_that_gives_the_partition_back() -> None:
    tracker = OffsetTracker()
    tracker.partition(TP).track(0, 1)
    tracker.detach([TP])
    tracker.complete(TP, 0)  # a delivery finishing while the group rebalances still counts
    dropped = tracker.reassign([TP])
    assert dropped == []
    assert tracker.partition(TP).has_seen(0)  # re-read records are recognised
    assert tracker.to_commit() == {TP: 1}


def test_partitions_given_to_another_worker_are_forgotten() -> None:
    tracker = OffsetTracker()
    other = ("installs", 1)
    tracker.partition(TP).track(0, 1)
    tracker.partition(other).track(0, 1)
    tracker.detach([TP, other])
    assert tracker.reassign([TP]) == [other]
    tracker.complete(other, 0)  # late completion for a lost partition: ignored
    assert tracker.assigned() == [TP]
    assert tracker.pending() == 1


@given(st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=60), st.randoms())
def test_committable_is_always_the_lowest_unfinished_offset(
    units: list[int], rnd: random.Random
) -> None:
    state = PartitionOffsets()
    work = []
    for offset, count in enumerate(units):
        state.track(offset, count)
        work.extend([offset] * count)
    rnd.shuffle(work)
    committed = []
    remaining = dict(enumerate(units))  # units left per offset, counted here, not by the tracker
    for offset in work:
        state.complete(offset)
        remaining[offset] -= 1
        committed.append(state.committable())
        remaining_offsets = [o for o, left in remaining.items() if left]
        expected = min(remaining_offsets) if remaining_offsets else len(units)
        assert state.committable() == expected
    assert committed == sorted(committed)  # never moves backwards
    assert state.committable() == len(units)


# --- the checkpoint: the one place offsets are committed ----------------------------------------


class Committer:
    """Records commits; fails while `failing` is set, as a broker in a rebalance does."""

    def __init__(self) -> None:
        self.calls: list[dict[tuple[str, int], int]] = []
        self.failing = False

    def __call__(self, offsets: dict[tuple[str, int], int]) -> None:
        self.calls.append(dict(offsets))
        if self.failing:
            raise CommitFailedError("offset commit of t[0] failed: rebalancing")


def test_the_checkpoint_commits_what_is_final_once_and_reports_it() -> None:
    tracker, committer, results = OffsetTracker(), Committer(), []
    checkpoint = Checkpoint(tracker, committer, results.append)
    state = tracker.partition(("t", 0))
    state.track(0, 0)
    state.track(1, 1)  # not final yet
    assert checkpoint.commit() is True
    assert committer.calls == [{("t", 0): 1}]
    assert checkpoint.commit() is True  # nothing moved: no call
    assert committer.calls == [{("t", 0): 1}]
    tracker.complete(("t", 0), 1)
    assert checkpoint.close() is True  # stop forces the last commit
    assert committer.calls == [{("t", 0): 1}, {("t", 0): 2}]
    assert results == [True, True]
    assert tracker.committed(("t", 0)) == 2


def test_a_refused_commit_is_tried_again_with_the_same_offsets() -> None:
    tracker, committer, results = OffsetTracker(), Committer(), []
    checkpoint = Checkpoint(tracker, committer, results.append)
    tracker.partition(("t", 0)).track(0, 0)
    committer.failing = True
    assert checkpoint.commit() is False
    assert tracker.committed(("t", 0)) is None  # not marked: the broker did not take it
    committer.failing = False
    assert checkpoint.commit() is True
    assert committer.calls == [{("t", 0): 1}, {("t", 0): 1}]
    assert results == [False, True]


def test_the_checkpoint_commits_only_the_partitions_asked_for_and_never_backwards() -> None:
    tracker, committer = OffsetTracker(), Committer()
    checkpoint = Checkpoint(tracker, committer)
    tracker.partition(("t", 0)).track(5, 0)
    tracker.partition(("t", 1)).track(9, 0)
    checkpoint.commit([("t", 1)])
    assert committer.calls == [{("t", 1): 10}]
    tracker.mark_committed({("t", 1): 3})  # an old answer arriving late changes nothing
    assert tracker.committed(("t", 1)) == 10
    checkpoint.commit()
    assert committer.calls[-1] == {("t", 0): 6}


def test_a_deadline_counts_down_on_its_clock() -> None:
    now = [100.0]
    deadline = Deadline(2.5, lambda: now[0])
    assert (deadline.remaining_s(), deadline.expired()) == (2.5, False)
    now[0] = 102.0
    assert (deadline.remaining_s(), deadline.expired()) == (0.5, False)
    now[0] = 103.0
    assert (deadline.remaining_s(), deadline.expired()) == (0.0, True)


class AsyncBroker:
    """An asynchronous committer whose answers the test releases."""

    def __init__(self) -> None:
        self.sent: list[dict[tuple[str, int], int]] = []
        self.waiting: list[Callable[[Exception | None], None]] = []

    def __call__(
        self,
        offsets: dict[tuple[str, int], int],
        done: Callable[[dict[tuple[str, int], int], Exception | None], None],
    ) -> None:
        self.sent.append(dict(offsets))
        self.waiting.append(lambda error: done(offsets, error))

    def answer(self, error: Exception | None = None) -> None:
        self.waiting.pop(0)(error)


def test_prompt_commits_do_not_wait_for_the_previous_answer() -> None:
    """kafka-python hands a commit's answer over only when the loop next polls: a commit that
    waited for the previous answer would leave what became final meanwhile uncommitted for a
    turn or two of a busy loop (the kill -9 chaos scenario re-sent whole requests so)."""
    tracker = OffsetTracker()
    broker = AsyncBroker()
    results: list[bool] = []
    checkpoint = Checkpoint(tracker, lambda offsets: None, results.append, broker)
    state, other = tracker.partition(("t", 0)), tracker.partition(("t", 1))
    state.track(0, 0)
    other.track(0, 0)
    checkpoint.commit_soon()
    assert broker.sent == [{("t", 0): 1, ("t", 1): 1}]
    # Nothing moved: nothing is sent again while the answer may still come
    checkpoint.commit_soon()
    assert len(broker.sent) == 1
    # What becomes final goes at once, unanswered commit or not, and only what moved
    state.track(1, 0)
    checkpoint.commit_soon()
    assert broker.sent[-1] == {("t", 0): 2}
    assert tracker.committed(("t", 0)) is None  # not before the broker said so
    broker.answer()
    broker.answer()
    checkpoint.take_commit_answers()
    assert (tracker.committed(("t", 0)), tracker.committed(("t", 1))) == (2, 1)
    # A refusal changes nothing, and the same offsets go again
    state.track(2, 0)
    checkpoint.commit_soon()
    broker.answer(RuntimeError("rebalancing"))
    checkpoint.commit_soon()
    assert tracker.committed(("t", 0)) == 2
    assert broker.sent[-2:] == [{("t", 0): 3}, {("t", 0): 3}]
    # A refused commit already overtaken by a later one pending is not sent again
    state.track(3, 0)
    checkpoint.commit_soon()
    assert broker.sent[-1] == {("t", 0): 4}
    broker.answer(RuntimeError("rebalancing"))  # the second {t0: 3}, sent before {t0: 4}
    checkpoint.commit_soon()
    assert len(broker.sent) == 5
    broker.answer()
    checkpoint.take_commit_answers()
    assert tracker.committed(("t", 0)) == 4
    assert results == [True, True, False, False, True]


def test_answers_arriving_out_of_order_never_move_an_offset_back() -> None:
    tracker = OffsetTracker()
    broker = AsyncBroker()
    checkpoint = Checkpoint(tracker, lambda offsets: None, lambda ok: None, broker)
    state = tracker.partition(("t", 0))
    state.track(0, 0)
    checkpoint.commit_soon()
    state.track(1, 0)
    checkpoint.commit_soon()
    broker.waiting.pop(1)(None)  # the later commit's answer first
    broker.answer()
    checkpoint.take_commit_answers()
    assert tracker.committed(("t", 0)) == 2
    checkpoint.commit_soon()
    assert len(broker.sent) == 2  # and nothing is left to send


def test_an_unanswered_commit_is_given_up_after_a_while() -> None:
    tracker = OffsetTracker()
    broker = AsyncBroker()
    now = [0.0]
    checkpoint = Checkpoint(tracker, lambda offsets: None, lambda ok: None, broker, lambda: now[0])
    tracker.partition(("t", 0)).track(0, 0)
    checkpoint.commit_soon()
    now[0] = 14.0
    checkpoint.commit_soon()
    assert len(broker.sent) == 1
    now[0] = 16.0
    checkpoint.commit_soon()
    assert len(broker.sent) == 2  # tried again
    # A late answer to the first still counts, and offsets never move back
    broker.answer()
    checkpoint.take_commit_answers()
    assert tracker.committed(("t", 0)) == 1


def test_a_synchronous_commit_takes_in_pending_answers_first() -> None:
    tracker = OffsetTracker()
    broker = AsyncBroker()
    synchronous: list[dict[tuple[str, int], int]] = []
    checkpoint = Checkpoint(tracker, synchronous.append, lambda ok: None, broker)
    state = tracker.partition(("t", 0))
    state.track(0, 0)
    checkpoint.commit_soon()
    broker.answer()
    state.track(1, 0)
    assert checkpoint.close()
    assert synchronous == [{("t", 0): 2}]  # only what the answered commit did not cover


# --- rebalances: what the worker asks of the tracker while partitions move -----------------------

OTHER = ("installs", 1)
GONE = ("installs", 9)  # never assigned to this worker


def test_a_partition_starts_with_what_was_committed_before() -> None:
    assert PartitionOffsets().committed is None
    assert PartitionOffsets(committed=5).committed == 5


def test_completing_an_offset_that_owes_nothing_finishes_nothing() -> None:
    state = PartitionOffsets()
    state.track(0, 0)
    assert state.complete(0) is False  # final already: nothing was outstanding
    assert state.complete(3) is False  # never read
    assert state.pending() == 0


def tracker_mid_rebalance() -> OffsetTracker:
    """TP assigned (offsets 0 and 1 pending, 2 final); OTHER revoked while offset 4 is pending."""
    tracker = OffsetTracker()
    state = tracker.partition(TP)
    state.track(0, 1)
    state.track(1, 2)
    state.track(2, 0)
    tracker.partition(OTHER).track(4, 1)
    tracker.detach([OTHER, GONE])  # GONE was never ours: nothing to keep
    return tracker


def test_events_of_a_revoked_partition_still_count_until_the_new_assignment() -> None:
    tracker = tracker_mid_rebalance()
    assert tracker.assigned() == [TP]
    assert (tracker.pending(), tracker.pending_in([TP]), tracker.pending_in([OTHER]),
            tracker.pending_in([GONE]), tracker.pending_in([TP, OTHER, GONE])) == (3, 2, 1, 0, 3)  # fmt: skip
    assert (tracker.final_offset(TP), tracker.final_offset(OTHER),
            tracker.final_offset(GONE)) == (0, 4, None)  # fmt: skip
    assert (tracker.committed(TP), tracker.committed(OTHER), tracker.committed(GONE)) == (
        None, None, None)  # fmt: skip


@pytest.mark.parametrize(
    ("tps", "expected"),
    [
        pytest.param(None, {TP: 0}, id="every-assigned-partition"),
        pytest.param([TP], {TP: 0}, id="an-assigned-one"),
        pytest.param([OTHER], {OTHER: 4}, id="a-revoked-one-being-handed-over"),
        pytest.param([TP, OTHER, GONE], {TP: 0, OTHER: 4}, id="unknown-ones-left-out"),
        pytest.param([], {}, id="none"),
    ],
)
def test_to_commit_offers_the_partitions_asked_for(
    tps: list[tuple[str, int]] | None, expected: dict[tuple[str, int], int]
) -> None:
    assert tracker_mid_rebalance().to_commit(tps) == expected


def test_the_first_assignment_forgets_nothing_and_takes_nothing_back() -> None:
    tracker = OffsetTracker()
    assert tracker.reassign([TP, OTHER]) == []
    assert tracker.assigned() == []  # states are made when records are read
    tracker.partition(TP).track(0, 0)
    assert tracker.assigned() == [TP]


def test_a_reassignment_keeps_what_returns_and_forgets_the_rest() -> None:
    tracker = tracker_mid_rebalance()
    tracker.complete(OTHER, 4)  # finished while handed over
    assert tracker.final_offset(OTHER) == 5
    assert tracker.reassign([]) == [OTHER]
    assert (tracker.assigned(), tracker.pending(), tracker.final_offset(OTHER)) == ([TP], 2, None)
    assert tracker.to_commit([OTHER]) == {}
    assert tracker.reassign([OTHER]) == []  # nothing is held over twice


def test_a_commit_at_the_offset_already_committed_changes_nothing() -> None:
    tracker = OffsetTracker()
    tracker.partition(TP).track(0, 0)
    tracker.mark_committed({TP: 1, GONE: 7})  # GONE: no longer ours, ignored
    tracker.mark_committed({TP: 1})
    assert (tracker.committed(TP), tracker.committed(GONE), tracker.to_commit()) == (1, None, {})


# --- the checkpoint's edges: timeouts on a clock, answers, and what the operator reads -----------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_an_unanswered_commit_is_given_up_exactly_after_the_timeout_on_any_clock(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a commit sent at 1000 s on a monotonic clock that does not start at zero
    tracker, broker, results, clock = OffsetTracker(), AsyncBroker(), [], Clock(1000.0)
    checkpoint = Checkpoint(tracker, lambda offsets: None, results.append, broker, clock)
    tracker.partition(TP).track(0, 0)
    checkpoint.commit_soon()
    # When it is still unanswered a moment before the timeout, nothing is sent again
    clock.now = 1014.9
    checkpoint.commit_soon()
    assert (len(broker.sent), results, caplog.messages) == (1, [], [])
    # When the timeout has passed to the dot, it is given up, reported, and sent again
    clock.now = 1015.0
    checkpoint.commit_soon()
    assert broker.sent == [{TP: 1}, {TP: 1}]
    assert results == [False]
    assert caplog.messages == ["an offset commit was not answered in 15 s; trying again"]


def test_a_commit_given_up_with_nothing_left_to_commit_is_reported_once() -> None:
    # Given an unanswered commit for a partition that has since gone to another worker
    tracker, broker, results, clock = OffsetTracker(), AsyncBroker(), [], Clock(50.0)
    checkpoint = Checkpoint(tracker, lambda offsets: None, results.append, broker, clock)
    tracker.partition(TP).track(0, 0)
    checkpoint.commit_soon()
    tracker.detach([TP])
    tracker.reassign([])
    # When the timeout passes, twice over
    clock.now = 100.0
    checkpoint.commit_soon()
    clock.now = 200.0
    checkpoint.commit_soon()
    # Then it was given up once, and nothing else sent
    assert (results, len(broker.sent)) == ([False], 1)


def test_a_refused_asynchronous_commit_names_its_partitions_and_the_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tracker, broker, results = OffsetTracker(), AsyncBroker(), []
    checkpoint = Checkpoint(tracker, lambda offsets: None, results.append, broker)
    tracker.partition(OTHER).track(0, 0)
    tracker.partition(TP).track(0, 0)
    checkpoint.commit_soon()
    broker.answer(RuntimeError("rebalancing"))
    checkpoint.take_commit_answers()
    assert results == [False]
    assert caplog.messages == [
        "offset commit of installs[0], installs[1] failed: rebalancing; will try again"
    ]


def test_a_refused_synchronous_commit_says_so(caplog: pytest.LogCaptureFixture) -> None:
    tracker, committer = OffsetTracker(), Committer()
    committer.failing = True
    tracker.partition(("t", 0)).track(0, 0)
    assert Checkpoint(tracker, committer).commit() is False
    assert caplog.messages == ["offset commit of t[0] failed: rebalancing; will try again"]


def test_a_commit_inside_the_clients_loop_takes_only_its_partitions_and_their_answer() -> None:
    # Given two partitions with final events, one of them being revoked
    tracker, results = OffsetTracker(), []
    checkpoint = Checkpoint(tracker, lambda offsets: None, results.append)
    tracker.partition(TP).track(0, 0)
    tracker.partition(OTHER).track(3, 0)
    # When the revocation commits its partition itself, and the broker refuses, then accepts
    offsets = checkpoint.offsets_to_commit([OTHER])
    assert offsets == {OTHER: 4}
    assert checkpoint.answered(offsets, RuntimeError("not the coordinator")) is False
    assert tracker.committed(OTHER) is None
    assert checkpoint.answered(offsets, None) is True
    # Then only that partition is committed, and both answers were reported
    assert (tracker.committed(OTHER), tracker.committed(TP), results) == (4, None, [False, True])


def test_while_commits_keep_failing_the_operator_reads_one_line_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A broker outage refuses a commit every commit interval: the first refusal is a warning,
    then one a minute with the count, and the first success after them says how many failed."""
    caplog.set_level(logging.INFO, logger="dispatcher.offsets")
    tracker, broker, results, clock = OffsetTracker(), AsyncBroker(), [], Clock(500.0)
    checkpoint = Checkpoint(tracker, lambda offsets: None, results.append, broker, clock)
    tracker.partition(("t", 0)).track(0, 0)

    def refused_at(now: float) -> None:
        clock.now = now
        checkpoint.commit_soon()
        broker.answer(RuntimeError("NodeNotReadyError: coordinator"))
        checkpoint.take_commit_answers()

    for now in (500.0, 500.2, 559.9):
        refused_at(now)
    refused_at(560.0)  # a minute after the first warning
    refused_at(619.9)
    refused_at(620.0)
    clock.now = 621.0
    checkpoint.commit_soon()
    broker.answer()
    checkpoint.take_commit_answers()
    failed = "offset commit of t[0] failed: NodeNotReadyError: coordinator; will try again"
    assert caplog.messages == [
        failed,
        f"{failed} (4 failed in a row)",
        f"{failed} (6 failed in a row)",
        "offset commits succeed again after 6 failed",
    ]
    assert results == [False] * 6 + [True]
    # A later refusal is a first one again
    caplog.clear()
    tracker.partition(("t", 0)).track(1, 0)
    refused_at(622.0)
    assert caplog.messages == [failed]


def test_a_refused_synchronous_commit_counts_in_the_same_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="dispatcher.offsets")
    tracker, committer, clock = OffsetTracker(), Committer(), Clock(0.0)
    checkpoint = Checkpoint(tracker, committer, clock=clock)
    tracker.partition(("t", 0)).track(0, 0)
    committer.failing = True
    assert (checkpoint.commit(), checkpoint.commit()) == (False, False)
    clock.now = 60.0
    assert checkpoint.commit() is False
    committer.failing = False
    assert checkpoint.commit() is True
    assert caplog.messages == [
        "offset commit of t[0] failed: rebalancing; will try again",
        "offset commit of t[0] failed: rebalancing; will try again (3 failed in a row)",
        "offset commits succeed again after 3 failed",
    ]


def test_a_rewind_forgets_the_events_from_an_offset_on_without_committing_past_them() -> None:
    """Postbacks dropped unsent at a revocation: the commit stops at the first of them, and
    should the partition come back, they are handled again when read again."""
    state = PartitionOffsets()
    for offset in range(10):
        state.track(offset, 1)
    for offset in range(4):  # delivered
        state.complete(offset)
    # offsets 4 and 5 are out (in flight); 6..9 were queued and dropped
    assert state.committable() == 4
    state.complete(4)
    state.complete(5)
    assert state.committable() == 6  # the dropped ones still hold the commit back
    state.rewind(6)
    assert [state.has_seen(o) for o in (5, 6, 9)] == [True, False, False]
    assert state.pending() == 0
    state.track(6, 1)  # read again: tracked afresh
    assert state.committable() == 6
