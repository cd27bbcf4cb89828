"""Active-learning capture: which frames flow back for labeling, and the ring operators flag from.

A frame is captured when its best score falls in the uncertain band, when it has no
detection (sampled at ``empty_sample_rate``), or at random (``random_sample_rate``).
Operators flag wrong results later by image id; the ring keeps the last N frames with
their results so a flagged frame can still be queued (with priority).
"""

from __future__ import annotations

import random
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

UNCERTAIN = "uncertain"
EMPTY_SAMPLE = "empty-sample"
RANDOM_SAMPLE = "random-sample"
OPERATOR_FEEDBACK = "operator-feedback"


@dataclass(frozen=True)
class CapturePolicy:
    """Capture rules from the device configuration."""

    band: tuple[float, float] = (0.25, 0.6)
    empty_sample_rate: float = 0.05
    random_sample_rate: float = 0.01

    def decide(self, best_score: float, has_detections: bool, rng: random.Random) -> str | None:
        """The capture reason for a frame, or None. The band is half-open: ``lo <= best_score < hi``."""
        low, high = self.band
        if low <= best_score < high:
            return UNCERTAIN
        if not has_detections and self.empty_sample_rate and rng.random() < self.empty_sample_rate:
            return EMPTY_SAMPLE
        if self.random_sample_rate and rng.random() < self.random_sample_rate:
            return RANDOM_SAMPLE
        return None


@dataclass(frozen=True)
class RingEntry:
    """A recent frame: its encoded bytes and the result that was published for it."""

    image_id: str
    captured_at: datetime
    data: bytes
    result: dict[str, Any]


class FrameRing:
    """The last ``size`` frames by image id, at most ``max_bytes`` of image bytes (thread-safe, oldest dropped
    first; the newest frame is always kept)."""

    def __init__(self, size: int, max_bytes: int | None = None) -> None:
        self.size = size
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[str, RingEntry] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, entry: RingEntry) -> None:
        with self._lock:
            previous = self._entries.pop(entry.image_id, None)
            if previous is not None:
                self.bytes -= len(previous.data)
            self._entries[entry.image_id] = entry
            self.bytes += len(entry.data)
            self._trim()

    def _trim(self) -> None:
        while len(self._entries) > self.size or (
                self.max_bytes is not None and self.bytes > self.max_bytes and len(self._entries) > 1):
            _, dropped = self._entries.popitem(last=False)
            self.bytes -= len(dropped.data)

    def get(self, image_id: str) -> RingEntry | None:
        with self._lock:
            return self._entries.get(image_id)

    def resize(self, size: int, max_bytes: int | None = None) -> None:
        with self._lock:
            self.size = size
            self.max_bytes = max_bytes
            self._trim()

    def __len__(self) -> int:
        return len(self._entries)
