"""The Kafka edge: building kafka-python clients from the settings, and the calls whose Kafka
exceptions are mapped to ours here (with the topic or partitions they concern), so that the
worker imports nothing of `kafka.errors`."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError
from kafka.net import transport as kafka_transport
from kafka.protocol import frame as kafka_frame
from kafka.structs import OffsetAndMetadata
from kafka.version import __version__ as kafka_version

from dispatcher.config_loader import Settings
from dispatcher.errors import BrokerUnavailableError, CommitFailedError, ConfigError, ConfigIssue

log = logging.getLogger(__name__)

# How much one socket read of a plaintext Kafka connection may take. kafka-python 3 reads 4 KiB
# at a time on its network thread, one turn of a Python loop per 4 KiB, under the GIL the worker
# needs; a fetch answer of AppsFlyer records is about a megabyte per partition.
SOCKET_READ_BYTES = 262_144


def _read_available(self: Any) -> tuple[memoryview, Exception | None]:
    """What the socket holds now, read without blocking in `SOCKET_READ_BYTES` pieces, and the
    error that ends the connection (None if it stays open): the contract of kafka-python's
    `KafkaTCPTransport._sock_recv`, which its read loop calls when the socket is readable.

    Handed on as a view: kafka-python's parser slices what it gets to fill its frame buffer, and
    a slice of bytes is a copy of its own (on the network thread, under the GIL)."""
    received: list[bytes] = []
    error: Exception | None = None
    while True:
        try:
            data = self._sock.recv(SOCKET_READ_BYTES)
        except (BlockingIOError, InterruptedError):
            break  # nothing more for now: the loop waits until the socket is readable again
        except Exception as exc:
            log.warning("%s: reading from the broker failed: %s", self, exc)
            error = KafkaConnectionError(exc)
            break
        if not data:
            error = KafkaConnectionError("socket disconnected")
            break
        received.append(data)
    return memoryview(b"".join(received)), error


def _read_frame(self: Any, nbytes: int | None = None) -> bytes:
    """`KafkaBytes.read`, copying once: kafka-python's copies the slice of its frame buffer,
    then copies that into bytes, and a fetch answer is read out of the buffer whole (MBs)."""
    start = self._idx
    end = len(self) if nbytes is None else min(start + nbytes, len(self))
    self._idx = end
    with memoryview(self) as view:
        return bytes(view[start:end])


def read_sockets_in_large_pieces() -> bool:
    """Make kafka-python's plaintext connections read `SOCKET_READ_BYTES` at a time, and its
    frame buffers copy what is read out of them once: every client of the process made
    afterwards does (called before each client is made; again, it changes nothing). Returns
    whether the reads apply: False, with a warning, for a kafka-python whose transport no longer
    has the method replaced, which then reads as it does on its own. TLS connections keep
    kafka-python's reads; the frame buffers are every connection's. Why: fewer turns of a Python
    loop and fewer copies under the GIL the worker's main thread needs (docs/performance.md)."""
    frame = getattr(kafka_frame, "KafkaBytes", None)
    if isinstance(frame, type) and issubclass(frame, bytearray) and hasattr(frame, "read"):
        frame.read = _read_frame
    tcp = getattr(kafka_transport, "KafkaTCPTransport", None)
    if tcp is None or not callable(getattr(tcp, "_sock_recv", None)):
        log.warning(
            "kafka-python %s has no KafkaTCPTransport._sock_recv: its own socket reads are kept "
            "(slower on large records)",
            kafka_version,
        )
        return False
    tcp._sock_recv = _read_available
    return True


def _common(settings: Settings) -> dict[str, Any]:
    read_sockets_in_large_pieces()
    kafka = settings.runtime.kafka
    options: dict[str, Any] = {
        "bootstrap_servers": list(kafka.bootstrap_servers),
        "client_id": kafka.client_id,
        "security_protocol": kafka.security_protocol,
        "bootstrap_timeout_ms": int(kafka.connect_timeout_s * 1000),
        "request_timeout_ms": kafka.request_timeout_ms,
    }
    if kafka.sasl_mechanism:
        options["sasl_mechanism"] = kafka.sasl_mechanism
        options["sasl_plain_username"] = kafka.sasl_username
        if settings.kafka_password is not None:
            options["sasl_plain_password"] = settings.kafka_password.get_secret_value()
    if kafka.ssl_cafile:
        options["ssl_cafile"] = kafka.ssl_cafile
    if kafka.ssl_certfile and kafka.ssl_keyfile:
        options["ssl_certfile"] = kafka.ssl_certfile
        options["ssl_keyfile"] = kafka.ssl_keyfile
    return options


def _consumer(settings: Settings, **options: Any) -> KafkaConsumer:
    try:
        return KafkaConsumer(**_common(settings) | options)
    except KafkaError as exc:
        servers = ",".join(settings.runtime.kafka.bootstrap_servers)
        raise BrokerUnavailableError(f"cannot reach Kafka at {servers}: {exc}") from exc


