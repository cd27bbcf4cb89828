"""Runtime counters and the health message built from them."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from edge_runtime.contracts import HEALTH_SCHEMA, iso_utc


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, int(-(-q * len(ordered) // 100)))  # ceil without floats
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class RuntimeMetrics:
    """Thread-safe counters; latencies keep a window of the most recent frames."""

    started: float = field(default_factory=time.monotonic)
    frames: int = 0
    frames_corrupt: int = 0
    frames_failed: int = 0
    defects: int = 0
    captured: int = 0
    feedback_received: int = 0
    feedback_unknown: int = 0
    feedback_invalid: int = 0
    model_swaps: int = 0
    model_rejections: int = 0
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=2048))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + amount)

    def frame_done(self, latency_ms: float, defect: bool, captured: bool) -> None:
        with self._lock:
            self.frames += 1
            self.defects += defect
            self.captured += captured
            self.latencies_ms.append(latency_ms)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            latencies = list(self.latencies_ms)
            return {
                "uptime_s": round(time.monotonic() - self.started, 1),
                "frames": self.frames,
                "frames_corrupt": self.frames_corrupt,
                "frames_failed": self.frames_failed,
                "defects": self.defects,
                "captured": self.captured,
                "feedback_received": self.feedback_received,
                "feedback_unknown": self.feedback_unknown,
                "feedback_invalid": self.feedback_invalid,
                "model_swaps": self.model_swaps,
                "model_rejections": self.model_rejections,
                "latency_ms_p50": _round(percentile(latencies, 50)),
                "latency_ms_p95": _round(percentile(latencies, 95)),
                "latency_window": len(latencies),
            }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def health_message(*, device: str, status: str, error: str | None, model: dict[str, Any] | None,
                   metrics: RuntimeMetrics, queues: dict[str, Any], frames_per_second: float) -> dict[str, Any]:
    """The payload for ``tagqa/<device>/health`` (schema ``tagqa.health/1``)."""
    return {
        "schema": HEALTH_SCHEMA,
        "device": device,
        "timestamp": iso_utc(datetime.now(timezone.utc)),
        "status": status,
        "error": error,
        "model": model,
        **metrics.snapshot(),
        "frames_per_second": round(frames_per_second, 2),
        **queues,
    }
