"""Everything that talks to one partner: the queue of each destination (`queue.py`) and the lane
of each of its partitions (`lane.py`), pacing and concurrency, the attempts of each batch under
the partner's retry policy, and the partner apps held on a setup answer (`hold.py`).
Each batch's final word goes back as a `Settled` value; what follows (metrics of outcomes,
dead letters, offsets) is the worker's."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from tenacity import RetryCallState

from dispatcher.delivery.hold import Hold, ends_hold
from dispatcher.delivery.http import PartnerHttp
from dispatcher.delivery.items import Settled, SettledCallback, WorkItem
from dispatcher.delivery.lane import Lane, Take
from dispatcher.delivery.queue import DestinationQueue
from dispatcher.metrics import Metrics
from dispatcher.offsets import Partition
from dispatcher.outcomes import AttemptKind, AttemptResult, BatchResult, Outcome
from dispatcher.partners import PartnerAdapter
from dispatcher.ratelimit import Clock, RequestPacer
from dispatcher.retry import RetryPolicy
from schemas.config import DeliveryConfig, PartnerConfig

log = logging.getLogger(__name__)


class _EmptyBatchError(Exception):
    """The lane had nothing left when its turn came (discarded while it waited)."""


class _AllTooOldError(Exception):
    """Every event of the batch passed the partner's max_event_age while it was retried."""


class _TimedOutError(Exception):
    """The batch's last attempt timed out: it is sent again as halves."""


class _HoldExpiredError(Exception):
    """The batch was answered "setup" and its destination has been held past hold_max_s."""


class _PastStopDeadlineError(Exception):
    """Stopping: the batch's next attempt would start after the stop deadline."""

    def __init__(self, wait_s: float) -> None:
        super().__init__(wait_s)
        self.wait_s = wait_s


