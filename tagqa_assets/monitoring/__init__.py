"""Monitoring stage: line results collected from the devices, daily metrics and drift against the serving model.

The collector (``tagqa results collect``, collector.py) writes the parts; ``line_results``
(daily partitions) aggregates them; ``line_results_drift`` compares each device-day with the
serving model's evaluation baseline and opens labeling jobs. Its ``monitoring`` resource
(TAGQA_DRIFT_* thresholds) is configured in ``tagqa_assets/resources.py``.
"""

import dagster as dg

from tagqa_assets.monitoring.assets import line_results
from tagqa_assets.monitoring.checks import line_results_drift
from tagqa_assets.monitoring.sensors import line_results_sensor

defs = dg.Definitions(assets=[line_results], asset_checks=[line_results_drift], sensors=[line_results_sensor])
