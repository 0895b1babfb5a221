"""The loop: read, decode, decide, hand over, and commit what is final.

The worker's thread owns the Kafka consumer, the offset tracker and the dead-letter producer.
Deliveries run on the delivery service's loop and come back as completions through a queue; the
only commit happens in the offsets module's `Checkpoint`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from typing import Any

from kafka import AsyncConsumerRebalanceListener, TopicPartition

from dispatcher import kafka_clients
from dispatcher.config_loader import PartnerSet, Settings, read_token_file
from dispatcher.dead_letters import AckedPublisher, DeadLetterPublisher, Producer
from dispatcher.deadline import Deadline
from dispatcher.delivery import DeliveryService, WorkItem
from dispatcher.errors import BrokerUnavailableError, ConfigError, PermanentError
from dispatcher.health import Health
from dispatcher.inputs import BadInput, Decoder, source_topics
from dispatcher.metrics import Metrics
from dispatcher.offsets import Checkpoint, OffsetTracker, Partition
from dispatcher.owed import owed_item
from dispatcher.partners import PartnerAdapter, adapter_for
from dispatcher.postback_log import PostbackLog, final_in
from dispatcher.rules import Send, decide
from dispatcher.settle import BadInputRead, Completion, Coordinates, Settlement
from dispatcher.topic_watch import SourceTopicWatch
from schemas.config import PartnerConfig
from schemas.dead_letter import REPLAY_PARTNER_HEADER
from schemas.events import EventType

log = logging.getLogger(__name__)

POLL_TIMEOUT_MS = 100
LAG_INTERVAL_S = 5.0
TOKEN_FILE_POLL_S = 2.0  # how often `access_token_file`s are read again (a rotated Secret)
REBALANCE_WAIT_S = 0.02  # how often a revocation looks for finished deliveries
# A poll's records are handled this many at a time, with a look at what is due to be committed
# in between: a poll of thousands takes a few hundred ms to handle, and an answer that arrives
# meanwhile should not wait for all of it to be committed (a crash would send it again).
HANDLE_CHUNK = 250


def chunked(
    records: Mapping[TopicPartition, list[Any]], size: int
) -> Iterator[dict[TopicPartition, list[Any]]]:
    """`records` (a poll's: messages per partition, in offset order) in pieces of at most
    `size` messages, each partition's messages in order across them."""
    chunk: dict[TopicPartition, list[Any]] = {}
    count = 0
    for tp, messages in records.items():
        start = 0
        while start < len(messages):
            part = messages[start : start + size - count]
            chunk[tp] = part
            count += len(part)
            start += len(part)
            if count == size:
                yield chunk
                chunk, count = {}, 0
    if chunk:
        yield chunk


def _log_apps_in_test_mode(partners: PartnerSet) -> None:
    """Name the active apps whose events the partner shows as tests and does not count (at
    start-up and on a reload, not on a token rotation)."""
    for partner in partners.partners:
        for app in partner.apps:
            if app.active and (test_mode := app.test_mode) is not None:
                log.warning(
                    "app %s is in test mode for %s: %s", app.app_id, partner.name, test_mode
                )


# What the assignment line says when the group gave this member nothing
NO_PARTITIONS = "none"


def _consuming(partitions: int) -> str:
    """The readiness detail while consuming."""
    return f"consuming {partitions} partition" + ("" if partitions == 1 else "s")


class Worker:
    """One consumer-group member: the product's main job."""

    def __init__(
        self,
        settings: Settings,
        consumer: Any,
        producer: Producer,
        metrics: Metrics,
        health: Health,
        load_partners: Callable[[], PartnerSet],
        on_secrets: Callable[[list[str]], None] = lambda secrets: None,
        transport: Any = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        log_reader: Callable[[], Any] | None = None,
    ) -> None:
        runtime = settings.runtime
        self._settings = settings
        self._consumer = consumer
        self._metrics = metrics
        self._health = health
        self._load_partners = load_partners
        self._on_secrets = on_secrets
        self._clock = clock
        self._wall_clock = wall_clock  # the moment events are decided at (their age)
        kafka = runtime.kafka
        # Source topic → the type of its events and the decoder of its format.
        self._topic_types: dict[str, tuple[EventType, Decoder]] = source_topics(kafka)
        self._max_inflight = runtime.worker.max_inflight_events
        self._commit_interval_s = runtime.worker.commit_interval_ms / 1000
        self._offsets = OffsetTracker()
        self._checkpoint = Checkpoint(
            self._offsets, partial(kafka_clients.commit, consumer), metrics.committed,
            partial(kafka_clients.commit_async, consumer), clock,
        )  # fmt: skip
        # Completions from the delivery thread and from dead-letter acknowledgements; settled on
        # this thread, in `_drain_completions`.
        self._completions: queue.SimpleQueue[Completion] = queue.SimpleQueue()
        self._dead_letters = DeadLetterPublisher(producer, runtime.kafka.dead_letter_topic, metrics)
        # The postback log: each owed postback's final outcome, final once acknowledged.
        self._log_topic = kafka.postback_log_topic
        self._postback_log: PostbackLog | None = None
        self._log_records: AckedPublisher | None = None
        self._publishers: tuple[AckedPublisher, ...] = (self._dead_letters,)
        if self._log_topic is not None:
            self._postback_log = PostbackLog(runtime.postback_log)
            self._log_records = AckedPublisher(
                producer, self._log_topic, "postback log record", metrics.logged,
                metrics.log_failed, partition_by_key=True,
            )  # fmt: skip
            self._publishers = (self._dead_letters, self._log_records)
        self._log_skips = self._postback_log is not None and runtime.postback_log.skips
        self._settlement = Settlement(
            metrics, self._dead_letters, self._final, self._completions.put,
            (self._postback_log, self._log_records)
            if self._postback_log is not None and self._log_records is not None else None,
        )  # fmt: skip
        # Newly assigned partitions whose first records have not been read yet: before they are
        # handled, the postback log says which of their events are final already (`_look_up`).
        self._make_log_reader = log_reader if self._log_topic is not None else None
        self._log_reader: Any = None
        self._unscanned: set[Partition] = set()
        # partition → the first offset whose postbacks a revocation dropped unsent
        self._rewound: dict[Partition, int] = {}
        # The group generation the last revocation happened in; partitions back here in a
        # later generation than the next one may have been another member's meanwhile, and
        # kafka-python kept this worker's old position for them (`_stale`, `_reposition`).
        self._revoked_generation: int | None = None
        self._stale: set[Partition] = set()
        # partition → offset → the partner apps the log shows its postback final for
        self._already: dict[Partition, dict[int, set[tuple[str, str | None]]]] = {}
        self._delivery = DeliveryService(
            settings.partners, metrics, self._completions.put, transport=transport
        )
        self._pairs: list[tuple[PartnerConfig, PartnerAdapter]] = []
        self._set_partners(settings.partners)
        _log_apps_in_test_mode(settings.partners)
        self._next_token_poll_at = 0.0
        self._token_file_problems: dict[str, str] = {}  # partner → what was last wrong, logged once
        self._stop = threading.Event()
        self._force_stop = threading.Event()
        self._reload = threading.Event()
        self._paused = False
        self._closing = False
        # kafka-python's fetcher: a private attribute, used only to prefetch (see _prefetch)
        self._fetcher = getattr(consumer, "_fetcher", None)
        if not callable(getattr(self._fetcher, "send_fetches", None)):
            self._fetcher = None
        self._next_commit_at = 0.0
        self._next_lag_at = 0.0
        self._broker_lost_at: float | None = None
        self._topic_watch = SourceTopicWatch(self._topic_types)

    # --- signals (any thread, signal-handler safe) -----------------------------------------

    def request_stop(self) -> None:
        """Stop gracefully; a second request stops without waiting for deliveries."""
        if self._stop.is_set():
            self._force_stop.set()
        self._stop.set()

    def request_reload(self) -> None:
        """Reload the partner files at the next turn of the loop."""
        self._reload.set()

    # --- the loop ----------------------------------------------------------------------------

    def run(self) -> None:
        """Consume until asked to stop; then finish what is in flight and commit."""
        self._check_topics()
        # The ids of the metadata that just showed the topics exist are the reference: a topic
        # deleted and created again before the first look would otherwise pass for the original.
        self._topic_watch.observe(kafka_clients.topic_identities(self._consumer, self._topic_types))
        self._metrics.watch_topics(self._topic_types)
        self._delivery.start()
        self._consumer.subscribe(list(self._topic_types), listener=_Rebalance(self))
        self._health.set_ready(False, "joining the consumer group")
        log.info(
            "worker started",
            extra={
                "topics": ",".join(self._topic_types),
                "group": self._settings.runtime.kafka.group_id,
            },
        )
        try:
            while not self._stop.is_set():
                self._turn()
        finally:
            self._shutdown()

    def _turn(self) -> None:
        self._health.beat()
        if self._reload.is_set():
            self._reload.clear()
            self._reload_partners()
        elif self._partners.token_files and self._clock() >= self._next_token_poll_at:
            self._poll_token_files()
        self._drain_completions()
        self._pump()
        budget = self._apply_backpressure()
        records = self._consumer.poll(timeout_ms=POLL_TIMEOUT_MS, max_records=budget)
        if self._stale:
            records = self._reposition(records)
        if records:
            self._prefetch()
            if self._unscanned:
                self._look_up(records)
            for chunk in chunked(records, HANDLE_CHUNK):
                self._handle(chunk)
                self._commit_if_due()
        else:
            self._commit_if_due()
        now = self._clock()
        if now >= self._next_lag_at:
            self._report_lag()
            self._watch_topics()
            self._next_lag_at = now + LAG_INTERVAL_S

    def _commit_if_due(self) -> None:
        """Prompt, coalesced and asynchronous: what became final is committed within one
        interval, and the loop never waits for the broker's answer. Called between chunks of a
        large poll too, so a busy loop does not hold back the commit of what was answered."""
        now = self._clock()
        self._checkpoint.take_commit_answers()
        if now >= self._next_commit_at:
            self._drain_completions()
            self._checkpoint.commit_soon()
            self._next_commit_at = now + self._commit_interval_s
            self._watch_broker(now)

    def _watch_broker(self, now: float) -> None:
        """Not ready while the broker is unreachable; ready again once it is back (the loop
        keeps turning meanwhile: kafka-python reconnects on its own)."""
        known = kafka_clients.coordinator_known(self._consumer)
        if not known and self._broker_lost_at is None:
            self._broker_lost_at = now
            self._health.set_ready(False, "broker unreachable (no group coordinator); retrying")
            log.warning("the broker is unreachable; not ready until it is back")
        elif known and self._broker_lost_at is not None:
            log.info("the broker is reachable again after %.0f s", now - self._broker_lost_at)
            self._broker_lost_at = None
            assigned = self._consumer.assignment()
            if assigned:
                self._health.set_ready(True, _consuming(len(assigned)))

    def _watch_topics(self) -> None:
        """Report a source topic deleted while running (the worker never recreates one): an
        error, `dispatcher_source_topic_deleted`, and not ready until a restart. Reads the
        consumer's cached metadata; a topic missing from it is confirmed by listing topics."""
        snapshot = kafka_clients.topic_identities(self._consumer, self._topic_types)
        listed = None
        if self._topic_watch.suspects(snapshot):
            try:
                listed = kafka_clients.list_topics(self._consumer)
            except BrokerUnavailableError:
                return  # no answer: judged at the next turn
            snapshot = kafka_clients.topic_identities(self._consumer, self._topic_types)
        for deletion in self._topic_watch.observe(snapshot, listed):
            reason = deletion.describe()
            log.error(
                "%s: the events it held and not yet read are lost to the dispatcher, and the "
                "group's offsets for it no longer apply; recreate it if needed (dispatcher topics "
                "create), then restart the worker",
                reason,
            )
            self._metrics.topic_deleted(deletion.topic)
            self._health.add_fault(f"topic:{deletion.topic}", reason)

    def _handle(self, records: dict[Any, list[Any]]) -> None:
        now = self._clock()
        now_s = self._wall_clock()
        items: list[WorkItem] = []
        decisions: Counter[tuple[str, str, str, str]] = Counter()
        revenue_unsent: Counter[str] = Counter()
        avoided: Counter[str] = Counter()
        rereads = 0
        pairs = self._pairs
        settle = self._settlement.settle
        log_skips = self._log_skips
        for tp, messages in records.items():
            topic, partition = tp.topic, tp.partition
            event_type, decoder = self._topic_types[topic]
            decode = decoder.decode
            state = self._offsets.partition((topic, partition))
            already = self._already.get((topic, partition)) if self._already else None
            self._metrics.consumed(topic, len(messages))
            for message in messages:
                offset = message.offset
                if state.has_seen(offset):
                    rereads += 1  # read again after a rebalance: handled already, or in flight
                    continue
                event = decode(message.value, event_type)
                if isinstance(event, BadInput):
                    state.track(offset, 1)
                    settle(BadInputRead(topic, partition, offset, message.key, event))
                    continue
                final = already.pop(offset, None) if already is not None else None
                units = 0
                targets = self._targets(message.headers, pairs) if message.headers else pairs
                for partner, adapter in targets:
                    decision = decide(event, partner, adapter, now_s)
                    if isinstance(decision, Send):
                        if final is not None and (partner.name, decision.destination) in final:
                            avoided[partner.name] += 1  # the log shows it final: not again
                            continue
                        units += 1
                        decisions[(partner.name, event_type, "send", decision.reason)] += 1
                        if decision.content.unsent_revenue is not None:
                            revenue_unsent[partner.name] += 1
                        items.append(owed_item(message, partner.name, adapter, decision, event,
                                               now, targets is not pairs))  # fmt: skip
                    else:
                        decisions[(partner.name, event_type, "skip", decision.reason)] += 1
                        if log_skips:
                            units += 1
                            self._log_skip(partner, decision, (topic, partition), offset,
                                           event, targets is not pairs, now_s)  # fmt: skip
                state.track(offset, units)
            if already is not None and not already:
                del self._already[(topic, partition)]
        self._delivery.submit(items)
        self._pump()
        self._metrics.decided(decisions, revenue_unsent)
        if rereads:
            self._metrics.reread_skipped(rereads)
        for name, count in avoided.items():
            self._metrics.avoided_duplicates(name, count)

    def _log_skip(
        self, partner: PartnerConfig, decision: Any, source: Partition, offset: int, event: Any,
        replay: bool, now_s: float,
    ) -> None:  # fmt: skip
        """A skip's log record names the partner app as plan and replay do: where the postback
        would have gone, or the AppsFlyer app id for an app the partner does not configure."""
        assert self._postback_log is not None
        key, value = self._postback_log.skip_record(
            partner.name, partner.destination_of(event.app_id), decision.reason, source, offset,
            event, replay, now_s,
        )  # fmt: skip
        self._settlement.log_skip(key, value, (source[0], source[1], offset))

    def _pump(self) -> None:
        for publisher in self._publishers:
            publisher.pump()

    def _reposition(
        self, records: Mapping[TopicPartition, list[Any]]
    ) -> Mapping[TopicPartition, list[Any]]:
        """Partitions back after another member may have had them (`on_assigned`): read on
        from the group's committed offset, not from where this worker left them. Records
        already read there from the old position are set aside; the next poll reads from
        the committed offset. When the group has no commit there or does not answer, the
        old position stays and the postback log's look-up is what prevents re-sending."""
        stale, self._stale = self._stale, set()
        moved: set[Partition] = set()
        for topic, partition in sorted(stale):
            try:
                offset = kafka_clients.committed_offset(self._consumer, topic, partition)
            except Exception as exc:
                log.warning("could not read the committed offset of %s[%d] (%s); reading on "
                            "from this worker's own position", topic, partition, exc)  # fmt: skip
                continue
            if offset is None:
                continue
            self._consumer.seek(TopicPartition(topic, partition), offset)
            moved.add((topic, partition))
            log.info("%s[%d] was another member's meanwhile: reading on from the group's "
                     "committed offset %d", topic, partition, offset)  # fmt: skip
        if not moved:
            return records
        return {tp: msgs for tp, msgs in records.items() if (tp.topic, tp.partition) not in moved}

    def _look_up(self, records: Mapping[TopicPartition, list[Any]]) -> None:
        """Before the first records of newly assigned partitions are handled: read the postback
        log since the oldest of them (less `postback_log.lookback_margin_s`) for what it shows
        as final from those offsets on, so it is not sent again (a crash, or another member,
        got the answer but could not commit it). Without an answer from the log, nothing is
        skipped: a duplicate, never a loss."""
        firsts = {}
        for tp, messages in records.items():
            key = (tp.topic, tp.partition)
            if key in self._unscanned and messages:
                firsts[key] = messages[0]
        if not firsts or self._make_log_reader is None or self._log_topic is None:
            return
        self._unscanned.difference_update(firsts)
        margin_s = self._settings.runtime.postback_log.lookback_margin_s
        since_s = max(0.0, min(m.timestamp for m in firsts.values()) / 1000 - margin_s)
        budget_s = min(30.0, self._settings.runtime.kafka.max_poll_interval_ms / 2000)
        started = self._clock()
        try:
            if self._log_reader is None:
                self._log_reader = self._make_log_reader()
            starts = {tp: message.offset for tp, message in firsts.items()}
            found = final_in(self._log_reader, self._log_topic, since_s, starts, budget_s)
        except Exception as exc:
            log.warning(
                "could not read the postback log (%s); events of newly assigned partitions "
                "already delivered may be sent again", exc,
            )  # fmt: skip
            return
        self._already.update(found)
        log.info(
            "postback log read for %d newly assigned partitions in %.1fs: %d of their events "
            "are final already and are not sent again",
            len(firsts), self._clock() - started, sum(len(v) for v in found.values()),
        )  # fmt: skip

    @staticmethod
    def _targets(
        headers: Iterable[tuple[str, bytes]], pairs: list[tuple[PartnerConfig, PartnerAdapter]]
    ) -> list[tuple[PartnerConfig, PartnerAdapter]]:
        """The partners a record is decided for: for a dead letter replayed for one partner
        (`REPLAY_PARTNER_HEADER`), that partner alone (none if it is no longer configured);
        every partner otherwise."""
        for name, value in headers:
            if name == REPLAY_PARTNER_HEADER:
                partner = value.decode("utf-8", "replace")
                return [pair for pair in pairs if pair[0].name == partner]
        return pairs

    def _prefetch(self) -> None:
        """Ask for the next records of drained partitions now, so the broker's answer arrives
        while this batch is decided (kafka-python fetches only once every buffered partition is
        drained, which leaves the loop waiting on the network once per fetch)."""
        if self._fetcher is None:
            return
        try:
            self._fetcher.send_fetches()
        except Exception:
            log.debug("prefetch failed; kafka-python fetches on its own", exc_info=True)
            self._fetcher = None

    def _final(self, units: list[Coordinates]) -> None:
        """Units of work that are done: their events become final when nothing else is owed."""
        complete = self._offsets.complete
        for topic, partition, offset in units:
            complete((topic, partition), offset)

    def _drain_completions(self, timeout_s: float = 0.0) -> None:
        """Settle every completion waiting (waiting up to `timeout_s` for the first)."""
        try:
            completion = (
                self._completions.get(timeout=timeout_s)
                if timeout_s
                else self._completions.get_nowait()
            )
        except queue.Empty:
            return
        settle = self._settlement.settle
        while True:
            settle(completion)
            try:
                completion = self._completions.get_nowait()
            except queue.Empty:
                return

    # --- offsets ------------------------------------------------------------------------------

    def _report_lag(self) -> None:
        lags: dict[tuple[str, int], int] = {}
        for tp in self._consumer.assignment():
            highwater = self._consumer.highwater(tp)
            final = self._offsets.final_offset((tp.topic, tp.partition))
            if highwater is None or final is None:
                continue
            lags[(tp.topic, tp.partition)] = max(0, highwater - final)
        self._metrics.set_lag(lags, ())

    # --- back-pressure -----------------------------------------------------------------------

    def _apply_backpressure(self) -> int:
        """Pause every partition while too many events are in flight; return the poll budget."""
        inflight = self._offsets.pending()
        self._metrics.set_inflight(inflight)
        if not self._paused and inflight >= self._max_inflight:
            self._consumer.pause(*self._consumer.assignment())
            self._paused = True
            log.info("paused consumption: %d events in flight", inflight)
        elif self._paused and inflight <= self._max_inflight // 2:
            self._consumer.resume(*self._consumer.paused())
            self._paused = False
            log.info("resumed consumption: %d events in flight", inflight)
        self._metrics.set_paused(len(self._consumer.paused()))
        limit = self._settings.runtime.kafka.max_poll_records
        return max(1, min(limit, self._max_inflight - inflight))

    # --- rebalances ---------------------------------------------------------------------------

    async def on_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        """Partitions are leaving. Nothing more is sent for them (their queued postbacks are
        dropped: the next owner reads and sends them); what is out may finish, bounded by
        `worker.rebalance_drain_s`; then their final offsets are committed, so the next owner
        starts right after what this worker delivered. Runs on kafka-python's network loop (see
        `_Rebalance`): its waits let that loop turn, heartbeats included."""
        tps = {(tp.topic, tp.partition) for tp in revoked}
        self._revoked_generation = kafka_clients.group_generation(self._consumer)
        if not tps or self._closing:
            return  # closing: _shutdown already finished and committed what it could
        self._health.set_ready(False, "rebalancing")
        dropped = self._delivery.drop(tps)
        deadline = Deadline(self._settings.runtime.worker.rebalance_drain_s, self._clock)
        while not deadline.expired() and (
            self._delivery.flying(tps) or any(p.outstanding for p in self._publishers)
        ):
            self._drain_completions()
            self._pump()
            await kafka_clients.pause_in_loop(self._consumer, REBALANCE_WAIT_S)
        self._drain_completions()
        offsets = self._checkpoint.offsets_to_commit(tps)
        if offsets:
            error = await kafka_clients.commit_in_loop(self._consumer, offsets)
            self._checkpoint.answered(offsets, error)
        unfinished = self._delivery.flying(tps)
        if unfinished:
            self._metrics.rebalance_unfinished(unfinished)
            log.warning(
                "partitions revoked with %d postbacks still out after %.1fs "
                "(worker.rebalance_drain_s); the next owner sends them again unless the "
                "postback log shows them delivered first",
                unfinished, self._settings.runtime.worker.rebalance_drain_s,
            )  # fmt: skip
        # Committed up to the first dropped event at most; should the partitions come back here,
        # the dropped ones are read and handled again (`on_assigned` seeks back to them).
        self._offsets.rewind(dropped)
        self._rewound.update(dropped)
        self._offsets.detach(tps)

    def on_lost(self, lost: Iterable[TopicPartition]) -> None:
        """The group evicted this worker (a missed session, a fenced member): the partitions
        are someone else's already, so nothing is committed; their unfinished events are
        re-read by the next owner. Their state is kept until the new assignment is known."""
        tps = {(tp.topic, tp.partition) for tp in lost}
        if not tps or self._closing:
            return
        self._health.set_ready(False, "rejoining the group after losing its partitions")
        dropped = self._delivery.drop(tps)  # someone else's already: nothing more sent for them
        unfinished = self._offsets.pending_in(tps)
        log.warning(
            "partitions lost (the group evicted this worker): %s; %d events unfinished there "
            "go to the next owner",
            ", ".join(f"{t}[{p}]" for t, p in sorted(tps)),
            unfinished,
        )
        self._offsets.rewind(dropped)
        self._rewound.update(dropped)
        self._offsets.detach(tps)

    def on_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        """The new assignment: keep state of partitions that stay, drop the others."""
        assigned = list(assigned)
        tps = [(tp.topic, tp.partition) for tp in assigned]
        generation = kafka_clients.group_generation(self._consumer)
        revoked_in, self._revoked_generation = self._revoked_generation, None
        if generation is not None and revoked_in is not None and generation == revoked_in + 1:
            dropped = self._offsets.reassign(tps)
        else:
            # Not the generation right after the revocation (this worker's join was answered
            # in a later one, or it was evicted): another member may have had these
            # partitions and delivered from them meanwhile. Nothing is kept, and where
            # kafka-python kept this worker's old position, it is moved to the group's
            # committed offset before anything is read there (`_reposition`).
            held = set(self._offsets.detached())
            self._stale.update(tp for tp in tps if tp in held)
            dropped = self._offsets.reassign(())
        if dropped:
            self._delivery.discard(set(dropped))
            self._metrics.set_lag({}, dropped)
            for tp in dropped:
                self._already.pop(tp, None)
                self._unscanned.discard(tp)
        kept = set(self._offsets.assigned())
        # kafka-python keeps the position of a partition that stays assigned: where postbacks
        # were dropped at the revocation, read again from the first of them.
        rewound, self._rewound = self._rewound, {}
        for tp in assigned:
            offset = rewound.get((tp.topic, tp.partition))
            if offset is not None and (tp.topic, tp.partition) in kept:  # never a stale one
                self._consumer.seek(tp, offset)
        if self._make_log_reader is not None:
            # New to this worker: the log tells what another member (or this one before a
            # crash) finished there but could not commit.
            self._unscanned.update(tp for tp in tps if tp not in kept)
        for tp in tps:
            self._offsets.partition(tp)
        if self._paused and assigned:
            self._consumer.pause(*assigned)
        self._health.set_ready(True, _consuming(len(tps)))
        log.info("partitions assigned: %s", ", ".join(f"{t}[{p}]" for t, p in sorted(tps))
                 or f"{NO_PARTITIONS} (the group has more members than the topics have "
                 "partitions: idle until a rebalance gives this one some)")  # fmt: skip

    # --- configuration -----------------------------------------------------------------------

    def _set_partners(self, partners: PartnerSet) -> None:
        self._partners = partners
        self._pairs = [(partner, adapter_for(partner.name)) for partner in partners.partners]
        self._metrics.describe_config(
            (partner.name, app.app_id, app.active)
            for partner in partners.partners
            for app in partner.apps
        )
        self._on_secrets(partners.secrets() + self._settings.secrets())

    def _reload_partners(self) -> None:
        try:
            partners = self._load_partners()
        except ConfigError as exc:
            for issue in exc.issues:
                log.error("config reload failed, keeping the running config: %s", issue)
            self._metrics.reloaded(ok=False)
            self._delivery.resume_held()  # a SIGHUP all the same: an operator acted
            return
        self._set_partners(partners)
        _log_apps_in_test_mode(partners)
        self._delivery.update(partners)
        self._metrics.reloaded(ok=True)
        log.info(
            "partner config reloaded",
            extra={"partners": ",".join(p.name for p in partners.partners)},
        )

    def _poll_token_files(self) -> None:
        """Read each `access_token_file` again; a changed token goes to delivery, which probes
        the apps it held at once. A file that cannot be read (a Secret being swapped) keeps the
        running token; what is wrong is logged once until it changes."""
        self._next_token_poll_at = self._clock() + TOKEN_FILE_POLL_S
        partners = self._partners
        for name, path in partners.token_files.items():
            try:
                token = read_token_file(path)
                problem = None if token is not None else "is empty"
            except (OSError, UnicodeDecodeError) as exc:
                token = None
                problem = f"cannot be read ({type(exc).__name__})"
            if problem is not None:
                if self._token_file_problems.get(name) != problem:
                    self._token_file_problems[name] = problem
                    log.warning(
                        "token file %s %s; keeping the running token", path, problem,
                        extra={"partner": name},
                    )  # fmt: skip
                continue
            self._token_file_problems.pop(name, None)
            current = partners.tokens.get(name)
            assert token is not None
            if current is None or token.get_secret_value() != current.get_secret_value():
                partners = partners.with_token(name, token)
                log.info("token file changed: the new token is in use", extra={"partner": name})
        if partners is not self._partners:
            self._set_partners(partners)
            self._delivery.update(partners)

    def _check_topics(self) -> None:
        topics = kafka_clients.list_topics(self._consumer)
        dead_letter_topic = self._settings.runtime.kafka.dead_letter_topic
        needed = (*self._topic_types, dead_letter_topic)
        if self._log_topic is not None:
            needed = (*needed, self._log_topic)
        missing = [topic for topic in needed if topic not in topics]
        if missing:
            raise PermanentError(
                f"topic{'s' if len(missing) > 1 else ''} "
                f"{', '.join(repr(t) for t in missing)} do{'es' if len(missing) == 1 else ''} "
                f"not exist; create them with `dispatcher topics create --config "
                f"{self._settings.path}`, or fix kafka.topics / kafka.dead_letter_topic / "
                "kafka.postback_log_topic (the worker never creates a topic: a typo would "
                "otherwise be consumed from, silently, forever; nothing is consumed without a "
                "place for dead letters and the postback log)"
            )

    # --- stopping ----------------------------------------------------------------------------

    def _shutdown(self) -> None:
        worker = self._settings.runtime.worker
        self._health.set_ready(False, "stopping")
        log.info(
            "stopping: finishing in-flight deliveries (at most %.0fs)", worker.shutdown_timeout_s
        )
        try:
            self._consumer.pause(*self._consumer.assignment())
        except Exception:
            log.warning("could not pause before stopping", exc_info=True)
        deadline = Deadline(worker.shutdown_timeout_s, self._clock)
        self._delivery.wind_down(deadline.remaining_s())  # flushes; gives up what cannot finish
        while self._offsets.pending() and not deadline.expired() and not self._force_stop.is_set():
            delivery_done = self._delivery.finished() and self._completions.empty()
            if delivery_done and not any(p.outstanding for p in self._publishers):
                break  # what is left was given up: read and sent again after the restart
            self._drain_completions(timeout_s=0.05)
            self._pump()
        self._delivery.stop(deadline.remaining_s())
        for publisher in self._publishers:
            publisher.flush(max(1.0, min(10.0, deadline.remaining_s())))
        self._drain_completions()
        if self._log_reader is not None:
            try:
                self._log_reader.close(autocommit=False)
            except Exception:
                log.debug("the postback log reader did not close cleanly", exc_info=True)
        self._checkpoint.close()
        unfinished = self._offsets.pending()
        if unfinished:
            log.warning(
                "stopped with %d events unfinished; they are re-read on restart", unfinished
            )
        self._closing = True
        try:
            self._consumer.close(autocommit=False)
        except Exception:
            log.warning("consumer did not close cleanly", exc_info=True)
        log.info("stopped")


class _Rebalance(AsyncConsumerRebalanceListener):  # type: ignore[misc]
    """kafka-python 3 calls these on its network thread, from inside `poll()` (or `close()`),
    while the worker's thread waits there: they may use the worker's state, but a blocking
    consumer call (a synchronous commit) raises there, so a revocation awaits its commit."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._worker.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._worker.on_assigned(assigned)

    async def on_partitions_lost(self, lost: Iterable[TopicPartition]) -> None:
        self._worker.on_lost(lost)
