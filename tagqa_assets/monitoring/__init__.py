"""Monitoring stage: line results collected from the devices, daily metrics and drift against the serving model.

The collector (``tagqa results collect``, collector.py) writes the parts; ``line_results``
(daily partitions) aggregates them; ``line_results_drift`` compares each device-day with the
serving model's evaluation baseline and opens labeling jobs. Settings: TAGQA_DRIFT_* (resources.py).
"""

import dagster as dg

from tagqa_assets.monitoring.assets import line_results
from tagqa_assets.monitoring.checks import line_results_drift
from tagqa_assets.monitoring.resources import MonitoringResource
from tagqa_assets.monitoring.sensors import line_results_sensor

resources = {
    "monitoring": MonitoringResource(
        psi_threshold=dg.EnvVar("TAGQA_DRIFT_PSI"),
        defect_rate_delta=dg.EnvVar("TAGQA_DRIFT_DEFECT_RATE_DELTA"),
        capture_share_delta=dg.EnvVar("TAGQA_DRIFT_CAPTURE_SHARE_DELTA"),
        min_frames=dg.EnvVar.int("TAGQA_DRIFT_MIN_FRAMES"),
        labeling_sample=dg.EnvVar.int("TAGQA_DRIFT_LABELING_SAMPLE"),
    ),
}

defs = dg.Definitions(assets=[line_results], asset_checks=[line_results_drift], sensors=[line_results_sensor],
                      resources=resources)
