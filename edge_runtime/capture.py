"""Active-learning capture: which frames flow back for labeling, and the ring operators flag from.

A frame is captured when its best score falls in the uncertain band, when it has no
detection (sampled at ``empty_sample_rate``), or at random (``random_sample_rate``).

The band is ``auto`` by default: it follows the serving model's own best scores on its test
split (``evaluation.best_score_percentiles`` in the model card) and holds the share
``capture_share`` of frames ranked nearest the decision threshold (``rank_band``). A fixed band
of scores assumes a calibrated model; the learning-curve benchmark (docs/benchmarks.md, issue
20) found a young model's scores at 0.01-0.13, below a fixed [0.25, 0.6) band for three
rounds, so nothing was captured as uncertain. A card without percentiles (a model evaluated
before they were recorded) gets ``FIXED_BAND``.
Operators flag wrong results later by image id; the ring keeps the last N frames with
their results so a flagged frame can still be queued (with priority).
"""

from __future__ import annotations

import random
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping, Sequence

UNCERTAIN = "uncertain"
EMPTY_SAMPLE = "empty-sample"
RANDOM_SAMPLE = "random-sample"
OPERATOR_FEEDBACK = "operator-feedback"


FIXED_BAND = (0.25, 0.6)
AUTO_BAND = "auto"


PERCENTILE_STEPS = 20  # best_score_percentiles: the scores at ranks 0 %, 5 %, ..., 100 %


def score_percentiles(scores: Sequence[float]) -> list[float]:
    """The ``PERCENTILE_STEPS + 1`` evenly ranked best scores of ``scores`` (linear interpolation between order
    statistics, as numpy's default), rounded to 6 decimals; what a model card's ``best_score_percentiles`` holds."""
    if not scores:
        raise ValueError("no scores to take percentiles of")
    ordered = sorted(float(v) for v in scores)
    out = []
    for step in range(PERCENTILE_STEPS + 1):
        position = step / PERCENTILE_STEPS * (len(ordered) - 1)
        below = int(position)
        above = min(below + 1, len(ordered) - 1)
        out.append(round(ordered[below] + (ordered[above] - ordered[below]) * (position - below), 6))
    return out


def rank_band(percentiles: Sequence[float], decision_threshold: float, share: float) -> tuple[float, float]:
    """The score band ``[lo, hi)`` holding ``share`` of the frames nearest ``decision_threshold`` in rank.

    ``percentiles`` are the serving model's best scores on its test split at evenly spaced
    ranks (0 %, 5 %, ..., 100 %), nondecreasing. The threshold's rank among them is found, and
    a window of ``share`` ranks is centred on it (shifted inwards at either end); its ends are
    read back as scores. A window reaching the top rank ends at 1.0 (every higher score is
    in it), one reaching the bottom starts at 0.0. A model whose every test frame scores below
    the threshold thus captures its highest-scoring ``share`` of frames, the ones nearest to
    a decision it has not learnt to make yet.
    """
    if len(percentiles) < 2 or any(b < a for a, b in zip(percentiles, percentiles[1:])):
        raise ValueError(f"percentiles must be at least two nondecreasing scores, got {list(percentiles)}")
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must be in (0, 1], got {share}")
    ranks = [i / (len(percentiles) - 1) for i in range(len(percentiles))]
    centre = _interpolate(decision_threshold, percentiles, ranks)
    low_rank = min(max(centre - share / 2, 0.0), 1.0 - share)
    high_rank = low_rank + share
    low = 0.0 if low_rank <= 0.0 else _interpolate(low_rank, ranks, percentiles)
    high = 1.0 if high_rank >= 1.0 - 1e-9 else _interpolate(high_rank, ranks, percentiles)
    return low, high


def _interpolate(x: float, xs: Sequence[float], ys: Sequence[float]) -> float:
    """Piecewise-linear y(x) through the points (``xs`` nondecreasing); clamped at the ends; the middle of a
    run of equal ``xs``."""
    if x <= xs[0]:
        return float(ys[0]) if x < xs[0] else float(ys[_middle_of_run(xs, 0)])
    if x >= xs[-1]:
        return float(ys[-1]) if x > xs[-1] else float(ys[_middle_of_run(xs, len(xs) - 1)])
    for i in range(1, len(xs)):
        if x < xs[i]:
            x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
            return float(y0 + (y1 - y0) * (x - x0) / (x1 - x0))
        if x == xs[i]:
            return float(ys[_middle_of_run(xs, i)])
    raise AssertionError("unreachable")


def _middle_of_run(xs: Sequence[float], i: int) -> int:
    start = end = i
    while start > 0 and xs[start - 1] == xs[i]:
        start -= 1
    while end < len(xs) - 1 and xs[end + 1] == xs[i]:
        end += 1
    return (start + end) // 2


def effective_band(configured: "tuple[float, float] | str", card_extra: Mapping[str, Any], decision_threshold: float,
                   share: float) -> tuple[tuple[float, float], str]:
    """The band a model is served with and where it comes from: the configured fixed band, the rank band of the
    card's test-split percentiles (``auto``), or ``FIXED_BAND`` for an ``auto`` model whose card has none."""
    if not isinstance(configured, str):
        return (float(configured[0]), float(configured[1])), "configured"
    evaluation = card_extra.get("evaluation")
    percentiles = evaluation.get("best_score_percentiles") if isinstance(evaluation, Mapping) else None
    if not percentiles:
        return FIXED_BAND, "fixed (the model card has no test-split score percentiles)"
    try:
        band = rank_band([float(p) for p in percentiles], decision_threshold, share)
    except (TypeError, ValueError) as exc:
        return FIXED_BAND, f"fixed (the model card's best_score_percentiles are unusable: {exc})"
    return band, f"auto ({share:.0%} of the model's test frames nearest the decision threshold)"


@dataclass(frozen=True)
class CapturePolicy:
    """Capture rules from the device configuration."""

    band: tuple[float, float] = FIXED_BAND
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
