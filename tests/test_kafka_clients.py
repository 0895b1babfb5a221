"""The Kafka edge maps kafka-python's exceptions to ours, with the partitions they concern."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.errors import CommitFailedError as KafkaCommitFailedError
from kafka.errors import KafkaTimeoutError
from kafka.structs import OffsetAndMetadata

from dispatcher import kafka_clients
from dispatcher.config_loader import load_runtime
from dispatcher.errors import BrokerUnavailableError, CommitFailedError, TransientError


class FakeConsumer:
    """Records what it was asked; raises what it is told to."""

    def __init__(self, error: Exception | None = None, topics: set[str] | None = None) -> None:
        self.error = error
        self._topics = topics or set()
        self.committed: list[dict[Any, Any]] = []

    def commit(self, offsets: dict[Any, Any]) -> None:
        if self.error:
            raise self.error
        self.committed.append(offsets)

    def topics(self) -> set[str]:
        if self.error:
            raise self.error
        return self._topics


def test_commit_sends_each_next_offset() -> None:
    consumer = FakeConsumer()
    kafka_clients.commit(consumer, {("in", 1): 42, ("ins", 0): 7})
    assert consumer.committed == [{
        TopicPartition("in", 1): OffsetAndMetadata(42, "", -1),
        TopicPartition("ins", 0): OffsetAndMetadata(7, "", -1),
    }]  # fmt: skip


@pytest.mark.parametrize("error", [KafkaCommitFailedError("rebalanced"), KafkaTimeoutError("slow")])
def test_a_failed_commit_is_transient_and_names_its_partitions(error: Exception) -> None:
    with pytest.raises(CommitFailedError) as caught:
        kafka_clients.commit(FakeConsumer(error), {("ins", 2): 5, ("in", 0): 9})
    assert isinstance(caught.value, TransientError)
    assert str(caught.value).startswith("offset commit of in[0], ins[2] failed: ")


def test_topics_are_listed_or_the_broker_is_unavailable() -> None:
    assert kafka_clients.list_topics(FakeConsumer(topics={"a", "b"})) == {"a", "b"}
    with pytest.raises(BrokerUnavailableError, match="cannot list topics"):
        kafka_clients.list_topics(FakeConsumer(KafkaTimeoutError("no answer")))


def test_other_exceptions_are_not_hidden() -> None:
    with pytest.raises(ZeroDivisionError):
        kafka_clients.commit(FakeConsumer(ZeroDivisionError()), {("a", 0): 1})


def test_the_worker_consumer_takes_the_fetch_and_metadata_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a dispatcher.yaml that sets both, and a consumer class that records its options
    (tmp_path / "dispatcher.yaml").write_text(
        "kafka: {bootstrap_servers: 'k:9092', fetch_max_wait_ms: 120, metadata_max_age_ms: 4000}\n"
    )
    runtime = load_runtime(tmp_path / "dispatcher.yaml", {})
    seen: dict[str, Any] = {}

    class Recording:
        def __init__(self, **options: Any) -> None:
            seen.update(options)

    monkeypatch.setattr(kafka_clients, "KafkaConsumer", Recording)
    # When the worker's consumer is made
    kafka_clients.make_consumer(SimpleNamespace(runtime=runtime, kafka_password=None))  # type: ignore[arg-type]
    # Then it has them, and neither auto-commits nor auto-creates topics
    assert (seen["fetch_max_wait_ms"], seen["metadata_max_age_ms"]) == (120, 4000)
    assert (seen["allow_auto_create_topics"], seen["enable_auto_commit"]) == (False, False)
