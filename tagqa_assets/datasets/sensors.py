"""``dataset_version_sensor``: add a ``dataset_versions`` partition when the approved labels change.

A tick compares the label store's revision with the cursor (cheap) and, only when it
moved, computes the approved snapshot. If its content hash differs from the newest
version's, the snapshot is frozen under ``datasets/_pending/<version>/`` and the sensor
returns the partition add request plus a run for it. The version name is the next
sequence number and the snapshot hash, so the asset can check it builds what the name
says. A pending version that is not a partition yet (a tick that died half way) is added
on the next tick; run keys are the version names, so nothing runs twice. On its first
tick the sensor also re-adds committed versions the instance does not know (a new
Dagster instance over an existing store), without runs.
"""

import json
from datetime import datetime, timedelta, timezone

import dagster as dg

from tagqa_assets.datasets.assets import dataset_version
from tagqa_assets.datasets.pending import next_version, pending_versions, save_pending
from tagqa_assets.datasets.versions import DatasetVersionStore
from tagqa_assets.labeling.resources import LabelStoreResource
from tagqa_assets.partitions import dataset_versions
from tagqa_assets.labeling.label_store import LabelStore
from tagqa_assets.storage import ObjectStore, StoreResource


def plan_new_version(object_store: ObjectStore, label_store: LabelStore, known: set[str], revision: str) -> tuple[str | None, str]:
    """Freeze the approved snapshot as the next version when it differs from the newest one.

    Returns ``(version, note)``; ``version`` is ``None`` (and ``note`` says why) when there
    are no approved labels or the snapshot already has a version.
    """
    snapshot = label_store.snapshot()
    if snapshot.images == 0:
        return None, "no approved labels yet"
    new_version = next_version(object_store, snapshot.snapshot_id, sorted(known))
    if new_version is None:
        return None, f"approved snapshot {snapshot.snapshot_id[:8]} ({snapshot.images} images) already has a version"
    save_pending(object_store, new_version, snapshot, label_revision=revision)
    return new_version, f"labels changed: {new_version} ({snapshot.images} images)"


@dg.sensor(
    name="dataset_version_sensor",
    target=[dataset_version],
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds a dataset_versions partition (and builds it) whenever the approved-label snapshot changes.",
)
def dataset_version_sensor(context: dg.SensorEvaluationContext, store: StoreResource, labels: LabelStoreResource) -> dg.SensorResult:
    """Read the cursor, compare the label snapshot with the newest version, add a partition."""
    previous = json.loads(context.cursor) if context.cursor else {}
    object_store = store.open()
    label_store = labels.open(object_store)
    known = set(context.instance.get_dynamic_partitions(dataset_versions.name))
    orphans = [v for v in pending_versions(object_store) if v not in known]
    revision = label_store.revision()
    new_version = None
    note = "label store unchanged since the last tick"
    if revision != previous.get("revision"):
        new_version, note = plan_new_version(object_store, label_store, known, revision)
    # The store is the record of which versions exist: a fresh Dagster instance gets the
    # committed ones back as partitions (nothing to build, so no runs for them).
    committed = [v for v in DatasetVersionStore(object_store).list_versions() if v not in known] if not previous else []
    cursor = json.dumps({"revision": revision})
    to_build = orphans + ([new_version] if new_version else [])
    if not to_build and not committed:
        return dg.SensorResult(skip_reason=note, cursor=cursor)
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=v, run_key=v, tags={"tagqa/trigger": "dataset_version_sensor"}) for v in to_build],
        dynamic_partitions_requests=[dataset_versions.build_add_request(committed + to_build)],
        cursor=cursor,
        skip_reason=None if to_build else f"re-added {len(committed)} committed version(s) as partitions; {note}",
    )


class RetrainingPolicyResource(dg.ConfigurableResource):
    """How often the retraining schedule may cut a version: ``TAGQA_RETRAIN_EVERY_DAYS`` (default 7)."""

    every_days: int = 7

    def due(self, newest_created_at: str | None, now: datetime) -> bool:
        """Whether at least ``every_days`` passed since the newest version (always, without one)."""
        if not newest_created_at:
            return True
        created = datetime.fromisoformat(newest_created_at.replace("Z", "+00:00"))
        return now - created >= timedelta(days=self.every_days) - timedelta(minutes=5)


@dg.schedule(
    name="retraining_schedule",
    cron_schedule="0 4 * * *",
    target=[dataset_version],
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily check at 04:00 UTC: cut a new dataset version (and so retrain) when approved labels "
    "changed and the newest version is at least TAGQA_RETRAIN_EVERY_DAYS old (default 7: weekly).",
)
def retraining_schedule(
    context: dg.ScheduleEvaluationContext, store: StoreResource, labels: LabelStoreResource, retraining: RetrainingPolicyResource
) -> dg.RunRequest | dg.SkipReason:
    """Periodic retraining for teams that switch ``dataset_version_sensor`` off (or as its safety net)."""
    object_store = store.open()
    versions = DatasetVersionStore(object_store)
    committed = versions.list_versions()
    newest = versions.read(committed[-1]).created_at if committed else None
    now = context.scheduled_execution_time or datetime.now(timezone.utc)
    if not retraining.due(newest, now.astimezone(timezone.utc)):
        return dg.SkipReason(f"newest version {committed[-1]} is younger than {retraining.every_days} day(s)")
    label_store = labels.open(object_store)
    known = set(context.instance.get_dynamic_partitions(dataset_versions.name))
    new_version, note = plan_new_version(object_store, label_store, known, label_store.revision())
    if new_version is None:
        return dg.SkipReason(note)
    context.instance.add_dynamic_partitions(dataset_versions.name, [new_version])
    return dg.RunRequest(partition_key=new_version, run_key=new_version, tags={"tagqa/trigger": "retraining_schedule"})
