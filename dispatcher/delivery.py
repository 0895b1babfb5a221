"""Delivering owed postbacks: batching, pacing, retries, outcomes.

Runs an asyncio loop in its own thread; the worker hands it work items and gets back, through
`on_final`, the items that became final (delivered, or dead-lettered and acknowledged).

Items wait in *lanes*, one per (partner, destination, source partition): a lane sends one batch
at a time, so one partition's events reach a partner app in offset order, and a failing batch
holds back the ones behind it instead of overtaking them. Lanes of one partner share its HTTP
client, its concurrency limit and its request pacer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

import httpx
from tenacity import RetryCallState

from dispatcher.config_loader import PartnerSet
from dispatcher.dead_letters import delivery_letter
from dispatcher.logs import SecretRedactor
from dispatcher.metrics import Metrics
from dispatcher.offsets import Partition
from dispatcher.outcomes import AttemptKind, AttemptResult, BatchResult, Outcome
from dispatcher.partners import ADAPTERS, PartnerAdapter
from dispatcher.ratelimit import Clock, RequestPacer
from dispatcher.retry import retrying
from schemas.config import PartnerConfig
from schemas.dead_letter import DeadLetter

log = logging.getLogger(__name__)


@dataclass(slots=True, eq=False)
class WorkItem:
    """One owed postback: where it came from, where it goes, and its payload."""

    topic: str
    partition: int
    offset: int
    key: bytes | None  # the Kafka key, kept for the dead letter
    raw: bytes | None  # the message as read, kept for the dead letter
    partner: str
    destination: str
    payload: Mapping[str, Any]
    event_label: str  # the partner's event name, a metric label
    event_time_s: float
    queued_at: float  # the worker's monotonic clock when it handed the item over


FinalCallback = Callable[[list[WorkItem]], None]


class DeadLetterSink(Protocol):
    """Where rejected and exhausted postbacks go (the dead-letter publisher)."""

    def submit(self, letter: DeadLetter, key: bytes | None, on_ack: Callable[[], None]) -> None:
        """Write `letter`; call `on_ack` once the broker acknowledged it."""
        ...


_FATE_UNKNOWN_ERRORS = (
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)


def transport_failure(exc: httpx.HTTPError) -> AttemptResult:
    """Map an httpx error to a retryable attempt; whether it may have arrived decides duplicates."""
    kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "transport error"
    return AttemptResult(
        AttemptKind.RETRYABLE,
        None,
        None,
        f"{kind}: {type(exc).__name__}",
        fate_unknown=isinstance(exc, _FATE_UNKNOWN_ERRORS),
    )


class PartnerChannel:
    """Everything that talks to one partner: lanes, client, pacing, retries, outcomes."""

    def __init__(
        self,
        partner: PartnerConfig,
        adapter: PartnerAdapter,
        token: str,
        client: httpx.AsyncClient,
        metrics: Metrics,
        dead_letters: DeadLetterSink,
        on_final: FinalCallback,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.name = partner.partner
        self.adapter = adapter
        self.client = client
        self.metrics = metrics
        self.dead_letters = dead_letters
        self.on_final = on_final
        self.clock = clock
        self.wall_clock = wall_clock
        self.sleep = sleep
        self.lanes: dict[tuple[str, str, int], Lane] = {}
        self.pacer = RequestPacer(partner.delivery.max_requests_per_s, clock, sleep)
        self.configure(partner, token)
        metrics.start_partner(self.name, adapter.install_event)
        metrics.rate_limit(self.name, self.pacer.rate)

    def configure(self, partner: PartnerConfig, token: str) -> None:
        """Apply (re)loaded settings; batches already in flight finish with the old ones."""
        self.partner = partner
        self.delivery = partner.delivery
        self.headers = self.adapter.request_headers(token)
        # a partner's error message may quote the token back: it must reach no log or dead letter
        self.redactor = SecretRedactor([token])
        self.semaphore = asyncio.Semaphore(partner.delivery.max_concurrent_requests)
        self.pacer.set_max_rate(partner.delivery.max_requests_per_s)

    # --- lanes -----------------------------------------------------------------------------

    def submit(self, items: Iterable[WorkItem]) -> None:
        """Queue items in their lanes; runs of items bound for one lane are queued at once."""
        run: list[WorkItem] = []
        for item in items:
            if run and (
                item.partition != run[0].partition
                or item.destination != run[0].destination
                or item.topic != run[0].topic
            ):
                self._lane_for(run[0]).put(run)
                run = []
            run.append(item)
        if run:
            self._lane_for(run[0]).put(run)

    def _lane_for(self, item: WorkItem) -> Lane:
        key = (item.destination, item.topic, item.partition)
        lane = self.lanes.get(key)
        if lane is None:
            lane = self.lanes[key] = Lane(self, item.destination, (item.topic, item.partition))
        return lane

    def flush(self, tps: set[Partition] | None = None) -> None:
        """Send what is queued now, without lingering (shutdown, revoked partitions)."""
        for lane in self.lanes.values():
            if tps is None or lane.partition in tps:
                lane.flush()

    def discard(self, tps: set[Partition]) -> int:
        """Drop queued (not in-flight) items of partitions this worker no longer owns."""
        return sum(lane.discard() for lane in self.lanes.values() if lane.partition in tps)

    def is_idle(self) -> bool:
        """No lane has anything queued or in flight."""
        return all(lane.is_idle() for lane in self.lanes.values())

    async def close(self) -> None:
        """Stop every lane (in-flight batches are abandoned, never committed) and the client."""
        for lane in self.lanes.values():
            lane.task.cancel()
        await asyncio.gather(*(lane.task for lane in self.lanes.values()), return_exceptions=True)
        await self.client.aclose()

    # --- one batch ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[float]:
        """A concurrency slot and this request's pacing slot; send at once when it is yours.
        Yields the turn's time, for `post`."""
        async with self.semaphore:
            yield await self.pacer.acquire()  # inside the semaphore: the pacing holds at the wire

    def encode(self, items: list[WorkItem], destination: str) -> bytes:
        """The request body of a batch."""
        self.metrics.batch_sent(self.name, len(items))
        return self.adapter.encode_request(destination, [item.payload for item in items])

    async def deliver(
        self,
        items: list[WorkItem],
        destination: str,
        body: bytes | None = None,
        first: AttemptResult | None = None,
    ) -> None:
        """Send a batch until it is delivered, rejected or out of attempts; then finish it.

        `first` is the answer to an attempt already made (the lane sends as it forms a batch).
        """
        for part, result in await self._send(items, destination, body, first):
            self._finish(part, result)

    async def _send(
        self,
        items: list[WorkItem],
        destination: str,
        body: bytes | None = None,
        first: AttemptResult | None = None,
    ) -> list[tuple[list[WorkItem], BatchResult]]:
        request = body if body is not None else self.encode(items, destination)
        attempts = 0
        previous: AttemptResult | None = None

        async def attempt() -> AttemptResult:
            nonlocal attempts, previous
            attempts += 1
            if attempts == 1 and first is not None:
                previous = first
                return first
            if previous is not None and previous.fate_unknown:
                self.metrics.resent(self.name, len(items))
            async with self.turn() as turn_at:
                previous = await self.post(request, turn_at)
            return previous

        result: AttemptResult
        if first is not None and not first.retryable:
            attempts, result = 1, first  # the usual case: no retry policy to run
        else:
            before_sleep = functools.partial(self._retrying, items)
            result = await retrying(self.delivery, self.sleep, before_sleep)(attempt)
        if result.kind is AttemptKind.OK:
            return [(items, BatchResult(Outcome.DELIVERED, attempts, result))]
        if result.kind is AttemptKind.FATAL:
            if self.adapter.should_split(result, len(items)):
                # One bad event rejects the whole request: halve until it stands alone.
                middle = len(items) // 2
                log.info(
                    "batch rejected, splitting to isolate the bad events",
                    extra={"partner": self.name, "size": len(items), "code": result.code},
                )
                head = await self._send(items[:middle], destination)
                return head + await self._send(items[middle:], destination)
            return [(items, BatchResult(Outcome.REJECTED, attempts, result))]
        return [(items, BatchResult(Outcome.GAVE_UP, attempts, result))]

    async def post(self, body: bytes, turn_at: float) -> AttemptResult:
        """One HTTP attempt (call it inside `turn()`), read as a value; feeds the pacer back."""
        started = self.clock()
        pacer = self.pacer

        async def trace(event: str, _info: object) -> None:
            if event == "http11.send_request_body.complete":
                pacer.written(turn_at)

        try:
            response = await self.client.post(
                self.partner.endpoint,
                content=body,
                headers=self.headers,
                timeout=self.delivery.timeout_s,
                extensions={"trace": trace},
            )
        except httpx.HTTPError as exc:
            result = transport_failure(exc)
        except Exception as exc:  # a defect must not lose events: log it and retry
            log.exception("unexpected error sending to %s", self.name)
            result = AttemptResult(
                AttemptKind.RETRYABLE, None, None, f"internal error: {type(exc).__name__}"
            )
        else:
            result = self.adapter.classify(
                response.status_code, response.headers, response.content, self.wall_clock()
            )
        redacted = self.redactor.redact(result.message)
        if redacted is not result.message:
            result = replace(result, message=redacted)
        self.metrics.attempted(self.name, result.kind, self.clock() - started)
        if result.throttled:
            self.pacer.throttled(result.retry_after_s)
            self.metrics.rate_limit(self.name, self.pacer.rate)
        elif result.retry_after_s:
            self.pacer.pause(result.retry_after_s)
        elif result.kind is AttemptKind.OK and self.pacer.succeeded():
            self.metrics.rate_limit(self.name, self.pacer.rate)
        return result

    def _retrying(self, items: list[WorkItem], state: RetryCallState) -> None:
        assert state.outcome is not None
        result: AttemptResult = state.outcome.result()
        wait_s = state.upcoming_sleep
        log.warning(
            "delivery failed, retrying in %.2fs: %s",
            wait_s,
            result.message,
            extra={
                "partner": self.name,
                "attempt": state.attempt_number,
                "status": result.status,
                "code": result.code,
                "events": len(items),
            },
        )

    def _finish(self, items: list[WorkItem], result: BatchResult) -> None:
        labels = Counter(item.event_label for item in items)
        if result.outcome is Outcome.DELIVERED:
            self.metrics.finished(
                self.name, result.outcome, labels, [item.event_time_s for item in items],
                self.wall_clock(),
            )  # fmt: skip
            if result.last.partial:
                log.info(
                    "partial success reported; counted as delivered: %s",
                    result.last.message,
                    extra={"partner": self.name, "events": len(items)},
                )
            self.on_final(items)
            return
        self.metrics.finished(self.name, result.outcome, labels, (), 0.0)
        log.warning(
            "postbacks %s after %d attempts, dead-lettering: %s",
            result.outcome.value,
            result.attempts,
            result.last.message,
            extra={
                "partner": self.name,
                "events": len(items),
                "status": result.last.status,
                "code": result.last.code,
            },
        )
        for item in items:
            letter = delivery_letter(
                self.name, item.topic, item.partition, item.offset, item.raw, result
            )
            self.dead_letters.submit(letter, item.key, functools.partial(self.on_final, [item]))


