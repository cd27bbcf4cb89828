"""``dataset_version_sanity``: a blocking check that a dataset version can be trained and evaluated on."""

import dagster as dg

from tagqa_assets.contracts.datasets import SPLITS, DatasetRecord
from tagqa_assets.datasets.assets import dataset_version
from tagqa_assets.datasets.versions import DatasetVersionStore
from tagqa_assets.partitions import dataset_version_check
from tagqa_assets.storage import StoreResource


def sanity_problems(record: DatasetRecord, manifest_counts: dict[str, int] | None) -> list[str]:
    """What makes ``record`` unusable for training and evaluation (empty: nothing).

    A version needs images in every split (train and val for training, test for the gate)
    and a manifest whose images per split match the commit record's counts (``None``: the
    manifest could not be read, which the caller reports).
    """
    if sum(record.counts.values()) == 0:
        return [f"dataset version {record.version} is empty (0 images): label images and build a new version"]
    problems = []
    empty = [split for split in SPLITS if record.counts.get(split, 0) == 0]
    if empty:
        problems.append(f"dataset version {record.version}: split(s) {empty} have 0 images (counts {record.counts}); "
                        "training needs train and val images and evaluation needs test images")
    if manifest_counts is None:
        return problems
    differing = {split: (record.counts.get(split, 0), manifest_counts.get(split, 0)) for split in SPLITS
                 if record.counts.get(split, 0) != manifest_counts.get(split, 0)}
    if differing:
        problems.append(f"dataset version {record.version}: the manifest disagrees with dataset.json on images per split "
                        f"(record, manifest): {differing}")
    return problems


@dataset_version_check(asset=dataset_version, blocking=True)
def dataset_version_sanity(context: dg.AssetCheckExecutionContext, store: StoreResource) -> dg.AssetCheckResult:
    """Every split has images and the manifest matches the commit record; blocks training when not."""
    versions = DatasetVersionStore(store.open())
    record = versions.read(context.partition_key)
    unreadable = []
    try:
        manifest_counts = {str(k): int(v) for k, v in versions.manifest(record.version)["split"].value_counts().items()}
    except (ValueError, OSError, LookupError) as exc:
        manifest_counts = None
        unreadable = [f"dataset version {record.version}: manifest unreadable ({exc})"]
    problems = sanity_problems(record, manifest_counts) + unreadable
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={"images": sum(record.counts.values()), **{f"{split}_images": record.counts.get(split, 0) for split in SPLITS}},
        description="; ".join(problems) or f"{record.version}: {record.counts}",
    )
