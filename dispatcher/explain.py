"""`dispatcher explain`: what the worker would decide and send for an event, without any network."""

from __future__ import annotations

import json
from typing import Any

from dispatcher.config_loader import PartnerSet
from dispatcher.inputs import DECODERS, BadInput
from dispatcher.logs import REDACTED
from dispatcher.partners import adapter_for
from dispatcher.rules import Send, decide
from schemas.config import TopicFormats
from schemas.events import IN_APP_EVENT, EventType


class NotJsonError(ValueError):
    """The input is neither one JSON document nor JSON lines; names the first line that is not."""


def read_events(text: str) -> list[tuple[int | None, bytes]]:
    """One JSON document (line None), or JSON lines: (line number, bytes) of each event.

    Whether a document is an event is the decoder's to say (bad input, as the worker would
    dead-letter it); text that is not JSON at all is not something to explain.
    """
    stripped = text.strip()
    if not stripped:
        return []
    try:
        json.loads(stripped)
    except (ValueError, RecursionError) as exc:  # nested deeper than Python's JSON reader goes
        whole = _reason(exc)
    else:
        return [(None, stripped.encode())]
    events: list[tuple[int | None, bytes]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise NotJsonError(
                f"neither one JSON document ({whole}) nor JSON lines: line {number} is not "
                f"JSON ({_reason(exc)}); explain reads one JSON object, or one per line"
            ) from None
        events.append((number, line.strip().encode()))
    return events


def _reason(exc: ValueError | RecursionError) -> str:
    return exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)


def explain(
    raw: bytes,
    partners: PartnerSet,
    formats: TopicFormats,
    now_s: float,
    line: int | None = None,
    topic_type: EventType | None = None,
) -> dict[str, Any]:
    """The decision of every partner for one event at `now_s` (Unix seconds), with the request
    that would be sent.

    The event is read as if from the topic of `topic_type` events, as the worker reads it
    there; by default from the topic it belongs on (its decoder tells which). `line`, the
    event's line in JSON lines, is kept in the answer so every entry says which line it is.
    """
    if topic_type is None:
        topic_type = DECODERS[formats.installs].topic_type_of(raw)
    decoder = DECODERS[formats.in_app_events if topic_type == IN_APP_EVENT else formats.installs]
    event = decoder.decode(raw, topic_type)
    where: dict[str, Any] = {} if line is None else {"line": line}
    # the topic as dispatcher.yaml names it (kafka.topics.installs / in_app_events)
    topic = "in_app_events" if topic_type == IN_APP_EVENT else "installs"
    if isinstance(event, BadInput):
        return where | {
            "topic": topic,
            "bad_input": event.detail,
            "dead_letter_reason": "bad_input",
            "decisions": [],
        }
    decisions = []
    for partner in partners.partners:
        adapter = adapter_for(partner.name)
        decision = decide(event, partner, adapter, now_s)
        entry: dict[str, Any] = {
            "partner": partner.name,
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
    return where | {
        "topic": topic,
        "event_id": event.event_id,
        "event_id_derived": event.event_id_derived,
        "event_type": event.type,
        "event_name": event.event_name,
        "conversion": str(event.conversion),
        "primary": event.is_primary,
        "decisions": decisions,
    }


def render_text(explanation: dict[str, Any]) -> str:
    """A reading for a person at a terminal."""
    at = f"line {explanation['line']}: " if "line" in explanation else ""
    if "bad_input" in explanation:
        return (
            f"{at}bad input on the {explanation['topic']} topic -> dead letter (reason "
            f"bad_input): {explanation['bad_input']}\n"
        )
    derived = " (derived)" if explanation["event_id_derived"] else ""
    if explanation["event_type"] == IN_APP_EVENT:
        what = f"in-app event {explanation['event_name']}"
    else:
        conversion = explanation["conversion"]
        what = "install record, a " + ("first install" if conversion == "install" else conversion)
    if not explanation["primary"]:
        what += ", secondary attribution copy"
    lines = [f"{at}event {explanation['event_id']}{derived}: {what}"]
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
