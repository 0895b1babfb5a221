"""The consume-only ceiling: read and `json.loads` a topic with the worker's consumer settings.

Run as its own process (`python -m bench.ceiling ...`) so it measures what one process can read.
With `--worker-io` it first does what `dispatcher run` does to kafka-python's reads and to the
allocator (256 KiB socket reads, fixed allocator thresholds): the reader the worker is to match
when both get them. With `--defaults` the consumer has kafka-python's default settings (only the
servers, the group, no auto-commit, reading from the earliest offset): the ceiling an outside
harness measures. Prints one JSON line: events, seconds (first record to last), rate.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from kafka import KafkaConsumer

from dispatcher.allocator import keep_freed_memory, libc_mallopt
from dispatcher.kafka_clients import read_sockets_in_large_pieces

# The worker's consumer settings this reader shares (the rest are kafka-python's defaults)
WORKER_SETTINGS = {
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 1000,
    "max_poll_interval_ms": 10000,
    "max_poll_records": 2000,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--worker-io", action="store_true", help="the worker's reads and allocator")
    parser.add_argument("--defaults", action="store_true", help="kafka-python's default settings")
    args = parser.parse_args()
    if args.worker_io:
        read_sockets_in_large_pieces()
        keep_freed_memory(os.environ, libc_mallopt())
    settings = {} if args.defaults else WORKER_SETTINGS
    consumer = KafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **settings,
    )
    seen = 0
    first = None
    deadline = time.monotonic() + 300
    while seen < args.count and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            if first is None:
                first = time.perf_counter()
            for record in records:
                json.loads(record.value)
            seen += len(records)
    elapsed = time.perf_counter() - (first or time.perf_counter())
    consumer.close(autocommit=False)
    print(
        json.dumps(
            {
                "events": seen,
                "seconds": elapsed,
                "rate": seen / elapsed if elapsed else 0,
                "worker_io": args.worker_io,
                "defaults": args.defaults,
            }
        )
    )


if __name__ == "__main__":
    main()
