"""Ocean Engine (ByteDance's platform for China traffic, AppsFlyer's `bytedance_int`)."""

from dispatcher.partners.base import Partner
from dispatcher.partners.oceanengine.adapter import OceanEngineAdapter
from dispatcher.partners.oceanengine.config import OceanEngineAppConfig, OceanEngineConfig

PARTNER = Partner("oceanengine", OceanEngineConfig, OceanEngineAdapter())

__all__ = ["PARTNER", "OceanEngineAdapter", "OceanEngineAppConfig", "OceanEngineConfig"]
