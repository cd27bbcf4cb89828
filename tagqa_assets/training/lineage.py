"""How the model assets of one dataset-version partition find each other's outputs.

Each asset records the ``model_id`` it worked on in its materialization metadata; the next
asset reads the latest materialization of its upstream for the same partition, so a
backfill that retrains a version evaluates and registers exactly the model it trained.
"""

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from tagqa_assets.datasets.versions import DatasetVersionStore
from tagqa_assets.storage import ObjectStore

MODEL_ID = "model_id"


def upstream_metadata(instance: dg.DagsterInstance, asset: str, partition: str) -> dict[str, object]:
    """Metadata values of the latest materialization of ``asset`` for ``partition``.

    Raises ``dg.Failure`` naming the asset and partition when there is none.
    """
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=1
    )
    if not result.records:
        raise dg.Failure(f"{asset} has no materialization for dataset version {partition}; materialize it first")
    metadata = result.records[0].asset_materialization.metadata
    return {key: getattr(value, "value", value) for key, value in metadata.items()}


def upstream_model_id(instance: dg.DagsterInstance, asset: str, partition: str) -> str:
    """The ``model_id`` the latest materialization of ``asset`` for ``partition`` worked on."""
    model_id = upstream_metadata(instance, asset, partition).get(MODEL_ID)
    if not isinstance(model_id, str) or not model_id:
        raise dg.Failure(f"the latest {asset} materialization for {partition} records no {MODEL_ID}")
    return model_id


@contextmanager
def staged_dataset(store: ObjectStore, version: str, scratch: Path) -> Iterator[Path]:
    """The YOLO export of ``version`` in a private scratch folder, removed afterwards."""
    folder = scratch / "dataset"
    try:
        yield DatasetVersionStore(store).stage_yolo(version, folder).parent
    finally:
        shutil.rmtree(folder, ignore_errors=True)
