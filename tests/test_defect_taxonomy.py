"""The defect taxonomy (TAGQA_DEFECT_CLASSES): import rules, labeling configs, dataset identity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from image_fixtures import encoded_image
from tagqa_assets.contracts.datasets import dataset_version_name
from tagqa_assets.contracts.labels import Annotation, LabelRecord, parse_class_names
from tagqa_assets.datasets.build import build_dataset_version
from tagqa_assets.datasets.pending import load_pending, save_pending
from tagqa_assets.datasets.versions import DatasetVersionStore
from tagqa_assets.ingestion.ingest import ingest_keys
from tagqa_assets.labeling.backends.groundtruth_manifests import label_categories
from tagqa_assets.labeling.backends.labelstudio_boxes import box_control, labeling_config
from tagqa_assets.labeling.imports.sources import import_path
from tagqa_assets.labeling.label_store import LocalLabelStore
from tagqa_assets.settings import defect_classes

W, H = 90, 60


def test_setting_is_ordered_and_validated(monkeypatch):
    monkeypatch.delenv("TAGQA_DEFECT_CLASSES", raising=False)
    assert defect_classes() == ("scratch",)
    monkeypatch.setenv("TAGQA_DEFECT_CLASSES", " scratch, dent ,stain")
    assert defect_classes() == ("scratch", "dent", "stain")
    for bad in ("scratch,,dent", "scratch,dent,scratch", " , "):
        with pytest.raises(ValueError, match="TAGQA_DEFECT_CLASSES"):
            parse_class_names(bad)


def test_labeling_backends_offer_every_class(monkeypatch):
    monkeypatch.setenv("TAGQA_DEFECT_CLASSES", "scratch,dent")
    assert [label["label"] for label in label_categories()["labels"]] == ["scratch", "dent"]
    config = labeling_config()
    assert '<Label value="scratch"' in config and '<Label value="dent"' in config
    parsed = {"bbox": {"type": "RectangleLabels", "to_name": ["img"], "labels": ["scratch"]}}
    with pytest.raises(ValueError, match="lacks classes \\['dent'\\]"):
        box_control(parsed, project="7")


def _ingest(store, count: int) -> list:
    keys = {f"raw/camera-1/2026/11/25/{130000 + i}-tag.jpg": encoded_image(size=(W, H), shade=10 + i) for i in range(count)}
    for key, data in keys.items():
        store.put_bytes(key, data)
    return ingest_keys(store, list(keys), run_id="taxonomy").accepted


def test_import_maps_names_through_the_taxonomy_and_rejects_unknown_ones(local_store, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TAGQA_DEFECT_CLASSES", "scratch,dent")
    rows = _ingest(local_store, 3)
    document = {
        "images": [{"id": n, "file_name": row.key.rsplit("/", 1)[1], "width": W, "height": H} for n, row in enumerate(rows)],
        "annotations": [
            {"id": 1, "image_id": 0, "category_id": 7, "bbox": [1, 2, 10, 10]},
            {"id": 2, "image_id": 1, "category_id": 8, "bbox": [1, 2, 10, 10]},
            {"id": 3, "image_id": 2, "category_id": 9, "bbox": [1, 2, 10, 10]},
        ],
        "categories": [{"id": 7, "name": "dent"}, {"id": 8, "name": "scratch"}, {"id": 9, "name": "stain"}],
    }
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(document))
    labels = LocalLabelStore(local_store)
    report = import_path(local_store, labels, path)
    assert report.imported == 2 and report.reasons() == {"unknown_class": 1}
    assert "'stain'" in report.rejects[0].detail and "['scratch', 'dent']" in report.rejects[0].detail
    classes = {row.source_ref: json.loads(row.annotations)[0]["class_id"] for row in labels.latest().itertuples()}
    assert classes == {rows[0].key: 1, rows[1].key: 0}


def _labels(store, count: int, class_of) -> LocalLabelStore:
    rows = _ingest(store, count)
    labels = LocalLabelStore(store)
    labels.append(
        [
            LabelRecord(row.key, W, H, (Annotation(class_of(i), 5, 5, 20, 20),), 1.0, "test", image_sha256=row.sha256)
            for i, row in enumerate(rows)
        ]
    )
    return labels


def test_the_taxonomy_is_part_of_a_dataset_version(local_store, tmp_path: Path, monkeypatch):
    monkeypatch.delenv("TAGQA_DEFECT_CLASSES", raising=False)
    labels = _labels(local_store, 12, lambda i: 0)
    first = labels.snapshot()
    v1 = dataset_version_name(1, first.snapshot_id)
    build_dataset_version(local_store, first, v1)

    # The same labels under a grown taxonomy: a new identity, so a new version; the old one keeps its names.
    monkeypatch.setenv("TAGQA_DEFECT_CLASSES", "scratch,dent")
    grown = labels.snapshot()
    assert grown.snapshot_id != first.snapshot_id and grown.class_names == ("scratch", "dent")
    v2 = dataset_version_name(2, grown.snapshot_id)
    save_pending(local_store, v2, grown)
    frozen = load_pending(local_store, v2)
    assert frozen is not None and frozen.snapshot_id == grown.snapshot_id and frozen.class_names == ("scratch", "dent")
    build_dataset_version(local_store, frozen, v2)
    versions = DatasetVersionStore(local_store)
    assert versions.read(v1).class_names == ("scratch",) and versions.read(v2).class_names == ("scratch", "dent")
    data_yaml = yaml.safe_load(versions.stage_yolo(v2, tmp_path / "v2").read_text())
    assert data_yaml["nc"] == 2 and data_yaml["names"] == {0: "scratch", 1: "dent"}

    # Reordering would give stored class ids other names: refused, naming the versions.
    monkeypatch.setenv("TAGQA_DEFECT_CLASSES", "dent,scratch")
    reordered = labels.snapshot()
    with pytest.raises(ValueError, match="may only add classes at its end"):
        build_dataset_version(local_store, reordered, dataset_version_name(3, reordered.snapshot_id))


def test_labels_outside_the_taxonomy_never_reach_a_version(local_store, monkeypatch):
    monkeypatch.setenv("TAGQA_DEFECT_CLASSES", "scratch,dent")
    labels = _labels(local_store, 4, lambda i: i % 2)
    monkeypatch.setenv("TAGQA_DEFECT_CLASSES", "scratch")
    snapshot = labels.snapshot()
    with pytest.raises(ValueError, match="outside the taxonomy"):
        build_dataset_version(local_store, snapshot, dataset_version_name(1, snapshot.snapshot_id))


def test_evaluation_reports_ap_per_class_and_map_over_classes():
    import numpy as np

    from tagqa_assets.training.detections import ImageDetections, LabeledImage
    from tagqa_assets.training.evaluation import evaluate

    truth = np.array([[10, 10, 40, 40], [60, 10, 90, 40]], dtype=np.float32)
    image = LabeledImage("a.jpg", b"", np.zeros((50, 100, 3), np.uint8), truth, np.array([0, 1]))
    # The scratch is found exactly; the dent is missed (a box of the wrong class on it).
    found = ImageDetections(truth.copy(), np.array([0.9, 0.8], np.float32), np.array([0, 0]))
    metrics = evaluate([image], [found])
    # A perfect class scores 0.995, as in Ultralytics (101-point trapezoid under the envelope).
    assert metrics.per_class == {"0": {"ap50": 0.995, "ap50_95": 0.995, "instances": 1}, "1": {"ap50": 0.0, "ap50_95": 0.0, "instances": 1}}
    assert metrics.map50_95 == pytest.approx(0.4975) and metrics.map50 == pytest.approx(0.4975)  # the gate's mAP: mean over classes
    assert metrics.per_class_named(("scratch", "dent")) == {"scratch": metrics.per_class["0"], "dent": metrics.per_class["1"]}
