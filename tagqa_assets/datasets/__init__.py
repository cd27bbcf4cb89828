"""Datasets stage: immutable, versioned training sets built from the approved labels."""

import dagster as dg

from tagqa_assets.datasets.assets import dataset_version, hard_examples
from tagqa_assets.datasets.checks import dataset_version_sanity
from tagqa_assets.datasets.sensors import dataset_version_sensor, retraining_schedule

defs = dg.Definitions(
    assets=[dataset_version, hard_examples],
    asset_checks=[dataset_version_sanity],
    sensors=[dataset_version_sensor],
    schedules=[retraining_schedule],
)
