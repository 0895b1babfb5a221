"""Input decoders: one module per input format turns a Kafka message into the canonical event."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from dispatcher.inputs.appsflyer import AppsFlyerDecoder
from dispatcher.inputs.base import BadInput, Decoder
from schemas.config import KafkaConfig
from schemas.events import IN_APP_EVENT, INSTALL, EventType

DEFAULT_FORMAT = "appsflyer"
# Format name (`kafka.formats` in dispatcher.yaml) → its decoder.
DECODERS: Mapping[str, Decoder] = MappingProxyType({"appsflyer": AppsFlyerDecoder()})


def source_topics(kafka: KafkaConfig) -> dict[str, tuple[EventType, Decoder]]:
    """Each source topic → the type of its events and the decoder of its format, as the worker
    reads them (and `replay`, `plan` and `replay-dead-letters` read them likewise)."""
    return {
        kafka.topics.installs: (INSTALL, DECODERS[kafka.formats.installs]),
        kafka.topics.in_app_events: (IN_APP_EVENT, DECODERS[kafka.formats.in_app_events]),
    }


__all__ = ["DECODERS", "DEFAULT_FORMAT", "BadInput", "Decoder", "source_topics"]
