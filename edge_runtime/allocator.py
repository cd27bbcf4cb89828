"""Process memory tuning for the device (glibc malloc)."""

from __future__ import annotations

import ctypes
import platform

# From glibc's malloc.h.
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def limit_malloc_arenas(arenas: int = 2, mmap_threshold: int = 128 * 1024) -> bool:
    """Cap glibc's per-thread malloc arenas and fix its mmap threshold; True when applied.

    glibc gives every thread that allocates its own arena (up to 8 per core) and keeps freed
    memory in each, and after the first large free it raises the mmap threshold so frame-sized
    buffers stay on those heaps. With a handful of worker, ONNX Runtime and MQTT threads that
    costs about 20 MB of resident memory here (measured, docs/benchmarks.md) for no speed gain.
    Other C libraries: nothing is changed (False).
    """
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_ARENA_MAX, arenas)) and bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold))
    except (OSError, AttributeError):
        return False
