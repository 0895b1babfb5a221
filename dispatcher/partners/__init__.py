"""Partners: one package per partner API, registered once in `registry`."""

from dispatcher.partners.base import Partner, PartnerAdapter, PostbackContent
from dispatcher.partners.registry import adapter_for, config_model_for, names, register

__all__ = [
    "Partner",
    "PartnerAdapter",
    "PostbackContent",
    "adapter_for",
    "config_model_for",
    "names",
    "register",
]
