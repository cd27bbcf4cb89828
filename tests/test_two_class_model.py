"""A two-class taxonomy end to end: dataset, training, ONNX, per-class evaluation, the device's detections."""

from __future__ import annotations

import json

import dagster as dg
import numpy as np
import pytest
import yaml

from edge_runtime.detector import Detector, Thresholds
from edge_runtime.imaging import decode_image
from edge_runtime.models import load_verified_model
from model_fixtures import build_version, materialization, materialize_chain, resources
from tagqa_assets.contracts.models import APPROVED, MODEL_CARD_FILE, model_key
from tagqa_assets.datasets.versions import DatasetVersionStore
from tagqa_assets.deployment.components import build_model_component
from tagqa_assets.model_catalog.registry import LocalModelRegistry
from tagqa_assets.storage import LocalObjectStore

CLASSES = ("scratch", "dent")
pytestmark = pytest.mark.slow  # trains a model


def test_two_class_model_trains_evaluates_per_class_and_the_device_names_both(tmp_path, monkeypatch):
    monkeypatch.setenv("TAGQA_DEFECT_CLASSES", ",".join(CLASSES))
    store = LocalObjectStore(tmp_path / "store")
    version = build_version(store, 30, seed=23, defects=CLASSES)
    versions = DatasetVersionStore(store)
    assert versions.read(version).class_names == CLASSES
    data_yaml = yaml.safe_load(versions.stage_yolo(version, tmp_path / "staged").read_text())
    assert data_yaml["names"] == {0: "scratch", 1: "dent"}
    manifest = versions.manifest(version)
    test_classes = {box[0] for text in manifest.loc[manifest["split"] == "test", "boxes"] for box in json.loads(text)}
    assert test_classes == {0, 1}  # both kinds are in the test split, so both get an AP

    instance = dg.DagsterInstance.ephemeral()
    result = materialize_chain(instance, version, resources(tmp_path / "store", tmp_path / "work", gate_threshold=0.0))
    assert result.success
    model_id = materialization(result, "trained_model")["model_id"]
    card = store.get_json(model_key(model_id, MODEL_CARD_FILE))
    assert tuple(card["class_names"]) == CLASSES

    evaluation = materialization(result, "model_evaluation")
    assert {"test_ap50_95_scratch", "test_ap50_95_dent"} <= set(evaluation)
    document = store.get_json(evaluation["evaluation_key"])
    assert document["class_names"] == list(CLASSES) and set(document["per_class"]["test"]) == set(CLASSES)
    per_class = document["per_class"]["test"]
    assert sum(values["instances"] for values in per_class.values()) == document["details"]["test"]["instances"]
    mean = np.mean([values["ap50_95"] for values in per_class.values()])
    assert abs(document["metrics"]["test"]["map50_95"] - mean) < 1e-3  # the gate's mAP is the mean over classes

    # The device: approved, built into the model component a deployment ships (its card carries the test AP
    # per class), loaded and verified by the edge runtime (4 + 2 output rows), detections named from the card.
    registry = LocalModelRegistry(store)
    registry.set_status(registry.find_model(model_id).version, APPROVED, "two-class test")
    built = build_model_component(store, registry.find_model(model_id), name="com.tagqa.ScratchModel", author="tagqa")
    device_dir = tmp_path / "device-model"
    device_dir.mkdir()
    for name, (key, _) in built.artifacts.items():
        (device_dir / name).write_bytes(store.get_bytes(key))
    model = load_verified_model(device_dir)
    assert model.card.class_names == CLASSES
    shipped = model.card.extra["evaluation"]
    # The card carries the shipped variant's own numbers (fp32 or int8, as max_int8_map_loss decided).
    variant = document["variants"][model.card.extra["precision"]]
    assert shipped["split"] == "test" and shipped["per_class"] == variant["per_class"]["test"]
    assert set(variant["per_class"]["test"]) == set(CLASSES)
    detector = Detector()
    seen = set()
    for key in manifest.loc[manifest["split"] == "test", "image_key"]:
        frame = detector.detect(decode_image(store.get_bytes(key)), model, Thresholds(conf=0.001, iou=0.7, max_detections=300))
        for detection in frame.detections:
            assert detection.class_name == CLASSES[detection.class_id]
            seen.add(detection.class_name)
    assert seen <= set(CLASSES) and seen
