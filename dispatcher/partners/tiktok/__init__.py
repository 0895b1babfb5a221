"""TikTok For Business: the Events API for app events."""

from dispatcher.partners.base import Partner
from dispatcher.partners.tiktok.adapter import TikTokAdapter
from dispatcher.partners.tiktok.config import TikTokAppConfig, TikTokPartnerConfig

PARTNER = Partner("tiktok", TikTokPartnerConfig, TikTokAdapter())

__all__ = ["PARTNER", "TikTokAdapter", "TikTokAppConfig", "TikTokPartnerConfig"]