class PartnerChannel:
    """Attempts, pacing, concurrency and held apps for one partner, and the lanes and queues of
    its destinations. Its state is its own: callers submit, flush, discard, reconfigure, stop."""

    def __init__(
        self,
        partner: PartnerConfig,
        adapter: PartnerAdapter,
        token: str,
        http: PartnerHttp,
        metrics: Metrics,
        on_settled: SettledCallback,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        sleep: Callable[[float], Any] = asyncio.sleep,
        *,
        signing_secret: str = "",
    ) -> None:
        self._name = partner.name
        self._adapter = adapter
        self._http = http
        self._metrics = metrics
        self._on_settled = on_settled
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._queues: dict[str, DestinationQueue] = {}
        self._lanes: dict[tuple[str, Partition], Lane] = {}
        self._stop_at: float | None = None  # on `clock`; set once stopping
        self._stopping = asyncio.Event()
        self._holds: dict[str, Hold] = {}  # destinations held on a setup answer
        self._limits: dict[str, int] = {}  # destinations whose batches shrank after timeouts
        self._token: str | None = None
        self._pacer = RequestPacer(partner.delivery.max_requests_per_s, clock, sleep)
        self.configure(partner, token, signing_secret)
        metrics.start_partner(self._name, adapter.install_event)
        metrics.rate_limit(self._name, self._pacer.rate)

    @property
    def name(self) -> str:
        return self._name

    @property
    def partner(self) -> PartnerConfig:
        """The settings in use (the last `configure`)."""
        return self._partner

    def configure(self, partner: PartnerConfig, token: str, signing_secret: str = "") -> None:
        """Apply (re)loaded settings; batches already in flight finish with the old ones."""
        self._partner = partner
        self._delivery = partner.delivery
        self._http.configure(partner.endpoint, token, partner.delivery.timeout_s, signing_secret)
        self._policy = RetryPolicy(partner.delivery, self._clock)
        self._semaphore = asyncio.Semaphore(partner.delivery.max_concurrent_requests)
        self._pacer.set_max_rate(partner.delivery.max_requests_per_s)
        if self._token is not None and token != self._token:
            self.resume_held()  # a new token: what held the apps may be fixed
        self._token = token

    def resume_held(self) -> None:
        """Probe every held destination now (SIGHUP, a new token) instead of at its next
        `setup_retry_s`."""
        for hold in self._holds.values():
            hold.wake()

    # --- queues and lanes --------------------------------------------------------------------

    def submit(self, items: Iterable[WorkItem]) -> None:
        """Queue items in their destinations' queues; runs of items of one partition bound for
        one destination are queued at once."""
        run: list[WorkItem] = []
        for item in items:
            if run and (
                item.partition != run[0].partition
                or item.destination != run[0].destination
                or item.topic != run[0].topic
            ):
                self._queue_run(run)
                run = []
            run.append(item)
        if run:
            self._queue_run(run)

    def _queue_run(self, run: list[WorkItem]) -> None:
        first = run[0]
        destination, partition = first.destination, (first.topic, first.partition)
        queue = self._queues.get(destination)
        if queue is None:
            queue = self._queues[destination] = DestinationQueue()
        queue.put(partition, run)
        lane = self._lanes.get((destination, partition))
        if lane is None:
            lane = self._lanes[(destination, partition)] = Lane(
                queue, destination, partition, self.deliver, self._settings, self.batch_limit,
                self._free, self._clock, self._sleep,
            )  # fmt: skip
        lane.wake()

    def _settings(self) -> DeliveryConfig:
        return self._delivery

    def batch_limit(self, destination: str) -> int:
        """How many events a batch of `destination` may take now: `batch_max_events`, or less
        while its requests time out (`_shrink`)."""
        limit = self._delivery.batch_max_events
        return min(limit, self._limits.get(destination, limit))

    def _shrink(self, destination: str, size: int) -> None:
        """A batch of `size` timed out: the destination's next batches take half as many."""
        self._limits[destination] = max(1, size // 2)

    def _grow(self, destination: str) -> None:
        """A request of `destination` was answered in time: its batches grow back a quarter
        (at least one event) towards `batch_max_events`; halving on a timeout and growing
        slowly keeps a partner slower than the timeout for full batches from timing out every
        other request."""
        limit = self._limits.get(destination)
        if limit is not None:
            grown = limit + max(1, limit // 4)
            if grown >= self._delivery.batch_max_events:
                del self._limits[destination]
            else:
                self._limits[destination] = grown

    def _free(self, destination: str, partitions: list[Partition]) -> None:
        """A batch no longer keeps `partitions` in flight: their lanes look again."""
        for partition in partitions:
            lane = self._lanes.get((destination, partition))
            if lane is not None:
                lane.wake()

    def flush(self, tps: set[Partition] | None = None) -> None:
        """Send what is queued now, without lingering (shutdown, revoked partitions)."""
        for lane in self._lanes.values():
            if tps is None or lane.partition in tps:
                lane.flush()

    def stop_by(self, at: float) -> None:
        """Stopping: send what is queued now, and give up any batch whose next attempt would
        start after `at` (on `clock`) instead of waiting for it."""
        self._stop_at = at
        self._stopping.set()
        self.flush()

    def discard(self, tps: set[Partition]) -> int:
        """Drop queued (not in-flight) items of partitions this worker no longer owns."""
        return sum(queue.discard(tps) for queue in self._queues.values())

    def drop(self, tps: set[Partition]) -> dict[Partition, int]:
        """Drop the queued items of partitions being let go; the lowest offset dropped of
        each (over every destination)."""
        lowest: dict[Partition, int] = {}
        for queue in self._queues.values():
            for tp, offset in queue.drop(tps).items():
                lowest[tp] = min(offset, lowest.get(tp, offset))
        return lowest

    def flying(self, tps: set[Partition]) -> int:
        """Items of these partitions in a batch that is out (not yet settled)."""
        return sum(queue.flying(tp) for queue in self._queues.values() for tp in tps)

    def queued(self) -> int:
        """Items queued (not in flight), over every destination and partition."""
        queues = self._queues
        return sum(queues[destination].queued(partition) for destination, partition in self._lanes)

    def is_idle(self) -> bool:
        """Nothing queued or in flight for any destination."""
        return all(queue.is_idle() for queue in self._queues.values())

    async def close(self) -> None:
        """Stop every lane (in-flight batches are abandoned, never committed) and the client."""
        for lane in self._lanes.values():
            lane.task.cancel()
        await asyncio.gather(*(lane.task for lane in self._lanes.values()), return_exceptions=True)
        await self._http.aclose()

    # --- one batch ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[float]:
        """A concurrency slot and this request's pacing slot; send at once when it is yours.
        Yields the turn's time, which the pacer is told about once the body has left."""
        async with self._semaphore:
            yield await self._pacer.acquire()  # inside the semaphore: the pacing holds at the wire

    async def deliver(self, take: Take, destination: str) -> bool:
        """Form a batch with `take` when its first request can leave, then attempt it under the
        retry policy until it is delivered, rejected or out of attempts (held meanwhile, without
        the policy, while its destination answers "setup"), and report each part (a rejected
        batch may be split) as `Settled`. False when nothing was settled: `take`
        had nothing, or, stopping, the batch's next attempt would have started after the stop
        deadline (then it is left unsettled, so its offsets stay uncommitted and it is read and
        sent again after the restart)."""
        try:
            parts = await self._send(take, destination)
        except _EmptyBatchError:
            return False
        except _AllTooOldError:
            return True  # settled as too old already
        except _PastStopDeadlineError as exc:
            log.info(
                "stopping: the next attempt (in %.1fs) would come after the stop deadline; "
                "left unsent, to be read and sent again after the restart",
                exc.wait_s,
                extra={"partner": self._name, "destination": destination},
            )
            return False
        now = self._wall_clock()
        for items, result in parts:
            self._on_settled(Settled(items, result, now))
        return True

    async def _send(
        self, take: Take, destination: str, first_at: float | None = None
    ) -> list[tuple[list[WorkItem], BatchResult]]:
        """`first_at`: when the events were first sent (a half of a split batch), if ever."""
        batch = object()  # this batch, as a hold knows it
        try:
            return await self._attempts(take, destination, batch, first_at)
        finally:
            hold = self._holds.get(destination)
            if hold is not None:
                hold.leave(batch)

    async def _attempts(
        self, take: Take, destination: str, batch: object, first_at: float | None
    ) -> list[tuple[list[WorkItem], BatchResult]]:
        items: list[WorkItem] = []
        body: bytes | None = None
        previous: AttemptResult | None = None

        tries = 0

        async def attempt() -> AttemptResult:
            nonlocal items, body, previous, tries, first_at
            # While the destination is held, a batch waits: for its turn to probe, if it was
            # answered "setup", else for the hold to end.
            answered_setup = previous is not None and previous.kind is AttemptKind.SETUP
            await self._hold_turn(destination, batch, answered_setup)
            if previous is not None:  # a retry: events past the partner's age are not sent
                kept = self._without_too_old(items, tries, previous, first_at)
                if not kept:
                    raise _AllTooOldError
                if len(kept) < len(items):
                    items = kept
                    body = self._adapter.encode_request(
                        destination, [item.payload for item in items]
                    )
                if previous.timed_out and len(items) > 1:
                    raise _TimedOutError  # sent again as halves, not whole
            tries += 1
            if previous is not None and previous.fate_unknown:
                self._metrics.resent(self._name, len(items))
            async with self.turn() as turn_at:
                if body is None:
                    items = take()
                    if not items:
                        raise _EmptyBatchError
                    self._metrics.batch_sent(self._name, len(items))
                    body = self._adapter.encode_request(
                        destination, [item.payload for item in items]
                    )
                if first_at is None:
                    first_at = self._wall_clock()
                previous = await self._post(body, turn_at)
            return previous

        def before_sleep(state: RetryCallState) -> None:
            self._retrying(len(items), state)

        try:
            result, _ = await self._policy.run(attempt, self._wait_to_retry, before_sleep)
            # A setup answer is no failed attempt of the events: no retry policy while held
            # (each run below starts its attempts and give_up_after_s afresh).
            while result.kind is AttemptKind.SETUP:
                if self._held(destination, result, batch).expired:
                    return [(items, BatchResult(Outcome.PARTNER_SETUP, tries, result, first_at))]
                try:
                    result, _ = await self._policy.run(attempt, self._wait_to_retry, before_sleep)
                except _HoldExpiredError:
                    return [(items, BatchResult(Outcome.PARTNER_SETUP, tries, result, first_at))]
        except _TimedOutError:
            return await self._halves(items, destination, first_at)
        if result.kind is AttemptKind.OK:
            self._grow(destination)
        if ends_hold(result):
            self._release(destination)
        return await self._outcome(items, tries, result, destination, first_at)

    # --- holds ---------------------------------------------------------------------------------

    def _held(self, destination: str, result: AttemptResult, batch: object) -> Hold:
        """The hold of `destination`, begun now (`batch`, which the answer held, its probe) if
        it was not held."""
        hold = self._holds.get(destination)
        if hold is None:
            now = self._clock()
            hold = self._holds[destination] = Hold(
                now, result.code, result.status, result.message,
                now + self._delivery.setup_retry_s, prober=batch,
            )  # fmt: skip
            log.warning(
                "partner app held: %s; its postbacks wait (nothing is dead-lettered), probed "
                "every %.0fs, resumed on SIGHUP or a new token, dead-lettered partner_setup after "
                "%.0fs",
                result.message or "setup answer",
                self._delivery.setup_retry_s,
                self._delivery.hold_max_s,
                extra={"partner": self._name, "destination": destination,
                       "code": result.code, "status": result.status},
            )  # fmt: skip
            self._metrics.held(self._name, destination, True)
        return hold

    def _release(self, destination: str) -> None:
        """An answer showed the partner reads this destination's requests: the hold ends."""
        hold = self._holds.pop(destination, None)
        if hold is None:
            return
        log.info(
            "partner app no longer held after %.0fs; its postbacks go out again",
            self._clock() - hold.since,
            extra={"partner": self._name, "destination": destination},
        )
        self._metrics.held(self._name, destination, False)
        hold.notify()

    def _expire(self, destination: str, hold: Hold) -> None:
        hold.expired = True
        log.error(
            'partner app held for more than hold_max_s (%.0fs): its postbacks answered "setup" '
            "are dead-lettered partner_setup until an answer shows the setup is fixed",
            self._delivery.hold_max_s,
            extra={"partner": self._name, "destination": destination, "code": hold.code},
        )
        hold.notify()

    async def _hold_turn(self, destination: str, batch: object, answered_setup: bool) -> None:
        """Return when `batch` may be sent: its destination is not held, or the hold expired
        (then a batch already answered "setup" raises `_HoldExpiredError`), or it is this
        batch's turn to probe. Stopping, a held batch is given up (left unsettled)."""
        while True:
            hold = self._holds.get(destination)
            if hold is None:
                return
            now = self._clock()
            if not hold.expired and now >= hold.since + self._delivery.hold_max_s:
                self._expire(destination, hold)
            if hold.expired:
                if answered_setup:
                    raise _HoldExpiredError
                return
            if self._stop_at is not None:
                raise _PastStopDeadlineError(max(0.0, hold.next_probe_at - now))
            if hold.claim_probe(batch, now, self._delivery.setup_retry_s):
                return  # its probe is due (a batch not yet sent probes when none else does)
            wake_at = hold.since + self._delivery.hold_max_s
            if hold.prober is batch:
                wake_at = min(wake_at, hold.next_probe_at)
            await self._wait_for(hold.changed, wake_at - now)

    async def _wait_for(self, event: asyncio.Event, timeout_s: float) -> None:
        """Until `event` is set, `timeout_s` passed (on the channel's sleep), or stopping."""
        waits = [
            asyncio.ensure_future(event.wait()),
            asyncio.ensure_future(self._stopping.wait()),
            asyncio.ensure_future(self._sleep(max(0.0, timeout_s))),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    def _without_too_old(
        self, items: list[WorkItem], attempts: int, last: AttemptResult, first_at: float | None
    ) -> list[WorkItem]:
        """`items` less those now older than the partner's `max_event_age`, which are settled
        as too old (their dead letters say so) instead of being retried."""
        max_age_s = self._delivery.max_event_age_s
        if max_age_s is None:
            return items
        now = self._wall_clock()
        oldest = now - max_age_s
        if all(item.event_time_s >= oldest for item in items):
            return items
        expired = [item for item in items if item.event_time_s < oldest]
        log.warning(
            "%d events passed max_event_age while retrying; not sent, dead-lettered too_old",
            len(expired),
            extra={"partner": self._name, "code": last.code, "status": last.status},
        )
        result = BatchResult(Outcome.TOO_OLD, attempts, last, first_at)
        self._on_settled(Settled(expired, result, now))
        return [item for item in items if item.event_time_s >= oldest]

    async def _wait_to_retry(self, wait_s: float) -> None:
        """The wait before a retry. Stopping (now or while it waits), a retry that would start
        after the stop deadline is not waited for: the batch is given up at once."""
        wake_at = self._clock() + wait_s
        if self._stop_at is None:
            sleeping = asyncio.ensure_future(self._sleep(wait_s))
            stopping = asyncio.ensure_future(self._stopping.wait())
            try:
                await asyncio.wait((sleeping, stopping), return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeping.cancel()
                stopping.cancel()
            if self._stop_at is None:
                return
        if wake_at > self._stop_at:
            raise _PastStopDeadlineError(wait_s)
        await self._sleep(max(0.0, wake_at - self._clock()))

    async def _halves(
        self, items: list[WorkItem], destination: str, first_at: float | None
    ) -> list[tuple[list[WorkItem], BatchResult]]:
        """A batch that timed out, sent again as two halves, one after the other (offset order
        kept), each under the retry policy afresh; the destination's next batches are as small
        until its requests are answered again. The partner may have processed the request it
        did not answer in time: its events are counted as possibly re-sent."""
        self._shrink(destination, len(items))
        self._metrics.shrunk(self._name)
        self._metrics.resent(self._name, len(items))
        middle = len(items) // 2
        head, tail = items[:middle], items[middle:]
        log.warning(
            "batch of %d timed out; sending it again as halves, and batches of %d until "
            "answered", len(items), self.batch_limit(destination),
            extra={"partner": self._name, "destination": destination},
        )  # fmt: skip
        return await self._send(lambda: head, destination, first_at) + await self._send(
            lambda: tail, destination, first_at
        )

    async def _outcome(
        self, items: list[WorkItem], attempts: int, result: AttemptResult, destination: str,
        first_at: float | None,
    ) -> list[tuple[list[WorkItem], BatchResult]]:  # fmt: skip
        """The batch's final word, or its halves' when one bad event rejected it whole."""
        if result.kind is AttemptKind.OK:
            return [(items, BatchResult(Outcome.DELIVERED, attempts, result, first_at))]
        if result.kind is AttemptKind.FATAL:
            if self._adapter.should_split(result, len(items)):
                # One bad event rejects the whole request: halve until it stands alone.
                middle = len(items) // 2
                head, tail = items[:middle], items[middle:]
                log.info(
                    "batch rejected, splitting to isolate the bad events",
                    extra={"partner": self._name, "size": len(items), "code": result.code},
                )
                return await self._send(lambda: head, destination, first_at) + await self._send(
                    lambda: tail, destination, first_at
                )
            return [(items, BatchResult(Outcome.REJECTED, attempts, result, first_at))]
        return [(items, BatchResult(Outcome.GAVE_UP, attempts, result, first_at))]

    async def _post(self, body: bytes, turn_at: float) -> AttemptResult:
        """One attempt (inside `turn()`); counted, and fed back to the pacer."""
        started = self._clock()
        pacer = self._pacer
        result = await self._http.post(body, lambda: pacer.written(turn_at))
        self._metrics.attempted(self._name, result.kind, self._clock() - started, result.throttled)
        if result.throttled:
            pacer.throttled(result.retry_after_s)
            self._metrics.rate_limit(self._name, pacer.rate)
        elif result.retry_after_s:
            pacer.pause(result.retry_after_s)
        elif result.kind is AttemptKind.OK and pacer.succeeded():
            self._metrics.rate_limit(self._name, pacer.rate)
        return result

    def _retrying(self, events: int, state: RetryCallState) -> None:
        assert state.outcome is not None
        result: AttemptResult = state.outcome.result()
        log.warning(
            "delivery failed, retrying in %.2fs: %s",
            state.upcoming_sleep,
            result.message,
            extra={
                "partner": self._name,
                "attempt": state.attempt_number,
                "status": result.status,
                "code": result.code,
                "events": events,
            },
        )
