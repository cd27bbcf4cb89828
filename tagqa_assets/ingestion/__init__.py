"""Ingestion stage: raw images in, validated inventory and quarantine out.

Its ``raw_events`` resource (the S3 event queue, TAGQA_RAW_EVENT_QUEUE_URL) is configured in
``tagqa_assets/resources.py``.
"""

import dagster as dg

from tagqa_assets.ingestion.assets import raw_images
from tagqa_assets.ingestion.sensors import raw_image_sensor, raw_reconcile_schedule

defs = dg.Definitions(
    assets=[raw_images],
    sensors=[raw_image_sensor],
    schedules=[raw_reconcile_schedule],
)
