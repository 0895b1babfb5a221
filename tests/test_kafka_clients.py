"""The Kafka edge maps kafka-python's exceptions to ours, with the partitions they concern, and
reads plaintext connections in large pieces."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import CommitFailedError as KafkaCommitFailedError
from kafka.errors import KafkaConnectionError, KafkaTimeoutError
from kafka.net.transport import KafkaSSLTransport, KafkaTCPTransport
from kafka.protocol.frame import KafkaBytes
from kafka.structs import OffsetAndMetadata

from dispatcher import kafka_clients
from dispatcher.config_loader import load_runtime
from dispatcher.devtools.broker import LocalBroker
from dispatcher.devtools.harness import TANSU_GROUP_TIMING
from dispatcher.errors import BrokerUnavailableError, CommitFailedError, ConfigError, TransientError


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
    assert "group_instance_id" not in seen  # dynamic membership unless a name is given


def test_static_membership_takes_the_configured_instance_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dispatcher.yaml").write_text("kafka: {bootstrap_servers: 'k:9092'}\n")
    environ = {"DISPATCHER_KAFKA__GROUP_INSTANCE_ID": "dispatcher-0"}
    runtime = load_runtime(tmp_path / "dispatcher.yaml", environ)
    seen: dict[str, Any] = {}

    class Recording:
        def __init__(self, **options: Any) -> None:
            seen.update(options)

    monkeypatch.setattr(kafka_clients, "KafkaConsumer", Recording)
    kafka_clients.make_consumer(SimpleNamespace(runtime=runtime, kafka_password=None))  # type: ignore[arg-type]
    assert (seen["group_instance_id"], seen["group_id"]) == ("dispatcher-0", "postback-dispatcher")


@pytest.mark.broker
@pytest.mark.parametrize(("setting", "codec"), [("zstd", "zstd"), ("none", None)])
def test_what_the_dispatcher_writes_is_compressed_as_configured(
    broker: LocalBroker, tmp_path: Path, setting: str, codec: str | None
) -> None:
    """zstd by default (a postback log record of a request's JSON lines shrinks about
    twenty-fold), `none` for a broker older than Kafka 2.1; read back as written."""
    config = tmp_path / "dispatcher.yaml"
    config.write_text(
        f"kafka: {{bootstrap_servers: '{broker.bootstrap}', compression_type: {setting}}}\n"
    )
    runtime = load_runtime(config, {})
    settings = SimpleNamespace(runtime=runtime, kafka_password=None, path=config)
    topic = f"compressed-{uuid.uuid4().hex[:6]}"
    broker.create_topics({topic: 1})
    lines = b"\n".join(b'{"event_id":"e-%d","outcome":"delivered","partner":"tiktok"}' % n
                       for n in range(2000))  # fmt: skip
    producer = kafka_clients.make_producer(settings)  # type: ignore[arg-type]
    try:
        assert producer.config["compression_type"] == codec
        producer.send(topic, lines).get(timeout=10)
    finally:
        producer.close()
    reader = KafkaConsumer(bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
                           consumer_timeout_ms=5000)  # fmt: skip
    try:
        reader.assign([TopicPartition(topic, 0)])
        assert [message.value for message in reader] == [lines]
    finally:
        reader.close()


def test_a_compression_type_outside_the_allowed_ones_stops_start_up(tmp_path: Path) -> None:
    config = tmp_path / "dispatcher.yaml"
    config.write_text("kafka: {bootstrap_servers: 'k:9092', compression_type: snappy}\n")
    with pytest.raises(ConfigError) as caught:
        load_runtime(config, {})
    assert "kafka.compression_type" in str(caught.value)
    assert "'zstd' or 'none'" in str(caught.value)


# --- socket reads -------------------------------------------------------------------------------


class RecordingSocket:
    """A real socket that notes how many bytes each `recv` asked for."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.asked: list[int] = []

    def recv(self, size: int) -> bytes:
        self.asked.append(size)
        return self.sock.recv(size)


@pytest.fixture
def socket_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    yield reader, writer
    reader.close()
    writer.close()


def _send_all(writer: socket.socket, data: bytes) -> threading.Thread:
    sender = threading.Thread(target=writer.sendall, args=(data,))
    sender.start()
    return sender


def _read_until(transport: Any, size: int) -> bytes:
    received = b""
    deadline = time.monotonic() + 10
    while len(received) < size and time.monotonic() < deadline:
        data, error = kafka_clients._read_available(transport)
        assert error is None
        received += data
    return received


