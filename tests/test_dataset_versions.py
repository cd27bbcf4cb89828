"""Dataset versions: content-based splits, YOLO export, immutability, the reader API, the sensor."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from image_fixtures import encoded_image
from tagqa_assets.contracts.datasets import dataset_version_name, parse_dataset_version
from tagqa_assets.contracts.labels import APPROVED, REJECTED, Annotation, LabelRecord
from tagqa_assets.datasets.assets import dataset_version
from tagqa_assets.datasets.build import VersionExists, build_dataset_version
from tagqa_assets.datasets.pending import PENDING_PREFIX, pending_versions
from tagqa_assets.datasets.sensors import dataset_version_sensor
from tagqa_assets.datasets.split import assign_splits, check_ratios, content_position, split_for
from tagqa_assets.datasets.versions import DatasetVersionStore
from tagqa_assets.datasets.yolo_export import yolo_image_path, yolo_label_path, yolo_label_text
from tagqa_assets.ingestion.ingest import ingest_keys
from tagqa_assets.labeling.label_store import LocalLabelStore
from tagqa_assets.labeling.resources import LabelStoreResource
from tagqa_assets.partitions import dataset_versions
from tagqa_assets.storage import S3ObjectStore, StoreResource


@pytest.mark.parametrize(
    "sha, expected",
    [
        ("0" * 64, "train"),  # position 0.0: the first train slot
        ("c" + "0" * 63, "train"),  # 0.75
        ("cc" + "0" * 62, "train"),  # 0.796875: just below the 0.8 boundary
        ("cd" + "0" * 62, "val"),  # 0.80078125: just above it
        ("e" + "0" * 63, "val"),  # 0.875 lies in [0.8, 0.9)
        ("e8" + "0" * 62, "test"),  # 0.90625
        ("f" * 64, "test"),  # the last position
    ],
)
def test_split_for_content_positions(sha, expected):
    assert split_for(sha) == expected


def test_split_depends_only_on_content_and_inherits_from_the_parent():
    shas = [f"{i:064x}"[::-1] for i in range(1, 200)]
    first = assign_splits(shas, {"train": 0.8, "val": 0.1, "test": 0.1})
    assert first == assign_splits(list(reversed(shas)), {"train": 0.8, "val": 0.1, "test": 0.1})
    # Changing the ratios later moves no image that a parent version already placed.
    changed = assign_splits(shas + ["f" * 64], {"train": 0.5, "val": 0.25, "test": 0.25}, inherited=first)
    assert all(changed[sha] == first[sha] for sha in shas)
    assert changed["f" * 64] == "test"
    assert abs(content_position("8" + "0" * 63) - 0.5) < 1e-12


@pytest.mark.parametrize(
    "ratios, message",
    [
        ({"train": 0.8, "val": 0.1}, "sum to 1"),  # 0.9 in total
        ({"train": 1.2, "val": -0.1, "test": -0.1}, ">= 0"),
        ({"train": 0.0, "val": 0.5, "test": 0.5}, "train ratio must be positive"),
        ({"train": 0.8, "holdout": 0.2}, "unknown split"),
    ],
)
def test_bad_split_ratios_are_refused(ratios, message):
    with pytest.raises(ValueError, match=message):
        check_ratios(ratios)


def test_yolo_labels_on_a_non_square_image():
    # A 450x300 image: x is divided by the width, y by the height.
    text = yolo_label_text([Annotation(0, 45, 30, 90, 60), Annotation(0, 0, 0, 450, 300)], 450, 300)
    assert text == "0 0.200000 0.200000 0.200000 0.200000\n0 0.500000 0.500000 1.000000 1.000000\n"
    assert yolo_label_text([], 450, 300) == ""  # background image: empty file
    image = yolo_image_path("val", "ab" * 32, "JPEG")
    assert image == f"images/val/{'ab' * 8}.jpg"  # odd upload names (x.jpg_0) never reach Ultralytics
    assert yolo_label_path(image) == f"labels/val/{'ab' * 8}.txt"


def _labeled_images(store, count: int, *, first_shade: int = 0, boxes: int = 1) -> LocalLabelStore:
    keys = {f"raw/camera-1/2026/11/25/{120000 + first_shade + i}-tag.jpg": encoded_image(size=(90, 60), shade=first_shade + i) for i in range(count)}
    for key, data in keys.items():
        store.put_bytes(key, data)
    report = ingest_keys(store, list(keys), run_id="test")
    labels = LocalLabelStore(store)
    labels.append(
        [
            LabelRecord(
                source_ref=row.key,
                image_sha256=row.sha256,
                image_width=row.width,
                image_height=row.height,
                annotations=tuple(Annotation(0, 5 + b * 10, 5, 8, 8) for b in range(boxes if i % 3 else 0)),
                event_time=1.0,
                labeling_job="test",
            )
            for i, row in enumerate(report.accepted)
        ]
    )
    return labels


def test_build_commit_and_read_back(any_store, tmp_path: Path):
    labels = _labeled_images(any_store, 20)
    snapshot = labels.snapshot()
    version = dataset_version_name(1, snapshot.snapshot_id)
    result = build_dataset_version(any_store, snapshot, version)
    versions = DatasetVersionStore(any_store)
    assert versions.list_versions() == [version]
    record = versions.read(version)
    assert record.label_snapshot_id == snapshot.snapshot_id and record.parent is None
    assert sum(record.counts.values()) == 20 and record.class_names == ("scratch",)
    manifest = versions.manifest(version)
    assert sorted(manifest["sha256"]) == sorted(snapshot.frame["sha256"])
    assert all(manifest["split"] == [split_for(s) for s in manifest["sha256"]])
    assert result.stats["boxes_per_image"] == {"0": 7, "1": 13}

    data_yaml = versions.stage_yolo(version, tmp_path / "staged")
    text = data_yaml.read_text()
    assert f'path: "{tmp_path / "staged"}"' in text and '0: "scratch"' in text
    for row in manifest.itertuples():
        assert (tmp_path / "staged" / row.yolo_image).read_bytes() == any_store.get_bytes(row.image_key)
        lines = (tmp_path / "staged" / yolo_label_path(row.yolo_image)).read_text().splitlines()
        assert len(lines) == len(json.loads(row.boxes))
    assert versions.stage_yolo(version, tmp_path / "staged") == data_yaml  # staged once, reused

    with pytest.raises(VersionExists):
        build_dataset_version(any_store, snapshot, version)
    with pytest.raises(ValueError, match="names snapshot"):
        build_dataset_version(any_store, snapshot, dataset_version_name(2, "0" * 64))


def test_a_version_without_commit_record_does_not_exist(local_store):
    labels = _labeled_images(local_store, 5)
    snapshot = labels.snapshot()
    version = dataset_version_name(1, snapshot.snapshot_id)
    build_dataset_version(local_store, snapshot, version)
    local_store.delete(f"datasets/{version}/dataset.json")  # as if the build died before committing
    versions = DatasetVersionStore(local_store)
    assert versions.list_versions() == []
    with pytest.raises(ValueError, match=version):
        versions.read(version)
    with pytest.raises(ValueError, match="v0009-00000000"):
        versions.manifest("v0009-00000000")


def test_second_version_diff_and_stable_splits(local_store):
    labels = _labeled_images(local_store, 12)
    first = labels.snapshot()
    v1 = dataset_version_name(1, first.snapshot_id)
    build_dataset_version(local_store, first, v1)
    latest = labels.latest().sort_values("source_ref")
    relabel, reject = latest.iloc[1], latest.iloc[2]
    labels.append(
        [
            LabelRecord.from_row({**relabel.to_dict(), "annotations": "[]", "event_time": 2.0, "status": APPROVED}),
            LabelRecord.from_row({**reject.to_dict(), "event_time": 2.0, "status": REJECTED}),
        ]
    )
    _labeled_images(local_store, 2, first_shade=100)
    second = labels.snapshot()
    v2 = dataset_version_name(2, second.snapshot_id)
    result = build_dataset_version(local_store, second, v2, ratios={"train": 0.34, "val": 0.33, "test": 0.33})
    diff = result.stats["diff"]
    assert (diff["parent"], diff["added"], diff["removed"], diff["relabeled"], diff["unchanged"]) == (v1, 2, 1, 1, 10)
    versions = DatasetVersionStore(local_store)
    assert versions.list_versions() == [v1, v2] and versions.read(v2).parent == v1
    old = dict(zip(versions.manifest(v1)["sha256"], versions.manifest(v1)["split"]))
    new = dict(zip(versions.manifest(v2)["sha256"], versions.manifest(v2)["split"]))
    assert all(new[sha] == old[sha] for sha in set(old) & set(new))


def _resources(store) -> dict:
    if isinstance(store, S3ObjectStore):
        root = StoreResource(root=store.uri, s3_endpoint_url=store.client.meta.endpoint_url, aws_region="us-east-1")
    else:
        root = StoreResource(root=str(store.root))
    return {"store": root, "labels": LabelStoreResource()}


def _sensor(resources: dict, cursor: str | None, instance: dg.DagsterInstance):
    return dataset_version_sensor(dg.build_sensor_context(cursor=cursor, resources=resources, instance=instance))


def test_sensor_adds_a_partition_only_when_approved_labels_change(local_store):
    resources = _resources(local_store)
    instance = dg.DagsterInstance.ephemeral()
    empty = _sensor(resources, None, instance)
    assert not empty.run_requests and "no approved labels" in empty.skip_reason.skip_message
    labels = _labeled_images(local_store, 6)

    result = _sensor(resources, empty.cursor, instance)
    [add] = result.dynamic_partitions_requests
    [run] = result.run_requests
    v1 = dataset_version_name(1, labels.snapshot().snapshot_id)
    assert add.partition_keys == [v1] and add.partitions_def_name == dataset_versions.name
    assert (run.partition_key, run.run_key) == (v1, v1)
    assert pending_versions(local_store) == [v1]
    instance.add_dynamic_partitions(dataset_versions.name, add.partition_keys)
    assert not _sensor(resources, result.cursor, instance).run_requests  # nothing changed

    # A label record that changes nothing for training (same boxes, later) makes no version.
    row = labels.latest().iloc[0].to_dict()
    labels.append([LabelRecord.from_row({**row, "event_time": 5.0, "labeling_job": "again"})])
    unchanged = _sensor(resources, result.cursor, instance)
    assert not unchanged.run_requests and "already has a version" in unchanged.skip_reason.skip_message

    labels.append([LabelRecord.from_row({**row, "event_time": 6.0, "status": REJECTED})])
    changed = _sensor(resources, unchanged.cursor, instance)
    [run2] = changed.run_requests
    sequence, hash8 = parse_dataset_version(run2.partition_key)
    assert sequence == 2 and labels.snapshot().snapshot_id.startswith(hash8)


def test_sensor_re_adds_a_pending_version_whose_tick_died(local_store):
    resources = _resources(local_store)
    _labeled_images(local_store, 3)
    first = _sensor(resources, None, dg.DagsterInstance.ephemeral())
    # A fresh instance never received the add request: the next tick repeats it.
    again = _sensor(resources, first.cursor, dg.DagsterInstance.ephemeral())
    assert [r.partition_key for r in again.run_requests] == [r.partition_key for r in first.run_requests]
    assert len(pending_versions(local_store)) == 1


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_end_to_end_sensor_materialize_and_read(backend, request: pytest.FixtureRequest, tmp_path: Path):
    store = request.getfixturevalue(f"{backend}_store")
    resources = _resources(store)
    instance = dg.DagsterInstance.ephemeral()
    labels = _labeled_images(store, 10)
    result = _sensor(resources, None, instance)
    instance.add_dynamic_partitions(dataset_versions.name, result.dynamic_partitions_requests[0].partition_keys)
    [run] = result.run_requests
    outcome = dg.materialize([dataset_version], partition_key=run.partition_key, resources=resources, instance=instance)
    metadata = outcome.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["images"].value == 10 and metadata["already_committed"].value is False
    assert metadata["label_snapshot_id"].value == labels.snapshot().snapshot_id
    splits = {record.data["split"] for record in metadata["counts_per_split"].value.records}
    histogram = {str(record.data["boxes"]): record.data["images"] for record in metadata["boxes_per_image"].value.records}
    assert "train" in splits and histogram["0"] == 4
    assert list(store.list_objects(PENDING_PREFIX)) == []
    versions = DatasetVersionStore(store)
    before = store.get_bytes(f"datasets/{run.partition_key}/dataset.json")
    # Materializing a committed partition again writes nothing.
    again = dg.materialize([dataset_version], partition_key=run.partition_key, resources=resources, instance=instance)
    assert again.get_asset_materialization_events()[0].materialization.metadata["already_committed"].value is True
    assert store.get_bytes(f"datasets/{run.partition_key}/dataset.json") == before
    staged = versions.stage_yolo(run.partition_key, tmp_path / "yolo")
    assert len(list((tmp_path / "yolo" / "images").rglob("*.jpg"))) == 10 and staged.is_file()


def test_hand_added_partition_for_other_labels_fails_clearly(local_store):
    resources = _resources(local_store)
    instance = dg.DagsterInstance.ephemeral()
    _labeled_images(local_store, 3)
    instance.add_dynamic_partitions(dataset_versions.name, ["v0001-deadbeef"])
    outcome = dg.materialize([dataset_version], partition_key="v0001-deadbeef", resources=resources, instance=instance, raise_on_error=False)
    assert not outcome.success
    [failure] = [e for e in outcome.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "names approved-label snapshot deadbeef" in failure.step_failure_data.error.message


def test_a_new_instance_gets_committed_versions_back_as_partitions(local_store):
    labels = _labeled_images(local_store, 4)
    snapshot = labels.snapshot()
    version = dataset_version_name(1, snapshot.snapshot_id)
    build_dataset_version(local_store, snapshot, version)
    result = _sensor(_resources(local_store), None, dg.DagsterInstance.ephemeral())
    assert result.dynamic_partitions_requests[0].partition_keys == [version]
    assert result.run_requests == []  # already built: nothing to run
