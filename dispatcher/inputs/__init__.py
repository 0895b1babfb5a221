"""Input decoders: one module per input format turns a Kafka message into the canonical event."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from dispatcher.inputs.appsflyer import AppsFlyerDecoder
from dispatcher.inputs.base import BadInput, Decoder

DEFAULT_FORMAT = "appsflyer"
# Format name (`kafka.formats` in dispatcher.yaml) → its decoder.
DECODERS: Mapping[str, Decoder] = MappingProxyType({"appsflyer": AppsFlyerDecoder()})

__all__ = ["DECODERS", "DEFAULT_FORMAT", "BadInput", "Decoder"]
