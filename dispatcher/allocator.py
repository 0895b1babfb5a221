"""glibc's allocator told to keep the memory that kafka-python's fetch buffers free.

kafka-python's network thread builds each fetch answer (megabytes of AppsFlyer records) in fresh
buffers and frees them. With glibc's default (dynamic) thresholds its arena gives the freed top
back to the kernel once it passes twice the largest buffer (`madvise(MADV_DONTNEED)`) and the
next answer faults the same pages in again, tens of thousands of page faults a second under the
GIL the worker's main thread needs. Fixed thresholds stop it:
buffers up to `MMAP_THRESHOLD_BYTES` come from the arena and up to `TRIM_THRESHOLD_BYTES` of free
top is kept. See docs/performance.md.

And the cyclic garbage collector told to run less often (`tune_garbage_collector`).
"""

from __future__ import annotations

import ctypes
import gc
import logging
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

# mallopt(3) parameters, from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# The largest value glibc takes for M_MMAP_THRESHOLD on 64-bit (HEAP_MAX_SIZE / 2); it is also
# the ceiling of the dynamic threshold it replaces.
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 64 * 1024 * 1024
# An operator who sets any of these has chosen the allocator's behaviour: theirs stands.
OPERATOR_VARIABLES = (
    "GLIBC_TUNABLES",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
)

Mallopt = Callable[[int, int], int]


def libc_mallopt() -> Mallopt | None:
    """glibc's `mallopt`, or None where the C library has none (musl, macOS)."""
    try:
        function = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int)
    function.restype = ctypes.c_int
    return function


def keep_freed_memory(environ: Mapping[str, str], mallopt: Mallopt | None) -> str:
    """Set the fixed thresholds unless the environment sets the allocator's own; says what was
    done: "set", "left to <variable>", or "unavailable" (no glibc, or it refused a value)."""
    chosen = next((name for name in OPERATOR_VARIABLES if name in environ), None)
    if chosen is not None:
        log.info("memory allocator: thresholds left to %s", chosen)
        return f"left to {chosen}"
    if mallopt is None:
        log.info("memory allocator: no glibc mallopt, its defaults stand")
        return "unavailable"
    # The mmap threshold first: setting either one turns glibc's dynamic thresholds off.
    if not (
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    ):
        log.warning("memory allocator: glibc refused the thresholds, its defaults stand")
        return "unavailable"
    log.info(
        "memory allocator: buffers up to %d MiB from the heap, up to %d MiB of freed memory kept",
        MMAP_THRESHOLD_BYTES >> 20,
        TRIM_THRESHOLD_BYTES >> 20,
    )
    return "set"


def tune_garbage_collector() -> None:
    """The hot path allocates many short-lived, acyclic objects (events, payloads) that reference
    counting frees; cyclic collections walking thousands of in-flight events are overhead. Freeze
    what start-up built and collect less often - but not rarely: HTTP and asyncio leave cycles
    behind, and much rarer collections let a long drain's peak memory grow by a third and more."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
