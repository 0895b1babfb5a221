"""The one place where finished work is settled (dramatiq's `post_process_message`): outcome
metrics, dead letters, and the events that become final.

Everything arrives as a value: a delivered, rejected or exhausted batch (`Settled`, from
delivery), a message that is not an event (`BadInputRead`, from the worker), and the broker's
acknowledgement of dead letters and postback log records (`Acknowledged`). A dead-lettered event
becomes final only once its dead letter is acknowledged, so a crash before that re-reads it.
With the postback log on, an owed postback becomes final only once its log record is
acknowledged too; a failed one's record is written after its dead letter is acknowledged, so
the log never shows final what has no dead letter yet.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, NamedTuple, Protocol

from dispatcher.dead_letters import bad_input_letter, delivery_letter
from dispatcher.delivery import Settled
from dispatcher.inputs import BadInput
from dispatcher.metrics import Metrics
from dispatcher.outcomes import Outcome
from dispatcher.postback_log import PostbackLog
from schemas.dead_letter import DeadLetter

log = logging.getLogger(__name__)

Coordinates = tuple[str, int, int]  # (topic, partition, offset) of one unit of work


class BadInputRead(NamedTuple):
    """A message read that is not an event: its coordinates, key and what is wrong."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    bad: BadInput


class Acknowledged(NamedTuple):
    """The dead-letter topic acknowledged the dead letters of these units of work."""

    units: list[Coordinates]


Completion = Settled | BadInputRead | Acknowledged


class DeadLetterSink(Protocol):
    """Where dead letters go (the dead-letter publisher)."""

    def submit(self, letter: DeadLetter, key: bytes | None, on_ack: Callable[[], None]) -> None:
        """Write `letter`; call `on_ack` once the broker acknowledged it."""
        ...


class LogSink(Protocol):
    """Where postback log records go (an acknowledged publisher)."""

    def submit_value(
        self, value: bytes, key: bytes | None, on_ack: Callable[[], None], label: str,
        where: Mapping[str, Any], count: int = 1,
    ) -> None:  # fmt: skip
        """Write a record (of `count` postbacks); call `on_ack` once the broker has it."""
        ...


class _Countdown:
    """Calls `done` once `one` was called `left` times (every record of a batch acknowledged;
    acknowledgements arrive on the producer's one thread)."""

    __slots__ = ("done", "left")

    def __init__(self, left: int, done: Callable[[], None]) -> None:
        self.left = left
        self.done = done

    def one(self) -> None:
        self.left -= 1
        if not self.left:
            self.done()


class Settlement:
    """Settles completions: counts them, dead-letters what failed, logs each postback's final
    outcome (with a postback log), reports what is final."""

    def __init__(
        self,
        metrics: Metrics,
        dead_letters: DeadLetterSink,
        final: Callable[[list[Coordinates]], None],
        acknowledged: Callable[[Acknowledged], None],
        postback_log: tuple[PostbackLog, LogSink] | None = None,
    ) -> None:
        self._metrics = metrics
        self._dead_letters = dead_letters
        self._final = final  # units of work that are done (the offsets tracker)
        self._acknowledged = acknowledged  # how an acknowledgement comes back to `settle`
        self._log: PostbackLog | None = postback_log[0] if postback_log else None
        self._log_sink: LogSink | None = postback_log[1] if postback_log else None

    def settle(self, completion: Completion) -> None:
        """Settle one completion."""
        if isinstance(completion, Settled):
            self._batch(completion)
        elif isinstance(completion, BadInputRead):
            self._bad_input(completion)
        else:
            self._final(completion.units)

    def _batch(self, settled: Settled) -> None:
        items, result = settled.items, settled.result
        partner = items[0].partner
        labels = Counter(item.event_label for item in items)
        if result.outcome is Outcome.DELIVERED:
            self._metrics.finished(
                partner, result.outcome, labels, [item.event_time_s for item in items], settled.at
            )
            if result.last.partial:
                log.info(
                    "partial success reported; counted as delivered: %s",
                    result.last.message,
                    extra={"partner": partner, "events": len(items)},
                )
            units = [(item.topic, item.partition, item.offset) for item in items]
            if self._log is None:
                self._final(units)
            else:
                self._write_log(settled, partial(self._acknowledged, Acknowledged(units)))
            return
        self._metrics.finished(partner, result.outcome, labels, (), 0.0)
        log.warning(
            "postbacks %s after %d attempts, dead-lettering: %s",
            result.outcome.value,
            result.attempts,
            result.last.message,
            extra={
                "partner": partner,
                "events": len(items),
                "status": result.last.status,
                "code": result.last.code,
            },
        )
        units = [(item.topic, item.partition, item.offset) for item in items]
        if self._log is None:
            for item, unit in zip(items, units, strict=True):
                letter = delivery_letter(
                    partner, item.topic, item.partition, item.offset, item.raw, result
                )
                self._dead_letter(letter, item.key, unit)
            return
        # The log's records once every dead letter is acknowledged; final once they are.
        final = partial(self._acknowledged, Acknowledged(units))
        lettered = _Countdown(len(items), partial(self._write_log, settled, final))
        for item in items:
            letter = delivery_letter(
                partner, item.topic, item.partition, item.offset, item.raw, result
            )
            self._dead_letters.submit(letter, item.key, lettered.one)

    def _write_log(self, settled: Settled, on_ack: Callable[[], None]) -> None:
        """Write a settled batch's log records (any thread); `on_ack` once all are acknowledged."""
        log_, sink = self._log, self._log_sink
        assert log_ is not None and sink is not None  # noqa: PT018 - one precondition
        items = settled.items
        records = log_.records(items, settled.result, settled.at)
        label = settled.result.outcome.value
        where = {"partner": items[0].partner, "outcome": label}
        done = on_ack if len(records) == 1 else _Countdown(len(records), on_ack).one
        for key, value in records:
            sink.submit_value(value, key, done, label, where, value.count(b"\n") + 1)

    def log_skip(self, key: bytes, value: bytes, unit: Coordinates) -> None:
        """Write the log record of a decision not to send; the unit is final once it is
        acknowledged (`postback_log.skips`)."""
        sink = self._log_sink
        assert sink is not None
        acknowledged = partial(self._acknowledged, Acknowledged([unit]))
        sink.submit_value(value, key, acknowledged, "skipped", {"outcome": "skipped"})

    def _bad_input(self, read: BadInputRead) -> None:
        letter = bad_input_letter(read.topic, read.partition, read.offset, read.bad)
        self._dead_letter(letter, read.key, (read.topic, read.partition, read.offset))
        log.info(
            "bad input dead-lettered: %s",
            read.bad.detail,
            extra={"topic": read.topic, "partition": read.partition, "offset": read.offset},
        )

    def _dead_letter(self, letter: DeadLetter, key: bytes | None, unit: Coordinates) -> None:
        on_ack = partial(self._acknowledged, Acknowledged([unit]))
        self._dead_letters.submit(letter, key, on_ack)
