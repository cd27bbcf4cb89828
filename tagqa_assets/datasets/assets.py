"""The ``dataset_version`` asset: one immutable dataset version per dynamic partition."""

import dagster as dg

from tagqa_assets.contracts.datasets import COMMIT_FILE, parse_dataset_version
from tagqa_assets.contracts.keys import dataset_prefix
from tagqa_assets.datasets.build import build_dataset_version
from tagqa_assets.datasets.hard_examples import write_hard_examples
from tagqa_assets.datasets.pending import drop_pending, load_pending
from tagqa_assets.datasets.split import DEFAULT_RATIOS
from tagqa_assets.datasets.versions import DatasetVersionStore
from tagqa_assets.datasets.yolo_export import annotations_from_json
from tagqa_assets.datasets.views import version_metadata
from tagqa_assets.labeling.assets import label_store
from tagqa_assets.labeling.resources import LabelStoreResource
from tagqa_assets.partitions import dataset_versions
from tagqa_assets.previews import Tile, grid_markdown, metadata_table
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


@dg.asset(
    group_name="datasets",
    kinds={"python", "parquet"},
    deps=[label_store],
    code_version="hard-examples-v1",
    automation_condition=dg.AutomationCondition.eager(),
)
def hard_examples(context: dg.AssetExecutionContext, store: StoreResource, labels: LabelStoreResource) -> dg.MaterializeResult:
    """Edge-feedback images that came back labeled: the set every challenger is compared on.

    The edge captures what the deployed model was unsure about (and what operators flagged);
    once labeled, those images are where a new model most needs to be at least as good as
    the champion. ``model_evaluation`` evaluates challenger and champion on the current set,
    and a challenger that regresses on it is not approved automatically.
    """
    object_store = store.open()
    hard, written = write_hard_examples(object_store, labels.open(object_store).snapshot())
    context.log.info(f"hard examples {hard.set_id}: {hard.images} image(s){'' if written else ' (unchanged)'}")
    by_device = hard.manifest.groupby("device").size().to_dict() if hard.images else {}
    tiles = [
        Tile(object_store.get_bytes(hard.prefix + row.yolo_image), row.device, boxes=[a.xyxy() for a in annotations_from_json(row.annotations)])
        for row in hard.manifest.head(18).itertuples()
    ]
    return dg.MaterializeResult(
        metadata={
            "set_id": hard.set_id,
            "images": hard.images,
            "boxes": int(sum(len(annotations_from_json(a)) for a in hard.manifest["annotations"])),
            "by_device": metadata_table([{"device": d, "images": n} for d, n in sorted(by_device.items())]),
            "examples": metadata_table(
                [{"image_key": r.image_key, "device": r.device, "labeling_job": r.labeling_job} for r in hard.manifest.head(50).itertuples()]
            ),
            "preview": grid_markdown(tiles, "hard examples with their labels"),
            "location": object_store.uri_for(hard.prefix + "manifest.parquet"),
        },
        data_version=dg.DataVersion(hard.set_id),
    )