def test_a_plaintext_connection_is_read_in_large_pieces(
    socket_pair: tuple[socket.socket, socket.socket],
) -> None:
    # Given a broker's answer of 3 MB (a fetch of AppsFlyer records) on a connection
    reader, writer = socket_pair
    answer = bytes(range(256)) * (3 * 4096)
    sender = _send_all(writer, answer)
    transport = SimpleNamespace(_sock=RecordingSocket(reader))
    # When the network thread reads it
    received = _read_until(transport, len(answer))
    sender.join()
    # Then every byte arrives in order, each read asking for 256 KiB, not kafka-python's 4 KiB
    assert received == answer
    assert set(transport._sock.asked) == {kafka_clients.SOCKET_READ_BYTES}
    assert kafka_clients.SOCKET_READ_BYTES >= 256 * 1024


def test_what_is_read_is_handed_on_as_a_view_whose_slices_copy_nothing(
    socket_pair: tuple[socket.socket, socket.socket],
) -> None:
    # Given an answer waiting on the connection
    reader, writer = socket_pair
    writer.sendall(b"\x00\x00\x00\x05hello")
    # When it is read
    data, error = kafka_clients._read_available(SimpleNamespace(_sock=reader))
    # Then kafka-python's parser gets a view: its slices (to fill the frame buffer) share the
    # bytes read instead of copying them
    assert error is None
    assert isinstance(data, memoryview)
    assert data[4:].obj is data.obj
    assert bytes(data) == b"\x00\x00\x00\x05hello"


def test_a_frame_buffer_is_read_as_kafka_python_reads_it() -> None:
    """`KafkaBytes.read` (one copy instead of two): the same bytes and position as
    kafka-python's own, whatever is asked."""
    kafka_clients.read_sockets_in_large_pieces()
    frame = KafkaBytes(10)
    frame.write(b"0123456789")
    frame.seek(0)
    assert frame.read(3) == b"012"
    assert frame.tell() == 3
    assert frame.read(0) == b""
    assert frame.read(100) == b"3456789"  # past the end: what is left
    assert frame.tell() == 10
    assert frame.read() == b""
    frame.seek(2)
    whole = frame.read()
    assert (whole, type(whole), frame.tell()) == (b"23456789", bytes, 10)
    frame.extend(b"!")  # no view of it is left behind: a held one would refuse a resize
    assert bytes(frame) == b"0123456789!"


def test_a_read_with_nothing_waiting_returns_nothing_and_keeps_the_connection(
    socket_pair: tuple[socket.socket, socket.socket],
) -> None:
    reader, _ = socket_pair
    assert kafka_clients._read_available(SimpleNamespace(_sock=reader)) == (b"", None)


def test_a_closed_connection_is_an_error_after_what_it_sent(
    socket_pair: tuple[socket.socket, socket.socket],
) -> None:
    reader, writer = socket_pair
    writer.sendall(b"last answer")
    writer.close()
    data, error = kafka_clients._read_available(SimpleNamespace(_sock=reader))
    assert data == b"last answer"
    assert isinstance(error, KafkaConnectionError)
    assert "socket disconnected" in str(error)


