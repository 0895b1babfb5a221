"""How the chaos suite tells avoidable re-sends after kill -9 from those in flight (issue 14)."""

from __future__ import annotations

from tests.chaos.scenarios import duplicates_by_cause, split_duplicates


def test_re_sends_are_split_by_when_the_first_copy_was_answered() -> None:
    kills = [100.0, 200.0]
    arrivals = [
        ("a", 10.0), ("b", 99.8), ("c", 99.0), ("t", 50.0), ("t", 51.0),  # before the 1st kill
        ("a", 101.0),  # answered 90 s before the kill: avoidable
        ("b", 101.5),  # answered 0.2 s before: in flight
        ("c", 102.0),  # answered 1 s before: avoidable
        ("d", 150.0), ("d", 205.0),  # answered 50 s before the 2nd kill: avoidable
        ("e", 199.9), ("e", 201.0),  # 0.1 s before the 2nd kill: in flight
    ]  # fmt: skip
    assert split_duplicates(arrivals, kills) == (3, 2, 1)


def test_no_kill_no_avoidable_re_send() -> None:
    assert split_duplicates([("a", 1.0), ("a", 2.0)], []) == (0, 0, 1)


def test_each_re_send_is_judged_against_the_copy_before_it() -> None:
    """An event re-sent after kill 1, then killed again right after: the third copy was in
    flight at kill 2, whatever happened before kill 1."""
    arrivals = [("e", 10.0), ("e", 113.0), ("e", 126.0)]
    assert split_duplicates(arrivals, [100.0, 113.2]) == (1, 1, 0)


def test_a_copy_in_flight_at_one_kill_and_re_sent_after_the_next_is_in_flight() -> None:
    """The worker after kill 1 was killed before it re-sent the copy in flight at kill 1."""
    assert split_duplicates([("f", 99.9), ("f", 130.0)], [100.0, 113.2]) == (0, 1, 0)


def test_a_copy_arriving_just_after_a_kill_was_sent_by_the_killed_worker() -> None:
    """On the wire at kill 1 (processed 0.1 s after it), re-sent after kill 2: in flight."""
    assert split_duplicates([("g", 100.1), ("g", 130.0)], [100.0, 113.2]) == (0, 1, 0)


def test_a_re_send_across_a_broker_stall_has_a_cause_of_its_own() -> None:
    """A stall overlapping the time between two copies is their cause, before a rebalance; a
    kill still comes first. Without stalls given, there is no such cause."""
    arrivals = [("s", 10.0), ("s", 25.0), ("k", 10.0), ("k", 30.0), ("r", 50.0), ("r", 61.0)]
    kills, rebalances, stalls = [29.0], [(5.0, 20.0), (55.0, 60.0)], [(12.0, 24.0)]
    assert duplicates_by_cause(arrivals, kills, rebalances, stalls) == {
        "avoidable": 1, "in_flight": 0, "rebalance": 1, "stall": 1, "timeout": 0,
    }  # fmt: skip
    assert "stall" not in duplicates_by_cause(arrivals, kills, rebalances)
