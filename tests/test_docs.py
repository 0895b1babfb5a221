"""The configuration reference (docs/configuration.md) against the config models: a key without
documentation, or a documented key that no longer exists, fails."""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from dispatcher.partners.oceanengine import OceanEngineConfig
from dispatcher.partners.tiktok import TikTokPartnerConfig
from schemas.config import RuntimeConfig

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
MODELS: tuple[type[BaseModel], ...] = (RuntimeConfig, TikTokPartnerConfig, OceanEngineConfig)


def _submodel(annotation: object) -> tuple[type[BaseModel] | None, bool]:
    """The model a field holds, and whether it holds a list of them."""
    if typing.get_origin(annotation) in (tuple, list):
        [item, *_] = typing.get_args(annotation)
        return (
            (item, True)
            if isinstance(item, type) and issubclass(item, BaseModel)
            else (None, False)
        )
    for arg in typing.get_args(annotation) or (annotation,):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg, False
    return None, False


def config_keys(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    """Every leaf key of a config model, as the reference writes it (`apps[].consent.x`)."""
    for name, field in model.model_fields.items():
        sub, many = _submodel(field.annotation)
        if sub is None:
            yield prefix + name
        else:
            yield from config_keys(sub, f"{prefix}{name}{'[].' if many else '.'}")


def documented_keys() -> set[str]:
    """The keys the reference's tables name in their first column."""
    keys: set[str] = set()
    for line in REFERENCE.read_text().splitlines():
        if not line.startswith("| `"):
            continue
        first = line.split("|")[1]
        names = re.findall(r"`([a-z_][a-z0-9_\[\]\.]*)`", first)
        for name in names:
            if "." not in name and names[0] != name and "." in names[0]:
                # `a.b.c` / `d`: a sibling written without the common prefix
                keys.add(names[0].rsplit(".", 1)[0] + "." + name)
            else:
                keys.add(name)
    return keys


def test_every_config_key_is_documented() -> None:
    documented = documented_keys()
    missing = []
    for model in MODELS:
        for key in config_keys(model):
            parent = key.rpartition(".")[0]
            # a list of small objects may be documented whole: `events[]` with `{sdk_event, ...}`
            if key in documented or (parent.endswith("[]") and parent in documented):
                continue
            missing.append(f"{model.__name__}: {key}")
    assert not missing, "undocumented in docs/configuration.md: " + ", ".join(sorted(set(missing)))


def test_every_documented_key_exists() -> None:
    known = {key for model in MODELS for key in config_keys(model)}
    known |= {prefix for key in known for prefix in _prefixes(key)}
    stale = sorted(key for key in documented_keys() if key not in known)
    assert not stale, "documented but not a config key: " + ", ".join(stale)


def _prefixes(key: str) -> Iterator[str]:
    parts = key.split(".")
    for end in range(1, len(parts)):
        yield ".".join(parts[:end])


def test_the_check_reads_the_table_as_written() -> None:
    documented = documented_keys()
    assert {"kafka.bootstrap_servers", "apps[].consent.without_consent",
            "delivery.backoff_max_s", "apps[].in_app_postbacks.events[]"} <= documented  # fmt: skip
