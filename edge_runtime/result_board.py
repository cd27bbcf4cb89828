"""What the HTTP API and the operator page read: recent records, counts per minute, and waiting requests.

The runtime calls ``ResultBoard.record`` with every record it publishes on the results topic
(a detection result or a frame error record), after the record is in the outbox. The board
keeps the newest ``keep`` records, ok/defect/error counts in one-minute buckets for the last
``window_minutes``, and hands a record to the HTTP request waiting for that image id.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Callable

from edge_runtime.contracts import RESULT_SCHEMA


class ResultBoard:
    """Thread-safe; memory is bounded by ``keep`` records and ``window_minutes`` buckets."""

    def __init__(self, *, keep: int = 256, window_minutes: int = 60,
                 clock: Callable[[], float] = time.time) -> None:
        self.keep = keep
        self.window_minutes = window_minutes
        self._clock = clock
        self._records: deque[dict[str, Any]] = deque(maxlen=keep)
        self._minutes: deque[list[int]] = deque()  # [minute number, ok, defect, error]
        self._waiting: dict[str, "_Waiter"] = {}
        self._lock = threading.Lock()

    def record(self, record: dict[str, Any]) -> None:
        """Note a published record (the runtime's record listener)."""
        minute = int(self._clock() // 60)
        column = (1 if record.get("verdict") == "ok" else 2) if record.get("schema") == RESULT_SCHEMA else 3
        with self._lock:
            self._records.append(record)
            if not self._minutes or self._minutes[-1][0] != minute:
                self._minutes.append([minute, 0, 0, 0])
                while self._minutes[0][0] <= minute - self.window_minutes:
                    self._minutes.popleft()
            self._minutes[-1][column] += 1
            waiter = self._waiting.pop(record.get("image_id", ""), None)
        if waiter is not None:
            waiter.deliver(record)

    def latest(self, n: int) -> list[dict[str, Any]]:
        """The newest ``n`` records, newest first."""
        with self._lock:
            return list(self._records)[-n:][::-1]

    def counts(self, minutes: int) -> dict[str, int]:
        """ok / defect / error records in the last ``minutes`` minutes (whole minutes, the current one included)."""
        since = int(self._clock() // 60) - minutes
        totals = [0, 0, 0]
        with self._lock:
            for minute, *values in self._minutes:
                if minute > since:
                    totals = [t + v for t, v in zip(totals, values)]
        return {"minutes": minutes, "ok": totals[0], "defect": totals[1], "error": totals[2]}

    def expect(self, image_id: str) -> "_Waiter":
        """Register interest in the record of ``image_id`` before its frame enters the pipeline."""
        waiter = _Waiter()
        with self._lock:
            self._waiting[image_id] = waiter
        return waiter

    def forget(self, image_id: str) -> None:
        with self._lock:
            self._waiting.pop(image_id, None)


class _Waiter:
    def __init__(self) -> None:
        self._event = threading.Event()
        self.record: dict[str, Any] | None = None

    def deliver(self, record: dict[str, Any]) -> None:
        self.record = record
        self._event.set()

    def wait(self, timeout: float) -> dict[str, Any] | None:
        return self.record if self._event.wait(timeout) else None
