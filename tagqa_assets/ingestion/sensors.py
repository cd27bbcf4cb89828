"""``raw_image_sensor``: request an ingestion run for every batch of new raw images."""

import dagster as dg

from tagqa_assets.ingestion.assets import raw_images
from tagqa_assets.ingestion.scan import RawCursor, batch_run_key, scan_new_raw_keys
from tagqa_assets.storage import StoreResource

BATCH_SIZE = 500


@dg.sensor(
    name="raw_image_sensor",
    target=[raw_images],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Lists raw/ incrementally (per-source StartAfter cursor) and requests one ingestion run per batch of new images.",
)
def raw_image_sensor(context: dg.SensorEvaluationContext, store: StoreResource) -> dg.SensorResult | dg.SkipReason:
    """Read the cursor, list only what is new, request runs with deterministic run keys."""
    cursor = RawCursor.parse(context.cursor)
    scan = scan_new_raw_keys(store.open(), cursor)
    if not scan.new_keys:
        return dg.SkipReason(f"no new raw images in {len(scan.sources)} source(s) ({scan.list_calls} list calls)")
    batches = [scan.new_keys[i : i + BATCH_SIZE] for i in range(0, len(scan.new_keys), BATCH_SIZE)]
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=batch_run_key(batch),
                run_config={"ops": {"raw_images": {"config": {"keys": batch}}}},
                tags={"tagqa/trigger": "raw_image_sensor", "tagqa/new_images": str(len(batch))},
            )
            for batch in batches
        ],
        cursor=scan.cursor.serialize(),
    )


raw_reconcile_schedule = dg.ScheduleDefinition(
    name="raw_reconcile_schedule",
    target=[raw_images],
    cron_schedule="17 3 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily full reconcile of raw/: ingests anything a writer put behind the sensor's cursor.",
)
