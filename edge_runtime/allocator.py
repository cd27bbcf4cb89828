"""Process memory tuning for the device (glibc malloc)."""

from __future__ import annotations

import ctypes
import platform

# From glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

_FRAME_HEAP_BYTES = 32 * 1024 * 1024  # above a decoded 1080p frame (8 MB as Pillow holds it)


def tune_malloc(arenas: int = 2, mmap_threshold: int = _FRAME_HEAP_BYTES,
                trim_threshold: int = _FRAME_HEAP_BYTES) -> bool:
    """Cap glibc's malloc arenas and keep frame-sized buffers on the heap; True when applied.

    Arenas: glibc gives every thread that allocates its own arena (up to 8 per core) and
    keeps freed memory in each; with a handful of worker, ONNX Runtime and MQTT threads that
    costs about 20 MB of resident memory for nothing.

    Thresholds: every frame allocates and frees a few buffers of 0.1-8 MB (Pillow's decoded
    image, its copy as an array). Above the mmap threshold each one is a fresh mmap whose
    pages fault in on first touch and whose munmap interrupts the other cores running the
    process (TLB shootdown), i.e. ONNX Runtime; a freed top of heap above the trim threshold
    is handed back and faults in again on the next frame. With both at 32 MB the buffers
    are reused: about 800 minor page faults per frame at imgsz 480 become none, for about
    5-13 % more frames per second and 7 MB more resident memory (docs/benchmarks.md).
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
