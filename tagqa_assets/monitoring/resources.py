"""Monitoring settings: drift thresholds and the device behaviour the baseline is read with.

The thresholds' defaults are the settings' (``tagqa_assets/settings.py``; reasons in
docs/monitoring.md, "Drift thresholds"); the code location wires them in
``tagqa_assets/resources.py``. Numbers are text fields, like the promotion
policy's, because ``dg.EnvVar`` hands over text; ``thresholds()`` parses and checks them.
"""

import dagster as dg

from tagqa_assets.monitoring.drift import DriftThresholds
from tagqa_assets.settings import DEFAULTS

_DEFAULTS = DriftThresholds()


def _number(setting: str, text: str, kind: type = float) -> float:
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{setting} must be a number, got {text!r}") from None


class MonitoringResource(dg.ConfigurableResource):
    """Drift thresholds per device-day and the size of the labeling sample a drifted day gets."""

    psi_threshold: str = str(_DEFAULTS.psi)
    defect_rate_delta: str = str(_DEFAULTS.defect_rate_delta)
    capture_share_delta: str = str(_DEFAULTS.capture_share_delta)
    min_frames: int = _DEFAULTS.min_frames
    decision_threshold: float = _DEFAULTS.decision_threshold  # the devices' decisionThreshold
    # The devices' captureBand: both None for "auto" (the default; captureShare then says how wide), or fixed.
    capture_band_low: float | None = None
    capture_band_high: float | None = None
    capture_share: float = _DEFAULTS.capture_share
    labeling_sample: int = DEFAULTS.drift_labeling_sample

    def thresholds(self) -> DriftThresholds:
        """The thresholds as a value object; ``ValueError`` naming the setting that makes no sense."""
        fixed = (self.capture_band_low, self.capture_band_high)
        if fixed != (None, None) and (None in fixed or not 0 <= fixed[0] <= fixed[1] <= 1):
            raise ValueError(f"capture band must be unset (the devices' \"auto\") or satisfy 0 <= low <= high <= 1, "
                             f"got {self.capture_band_low}, {self.capture_band_high}")
        if not 0 < self.capture_share <= 1:
            raise ValueError(f"capture_share must be in (0, 1], got {self.capture_share}")
        if self.min_frames < 1 or self.labeling_sample < 1:
            raise ValueError("TAGQA_DRIFT_MIN_FRAMES and TAGQA_DRIFT_LABELING_SAMPLE must be at least 1")
        return DriftThresholds(psi=_number("TAGQA_DRIFT_PSI", self.psi_threshold),
                               defect_rate_delta=_number("TAGQA_DRIFT_DEFECT_RATE_DELTA", self.defect_rate_delta),
                               capture_share_delta=_number("TAGQA_DRIFT_CAPTURE_SHARE_DELTA", self.capture_share_delta),
                               min_frames=self.min_frames, decision_threshold=self.decision_threshold,
                               capture_band=None if fixed == (None, None) else fixed,
                               capture_share=self.capture_share)
