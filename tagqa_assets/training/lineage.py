"""How the model assets of one dataset-version partition hand each other their outputs.

``trained_model`` and ``onnx_model`` output the ``model_id`` they worked on and
``model_evaluation`` the key of its evaluation document; the ``model_handoff`` IO manager
passes that value to the next asset (and to the checks on it):

- when the upstream step ran in the same run (or in the run this one re-executes), the
  value that run produced: a backfill and a sensor run on one partition each continue
  with their own model, whichever finished training last;
- when the upstream asset is not part of the run (only a downstream asset re-runs), the
  latest materialization's value for the partition.

The value travels in the materialization's metadata (``handoff``), so the event log is the
only place it is kept and the UI shows it.
"""

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from tagqa_assets.datasets.versions import DatasetVersionStore
from tagqa_assets.storage import ObjectStore

MODEL_ID = "model_id"
HANDOFF = "handoff"
HANDOFF_IO_MANAGER = "model_handoff"


class ModelHandoffIOManager(dg.ConfigurableIOManager):
    """Hands a model asset's output value (an id or a store key) to the next asset of the same partition."""

    def handle_output(self, context: dg.OutputContext, obj: str) -> None:
        """Record ``obj`` in the materialization's metadata; ``dg.Failure`` for an empty or non-text value."""
        if not isinstance(obj, str) or not obj:
            raise dg.Failure(f"{context.asset_key.to_user_string()} handed off {obj!r}; expected a non-empty id")
        context.add_output_metadata({HANDOFF: obj})

    def load_input(self, context: dg.InputContext) -> str:
        """The upstream value for this partition: from the producing run when known, else the latest."""
        return handoff_value(context.instance, context.asset_key, context.asset_partition_key, _producing_run(context))


def _producing_run(context: dg.InputContext) -> str | None:
    """The run whose step produced the input, or ``None`` when the upstream asset is not part of this run."""
    upstream = context.upstream_output
    if upstream is None:
        return None
    try:
        run_id = upstream.run_id
    except dg.DagsterInvariantViolationError:
        return None
    # For an upstream asset outside the run Dagster builds a stand-in context whose run id
    # names no run (``__EPHEMERAL_RUN_ID``).
    return run_id if context.instance.has_run(run_id) else None


def handoff_value(instance: dg.DagsterInstance, asset: dg.AssetKey, partition: str, run_id: str | None) -> str:
    """The ``handoff`` value ``asset`` recorded for ``partition`` in run ``run_id`` (``None``: the latest run).

    Raises ``dg.Failure`` naming the asset, partition (and run) when there is none.
    """
    name = asset.to_user_string()
    if run_id is None:
        result = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=asset, asset_partitions=[partition]), limit=1)
        materializations = [record.asset_materialization for record in result.records]
        where = f"for dataset version {partition}; materialize it first"
    else:
        records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
        materializations = [
            m for m in (record.event_log_entry.asset_materialization for record in records)
            if m is not None and m.asset_key == asset and m.partition == partition
        ][-1:]
        where = f"for dataset version {partition} in run {run_id}"
    if not materializations:
        raise dg.Failure(f"{name} has no materialization {where}")
    value = materializations[0].metadata.get(HANDOFF)
    text = getattr(value, "value", value)
    if not isinstance(text, str) or not text:
        raise dg.Failure(f"the {name} materialization {where} records no {HANDOFF}")
    return text


@contextmanager
def staged_dataset(store: ObjectStore, version: str, scratch: Path) -> Iterator[Path]:
    """The YOLO export of ``version`` in a private scratch folder, removed afterwards."""
    folder = scratch / "dataset"
    try:
        yield DatasetVersionStore(store).stage_yolo(version, folder).parent
    finally:
        shutil.rmtree(folder, ignore_errors=True)
