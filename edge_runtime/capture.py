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
    """The last ``size`` frames by image id (thread-safe, oldest dropped first)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[str, RingEntry] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, entry: RingEntry) -> None:
        with self._lock:
            self._entries[entry.image_id] = entry
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def get(self, image_id: str) -> RingEntry | None:
        with self._lock:
            return self._entries.get(image_id)

    def resize(self, size: int) -> None:
        with self._lock:
            self.size = size
            while len(self._entries) > size:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