class Lane:
    """Items of one source partition bound for one destination, sent one batch at a time."""

    def __init__(self, channel: PartnerChannel, destination: str, partition: Partition) -> None:
        self.channel = channel
        self.destination = destination
        self.partition = partition
        self.items: deque[WorkItem] = deque()
        self.busy = False
        self._wake = asyncio.Event()
        self._flush = False
        self.task = asyncio.get_running_loop().create_task(self._run())

    def put(self, items: list[WorkItem]) -> None:
        """Queue items (in offset order)."""
        self.items.extend(items)
        self._wake.set()

    def flush(self) -> None:
        """Stop lingering: send what is queued now."""
        self._flush = True
        self._wake.set()

    def discard(self) -> int:
        """Drop queued items; return how many."""
        count = len(self.items)
        self.items.clear()
        return count

    def is_idle(self) -> bool:
        """Nothing queued and nothing in flight."""
        return not self.items and not self.busy

    async def _run(self) -> None:
        channel = self.channel
        while True:
            if not self.items:
                self._flush = False
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._linger()
            # The batch is formed only once the request can leave: while the lane waits for its
            # turn (pacing, concurrency) the batch keeps growing, up to batch_max_events.
            async with channel.turn() as turn_at:
                size = min(len(self.items), channel.delivery.batch_max_events)
                batch = [self.items.popleft() for _ in range(size)]
                if not batch:
                    continue  # discarded while waiting
                self.busy = True
                try:
                    body = channel.encode(batch, self.destination)
                    first = await channel.post(body, turn_at)
                except Exception:
                    first = None
                    log.exception("lane for %s failed to send", self.destination)
            try:
                if first is not None:
                    await channel.deliver(batch, self.destination, body, first)
                    continue
            except Exception:
                log.exception("lane for %s failed; retrying its batch", self.destination)
            finally:
                self.busy = False
            # A defect: put the batch back (nothing is lost) and try again after a pause.
            self.items.extendleft(reversed(batch))
            await channel.sleep(1.0)

    async def _linger(self) -> None:
        """Wait until the batch is full, the linger has passed since the oldest item, or flush."""
        channel = self.channel
        linger_s = channel.delivery.batch_linger_ms / 1000
        while (
            self.items and len(self.items) < channel.delivery.batch_max_events and not self._flush
        ):
            remaining = self.items[0].queued_at + linger_s - channel.clock()
            if remaining <= 0:
                return
            self._wake.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._wake.wait()
            except TimeoutError:
                return


