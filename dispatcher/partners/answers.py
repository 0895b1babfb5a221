"""Reading partners' HTTP answers: what every JSON-with-a-`code` API has in common.

Both ByteDance APIs answer JSON `{"code": ..., "message": ...}` and report most errors as HTTP 200
with a non-zero code. The HTTP status is read first (429, 5xx, other non-2xx, a 2xx that is not
the partner's JSON); each partner reads its own body codes after that.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from email.utils import parsedate_to_datetime
from typing import NamedTuple

from dispatcher.outcomes import AttemptKind, AttemptResult


def read_code(body: bytes) -> tuple[int | None, str, str | None]:
    """The body's integer `code`, its `message` and its `request_id` (the partner's id of the
    request, which its support asks for); (None, a short excerpt, None) when the body is not
    such an object."""
    try:
        decoded = json.loads(body) if body else None
    except ValueError:
        decoded = None
    if isinstance(decoded, dict):
        code = decoded.get("code")
        message = decoded.get("message")
        request_id = decoded.get("request_id")
        if isinstance(code, int) and not isinstance(code, bool):
            return (
                code,
                message if isinstance(message, str) else "",
                request_id if isinstance(request_id, str) and request_id else None,
            )
    return None, body[:200].decode("utf-8", "replace"), None


def parse_retry_after(value: str | None, now: float) -> float | None:
    """`Retry-After` in seconds from `now` (Unix seconds): delta-seconds or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


# 401 Unauthorized, 403 Forbidden: the token or the account's permission (RFC 9110 §15.5.2, §15.5.4)
_SETUP_STATUSES = frozenset({401, 403})


def classify_status(
    status: int, code: int | None, message: str, retry_after: float | None, partner: str
) -> AttemptResult | None:
    """The answer's result when its HTTP status decides it; None for a 2xx carrying a body
    `code`, which the partner reads.

    429 is throttling and 5xx a server error: both retried (a 5xx may have been processed, so its
    events are counted as possibly re-sent). 401 and 403 say the credentials or the permission
    are wrong, which no event can fix: a setup answer, the partner app held until an operator
    acts. Any other non-2xx is a rejection. A 2xx without the partner's JSON is not
    a success (it may come from a proxy): it is retried.
    """
    if status == 429:
        return AttemptResult(
            AttemptKind.RETRYABLE, status, code, message or "too many requests", retry_after,
            throttled=True,
        )  # fmt: skip
    if status >= 500:
        return AttemptResult(
            AttemptKind.RETRYABLE, status, code, message or f"HTTP {status}", retry_after,
            fate_unknown=True,
        )  # fmt: skip
    if status in _SETUP_STATUSES:
        return AttemptResult(AttemptKind.SETUP, status, code, message or f"HTTP {status}")
    if not 200 <= status < 300:
        return AttemptResult(AttemptKind.FATAL, status, code, message or f"HTTP {status}")
    if code is None:
        return AttemptResult(
            AttemptKind.RETRYABLE, status, None, f"HTTP {status} without a {partner} body: "
            + message, retry_after, fate_unknown=True,
        )  # fmt: skip
    return None


class Answer(NamedTuple):
    """An HTTP answer read the way both ByteDance APIs need: its body `code` and `message`, the
    `Retry-After` it asked for, and the result when the HTTP status alone decides it."""

    code: int | None
    message: str
    retry_after: float | None
    decided: AttemptResult | None  # None: a 2xx with a body code, for the partner to read
    request_id: str | None = None


def with_request_id(result: AttemptResult, request_id: str | None) -> AttemptResult:
    """`result` carrying the partner's request id (the postback log keeps it)."""
    return result if request_id is None else replace(result, request_id=request_id)


def read_answer(
    status: int, headers: Mapping[str, str], body: bytes, now: float, partner: str
) -> Answer:
    """`read_code`, `parse_retry_after` and `classify_status` of one answer."""
    code, message, request_id = read_code(body)
    retry_after = parse_retry_after(headers.get("retry-after"), now)
    decided = classify_status(status, code, message, retry_after, partner)
    return Answer(code, message, retry_after, with_request_id(decided, request_id)
                  if decided is not None else None, request_id)  # fmt: skip
