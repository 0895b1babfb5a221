"""Delivering owed postbacks: each partner app's queue (order, what is in flight), the lanes that
linger and deliver, the channel (attempts under the retry policy, pacing, held apps), the HTTP
edge, and the service that hosts them on a loop of its own."""

from dispatcher.delivery.channel import PartnerChannel
from dispatcher.delivery.http import PartnerHttp, transport_failure
from dispatcher.delivery.items import Settled, SettledCallback, WorkItem
from dispatcher.delivery.service import DeliveryService

__all__ = [
    "DeliveryService",
    "PartnerChannel",
    "PartnerHttp",
    "Settled",
    "SettledCallback",
    "WorkItem",
    "transport_failure",
]
