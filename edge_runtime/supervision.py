"""Supervised long-lived threads: a crash is logged with its item, restarted with backoff, shown in health.

Every long-lived thread of the runtime (frame source, sink, result sender and committer,
capture writer, capture uploader) runs its loop under a ``SupervisedThread``. When the loop
raises, the exception is logged with the item it was working on (``supervisor.item``), the
thread's fault is recorded in the shared ``ThreadFaults`` (health shows ``degraded`` with the
reason), and the loop is started again after a backoff that doubles from ``min_backoff`` up to
``max_backoff``. The fault is cleared, and the backoff reset, once the restarted loop reports
progress (``beat()``: one unit of work, or one idle round, completed without an exception).
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

log = logging.getLogger(__name__)


class ThreadFaults:
    """Current faults of supervised parts, by name (thread-safe); empty when all are healthy."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, str] = {}
        self.restarts = 0

    def failed(self, name: str, reason: str) -> None:
        with self._lock:
            self._faults[name] = reason

    def recovered(self, name: str) -> None:
        if name in self._faults:
            with self._lock:
                if self._faults.pop(name, None) is not None:
                    log.info("%s recovered", name)

    def reasons(self) -> dict[str, str]:
        with self._lock:
            return dict(self._faults)


class SupervisedThread:
    """Runs ``body(supervisor)`` on a daemon thread until it returns; restarts it when it raises."""

    def __init__(self, name: str, body: Callable[["SupervisedThread"], None], faults: ThreadFaults, *,
                 stop: threading.Event, min_backoff: float = 0.5, max_backoff: float = 30.0) -> None:
        self.name = name
        self._body = body
        self._faults = faults
        self._stop = stop
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._backoff = min_backoff
        self.item: str | None = None
        self.restarts = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def beat(self) -> None:
        """The loop completed a unit of work (or an idle round) cleanly: clear a fault, reset the backoff."""
        self._backoff = self._min_backoff
        self._faults.recovered(self.name)

    def _run(self) -> None:
        while True:
            try:
                self._body(self)
                return
            except Exception as exc:
                where = f" on {self.item}" if self.item else ""
                reason = f"{self.name} crashed{where}: {type(exc).__name__}: {exc}"
                log.exception("%s; restarting in %.1f s", reason, self._backoff)
                self._faults.failed(self.name, reason)
                self.restarts += 1
                self._faults.restarts += 1
                self.item = None
                if self._stop.wait(self._backoff):
                    # Stopping: run the body once more so it can finish its shutdown work.
                    try:
                        self._body(self)
                    except Exception:
                        log.exception("%s failed again while stopping", self.name)
                    return
                self._backoff = min(self._backoff * 2, self._max_backoff)
