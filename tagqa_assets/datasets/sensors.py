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

import dagster as dg

from tagqa_assets.datasets.assets import dataset_version
from tagqa_assets.datasets.pending import next_version, pending_versions, save_pending
from tagqa_assets.datasets.versions import DatasetVersionStore
from tagqa_assets.labeling.resources import LabelStoreResource
from tagqa_assets.partitions import dataset_versions
from tagqa_assets.storage import StoreResource


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
        snapshot = label_store.snapshot()
        if snapshot.images == 0:
            note = "no approved labels yet"
        else:
            new_version = next_version(object_store, snapshot.snapshot_id, sorted(known))
            note = f"approved snapshot {snapshot.snapshot_id[:8]} ({snapshot.images} images) already has a version"
            if new_version is not None:
                save_pending(object_store, new_version, snapshot, label_revision=revision)
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
