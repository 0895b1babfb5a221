"""What the worker hands to delivery, and what delivery reports back."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from dispatcher.outcomes import BatchResult


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
    # For the postback log: the event's id, app, install id and SDK event name, and whether it
    # was replayed from a dead letter.
    event_id: str = ""
    app_id: str = ""
    install_id: str = ""
    sdk_event: str = ""
    replay: bool = False


class Settled(NamedTuple):
    """A batch's final word: its items, how it ended, and when (Unix seconds)."""

    items: list[WorkItem]
    result: BatchResult
    at: float


SettledCallback = Callable[[Settled], None]
