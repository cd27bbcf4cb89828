"""The ``dataset_version`` asset: one immutable dataset version per dynamic partition."""

import dagster as dg

from tagqa_assets.contracts.datasets import COMMIT_FILE, parse_dataset_version
from tagqa_assets.contracts.keys import dataset_prefix
from tagqa_assets.datasets.build import build_dataset_version
from tagqa_assets.datasets.pending import drop_pending, load_pending
from tagqa_assets.datasets.split import DEFAULT_RATIOS
from tagqa_assets.datasets.versions import DatasetVersionStore
from tagqa_assets.datasets.views import version_metadata
from tagqa_assets.labeling.assets import label_store
from tagqa_assets.labeling.resources import LabelStoreResource
from tagqa_assets.partitions import dataset_versions
from tagqa_assets.storage import StoreResource


class DatasetVersionConfig(dg.Config):
    """Split ratios for images new in this version (images of the parent keep their split)."""

    train_ratio: float = DEFAULT_RATIOS["train"]
    val_ratio: float = DEFAULT_RATIOS["val"]
    test_ratio: float = DEFAULT_RATIOS["test"]


@dg.asset(
    group_name="datasets",
    kinds={"python", "parquet"},
    partitions_def=dataset_versions,
    deps=[label_store],
    code_version="dataset-v1",
)
def dataset_version(
    context: dg.AssetExecutionContext, config: DatasetVersionConfig, store: StoreResource, labels: LabelStoreResource
) -> dg.MaterializeResult:
    """An immutable training set: manifest, Ultralytics YOLO export, stats, parent version.

    Built from the approved-label snapshot frozen when ``dataset_version_sensor`` added the
    partition (or, for a partition added by hand, the current snapshot if it still hashes to
    the id in the partition name). Splits follow the image content. A committed version is
    never rebuilt: materializing it again only reports it.
    """
    version = context.partition_key
    _, hash8 = parse_dataset_version(version)
    object_store = store.open()
    versions = DatasetVersionStore(object_store)
    if versions.is_committed(version):
        context.log.info(f"{version} is already committed; versions are immutable, nothing was written")
        record = versions.read(version)
        return dg.MaterializeResult(
            metadata={"already_committed": True, **version_metadata(object_store, record, versions.stats(version), versions.manifest(version))},
            data_version=dg.DataVersion(record.label_snapshot_id[:16]),
        )
    snapshot = load_pending(object_store, version)
    origin = "snapshot frozen by dataset_version_sensor"
    if snapshot is None:
        snapshot = labels.open(object_store).snapshot()
        origin = "current label store"
        if not snapshot.snapshot_id.startswith(hash8):
            raise dg.Failure(
                description=(
                    f"{version} names approved-label snapshot {hash8}, but the label store's snapshot is now "
                    f"{snapshot.snapshot_id[:8]} and no frozen snapshot exists for {version}; "
                    "let dataset_version_sensor add a partition for the current labels instead"
                )
            )
    ratios = {"train": config.train_ratio, "val": config.val_ratio, "test": config.test_ratio}
    result = build_dataset_version(object_store, snapshot, version, ratios=ratios)
    drop_pending(object_store, version)
    context.log.info(f"committed {object_store.uri_for(dataset_prefix(version) + COMMIT_FILE)} from the {origin}")
    return dg.MaterializeResult(
        metadata={"already_committed": False, "built_from": origin, **version_metadata(object_store, result.record, result.stats, result.manifest)},
        data_version=dg.DataVersion(snapshot.snapshot_id[:16]),
    )
