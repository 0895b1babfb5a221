"""Logging set-up: text or JSON lines, and a last line of defence that redacts secrets."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

REDACTED = "***redacted***"
_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}


class SecretRedactor(logging.Filter):
    """Replaces every known secret value in a record's text; secrets are never logged on purpose,
    this catches the accident (an exception text quoting a header, say)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: tuple[str, ...] = ()
        self.update(secrets)

    def update(self, secrets: Iterable[str]) -> None:
        """Set the secret values to redact (after a config reload, say)."""
        self._secrets = tuple(sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True))

    def redact(self, text: str) -> str:
        """`text` with every secret value replaced."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = self.redact(text)
            record.exc_info = None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRIBUTES and isinstance(value, str):
                setattr(record, key, self.redact(value))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any `extra=` fields."""

    converter = staticmethod(time.gmtime)
    default_msec_format = "%s.%03dZ"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """`time level logger: message key=value ...`."""

    converter = staticmethod(time.gmtime)
    default_msec_format = "%s.%03dZ"
    _FORMAT: ClassVar[str] = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

    def __init__(self) -> None:
        super().__init__(self._FORMAT, "%Y-%m-%dT%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = [
            f"{key}={value}"
            for key, value in vars(record).items()
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_")
        ]
        return f"{text} {' '.join(extras)}" if extras else text


_NUMBERS = re.compile(r"\d+(\.\d+)?")


class ClientNoiseFilter(logging.Filter):
    """kafka-python logs every retry of a failing connection, several lines each time: let one
    line of each kind through per `window_s` (numbers such as backoffs and ports ignored), so a
    broker that is down shows once per state change, not twenty times."""

    def __init__(self, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._window_s = window_s
        self._clock = clock
        self._seen: dict[tuple[str, str], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("kafka"):
            return True
        key = (record.name, _NUMBERS.sub("#", record.getMessage()))
        now = self._clock()
        last = self._seen.get(key)
        if last is not None and now - last < self._window_s:
            return False
        if len(self._seen) > 1_000:
            self._seen.clear()
        self._seen[key] = now
        return True


def configure_logging(
    level: str, fmt: str, secrets: Iterable[str] = (), tags: Mapping[str, str] | None = None
) -> SecretRedactor:
    """Log to stderr at `level` in `fmt` (`text` or `json`), each line with `tags` as fields
    (a worker process's index); return the redactor to update."""
    redactor = SecretRedactor(secrets)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    if tags:
        handler.addFilter(_Tags(tags))
    handler.addFilter(redactor)
    handler.addFilter(ClientNoiseFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every request at INFO; kafka-python is chatty at INFO during rebalances.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    return redactor


class _Tags(logging.Filter):
    """Adds the same fields to every record."""

    def __init__(self, tags: Mapping[str, str]) -> None:
        super().__init__()
        self._tags = dict(tags)

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in self._tags.items():
            setattr(record, key, value)
        return True
