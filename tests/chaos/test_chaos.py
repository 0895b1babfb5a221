"""The chaos suite under pytest (marker `chaos`): the `short` profile by default,
`CHAOS_PROFILE=full` for the long one. `python -m tests.chaos` runs the same scenarios and prints
the table that docs/reliability.md keeps."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dispatcher.devtools.broker import LocalBroker
from tests.chaos.scenarios import PROFILES, SCENARIOS, ChaosEnv

pytestmark = [pytest.mark.chaos, pytest.mark.broker, pytest.mark.timeout(900)]

PROFILE = PROFILES[os.environ.get("CHAOS_PROFILE", "short")]


@pytest.fixture(scope="module")
def chaos_env(broker: LocalBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosEnv]:
    env = ChaosEnv(broker, Path(tmp_path_factory.mktemp("chaos")))
    yield env
    env.close()


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(chaos_env: ChaosEnv, name: str) -> None:
    result = SCENARIOS[name](chaos_env, PROFILE)
    figures = ", ".join(f"{key}={value}" for key, value in result.figures.items())
    assert result.ok, f"{result.name}: {'; '.join(result.failures)} ({figures})"
    assert result.figures["lost"] == 0
    assert result.figures["token_leaks"] == 0
