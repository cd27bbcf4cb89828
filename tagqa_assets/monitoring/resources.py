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
    capture_band_low: float = _DEFAULTS.capture_band[0]  # the devices' captureBand
    capture_band_high: float = _DEFAULTS.capture_band[1]
    labeling_sample: int = DEFAULTS.drift_labeling_sample

    def thresholds(self) -> DriftThresholds:
        """The thresholds as a value object; ``ValueError`` naming the setting that makes no sense."""
        if not 0 <= self.capture_band_low <= self.capture_band_high <= 1:
            raise ValueError(f"capture band must satisfy 0 <= low <= high <= 1, got "
                             f"{self.capture_band_low}, {self.capture_band_high}")
        if self.min_frames < 1 or self.labeling_sample < 1:
            raise ValueError("TAGQA_DRIFT_MIN_FRAMES and TAGQA_DRIFT_LABELING_SAMPLE must be at least 1")
        return DriftThresholds(psi=_number("TAGQA_DRIFT_PSI", self.psi_threshold),
                               defect_rate_delta=_number("TAGQA_DRIFT_DEFECT_RATE_DELTA", self.defect_rate_delta),
                               capture_share_delta=_number("TAGQA_DRIFT_CAPTURE_SHARE_DELTA", self.capture_share_delta),
                               min_frames=self.min_frames, decision_threshold=self.decision_threshold,
                               capture_band=(self.capture_band_low, self.capture_band_high))
