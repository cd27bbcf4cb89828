"""Drift of one device-day against the serving model's evaluation baseline.

The baseline is the best detection score of every image of the model's test split, through
the edge runtime's pipeline, as ``model_evaluation`` records it in ``models/<id>/metrics.json``:
of the precision variant the device ran (``best_scores.test`` for fp32, the export;
``variants.<precision>.best_scores.test`` for the others, e.g. int8). Records without a
precision (runtimes before it) are compared with the fp32 baseline. Three comparisons
(docs/monitoring.md, "Drift"):

- PSI of the best score: bins are the baseline's quantiles (about ten images per bin, 2 to
  10 bins, so a small test split does not make noise look like drift), proportions with a
  pseudo-count of 0.5 per bin, ``sum((day - base) * ln(day / base))``;
- defect rate (best score >= the decision threshold) against the baseline's;
- share of frames in the capture band (``low <= best < high``) against the baseline's; with the
  devices' ``auto`` band that is the band their model card carries, placed on these same scores.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edge_runtime.capture import rank_band, score_percentiles
from tagqa_assets.contracts.models import FP32, METRICS_FILE, model_key
from tagqa_assets.settings import DEFAULTS
from tagqa_assets.storage import ObjectNotFound, ObjectStore


@dataclass(frozen=True)
class DriftThresholds:
    """When a device-day counts as drifted, and what a device's verdict and capture band are.

    The thresholds' defaults are the settings' (TAGQA_DRIFT_*, ``tagqa_assets/settings.py``).
    """

    psi: float = DEFAULTS.drift_psi
    defect_rate_delta: float = DEFAULTS.drift_defect_rate_delta
    capture_share_delta: float = DEFAULTS.drift_capture_share_delta
    min_frames: int = DEFAULTS.drift_min_frames
    decision_threshold: float = 0.5
    capture_band: tuple[float, float] | None = None  # None: the devices' "auto" band, placed on the baseline
    capture_share: float = 0.2  # the devices' captureShare (with the "auto" band)

    def band_for(self, baseline: np.ndarray) -> tuple[float, float]:
        """The capture band a device serving the model of ``baseline`` uses: the configured one, or the rank band
        its model card carries, computed from the same test-split scores (edge_runtime.capture)."""
        if self.capture_band is not None:
            return self.capture_band
        return rank_band(score_percentiles(baseline.tolist()), self.decision_threshold, self.capture_share)


@dataclass(frozen=True)
class DriftResult:
    """One device-day against its baseline; ``reasons`` empty means no drift."""

    device: str
    model_id: str
    frames: int
    precision: str  # what the device-day's records say it ran ("" for records without one)
    baseline: str  # whose test-split scores it was compared with (Baseline.name)
    baseline_images: int
    psi: float
    defect_rate: float
    baseline_defect_rate: float
    capture_share: float
    baseline_capture_share: float
    reasons: tuple[str, ...]

    @property
    def drifted(self) -> bool:
        return bool(self.reasons)

    def row(self) -> dict:
        data = asdict(self)
        data["reasons"] = ", ".join(self.reasons) or "-"
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in data.items()}


@dataclass(frozen=True)
class Baseline:
    """The test-split best scores of one precision variant of a model."""

    scores: np.ndarray
    precision: str  # the variant the scores were computed with (fp32, int8)
    name: str  # for the check's table: the variant, and why it was chosen when the records named none


def load_baseline(store: ObjectStore, model_id: str, precision: str | None = None) -> Baseline | None:
    """The recorded test-split best scores of ``model_id``'s ``precision`` variant; None when there are none.

    ``precision`` None (records from runtimes that did not report it) gets the fp32 baseline; any
    other variant only its own (``variants.<precision>.best_scores.test``), never fp32's in its
    place. None when the model's evaluation predates ``best_scores`` or recorded none for that variant.
    """
    try:
        document = store.get_json(model_key(model_id, METRICS_FILE))
    except ObjectNotFound:
        return None
    variant = precision or FP32
    source = document if variant == FP32 else (document.get("variants") or {}).get(variant) or {}
    scores = (source.get("best_scores") or {}).get("test")
    if not scores:
        return None
    name = variant if precision else f"{FP32} (the records name no precision)"
    return Baseline(np.asarray(scores, dtype=np.float64), variant, name)


def psi(baseline: np.ndarray, current: np.ndarray) -> float:
    """Population stability index of ``current`` against ``baseline`` on baseline-quantile bins."""
    bins = int(np.clip(len(baseline) // 10, 2, 10))
    inner = np.unique(np.quantile(baseline, np.linspace(0, 1, bins + 1)[1:-1]))
    if inner.size == 0:
        inner = np.array([0.5])
    base = np.bincount(np.searchsorted(inner, baseline, side="right"), minlength=inner.size + 1) + 0.5
    day = np.bincount(np.searchsorted(inner, current, side="right"), minlength=inner.size + 1) + 0.5
    base, day = base / base.sum(), day / day.sum()
    return float(np.sum((day - base) * np.log(day / base)))


def compare(device: str, model_id: str, scores: np.ndarray, baseline: np.ndarray | Baseline,
            thresholds: DriftThresholds, *, precision: str | None = None) -> DriftResult:
    """Compare one device-day's best scores (of records saying ``precision``) with the baseline's (see module
    docstring); a bare array is an fp32 baseline."""
    name = baseline.name if isinstance(baseline, Baseline) else FP32
    baseline = baseline.scores if isinstance(baseline, Baseline) else baseline
    low, high = thresholds.band_for(baseline)

    def shares(values: np.ndarray) -> tuple[float, float]:
        return (float(np.mean(values >= thresholds.decision_threshold)),
                float(np.mean((values >= low) & (values < high))))

    defect, capture = shares(scores)
    base_defect, base_capture = shares(baseline)
    value = psi(baseline, scores)
    reasons = []
    if len(scores) >= thresholds.min_frames:
        if value > thresholds.psi:
            reasons.append(f"best-score PSI {value:.2f} > {thresholds.psi}")
        if abs(defect - base_defect) > thresholds.defect_rate_delta:
            reasons.append(f"defect rate {defect:.2f} vs {base_defect:.2f}")
        if abs(capture - base_capture) > thresholds.capture_share_delta:
            reasons.append(f"capture-band share {capture:.2f} vs {base_capture:.2f}")
    return DriftResult(device, model_id, len(scores), precision or "", name, len(baseline), value, defect,
                       base_defect, capture, base_capture, tuple(reasons))
