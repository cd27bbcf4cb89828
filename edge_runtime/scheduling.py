"""CPU scheduling of the runtime's threads (Linux): frame workers are not preempted by bookkeeping.

Per frame the sink, the result sender and committer, the capture writer and the MQTT client's
event loop wake up about ten times between them (a future, a queue, a PUBACK, an fsync). On a
device whose cores all run frame workers, the scheduler lets each waking thread preempt a
worker in the middle of its inference: about nine preemptions per frame on two cores, each a
context switch and a cache refilled (docs/benchmarks.md, "Context switches").

``SCHED_BATCH`` tells Linux's fair scheduler that a thread is throughput work: when it wakes it
does not preempt the running thread, it runs when that thread blocks (a worker does at least
once per frame) or its time slice ends. Its share of the CPU is unchanged (same weight as
``SCHED_OTHER``), so no thread starves; a result waits at most until the next worker blocks.
Switching between ``SCHED_OTHER`` and ``SCHED_BATCH`` needs no privilege. Threads inherit the
policy of the thread that creates them, so setting it on the thread that starts the runtime
covers every thread the runtime starts; other processes on the device are not affected.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from typing import Iterator

log = logging.getLogger(__name__)


@contextmanager
def batch_scheduling() -> Iterator[bool]:
    """Run the calling thread (and every thread it starts meanwhile) under ``SCHED_BATCH``; restore on exit.

    Yields True when the policy was applied; False, changing nothing, where the platform has no
    ``SCHED_BATCH`` (not Linux), where the caller runs under another policy than ``SCHED_OTHER``
    (someone chose it: a real-time or idle policy is kept) or where the kernel refused it
    (logged). On exit only the calling thread's policy is put back: threads started meanwhile
    keep ``SCHED_BATCH`` and end with the runtime.
    """
    applied = _set_batch()
    try:
        yield applied
    finally:
        if applied:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def _set_batch() -> bool:
    if not (hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_BATCH")):
        return False
    try:
        if os.sched_getscheduler(0) != os.SCHED_OTHER:
            return False
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except OSError as exc:  # e.g. a container whose seccomp profile forbids it: the runtime works without
        log.warning("could not put the runtime's threads under SCHED_BATCH (%s); "
                    "helper threads will preempt the frame workers", exc)
        return False
    return True
