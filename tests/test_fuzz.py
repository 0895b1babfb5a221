"""The chaos suite's fuzzer: every message it makes is bad input; a seed reproduces a run."""

from __future__ import annotations

from collections import Counter

from dispatcher.inputs import BadInput
from schemas.events import IN_APP_EVENT, INSTALL
from tests.chaos.fuzz import Fuzzer
from tests.factories import decode


def test_every_fuzzed_message_is_bad_input_with_a_reason() -> None:
    messages = list(Fuzzer(seed=7).generate(1_200))
    for message in messages:
        expected = INSTALL if message.topic_kind == "install" else IN_APP_EVENT
        decoded = decode(message.value, expected)
        assert isinstance(decoded, BadInput), (message.kind, message.value[:200])
        assert decoded.detail, message.kind
    assert set(Counter(m.kind for m in messages)) == set(Fuzzer.KINDS)


def test_the_same_seed_gives_the_same_messages() -> None:
    """Same seed, same kinds, topics and random parts (event ids come from the factories'
    counter, which only a fresh process resets)."""

    def shape(seed: int) -> list[tuple[str, str, bytes]]:
        own = {"random_bytes", "deep_nesting", "not_an_object"}  # no factory event inside
        messages = Fuzzer(seed=seed).generate(120)
        return [(m.kind, m.topic_kind, m.value if m.kind in own else b"") for m in messages]

    assert shape(3) == shape(3)
    assert shape(3) != shape(4)