def make_consumer(settings: Settings) -> KafkaConsumer:
    """A consumer for the worker's group; offsets are committed by the worker alone."""
    kafka = settings.runtime.kafka
    static = (
        {} if kafka.group_instance_id is None else {"group_instance_id": kafka.group_instance_id}
    )
    return _consumer(
        settings,
        **static,
        group_id=kafka.group_id,
        enable_auto_commit=False,
        allow_auto_create_topics=False,  # a typo'd source topic must not be created
        auto_offset_reset=kafka.auto_offset_reset,
        session_timeout_ms=kafka.session_timeout_ms,
        heartbeat_interval_ms=kafka.heartbeat_interval_ms,
        max_poll_interval_ms=kafka.max_poll_interval_ms,
        max_poll_records=kafka.max_poll_records,
        # Also how soon a deleted source topic is noticed (`topic_identities`).
        metadata_max_age_ms=kafka.metadata_max_age_ms,
        fetch_max_wait_ms=kafka.fetch_max_wait_ms,
    )


def make_replay_consumer(settings: Settings, group_id: str) -> KafkaConsumer:
    """A consumer of the dead-letter topic for `replay-dead-letters` (assigned, not subscribed:
    the group only keeps where the last replay stopped)."""
    client_id = f"{settings.runtime.kafka.client_id}-replay"
    return _consumer(settings, group_id=group_id, enable_auto_commit=False, client_id=client_id)


def make_log_reader(settings: Settings) -> KafkaConsumer:
    """A consumer of no group that reads the postback log (assigned, never committed)."""
    client_id = f"{settings.runtime.kafka.client_id}-log"
    return _consumer(
        settings, group_id=None, enable_auto_commit=False, client_id=client_id,
        allow_auto_create_topics=False,
    )  # fmt: skip


def create_topics(
    settings: Settings, partitions: int, replication_factor: int
) -> list[tuple[str, str]]:
    """Create the source topics (`partitions` each), the dead-letter topic (one partition) and
    the postback log (`partitions`; kept by time, the broker's retention, never compacted:
    its keys name partner apps, not postbacks) when they do not exist; (topic, what happened)
    for each, in order. Idempotent."""
    kafka = settings.runtime.kafka
    wanted: list[tuple[str, int, dict[str, str]]] = [
        (kafka.topics.installs, partitions, {}),
        (kafka.topics.in_app_events, partitions, {}),
        (kafka.dead_letter_topic, 1, {}),
    ]
    if kafka.postback_log_topic is not None:
        wanted.append((kafka.postback_log_topic, partitions, {"cleanup.policy": "delete"}))
    try:
        admin = KafkaAdminClient(**_common(settings))
    except KafkaError as exc:
        servers = ",".join(kafka.bootstrap_servers)
        raise BrokerUnavailableError(f"cannot reach Kafka at {servers}: {exc}") from exc
    report: list[tuple[str, str]] = []
    try:
        existing = set(admin.list_topics())
        for topic, count, configs in wanted:
            if topic in existing:
                report.append((topic, "exists"))
                continue
            try:
                admin.create_topics(
                    [NewTopic(topic, count, replication_factor, topic_configs=configs)]
                )
            except TopicAlreadyExistsError:
                report.append((topic, "exists"))
                continue
            except KafkaError as exc:
                raise BrokerUnavailableError(f"cannot create topic {topic!r}: {exc}") from exc
            partitions_text = f"{count} partition" + ("" if count == 1 else "s")
            report.append((topic, f"created ({partitions_text}, replication {replication_factor})"))
    finally:
        admin.close()
    return report


def make_producer(settings: Settings) -> KafkaProducer:
    """A producer for dead letters, postback log records and replays: acknowledged by every
    in-sync replica, compressed as `kafka.compression_type` says. A log record holds a
    request's postbacks (up to `postback_log.MAX_RECORD_BYTES`): batches of up to 256 KiB
    gather the smaller ones."""
    kafka = settings.runtime.kafka
    try:
        return KafkaProducer(
            **_common(settings),
            acks="all",
            linger_ms=20,
            batch_size=262_144,
            max_block_ms=10_000,
            max_request_size=1_048_576,
            compression_type=None if kafka.compression_type == "none" else kafka.compression_type,
        )
    except KafkaError as exc:
        raise BrokerUnavailableError(
            f"cannot reach Kafka at {','.join(kafka.bootstrap_servers)}: {exc}"
        ) from exc
    except ValueError as exc:  # kafka-python: the broker is too old for the compression type
        allowed = f"{exc}; allowed: zstd (Kafka 2.1 and later), none"
        issue = ConfigIssue(str(settings.path), "kafka.compression_type", allowed)
        raise ConfigError([issue]) from exc


def coordinator_known(consumer: Any) -> bool:
    """Whether the consumer knows its group coordinator: False while the broker is unreachable
    (kafka-python forgets the coordinator when its connection or a heartbeat fails)."""
    coordinator = getattr(consumer, "_coordinator", None)  # absent on the stub consumer
    if coordinator is None:
        return True
    try:
        return not coordinator.coordinator_unknown()
    except Exception:  # a client version without it: no signal, not an outage
        return True


