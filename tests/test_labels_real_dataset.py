"""The real metal-tag dataset end to end: upload, ingest, import labels.csv, unlabeled images,
a dataset version, and the same split when everything is done again in another store."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from tagqa_assets.datasets.assets import dataset_version
from tagqa_assets.datasets.sensors import dataset_version_sensor
from tagqa_assets.datasets.versions import DatasetVersionStore
from tagqa_assets.ingestion.assets import raw_images
from tagqa_assets.ingestion.writers import upload_folder
from tagqa_assets.labeling.assets import label_store, unlabeled_images
from tagqa_assets.labeling.imports.sources import import_path
from tagqa_assets.labeling.label_store import LocalLabelStore
from tagqa_assets.labeling.pre_annotations import PreAnnotationResource
from tagqa_assets.labeling.resources import LabelingResource, LabelStoreResource
from tagqa_assets.partitions import dataset_versions
from tagqa_assets.storage import LocalObjectStore, StoreResource

ASSETS = [raw_images, label_store, unlabeled_images, dataset_version]


def _pipeline(root: Path, dataset: Path, *, images_root: Path | None) -> tuple[LocalObjectStore, str, dict]:
    """Upload + ingest the images, import labels.csv, list unlabeled images, build a version."""
    store = LocalObjectStore(root)
    resources = {"store": StoreResource(root=str(root)), "labels": LabelStoreResource(), "labeling": LabelingResource(), "pre_annotation": PreAnnotationResource()}
    instance = dg.DagsterInstance.ephemeral()
    uploaded = upload_folder(store, dataset / "images")
    assert len(uploaded.keys) == 249 and not uploaded.refused
    assert dg.materialize([raw_images], resources=resources, instance=instance).success

    report = import_path(store, LocalLabelStore(store), dataset / "labels.csv", images_root=images_root)
    assert (report.rows, report.imported, len(report.rejects)) == (235, 235, 0)
    assert report.matched_by == ({"content_hash": 235} if images_root else {"relative_path": 235})

    outcome = dg.materialize(ASSETS, selection=[unlabeled_images], resources=resources, instance=instance)
    unlabeled = outcome.get_asset_materialization_events()[0].materialization.metadata["unlabeled"].value

    tick = dataset_version_sensor(dg.build_sensor_context(resources=resources, instance=instance))
    [version] = tick.dynamic_partitions_requests[0].partition_keys
    instance.add_dynamic_partitions(dataset_versions.name, [version])
    assert dg.materialize(ASSETS, selection=[dataset_version], partition_key=version, resources=resources, instance=instance).success
    return store, version, {"unlabeled": unlabeled}


def test_real_labels_unlabeled_images_and_a_reproducible_version(real_dataset: Path, tmp_path: Path):
    store, version, seen = _pipeline(tmp_path / "first", real_dataset, images_root=None)
    assert seen["unlabeled"] == 14
    versions = DatasetVersionStore(store)
    record = versions.read(version)
    manifest = versions.manifest(version)
    assert len(manifest) == 235 and sum(record.counts.values()) == 235
    assert versions.stats(version)["boxes_per_image"] == {"0": 5, "1": 52, "2": 125, "3": 38, "4": 10, "5": 4, "6": 1}
    assert not manifest["yolo_image"].str.contains("jpg_").any()

    # Everything again in a new store: other raw keys (new upload times), matched by content.
    other, other_version, seen_again = _pipeline(tmp_path / "second", real_dataset, images_root=real_dataset / "images")
    assert seen_again["unlabeled"] == 14
    assert other_version == version  # same approved labels, same snapshot id, same name
    again = DatasetVersionStore(other).manifest(other_version)
    assert dict(zip(again["sha256"], again["split"])) == dict(zip(manifest["sha256"], manifest["split"]))
    assert set(again["image_key"]).isdisjoint(manifest["image_key"])
