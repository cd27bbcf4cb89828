"""Process memory tuning for the device (glibc malloc)."""

from __future__ import annotations

import ctypes
import platform

# From glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

_FRAME_HEAP_BYTES = 32 * 1024 * 1024  # above a decoded 1080p frame as Pillow holds it


def tune_malloc(arenas: int = 2, mmap_threshold: int = _FRAME_HEAP_BYTES,
                trim_threshold: int = _FRAME_HEAP_BYTES) -> bool:
    """Cap glibc's malloc arenas and keep frame-sized buffers on the heap; True when applied.

    Arenas: glibc gives every thread that allocates its own arena (up to 8 per core) and
    keeps freed memory in each; with a handful of worker, ONNX Runtime and MQTT threads that
    is resident memory held for nothing.

    Thresholds: every frame allocates and frees a few frame-sized buffers (the decoded
    image, its copy as an array). Above the mmap threshold each one is a fresh mmap whose
    pages fault in on first touch and whose munmap interrupts the other cores running the
    process (TLB shootdown), i.e. ONNX Runtime; a freed top of heap above the trim threshold
    is handed back and faults in again on the next frame. With both above a decoded frame
    the buffers are reused: the page faults per frame disappear, for more frames per second
    at a little more resident memory (figures in docs/benchmarks.md).
    Other C libraries: nothing is changed (False).
    """
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return (bool(libc.mallopt(_M_ARENA_MAX, arenas)) and bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold))
                and bool(libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold)))
    except (OSError, AttributeError):
        return False
