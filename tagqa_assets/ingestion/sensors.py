"""``raw_image_sensor``: request an ingestion run for every batch of new raw images."""

import time
from datetime import datetime, timezone

import dagster as dg

from tagqa_assets.ingestion.assets import raw_images
from tagqa_assets.ingestion.discovery import discover_raw_keys
from tagqa_assets.ingestion.resources import RawEventQueueResource
from tagqa_assets.ingestion.scan import RawCursor, batch_run_key
from tagqa_assets.storage import StoreResource

BATCH_SIZE = 500
TRIGGER_TAG = "tagqa/trigger"


def requested_keys_since(instance: dg.DagsterInstance, since: float) -> set[str]:
    """Raw keys in the run config of every run this sensor requested after ``since`` (epoch seconds)."""
    runs = instance.get_runs(
        filters=dg.RunsFilter(tags={TRIGGER_TAG: "raw_image_sensor"}, created_after=datetime.fromtimestamp(since, timezone.utc))
    )
    keys: set[str] = set()
    for run in runs:
        keys.update(run.run_config.get("ops", {}).get("raw_images", {}).get("config", {}).get("keys", []))
    return keys


@dg.sensor(
    name="raw_image_sensor",
    target=[raw_images],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Finds new raw images (S3 event messages from an SQS queue when TAGQA_RAW_EVENT_QUEUE_URL is set, "
        "with a periodic per-source StartAfter listing as fallback; otherwise the listing every tick) "
        "and requests one ingestion run per batch."
    ),
)
def raw_image_sensor(
    context: dg.SensorEvaluationContext, store: StoreResource, raw_events: RawEventQueueResource
) -> dg.SensorResult:
    """Read the cursor, find only what is new, request runs with deterministic run keys.

    The returned cursor names the queue messages this tick handled; they are deleted on the
    next tick, which runs only after the daemon has submitted this tick's runs.
    """
    cursor = RawCursor.parse(context.cursor)
    found = discover_raw_keys(
        store.open(),
        cursor,
        queue=raw_events.open(),
        options=raw_events.options(),
        requested_since=lambda since: requested_keys_since(context.instance, since),
        now=time.time(),
    )
    for error in found.errors:
        context.log.warning(f"raw_image_sensor: {error}")
    if not found.new_keys:
        return dg.SensorResult(skip_reason=f"no new raw images: {found.summary()}", cursor=found.cursor.serialize())
    context.log.info(f"raw_image_sensor: {found.summary()}")
    batches = [found.new_keys[i : i + BATCH_SIZE] for i in range(0, len(found.new_keys), BATCH_SIZE)]
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=batch_run_key(batch),
                run_config={"ops": {"raw_images": {"config": {"keys": batch}}}},
                tags={TRIGGER_TAG: "raw_image_sensor", "tagqa/new_images": str(len(batch)), "tagqa/discovery": found.mode},
            )
            for batch in batches
        ],
        cursor=found.cursor.serialize(),
    )


raw_reconcile_schedule = dg.ScheduleDefinition(
    name="raw_reconcile_schedule",
    target=[raw_images],
    cron_schedule="17 3 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily full reconcile of raw/: ingests anything a writer put behind the sensor's cursor.",
)
