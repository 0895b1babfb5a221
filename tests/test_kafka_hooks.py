"""The private parts of kafka-python the worker relies on, one test each, against the installed
kafka-python and a real consumer: an upgrade that removes or renames one fails here, saying which
and what falls back, instead of quietly costing throughput or a signal. pyproject.toml pins
kafka-python to the minor version these were tested with."""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import pytest
from kafka import KafkaConsumer
from kafka.net import transport as kafka_transport
from kafka.protocol import frame as kafka_frame
from kafka.version import __version__ as kafka_version

from dispatcher.devtools.broker import LocalBroker


def _missing(what: str, falls_back: str) -> str:
    return (
        f"kafka-python {kafka_version} has no {what}: {falls_back}. Adapt dispatcher/"
        "kafka_clients.py (or dispatcher/worker.py) to the new kafka-python before moving its pin."
    )


def test_the_transport_reads_with_sock_recv() -> None:
    """`kafka_clients.read_sockets_in_large_pieces` replaces it to read 256 KiB at a time."""
    tcp = getattr(kafka_transport, "KafkaTCPTransport", None)
    recv = getattr(tcp, "_sock_recv", None)
    assert callable(recv), _missing(
        "KafkaTCPTransport._sock_recv", "its own 4 KiB socket reads are kept (slower reads)"
    )
    assert list(inspect.signature(recv).parameters)[:1] == ["self"]


def test_the_frame_buffer_is_a_bytearray_with_read() -> None:
    """`kafka_clients.read_sockets_in_large_pieces` gives it a one-copy `read`."""
    frame = getattr(kafka_frame, "KafkaBytes", None)
    assert isinstance(frame, type), _missing(
        "kafka.protocol.frame.KafkaBytes", "two copies a frame"
    )
    assert issubclass(frame, bytearray), _missing("KafkaBytes as a bytearray", "two copies a frame")
    assert callable(getattr(frame, "read", None)), _missing("KafkaBytes.read", "two copies a frame")


@pytest.fixture
def consumer(broker: LocalBroker) -> Iterator[KafkaConsumer]:
    made = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id="hooks",
                         enable_auto_commit=False)  # fmt: skip
    yield made
    made.close()


@pytest.mark.broker
def test_the_consumer_knows_its_coordinator(consumer: KafkaConsumer) -> None:
    """`kafka_clients.coordinator_known`: whether the broker is reachable, for /readyz."""
    coordinator = getattr(consumer, "_coordinator", None)
    assert callable(getattr(coordinator, "coordinator_unknown", None)), _missing(
        "KafkaConsumer._coordinator.coordinator_unknown",
        "an unreachable broker is never reported (readiness stays true)",
    )


@pytest.mark.broker
def test_the_consumer_keeps_a_metadata_cache_with_topic_ids(consumer: KafkaConsumer) -> None:
    """`kafka_clients.topic_identities`: a source topic deleted while running is reported."""
    cluster = getattr(consumer, "_cluster", None)
    assert callable(getattr(cluster, "partitions_for_topic", None)), _missing(
        "KafkaConsumer._cluster.partitions_for_topic", "a deleted source topic goes unreported"
    )
    assert callable(getattr(cluster, "topic_id", None)), _missing(
        "KafkaConsumer._cluster.topic_id", "a topic deleted and created again goes unreported"
    )


@pytest.mark.broker
def test_the_consumer_loop_can_be_awaited_from_a_rebalance_listener(
    consumer: KafkaConsumer,
) -> None:
    """`kafka_clients.pause_in_loop`: a revocation waits without stalling heartbeats."""
    sleep = getattr(getattr(consumer, "_net", None), "sleep", None)
    assert callable(sleep), _missing(
        "KafkaConsumer._net.sleep", "a revocation's wait blocks kafka-python's loop"
    )


@pytest.mark.broker
def test_the_fetcher_can_be_asked_for_the_next_fetch(consumer: KafkaConsumer) -> None:
    """`Worker._prefetch`: the next fetch asked for while a batch is decided."""
    fetcher = getattr(consumer, "_fetcher", None)
    assert callable(getattr(fetcher, "send_fetches", None)), _missing(
        "KafkaConsumer._fetcher.send_fetches", "no prefetch (lower throughput)"
    )


@pytest.mark.broker
def test_the_consumer_keeps_its_group_generation(consumer: KafkaConsumer) -> None:
    """`kafka_clients.group_generation`: whether a partition back after a rebalance could have
    been another member's meanwhile (`tests/test_kafka_clients.py` checks the numbers)."""
    generation = getattr(getattr(consumer, "_coordinator", None), "_generation", None)
    assert isinstance(getattr(generation, "generation_id", None), int), _missing(
        "KafkaConsumer._coordinator._generation.generation_id",
        "every partition back after a rebalance is read again from the committed offset",
    )