class DeliveryService:
    """Hosts the partner channels on an asyncio loop in a thread of its own."""

    def __init__(
        self,
        partners: PartnerSet,
        metrics: Metrics,
        dead_letters: DeadLetterSink,
        on_final: FinalCallback,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
    ) -> None:
        self._partners = partners
        self._metrics = metrics
        self._dead_letters = dead_letters
        self._on_final = on_final
        self._transport = transport
        self._clock = clock
        self._wall_clock = wall_clock
        self._channels: dict[str, PartnerChannel] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._done: asyncio.Event | None = None  # created on the loop
        self._thread = threading.Thread(target=self._run, name="delivery", daemon=True)
        self._error: BaseException | None = None

    # --- called from the worker's thread ---------------------------------------------------

    def start(self) -> None:
        """Start the loop and wait until it accepts work."""
        self._thread.start()
        self._ready.wait(timeout=10)
        if self._error is not None:
            raise self._error

    def submit(self, items: list[WorkItem]) -> None:
        """Hand over owed postbacks (thread-safe)."""
        if items:
            self._call(self._submit, items)

    def update(self, partners: PartnerSet) -> None:
        """Use reloaded partner settings for the next batches (thread-safe)."""
        self._call(self._update, partners)

    def flush(self, tps: set[Partition] | None = None) -> None:
        """Send queued items now, without lingering (thread-safe)."""
        self._call(self._flush, tps)

    def discard(self, tps: set[Partition]) -> None:
        """Drop queued items of partitions no longer ours (thread-safe)."""
        self._call(self._discard, tps)

    def stop(self, timeout_s: float) -> None:
        """Send what is queued, wait up to `timeout_s` for it to finish, then stop."""
        loop = self._loop
        if loop is None or not self._thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self._stop(timeout_s), loop)
        try:
            future.result(timeout=timeout_s + 10)
        except Exception:
            log.exception("delivery did not stop cleanly")
        self._thread.join(timeout=10)

    def _call(self, function: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            raise RuntimeError("delivery service is not running")
        loop.call_soon_threadsafe(function, *args)

    # --- on the loop ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced by start(); logged otherwise
            self._error = exc
            self._ready.set()
            log.exception("delivery loop crashed")

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        done = self._done = asyncio.Event()
        self._update(self._partners)
        self._ready.set()
        await done.wait()

    def _channel_for(self, partner: PartnerConfig, token: str) -> PartnerChannel:
        limits = httpx.Limits(
            max_connections=partner.delivery.max_concurrent_requests,
            max_keepalive_connections=partner.delivery.max_concurrent_requests,
        )
        client = httpx.AsyncClient(transport=self._transport, limits=limits, http2=False)
        return PartnerChannel(
            partner,
            ADAPTERS[partner.partner],
            token,
            client,
            self._metrics,
            self._dead_letters,
            self._on_final,
            self._clock,
            self._wall_clock,
        )

    def _update(self, partners: PartnerSet) -> None:
        self._partners = partners
        for partner in partners.partners:
            token = partners.tokens[partner.partner].get_secret_value()
            channel = self._channels.get(partner.partner)
            if channel is None:
                self._channels[partner.partner] = self._channel_for(partner, token)
            else:
                channel.configure(partner, token)

    def _submit(self, items: list[WorkItem]) -> None:
        by_partner: dict[str, list[WorkItem]] = {}
        for item in items:
            by_partner.setdefault(item.partner, []).append(item)
        for name, partner_items in by_partner.items():
            self._channels[name].submit(partner_items)

    def _flush(self, tps: set[Partition] | None) -> None:
        for channel in self._channels.values():
            channel.flush(tps)

    def _discard(self, tps: set[Partition]) -> None:
        dropped = sum(channel.discard(tps) for channel in self._channels.values())
        if dropped:
            log.info("dropped %d queued postbacks of partitions no longer assigned", dropped)

    async def _stop(self, timeout_s: float) -> None:
        self._flush(None)
        deadline = self._clock() + timeout_s
        while not all(c.is_idle() for c in self._channels.values()) and self._clock() < deadline:
            await asyncio.sleep(0.02)
        pending = [c.name for c in self._channels.values() if not c.is_idle()]
        if pending:
            log.warning(
                "stopping with deliveries unfinished (not committed; re-sent after restart)",
                extra={"partners": ",".join(pending)},
            )
        await asyncio.gather(*(c.close() for c in self._channels.values()))
        assert self._done is not None
        self._done.set()
