"""``line_results_sensor``: materialize a day of ``line_results`` when new parts arrived for it.

Each tick lists the parts of the last ``LOOKBACK_DAYS`` UTC days (a late device, replaying its
outbox, still reaches yesterday's partition) and compares each day's signature (part count
and newest part name) with the cursor. The run key is the day plus its signature, so a tick
that sees the same parts twice never starts a second run.
"""


import json
from datetime import datetime, timedelta, timezone

import dagster as dg

from tagqa_assets.monitoring.assets import line_results
from tagqa_assets.monitoring.daily import frame_part_keys
from tagqa_assets.storage import StoreResource

LOOKBACK_DAYS = 3


@dg.sensor(
    name="line_results_sensor",
    target=[line_results],
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Materializes a day of line_results (and its drift check) when new result parts arrive.",
)
def line_results_sensor(context: dg.SensorEvaluationContext, store: StoreResource) -> dg.SensorResult:
    """Request each recent day whose parts changed since the last tick."""
    seen = json.loads(context.cursor) if context.cursor else {}
    object_store = store.open()
    today = datetime.now(timezone.utc).date()
    signatures, requests = {}, []
    for offset in range(LOOKBACK_DAYS):
        day = (today - timedelta(days=offset)).isoformat()
        keys = frame_part_keys(object_store, today - timedelta(days=offset))
        if not keys:
            continue
        signatures[day] = f"{len(keys)}:{max(k.rsplit('/', 1)[-1] for k in keys)}"
        if seen.get(day) != signatures[day]:
            requests.append(dg.RunRequest(partition_key=day, run_key=f"{day}:{signatures[day]}"))
    cursor = json.dumps(signatures, sort_keys=True)
    if not requests:
        return dg.SensorResult(skip_reason="no new result parts", cursor=cursor)
    return dg.SensorResult(run_requests=requests, cursor=cursor)
