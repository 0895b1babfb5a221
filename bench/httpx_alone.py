"""What httpx alone can do per process: one-event TikTok requests with the worker's concurrency.

The baseline for per-event mode (`batch_max_events: 1`). Prints one JSON line: requests, seconds,
rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import httpx


async def run(url: str, concurrency: int, seconds: float) -> dict[str, float]:
    body = json.dumps({
        "event_source": "app",
        "event_source_id": "7300000000000000001",
        "data": [{"event": "Purchase", "event_time": 1763632800, "event_id": "bench-httpx",
                  "user": {"idfa": "6D92078A-8246-4BA4-AE5B-76104861E7DC", "ip": "203.0.113.7"},
                  "app": {"app_id": "id1234567890", "app_version": "1.2.3"},
                  "ad": {"callback": "clk-1"}, "properties": {"value": 9.99, "currency": "USD"}}],
    }).encode()  # fmt: skip
    headers = {"Access-Token": "bench", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    done = 0
    async with httpx.AsyncClient(limits=limits) as client:
        end = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < end:
                response = await client.post(url, content=body, headers=headers, timeout=10)
                response.json()
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"requests": done, "seconds": elapsed, "rate": done / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.url, args.concurrency, args.seconds))))


if __name__ == "__main__":
    main()
