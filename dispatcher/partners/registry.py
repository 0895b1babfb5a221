"""The partner registry: each partner is registered here once, by name."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from dispatcher.partners.base import Partner, PartnerAdapter
from dispatcher.partners.oceanengine import PARTNER as OCEAN_ENGINE
from dispatcher.partners.tiktok import PARTNER as TIKTOK
from schemas.config import PartnerConfig

_PARTNERS: dict[str, Partner] = {}


def register(partner: Partner) -> None:
    """Make a partner known; its name must be new."""
    if partner.name in _PARTNERS:
        raise ValueError(f"partner {partner.name!r} is registered already")
    _PARTNERS[partner.name] = partner


def names() -> list[str]:
    """Every registered partner's name, in registration order."""
    return list(_PARTNERS)


def config_model_for(name: str) -> type[PartnerConfig] | None:
    """The model a partner file with `partner: name` is validated with; None when unknown."""
    partner = _PARTNERS.get(name)
    return partner.config_model if partner else None


def adapter_for(name: str) -> PartnerAdapter:
    """The adapter of a registered partner."""
    return _PARTNERS[name].adapter


@contextmanager
def registered(partner: Partner) -> Iterator[Partner]:
    """A partner known for the duration of a block (tests add a toy partner this way)."""
    register(partner)
    try:
        yield partner
    finally:
        del _PARTNERS[partner.name]


register(TIKTOK)
register(OCEAN_ENGINE)
