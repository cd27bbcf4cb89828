"""Process memory tuning for the device (glibc malloc)."""

from __future__ import annotations

import ctypes
import platform

_M_ARENA_MAX = -8  # from glibc's malloc.h


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's per-thread malloc arenas; True when applied (False on other C libraries).

    glibc gives every thread that allocates its own arena (up to 8 per core) and keeps freed
    memory in each; with a handful of worker, ONNX Runtime and MQTT threads that costs
    15-20 MB of resident memory here (measured, docs/benchmarks.md) for no speed gain.
    """
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False