def test_a_failing_read_is_a_connection_error(
    socket_pair: tuple[socket.socket, socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    reader, _ = socket_pair
    reader.close()  # recv on it raises OSError (bad file descriptor)
    data, error = kafka_clients._read_available(SimpleNamespace(_sock=reader))
    assert data == b""
    assert isinstance(error, KafkaConnectionError)
    assert "reading from the broker failed" in caplog.text


def test_kafka_pythons_plaintext_transport_takes_the_large_reads() -> None:
    """Fails when a kafka-python release renames what is replaced: the reads would silently
    fall back to 4 KiB (the worker keeps working, slower), and this says so in CI."""
    assert kafka_clients.read_sockets_in_large_pieces()
    assert KafkaTCPTransport._sock_recv is kafka_clients._read_available
    assert KafkaBytes.read is kafka_clients._read_frame
    # TLS connections keep kafka-python's own reads (their errors differ; not measured here)
    assert KafkaSSLTransport._sock_recv is not kafka_clients._read_available


def test_without_the_method_kafka_pythons_reads_are_kept_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(
        kafka_clients, "kafka_transport", SimpleNamespace(KafkaTCPTransport=type("T", (), {}))
    )
    assert not kafka_clients.read_sockets_in_large_pieces()
    assert "its own socket reads are kept" in caplog.text


def test_every_client_made_reads_in_large_pieces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dispatcher.yaml").write_text("kafka: {bootstrap_servers: 'k:9092'}\n")
    runtime = load_runtime(tmp_path / "dispatcher.yaml", {})
    monkeypatch.setattr(KafkaTCPTransport, "_sock_recv", lambda self: (b"", None))
    kafka_clients._common(SimpleNamespace(runtime=runtime, kafka_password=None))  # type: ignore[arg-type]
    assert KafkaTCPTransport._sock_recv is kafka_clients._read_available


@pytest.mark.broker
def test_the_group_generation_and_committed_offsets_as_the_broker_gives_them(
    broker: LocalBroker,
) -> None:
    """`group_generation` reads where kafka-python keeps the generation (private: this test
    fails if a kafka-python release moves it) and a second member joining makes the next
    one; `committed_offset` reads what was committed, None where nothing was."""
    topic = f"generation-{uuid.uuid4().hex[:6]}"
    broker.create_topics({topic: 2})
    group = f"g-{uuid.uuid4().hex[:6]}"

    def member() -> KafkaConsumer:
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group,
                                 enable_auto_commit=False, **TANSU_GROUP_TIMING)  # fmt: skip
        consumer.subscribe([topic])
        return consumer

    first = member()
    try:
        assert kafka_clients.group_generation(first) is None  # not joined yet
        deadline = time.monotonic() + 30
        while not first.assignment() and time.monotonic() < deadline:
            first.poll(timeout_ms=200)
        joined = kafka_clients.group_generation(first)
        assert joined is not None
        assert kafka_clients.committed_offset(first, topic, 0) is None
        kafka_clients.commit(first, {(topic, 0): 7})
        assert kafka_clients.committed_offset(first, topic, 0) == 7
        second = member()
        try:
            deadline = time.monotonic() + 60
            while len(first.assignment()) != 1 and time.monotonic() < deadline:
                first.poll(timeout_ms=50)
                second.poll(timeout_ms=50)
            assert len(first.assignment()) == 1
            assert kafka_clients.group_generation(first) == joined + 1
        finally:
            second.close()
    finally:
        first.close()


@pytest.mark.broker
@pytest.mark.parametrize(("request_timeout_ms", "noticed"), [(3000, True), (30000, False)])
def test_a_hung_broker_is_noticed_within_the_request_timeout(
    tmp_path: Path, request_timeout_ms: int, noticed: bool
) -> None:
    """kafka-python's heartbeat waits for its request's answer, so a broker that stops answering
    with its connections open is noticed (the coordinator marked unknown: `/readyz` says not
    ready) only when a request times out: `kafka.request_timeout_ms`."""
    with LocalBroker(log_path=tmp_path / "tansu.log") as broker:
        topic = f"hung-{uuid.uuid4().hex[:6]}"
        broker.create_topics({topic: 1})
        (tmp_path / "dispatcher.yaml").write_text(
            f"kafka: {{bootstrap_servers: '{broker.bootstrap}', group_id: g-{topic}, "
            f"request_timeout_ms: {request_timeout_ms}, fetch_max_wait_ms: 100, "
            f"session_timeout_ms: 6000, heartbeat_interval_ms: 1000, "
            f"max_poll_interval_ms: 10000, topics: {{in_app_events: {topic}}}}}\n"
        )
        runtime = load_runtime(tmp_path / "dispatcher.yaml", {})
        consumer = kafka_clients.make_consumer(
            SimpleNamespace(runtime=runtime, kafka_password=None)
        )  # type: ignore[arg-type]
        try:
            consumer.subscribe([topic])
            deadline = time.monotonic() + 30
            while not consumer.assignment() and time.monotonic() < deadline:
                consumer.poll(timeout_ms=200)
            assert consumer.assignment()
            assert kafka_clients.coordinator_known(consumer)
            broker.pause()
            try:
                deadline = time.monotonic() + 10
                while kafka_clients.coordinator_known(consumer) and time.monotonic() < deadline:
                    consumer.poll(timeout_ms=200)
                assert (not kafka_clients.coordinator_known(consumer)) is noticed
            finally:
                broker.resume()
        finally:
            consumer.close(autocommit=False)
