"""The one place where finished work is settled (dramatiq's `post_process_message`): outcome
metrics, dead letters, and the events that become final.

Everything arrives as a value: a delivered, rejected or exhausted batch (`Settled`, from
delivery), a message that is not an event (`BadInputRead`, from the worker), and the broker's
acknowledgement of dead letters (`Acknowledged`). A dead-lettered event becomes final only once
its dead letter is acknowledged, so a crash before that re-reads it.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Callable
from typing import NamedTuple, Protocol

from dispatcher.dead_letters import bad_input_letter, delivery_letter
from dispatcher.delivery import Settled
from dispatcher.inputs import BadInput
from dispatcher.metrics import Metrics
from dispatcher.outcomes import Outcome
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


class Settlement:
    """Settles completions: counts them, dead-letters what failed, reports what is final."""

    def __init__(
        self,
        metrics: Metrics,
        dead_letters: DeadLetterSink,
        final: Callable[[list[Coordinates]], None],
        acknowledged: Callable[[Acknowledged], None],
    ) -> None:
        self._metrics = metrics
        self._dead_letters = dead_letters
        self._final = final  # units of work that are done (the offsets tracker)
        self._acknowledged = acknowledged  # how an acknowledgement comes back to `settle`

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
            self._final([(item.topic, item.partition, item.offset) for item in items])
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
        for item in items:
            letter = delivery_letter(
                partner, item.topic, item.partition, item.offset, item.raw, result
            )
            unit = (item.topic, item.partition, item.offset)
            self._dead_letter(letter, item.key, unit)

    def _bad_input(self, read: BadInputRead) -> None:
        letter = bad_input_letter(read.topic, read.partition, read.offset, read.bad)
        self._dead_letter(letter, read.key, (read.topic, read.partition, read.offset))
        log.info(
            "bad input dead-lettered: %s",
            read.bad.detail,
            extra={"topic": read.topic, "partition": read.partition, "offset": read.offset},
        )

    def _dead_letter(self, letter: DeadLetter, key: bytes | None, unit: Coordinates) -> None:
        on_ack = functools.partial(self._acknowledged, Acknowledged([unit]))
        self._dead_letters.submit(letter, key, on_ack)
