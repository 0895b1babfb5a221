"""From a record and a partner's decision to send, the work item handed to delivery: what the
worker and `dispatcher replay` both build."""

from __future__ import annotations

from typing import Any

from dispatcher.delivery.items import WorkItem
from dispatcher.partners import PartnerAdapter
from dispatcher.rules import Send
from schemas.events import Event


def owed_item(
    record: Any, partner: str, adapter: PartnerAdapter, decision: Send, event: Event,
    queued_at: float, replay: bool,
) -> WorkItem:  # fmt: skip
    """The work item of a postback owed for `record` (a Kafka record: its topic, partition,
    offset, key and value are kept for the dead letter and the offsets); `queued_at` on the
    caller's monotonic clock; `replay` when it is sent again on purpose (the log says so)."""
    payload = decision.payload
    return WorkItem(
        record.topic, record.partition, record.offset, record.key, record.value, partner,
        decision.destination, payload, adapter.event_label(payload), event.event_time_s,
        queued_at, event.event_id, event.app_id, event.install_id,
        event.event_name if event.is_in_app else "install", replay,
    )  # fmt: skip
