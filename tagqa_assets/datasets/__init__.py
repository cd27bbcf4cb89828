"""Datasets stage: immutable, versioned training sets built from the approved labels."""

import dagster as dg

from tagqa_assets.datasets.assets import dataset_version
from tagqa_assets.datasets.sensors import dataset_version_sensor

defs = dg.Definitions(assets=[dataset_version], sensors=[dataset_version_sensor])
