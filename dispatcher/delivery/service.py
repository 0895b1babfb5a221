"""The delivery service: the partner channels on an asyncio loop in a thread of its own. The
worker hands it work items and gets back, through `on_settled`, each batch's final word."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from dispatcher.config_loader import PartnerSet
from dispatcher.deadline import Deadline
from dispatcher.delivery.channel import PartnerChannel
from dispatcher.delivery.http import PartnerHttp
from dispatcher.delivery.items import SettledCallback, WorkItem
from dispatcher.metrics import Metrics
from dispatcher.offsets import Partition
from dispatcher.partners import adapter_for
from dispatcher.ratelimit import Clock
from schemas.config import PartnerConfig

log = logging.getLogger(__name__)
T = TypeVar("T")


class DeliveryService:
    """Hosts the partner channels on an asyncio loop in a thread of its own."""

    def __init__(
        self,
        partners: PartnerSet,
        metrics: Metrics,
        on_settled: SettledCallback,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
    ) -> None:
        self._partners = partners
        self._metrics = metrics
        self._on_settled = on_settled
        self._transport = transport
        self._clock = clock
        self._wall_clock = wall_clock
        self._channels: dict[str, PartnerChannel] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._done: asyncio.Event | None = None  # created on the loop
        self._thread = threading.Thread(target=self._run, name="delivery", daemon=True)
        self._error: BaseException | None = None
        self._finished = threading.Event()  # after wind_down: nothing queued or in flight
        self._watcher: asyncio.Task[None] | None = None

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
        """Use reloaded partner settings (or a new token) for the next batches, and probe held
        partner apps at once: an operator acted (thread-safe)."""
        self._call(self._update, partners)

    def resume_held(self) -> None:
        """Probe held partner apps now (SIGHUP with a reload that failed; thread-safe)."""
        self._call(self._resume_held)

    def flush(self, tps: set[Partition] | None = None) -> None:
        """Send queued items now, without lingering (thread-safe)."""
        self._call(self._flush, tps)

    def discard(self, tps: set[Partition]) -> None:
        """Drop queued items of partitions no longer ours (thread-safe)."""
        self._call(self._discard, tps)

    def drop(self, tps: set[Partition]) -> dict[Partition, int]:
        """Partitions being let go: nothing more is sent for them; their queued items are
        dropped. The lowest offset dropped of each partition (thread-safe: waits for the
        loop's answer)."""

        def drop() -> dict[Partition, int]:
            lowest: dict[Partition, int] = {}
            for channel in self._channels.values():
                for tp, offset in channel.drop(tps).items():
                    lowest[tp] = min(offset, lowest.get(tp, offset))
            if lowest:
                log.info("partitions let go: their queued postbacks are not sent here",
                         extra={"partitions": len(lowest)})  # fmt: skip
            return lowest

        return self._ask(drop, {})

    def flying(self, tps: set[Partition]) -> int:
        """How many items of these partitions are in a request that is out (thread-safe: waits
        for the loop's answer). After `drop`, it falls to zero once what was sent is settled."""
        return self._ask(lambda: sum(c.flying(tps) for c in self._channels.values()), 0)

    def _ask(self, question: Callable[[], T], unanswered: T, timeout_s: float = 5.0) -> T:
        """`question()` run on the loop, its answer waited for; `unanswered` when no loop runs."""
        loop = self._loop
        if loop is None or loop.is_closed() or not self._thread.is_alive():
            return unanswered
        answer: concurrent.futures.Future[T] = concurrent.futures.Future()

        def ask() -> None:
            try:
                answer.set_result(question())
            except BaseException as exc:  # surfaced to the caller
                answer.set_exception(exc)

        loop.call_soon_threadsafe(ask)
        return answer.result(timeout=timeout_s)

    def wind_down(self, timeout_s: float) -> None:
        """Stopping: send what is queued now, and give up (unsettled) every batch whose next
        attempt would start more than `timeout_s` from now instead of waiting for it
        (thread-safe). `finished()` tells when nothing is queued or in flight any more."""
        self._call(self._wind_down, self._clock() + timeout_s)

    def finished(self) -> bool:
        """After `wind_down`: every batch is settled or given up (thread-safe)."""
        return self._finished.is_set()

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

    def _channel_for(
        self, partner: PartnerConfig, token: str, signing_secret: str
    ) -> PartnerChannel:
        limits = httpx.Limits(
            max_connections=partner.delivery.max_concurrent_requests,
            max_keepalive_connections=partner.delivery.max_concurrent_requests,
        )
        client = httpx.AsyncClient(transport=self._transport, limits=limits, http2=False)
        adapter = adapter_for(partner.name)
        return PartnerChannel(
            partner,
            adapter,
            token,
            PartnerHttp(client, adapter, self._wall_clock),
            self._metrics,
            self._on_settled,
            self._clock,
            self._wall_clock,
            signing_secret=signing_secret,
        )

    def _update(self, partners: PartnerSet) -> None:
        self._partners = partners
        for partner in partners.partners:
            secret = partners.tokens.get(partner.name)  # none for a partner without a token
            token = secret.get_secret_value() if secret is not None else ""
            signing = partners.signing_secrets.get(partner.name)
            signing_secret = signing.get_secret_value() if signing is not None else ""
            channel = self._channels.get(partner.name)
            if channel is None:
                self._channels[partner.name] = self._channel_for(partner, token, signing_secret)
            else:
                channel.configure(partner, token, signing_secret)
                channel.resume_held()

    def _resume_held(self) -> None:
        for channel in self._channels.values():
            channel.resume_held()

    def _submit(self, items: list[WorkItem]) -> None:
        by_partner: dict[str, list[WorkItem]] = {}
        for item in items:
            by_partner.setdefault(item.partner, []).append(item)
        for name, partner_items in by_partner.items():
            self._channels[name].submit(partner_items)

    def _flush(self, tps: set[Partition] | None) -> None:
        for channel in self._channels.values():
            channel.flush(tps)

    def _wind_down(self, stop_at: float) -> None:
        for channel in self._channels.values():
            channel.stop_by(stop_at)
        self._watcher = asyncio.get_running_loop().create_task(self._watch_until_finished())

    async def _watch_until_finished(self) -> None:
        while not all(channel.is_idle() for channel in self._channels.values()):
            await asyncio.sleep(0.02)
        self._finished.set()

    def _discard(self, tps: set[Partition]) -> None:
        dropped = sum(channel.discard(tps) for channel in self._channels.values())
        if dropped:
            log.info("dropped %d queued postbacks of partitions no longer assigned", dropped)

    async def _stop(self, timeout_s: float) -> None:
        self._flush(None)
        deadline = Deadline(timeout_s, self._clock)
        while not all(c.is_idle() for c in self._channels.values()) and not deadline.expired():
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
