"""Source topics deleted while the worker runs: gone from the cluster's metadata, or back under a
new topic id (deleted, then created again — by an operator, or by a broker that auto-creates).

The worker never creates a topic, so a deletion is the operator's to repair; this watch only
notices it, from what the consumer's metadata says, so that the worker can report it. Pure: the
Kafka edge (`kafka_clients.topic_identities`) reads the metadata.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# A topic's identity in one metadata snapshot: None when the topic is not in it; otherwise its
# topic id as text, "" when the broker reports none (Kafka before 2.8).
Identity = str | None


@dataclass(frozen=True)
class TopicDeleted:
    """A source topic deleted since it was first seen: `new_id` is the id it came back under, or
    None while it is gone."""

    topic: str
    old_id: str
    new_id: str | None

    def describe(self) -> str:
        """One sentence for the log and `/readyz`."""
        if self.new_id is None:
            return f"source topic {self.topic!r} was deleted while the worker runs"
        return (
            f"source topic {self.topic!r} was deleted and created again while the worker runs "
            f"(topic id {self.old_id or '?'} is now {self.new_id})"
        )


class SourceTopicWatch:
    """Remembers each source topic's id from the first snapshot that has it, and reports a topic
    once when a later snapshot no longer has it, or has it under another id. A reported topic
    stays reported until the worker restarts: the events it held are gone for good, and the
    group's offsets for it no longer mean anything."""

    def __init__(self, topics: Iterable[str]) -> None:
        self._topics = tuple(topics)
        self._first_seen: dict[str, str] = {}
        self._deleted: dict[str, TopicDeleted] = {}

    @property
    def deleted(self) -> tuple[TopicDeleted, ...]:
        """Every deletion reported so far, in the order they were noticed."""
        return tuple(self._deleted.values())

    def suspects(self, snapshot: Mapping[str, Identity]) -> list[str]:
        """Topics seen before and missing from `snapshot`: deleted, or a metadata answer that
        left them out; the caller confirms with a full topic list before `observe`."""
        return [
            topic
            for topic in self._topics
            if topic in self._first_seen
            and topic not in self._deleted
            and snapshot.get(topic) is None
        ]

    def observe(
        self, snapshot: Mapping[str, Identity], listed: Iterable[str] | None = None
    ) -> list[TopicDeleted]:
        """The deletions `snapshot` shows that were not reported yet. A topic missing from the
        snapshot counts as deleted only when it is missing from `listed` too (the cluster's full
        topic list; None: not asked, so a missing topic is not judged this time)."""
        confirmed_missing = None if listed is None else set(self._topics) - set(listed)
        found: list[TopicDeleted] = []
        for topic in self._topics:
            if topic in self._deleted:
                continue
            identity = snapshot.get(topic)
            first = self._first_seen.get(topic)
            if identity is None:
                if first is not None and confirmed_missing and topic in confirmed_missing:
                    found.append(TopicDeleted(topic, first, None))
                continue
            if first is None:
                self._first_seen[topic] = identity
            elif identity and first and identity != first:
                found.append(TopicDeleted(topic, first, identity))
        for deletion in found:
            self._deleted[deletion.topic] = deletion
        return found
