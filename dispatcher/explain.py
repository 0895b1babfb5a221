"""`dispatcher explain`: what the worker would decide and send for an event, without any network."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from dispatcher.config_loader import PartnerSet
from dispatcher.decode import BadInput, decode
from dispatcher.logs import REDACTED
from dispatcher.partners import ADAPTERS
from dispatcher.rules import Send, decide
from schemas.events import IN_APP_EVENT, INSTALL, EventType


def read_events(text: str) -> Iterator[bytes]:
    """One JSON object, or JSON lines (one event per line)."""
    stripped = text.strip()
    if not stripped:
        return
    try:
        json.loads(stripped)
    except ValueError:
        for line in stripped.splitlines():
            if line.strip():
                yield line.strip().encode()
        return
    yield stripped.encode()


def expected_type(raw: bytes) -> EventType:
    """The topic an event would come from, read from its own `event_type`."""
    try:
        value = json.loads(raw)
    except ValueError:
        return INSTALL
    if isinstance(value, dict) and value.get("event_type") == IN_APP_EVENT:
        return IN_APP_EVENT
    return INSTALL


def explain(raw: bytes, partners: PartnerSet) -> dict[str, Any]:
    """The decision of every partner for one event, with the request that would be sent."""
    event = decode(raw, expected_type(raw))
    if isinstance(event, BadInput):
        return {"bad_input": event.detail, "dead_letter_reason": "bad_input", "decisions": []}
    decisions = []
    for partner in partners.partners:
        adapter = ADAPTERS[partner.partner]
        decision = decide(event, partner, adapter.build_event)
        entry: dict[str, Any] = {
            "partner": partner.partner,
            "app_id": event.app_id,
            "decision": "send" if isinstance(decision, Send) else "skip",
        }
        entry |= {
            "reason": str(decision.reason),
            "rule": int(decision.rule),
            "rule_title": decision.rule.title,
            "detail": decision.detail,
        }
        if isinstance(decision, Send):
            body = adapter.encode_request(decision.destination, [decision.payload])
            headers = adapter.request_headers(REDACTED)
            entry |= {
                "destination": decision.destination,
                "request": {
                    "method": "POST",
                    "url": partner.endpoint,
                    "headers": headers,
                    "body": json.loads(body),
                },
            }
        decisions.append(entry)
    return {
        "event_id": event.event_id,
        "event_type": event.event_type,
        "event_name": event.event_name,
        "decisions": decisions,
    }


def render_text(explanation: dict[str, Any]) -> str:
    """A reading for a person at a terminal."""
    if "bad_input" in explanation:
        return f"bad input -> dead letter (reason bad_input): {explanation['bad_input']}\n"
    lines = [
        f"event {explanation['event_id']} ({explanation['event_type']} {explanation['event_name']})"
    ]
    for entry in explanation["decisions"]:
        lines.append(f"  partner {entry['partner']}, app {entry['app_id']}")
        lines.append(f"    decision: {entry['decision']} ({entry['reason']})")
        lines.append(f"    rule {entry['rule']} ({entry['rule_title']}): {entry['detail']}")
        if entry["decision"] == "send":
            request = entry["request"]
            lines.append(f"    request: {request['method']} {request['url']}")
            for name, value in request["headers"].items():
                lines.append(f"      {name}: {value}")
            body = json.dumps(request["body"], indent=2, sort_keys=False)
            lines.extend("      " + line for line in body.splitlines())
    return "\n".join(lines) + "\n"
