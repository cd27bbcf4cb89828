"""Ingestion stage: raw images in, validated inventory and quarantine out."""

import dagster as dg

from tagqa_assets.ingestion.assets import raw_images
from tagqa_assets.ingestion.sensors import raw_image_sensor, raw_reconcile_schedule

defs = dg.Definitions(assets=[raw_images], sensors=[raw_image_sensor], schedules=[raw_reconcile_schedule])
