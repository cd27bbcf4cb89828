"""Labeling stage: label store, label imports, labeling backends and jobs.

Its resources are shared with the datasets stage: ``labels`` (the label store) and
``labeling`` (the labeling backend), both configured in ``tagqa_assets/resources.py``.
"""

import dagster as dg

from tagqa_assets.labeling.assets import label_store, unlabeled_images
from tagqa_assets.labeling.checks import label_store_sanity
from tagqa_assets.labeling.sensors import labeling_job_sensor

defs = dg.Definitions(
    assets=[label_store, unlabeled_images], asset_checks=[label_store_sanity], sensors=[labeling_job_sensor]
)
