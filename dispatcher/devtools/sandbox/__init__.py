"""A local stand-in for both partners' APIs, for the demo, tests and benchmarks.

One API port speaks both contracts, told apart by the path:

    POST /api/v2/conversion              Ocean Engine: one conversion per request, no token;
                                         `{"code": 0, "message": ..., "request_id": ...}`
    POST /open_api/v1.3/event/track/     TikTok's Events API (any other path too): HTTP 200
                                         with a body `code`, 0 for success

and a control port takes orders: inject faults per partner (HTTP 5xx, 429 with Retry-After,
body codes, slow answers, dropped connections), refuse connections, and read back what arrived.

    control port:
    GET  /events[?partner=P]    events accepted: partner, event_id, event, event_source_id,
                                received_at, payload (Ocean Engine's event_id is
                                callback|event_type|timestamp, its event_source_id the callback)
    GET  /requests[?partner=P]  every request: partner, at (arrival), status, code, events,
                                event_source_id, retry_after_s, answered_at
    GET  /stats                 counts: requests, events, unique event ids, duplicates
    POST /faults                {"partner": "tiktok" (default) or "oceanengine",
                                 "faults": [{"status": 503, "count": 5}, {"code": 40100,
                                 "for_s": 10}, {"code": 40105, "until_reset": true}, ...]}:
                                 each for its `count` requests, its `for_s` seconds, or until
                                 cleared; none of them: the next request. A fault with
                                 "event_ids": [...] (e.g. {"code": 40002, "event_ids": ["e1"]})
                                 answers every request carrying one of those events, until
                                 cleared: a bad event
    GET  /faults                per partner, the faults queued ("queued", the one applying now
                                first, with what is left of it) and the bad events
    DELETE /faults              clear every partner's faults
    POST /listener              {"down_for_s": 60} refuses connections; {"up": true} reopens
    POST /reset                 forget everything received and every fault
"""

from dispatcher.devtools.sandbox.contracts import LATENCY_PROPERTY
from dispatcher.devtools.sandbox.faults import Fault
from dispatcher.devtools.sandbox.runners import SandboxProcess, SandboxThread, serve_forever
from dispatcher.devtools.sandbox.server import PartnerSandbox, ReceivedEvent, RequestRecord

__all__ = [
    "LATENCY_PROPERTY",
    "Fault",
    "PartnerSandbox",
    "ReceivedEvent",
    "RequestRecord",
    "SandboxProcess",
    "SandboxThread",
    "serve_forever",
]
