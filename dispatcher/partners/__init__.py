"""Partner modules: payload building and response reading, one module per partner API."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from dispatcher.partners.base import PartnerAdapter, PostbackContent
from dispatcher.partners.tiktok import TikTokAdapter

# Partner name (a partner file's `partner:` key) → its adapter.
ADAPTERS: Mapping[str, PartnerAdapter] = MappingProxyType({"tiktok": TikTokAdapter()})

__all__ = ["ADAPTERS", "PartnerAdapter", "PostbackContent"]
