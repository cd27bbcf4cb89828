"""glibc malloc tuning: frame-sized buffers are reused instead of faulting in every frame."""

from __future__ import annotations

import platform
import subprocess
import sys

from edge_runtime.allocator import tune_malloc

GLIBC = platform.libc_ver()[0] == "glibc"

# Allocates and frees a decoded frame's worth of buffers per "frame", in a fresh process
# (mallopt settings are process-wide), and prints the minor page faults per frame.
_FAULTS_PER_FRAME = """
import resource, sys
import numpy as np
from edge_runtime.allocator import tune_malloc
kwargs = {} if sys.argv[1] == "default" else {"mmap_threshold": int(sys.argv[1]), "trim_threshold": int(sys.argv[1])}
assert tune_malloc(**kwargs)
def frame():
    for size in (3 * 1024 * 1024, 600 * 1024):
        np.empty(size, np.uint8).fill(1)
for _ in range(5):
    frame()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(100):
    frame()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 100)
"""


def _faults_per_frame(threshold: str) -> float:
    done = subprocess.run([sys.executable, "-c", _FAULTS_PER_FRAME, threshold], capture_output=True, text=True,
                          check=True, timeout=60)
    return float(done.stdout)


def test_tuned_malloc_reuses_frame_buffers_without_page_faults():
    if not GLIBC:  # other C libraries are left alone, and tune_malloc says so
        assert tune_malloc() is False
        return
    assert _faults_per_frame("default") < 5
    # The control (the 128 KB threshold the service used before): each frame maps and faults its buffers.
    assert _faults_per_frame(str(128 * 1024)) > 500
