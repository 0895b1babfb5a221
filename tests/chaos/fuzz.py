"""A seeded fuzzer of malformed messages: each one is bad input by construction.

Kinds: random bytes, truncated JSON, wrong types, missing required fields, huge values, nonsense
times, a wrong event_type for the topic, invalid UTF-8, deep nesting, JSON that is not an object.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tests.factories import event_dict

REQUIRED = ["event_time", "install_time", "app_id", "appsflyer_id"]  # AppsFlyer sends no event id
NONSENSE_TIMES: list[Any] = [
    "2025-02-30 10:00:00", "2025-13-01 00:00:00", "yesterday", "1763632800", 1763632800,
    1763632800.5, "2025-11-20", "2025-11-20T10:00:00", "20/11/2025 10:00", "", None, [],
    {"t": 1}, "2025-11-20 24:61:61", "0000-00-00 00:00:00", "9999999999999999999",
]  # fmt: skip
WRONG_TYPES: list[Any] = [[], {}, ["id1"], {"a": 1}, True]


@dataclass(frozen=True)
class Malformed:
    """A message that must be dead-lettered, with why it is bad."""

    kind: str
    topic_kind: str  # "install" or "in-app-event": the topic it is written to
    value: bytes


class Fuzzer:
    """Seeded: the same seed gives the same messages."""

    KINDS = (
        "random_bytes", "truncated_json", "wrong_type", "missing_field", "huge_value",
        "nonsense_time", "wrong_topic", "invalid_utf8", "deep_nesting", "not_an_object",
        "bad_event_value", "bad_revenue",
    )  # fmt: skip

    def __init__(self, seed: int = 1) -> None:
        self.random = random.Random(seed)

    def generate(self, count: int) -> Iterator[Malformed]:
        """`count` malformed messages, the kinds in turn."""
        for n in range(count):
            kind = self.KINDS[n % len(self.KINDS)]
            yield getattr(self, f"_{kind}")()

    def _valid(self) -> tuple[str, dict[str, Any]]:
        topic_kind = self.random.choice(["install", "in-app-event"])
        return topic_kind, event_dict(topic_kind)

    def _random_bytes(self) -> Malformed:
        size = self.random.randint(0, 300)
        value = bytes(self.random.getrandbits(8) for _ in range(size))
        return Malformed("random_bytes", self.random.choice(["install", "in-app-event"]), value)

    def _truncated_json(self) -> Malformed:
        topic_kind, event = self._valid()
        text = json.dumps(event).encode()
        cut = self.random.randint(1, len(text) - 1)  # never the closing brace: always invalid
        return Malformed("truncated_json", topic_kind, text[:cut])

    def _wrong_type(self) -> Malformed:
        topic_kind, event = self._valid()
        field = self.random.choice(["app_id", "event_id", "appsflyer_id", "media_source", "idfa"])
        event[field] = self.random.choice(WRONG_TYPES)
        return Malformed("wrong_type", topic_kind, json.dumps(event).encode())

    def _missing_field(self) -> Malformed:
        topic_kind, event = self._valid()
        for field in self.random.sample(REQUIRED, self.random.randint(1, len(REQUIRED))):
            del event[field]
        return Malformed("missing_field", topic_kind, json.dumps(event).encode())

    def _huge_value(self) -> Malformed:
        topic_kind, event = self._valid()
        size = self.random.choice([10_000, 100_000, 500_000])
        # huge, and wrong: an event_time or app_id nobody can read
        field = self.random.choice(["event_time", "install_time", "app_id"])
        event[field] = "9" * size if field != "app_id" else [0] * (size // 2)
        return Malformed("huge_value", topic_kind, json.dumps(event).encode())

    def _nonsense_time(self) -> Malformed:
        topic_kind, event = self._valid()
        event[self.random.choice(["event_time", "install_time"])] = self.random.choice(
            NONSENSE_TIMES
        )
        return Malformed("nonsense_time", topic_kind, json.dumps(event).encode())

    def _wrong_topic(self) -> Malformed:
        topic_kind, event = self._valid()
        other = "in-app-event" if topic_kind == "install" else "install"
        return Malformed("wrong_topic", other, json.dumps(event).encode())

    def _invalid_utf8(self) -> Malformed:
        topic_kind, event = self._valid()
        text = json.dumps(event).encode()
        at = self.random.randint(1, len(text) - 2)
        return Malformed("invalid_utf8", topic_kind, text[:at] + b"\xff\xfe" + text[at:])

    def _deep_nesting(self) -> Malformed:
        topic_kind = self.random.choice(["install", "in-app-event"])
        depth = self.random.randint(300, 3000)
        return Malformed("deep_nesting", topic_kind, b'{"a":' * depth + b"1" + b"}" * depth)

    def _not_an_object(self) -> Malformed:
        value = self.random.choice([b"[]", b"42", b'"text"', b"null", b"true", b"[{}]", b"1e999"])
        return Malformed("not_an_object", self.random.choice(["install", "in-app-event"]), value)

    def _bad_event_value(self) -> Malformed:
        event = event_dict("in-app-event")
        event["event_value"] = self.random.choice(["not json", "[1, 2]", 42, ["a"], '"text"', True])
        return Malformed("bad_event_value", "in-app-event", json.dumps(event).encode())

    def _bad_revenue(self) -> Malformed:
        event = event_dict("in-app-event")
        event["event_revenue"] = self.random.choice(["abc", "NaN", "Infinity", [], {"v": 1}, True])
        return Malformed("bad_revenue", "in-app-event", json.dumps(event).encode())
