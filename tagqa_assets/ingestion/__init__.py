"""Ingestion stage: raw images in, validated inventory and quarantine out."""

import dagster as dg

from tagqa_assets.ingestion.assets import raw_images
from tagqa_assets.ingestion.resources import RawEventQueueResource
from tagqa_assets.ingestion.sensors import raw_image_sensor, raw_reconcile_schedule

raw_events = RawEventQueueResource(
    queue_url=dg.EnvVar("TAGQA_RAW_EVENT_QUEUE_URL"),
    aws_region=dg.EnvVar("TAGQA_AWS_REGION"),
    fallback_every_ticks=dg.EnvVar.int("TAGQA_RAW_FALLBACK_EVERY_TICKS"),
)

defs = dg.Definitions(
    assets=[raw_images],
    sensors=[raw_image_sensor],
    schedules=[raw_reconcile_schedule],
    resources={"raw_events": raw_events},
)
