"""A minimal HTTP/1.1 server loop for the sandbox's two ports (no framework needed)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

Answer = tuple[int, dict[str, str], bytes]  # status, extra headers, body
# (method, path, headers, body, arrival time) -> an answer, or None to drop the connection
Handler = Callable[[str, str, dict[str, str], bytes, float], Awaitable[Answer | None]]
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests"}


def json_answer(status: int, value: Any) -> Answer:
    return status, {"Content-Type": "application/json"}, json.dumps(value).encode()


async def serve(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handle: Handler
) -> None:
    """A minimal HTTP/1.1 keep-alive loop: Content-Length bodies, one request at a time."""
    try:
        while True:
            request_line = await reader.readline()
            if not request_line:
                return
            arrived = time.time()
            headers: dict[str, str] = {}
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0") or 0)
            body = await reader.readexactly(length) if length else b""
            method, path, _ = request_line.decode("latin-1").split(" ", 2)
            answer = await handle(method, path, headers, body, arrived)
            if answer is None:
                return  # drop the connection without answering
            status, extra, payload = answer
            head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
            head.append(f"Content-Length: {len(payload)}")
            head.extend(f"{key}: {value}" for key, value in extra.items())
            if "Content-Type" not in extra:
                head.append("Content-Type: application/json")
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, ValueError):
        return
    finally:
        writer.close()
