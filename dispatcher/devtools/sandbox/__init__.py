"""A local stand-in for TikTok's Events API, for the demo, tests and benchmarks.

It speaks TikTok's response contract (HTTP 200 with a body `code`; 0 is success) on one port, and
takes orders on a control port: inject faults (HTTP 5xx, 429 with Retry-After, body codes, slow
answers, dropped connections, refused connections) and read back what it received.

    POST /open_api/v1.3/event/track/      the Events API (any path on the API port)

    control port:
    GET  /events      events accepted: event_id, event, event_source_id, received_at, payload
    GET  /requests    every request: at (arrival), status, code, events, event_source_id,
                      retry_after_s, answered_at
    GET  /stats       counts: requests, events, unique event ids, duplicates
    POST /faults      {"faults": [{"status": 503, "count": 5}, {"code": 40100, "for_s": 10}, ...]}
    DELETE /faults    clear faults
    POST /listener    {"down_for_s": 60} refuses connections for a while; {"up": true} reopens
    POST /reset       forget everything received and every fault
"""

from dispatcher.devtools.sandbox.faults import Fault
from dispatcher.devtools.sandbox.runners import SandboxProcess, SandboxThread, serve_forever
from dispatcher.devtools.sandbox.tiktok import (
    LATENCY_PROPERTY,
    ReceivedEvent,
    RequestRecord,
    TikTokSandbox,
)

__all__ = [
    "LATENCY_PROPERTY",
    "Fault",
    "ReceivedEvent",
    "RequestRecord",
    "SandboxProcess",
    "SandboxThread",
    "TikTokSandbox",
    "serve_forever",
]