_NO_TOPIC_ID = uuid.UUID(int=0)  # what a metadata answer carries for a topic it does not know


def topic_identities(consumer: Any, topics: Iterable[str]) -> dict[str, str | None]:
    """Each topic's identity in the consumer's cached metadata (no network call): None when the
    metadata lacks it, else its topic id as text ("" when the broker reports none). Empty when
    the consumer keeps no metadata (the stub consumer)."""
    cluster = getattr(consumer, "_cluster", None)  # kafka-python's metadata cache (private)
    if cluster is None:
        return {}
    topic_id = getattr(cluster, "topic_id", lambda topic: None)
    identities: dict[str, str | None] = {}
    for topic in topics:
        if cluster.partitions_for_topic(topic) is None:
            identities[topic] = None
            continue
        found = topic_id(topic)
        identities[topic] = "" if found is None or found == _NO_TOPIC_ID else str(found)
    return identities


def list_topics(consumer: Any) -> set[str]:
    """The topics the cluster knows; BrokerUnavailableError when it cannot be asked."""
    try:
        return set(consumer.topics())
    except KafkaError as exc:
        raise BrokerUnavailableError(f"cannot list topics: {exc}") from exc


def commit_async(
    consumer: Any,
    offsets: dict[tuple[str, int], int],
    done: Callable[[dict[tuple[str, int], int], Exception | None], None],
) -> None:
    """Start committing `offsets` without waiting; `done(offsets, error)` is called once with
    the outcome (None for success), possibly from the client's network thread."""
    request = {
        TopicPartition(topic, partition): OffsetAndMetadata(offset, "", -1)
        for (topic, partition), offset in offsets.items()
    }

    def finished(_offsets: object, response: object) -> None:
        done(offsets, response if isinstance(response, Exception) else None)

    try:
        consumer.commit_async(request, callback=finished)
    except KafkaError as exc:
        done(offsets, exc)


def group_generation(consumer: Any) -> int | None:
    """The generation of the consumer group this member last joined, or None when it is in
    none (evicted, not joined yet) or the client does not say. kafka-python keeps it private;
    the worker reads it only to know whether anyone else could have owned a partition between
    its revocation and its return (`Worker.on_assigned`)."""
    generation = getattr(getattr(consumer, "_coordinator", None), "_generation", None)
    number = getattr(generation, "generation_id", None)
    return number if isinstance(number, int) and number >= 0 else None


def committed_offset(
    consumer: Any, topic: str, partition: int, timeout_ms: int = 10_000
) -> int | None:
    """The group's committed offset of one partition (a blocking request to the
    coordinator), None when the group has none there; KafkaError when it does not answer."""
    offset = consumer.committed(TopicPartition(topic, partition), timeout_ms=timeout_ms)
    return offset if isinstance(offset, int) and offset >= 0 else None


def commit(consumer: Any, offsets: dict[tuple[str, int], int]) -> None:
    """Commit `offsets` (the next offset to read, per (topic, partition)) synchronously;
    CommitFailedError naming the partitions when the broker refuses or does not answer."""
    request = {
        TopicPartition(topic, partition): OffsetAndMetadata(offset, "", -1)
        for (topic, partition), offset in offsets.items()
    }
    try:
        consumer.commit(request)
    except KafkaError as exc:
        where = ", ".join(f"{topic}[{partition}]" for topic, partition in sorted(offsets))
        raise CommitFailedError(f"offset commit of {where} failed: {exc}") from exc


async def commit_in_loop(consumer: Any, offsets: dict[tuple[str, int], int]) -> Exception | None:
    """Commit `offsets` from inside kafka-python's network loop (a rebalance listener runs
    there, and a blocking `commit` from it raises): the asynchronous commit, awaited. The
    error, a CommitFailedError naming the partitions, or None when the broker accepted."""
    where = ", ".join(f"{topic}[{partition}]" for topic, partition in sorted(offsets))
    if not coordinator_known(consumer):
        return CommitFailedError(f"offset commit of {where} not sent: no group coordinator")
    request = {
        TopicPartition(topic, partition): OffsetAndMetadata(offset, "", -1)
        for (topic, partition), offset in offsets.items()
    }
    try:
        future = consumer.commit_async(request, callback=lambda _offsets, _response: None)
        if future is not None:
            await future  # kafka.future.Future: awaitable on kafka-python's own loop
    except KafkaError as exc:
        return CommitFailedError(f"offset commit of {where} failed: {exc}")
    return None


async def pause_in_loop(consumer: Any, delay_s: float) -> None:
    """Let kafka-python's network loop run for `delay_s` from a rebalance listener (a plain
    sleep there would stall the loop: heartbeats and the commit being awaited)."""
    sleep = getattr(getattr(consumer, "_net", None), "sleep", None)  # the loop (private)
    if sleep is None:  # the stub consumer: no loop to keep turning
        time.sleep(delay_s)
        return
    await sleep(delay_s)
