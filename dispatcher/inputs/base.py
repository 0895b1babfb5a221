"""What every input decoder provides: a Kafka message in, the canonical event or bad input out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from schemas.events import Event, EventType


@dataclass(frozen=True, slots=True)
class BadInput:
    """A message that is not a valid event; it goes to the dead-letter topic with its bytes."""

    detail: str
    raw: bytes | None
    parsed: dict[str, Any] | None  # the JSON object, when the message was one


class Decoder(Protocol):
    """One input format: its records in, canonical events out; no I/O of its own."""

    name: str  # the format's name in `dispatcher.yaml` (`kafka.formats`)

    def decode(self, raw: bytes | None, topic_type: EventType) -> Event | BadInput:
        """Decode one message read from the topic that carries `topic_type` events."""
        ...

    def topic_type_of(self, raw: bytes) -> EventType:
        """Which topic a message belongs on, read from the message alone (for `explain`)."""
        ...
