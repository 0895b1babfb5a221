"""A source topic deleted while the worker runs is noticed once, from metadata snapshots alone."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest

from dispatcher import kafka_clients
from dispatcher.health import Health
from dispatcher.topic_watch import SourceTopicWatch, TopicDeleted

TOPICS = ("installs", "in-app")
OLD, NEW = "0195-old", "0195-new"


def test_a_topic_gone_from_the_metadata_and_the_topic_list_is_reported_once() -> None:
    watch = SourceTopicWatch(TOPICS)
    assert watch.observe({"installs": OLD, "in-app": "x"}) == []
    # When the metadata no longer has it, it is only a suspect until the topic list agrees
    assert watch.suspects({"installs": None, "in-app": "x"}) == ["installs"]
    assert watch.observe({"installs": None, "in-app": "x"}) == []
    assert watch.observe({"installs": None, "in-app": "x"}, listed=["installs", "in-app"]) == []
    found = watch.observe({"installs": None, "in-app": "x"}, listed=["in-app", "other"])
    assert found == [TopicDeleted("installs", OLD, None)]
    # Then: reported once, and no longer a suspect
    assert watch.observe({"installs": None, "in-app": "x"}, listed=["in-app"]) == []
    assert watch.suspects({"installs": None, "in-app": "x"}) == []
    assert watch.deleted == (TopicDeleted("installs", OLD, None),)


def test_a_topic_back_under_a_new_id_was_deleted_and_created_again() -> None:
    watch = SourceTopicWatch(TOPICS)
    watch.observe({"installs": OLD, "in-app": "x"})
    assert watch.observe({"installs": OLD, "in-app": "x"}) == []
    found = watch.observe({"installs": NEW, "in-app": "x"})
    assert found == [TopicDeleted("installs", OLD, NEW)]
    assert watch.observe({"installs": "0195-newer", "in-app": "x"}) == []


def test_a_topic_never_seen_is_not_judged() -> None:
    # Given the first snapshots, taken before the subscription's metadata arrived
    watch = SourceTopicWatch(TOPICS)
    assert watch.suspects({}) == []
    assert watch.observe({}, listed=[]) == []
    assert watch.observe({"installs": None, "in-app": None}, listed=[]) == []
    # When the topics appear, their first ids are the reference
    assert watch.observe({"installs": OLD, "in-app": "x"}) == []
    assert watch.observe({"installs": NEW, "in-app": "x"}) == [TopicDeleted("installs", OLD, NEW)]


def test_a_broker_that_reports_no_topic_ids_is_judged_by_presence_alone() -> None:
    watch = SourceTopicWatch(TOPICS)
    watch.observe({"installs": "", "in-app": ""})
    assert watch.observe({"installs": "", "in-app": ""}) == []
    assert watch.observe({"installs": "abc", "in-app": ""}) == []  # an id appears: not a change
    found = watch.observe({"installs": None, "in-app": ""}, listed=["in-app"])
    assert found == [TopicDeleted("installs", "", None)]


@pytest.mark.parametrize(
    ("deletion", "sentence"),
    [
        (TopicDeleted("installs", OLD, None),
         "source topic 'installs' was deleted while the worker runs"),
        (TopicDeleted("installs", OLD, NEW),
         "source topic 'installs' was deleted and created again while the worker runs (topic id "
         "0195-old is now 0195-new)"),
        (TopicDeleted("installs", "", NEW),
         "source topic 'installs' was deleted and created again while the worker runs (topic id "
         "? is now 0195-new)"),
    ],
)  # fmt: skip
def test_a_deletion_is_described_in_one_sentence(deletion: TopicDeleted, sentence: str) -> None:
    assert deletion.describe() == sentence


def fake_consumer(partitions: dict[str, set[int]], ids: dict[str, uuid.UUID | None]) -> object:
    cluster = SimpleNamespace(partitions_for_topic=partitions.get, topic_id=ids.get)
    return SimpleNamespace(_cluster=cluster)


def test_identities_read_from_the_consumers_metadata_cache() -> None:
    known = uuid.UUID("01a21d30-9d34-7600-a4b0-2ed3eae5c019")
    consumer = fake_consumer(
        {"a": {0, 1}, "b": {0}, "c": {0}},
        {"a": known, "b": None, "c": uuid.UUID(int=0)},
    )
    assert kafka_clients.topic_identities(consumer, ["a", "b", "c", "gone"]) == {
        "a": str(known), "b": "", "c": "", "gone": None,
    }  # fmt: skip
    # A consumer without metadata (the stub) gives nothing to judge
    assert kafka_clients.topic_identities(SimpleNamespace(), ["a"]) == {}


def test_a_fault_keeps_the_worker_not_ready_whatever_else_says_ready() -> None:
    health = Health()
    health.set_ready(True, "consuming 6 partitions")
    assert (health.ready, health.reason) == (True, "consuming 6 partitions")
    health.add_fault("topic:installs", "source topic 'installs' was deleted")
    health.set_ready(True, "consuming 3 partitions")
    assert (health.ready, health.reason) == (False, "source topic 'installs' was deleted")
    health.add_fault("topic:in-app", "source topic 'in-app' was deleted")
    assert health.reason == (
        "source topic 'installs' was deleted; source topic 'in-app' was deleted"
    )
