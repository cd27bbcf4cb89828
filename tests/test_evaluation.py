"""Evaluation metrics, the promotion gate and the champion/challenger rule."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import dagster as dg
import numpy as np
import pytest

from model_fixtures import (
    Chain,
    build_real_version,
    check_results,
    materialization,
    materialize_chain,
    resources,
    step_failure,
    trained_chain,
)
from tagqa_assets.contracts.keys import REGISTRY_PREFIX
from tagqa_assets.contracts.models import APPROVED, COMMIT_FILE, EVALUATIONS_DIR, PENDING, ModelVersion, model_key
from tagqa_assets.datasets.versions import DatasetVersionStore
from tagqa_assets.model_catalog.model_files import stage_onnx
from tagqa_assets.model_catalog.registry import LocalModelRegistry
from tagqa_assets.registry.assets import registered_model
from tagqa_assets.registry.checks import promotion_gate
from tagqa_assets.registry.gates import PromotionPolicy, compare_with_champion, gate
from tagqa_assets.storage import LocalObjectStore
from tagqa_assets.training.assets import onnx_model, trained_model
from tagqa_assets.training.detections import ImageDetections, LabeledImage, box_iou
from tagqa_assets.training.evaluation import average_precision, evaluate, match_predictions
from tagqa_assets.training.evaluation_asset import model_evaluation
from tagqa_trainer.ultralytics_tasks import run_task


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    return trained_chain(tmp_path_factory)


def image(*boxes: tuple[float, float, float, float]) -> LabeledImage:
    array = np.array(boxes, np.float32).reshape(-1, 4)
    return LabeledImage("img", b"", np.zeros((300, 450, 3), np.uint8), array, np.zeros(len(array), np.int64))


def predicted(*rows: tuple[float, float, float, float, float]) -> ImageDetections:
    array = np.array(rows, np.float32).reshape(-1, 5)
    return ImageDetections(array[:, :4], array[:, 4], np.zeros(len(array), np.int64))


TRUTH = (100.0, 100.0, 200.0, 150.0)
# IoU with TRUTH is 0.7273: a hit at thresholds 0.50-0.70 (5 of 10), a miss from 0.75.
SHIFTED = (100.0, 100.0, 200.0, 150.0 + 50 * (1 / 0.7273 - 1))


@pytest.mark.parametrize(
    "images, predictions, expected",
    [
        # exact boxes: every metric is 1
        ([image(TRUTH)], [predicted((*TRUTH, 0.9))], {"map50": 1.0, "map50_95": 1.0, "recall": 1.0}),
        # a loose box counts at IoU 0.5 but only at half of the 0.50:0.95 thresholds
        ([image(TRUTH)], [predicted((*SHIFTED, 0.9))], {"map50": 1.0, "map50_95": 0.5}),
        # nothing predicted: zero, not an error
        ([image(TRUTH)], [predicted()], {"map50": 0.0, "map50_95": 0.0, "recall": 0.0}),
        # a false positive ranked below the hit leaves AP at 1 (the PR curve is monotone there)
        ([image(TRUTH)], [predicted((*TRUTH, 0.9), (300, 200, 350, 250, 0.1))], {"map50": 1.0}),
        # a false positive ranked above the hit halves the precision at full recall
        ([image(TRUTH), image()], [predicted((*TRUTH, 0.5)), predicted((300, 200, 350, 250, 0.9))], {"map50": 0.5}),
        # images without any true box and no prediction: nothing to measure
        ([image()], [predicted()], {"map50": 0.0, "map50_95": 0.0}),
    ],
)
def test_metrics_follow_ultralytics_definitions(images, predictions, expected):
    metrics = evaluate(images, predictions)
    for name, value in expected.items():
        assert getattr(metrics, name) == pytest.approx(value, abs=0.011), name


# Hand-computed AP (Ultralytics' compute_ap): sentinels (0, 1) ... (last recall, 0) (1, 0), the
# precision envelope, np.interp at recall 0, 0.01, ..., 1 and the trapezoid rule. np.interp at
# recall 1 lands on the closing sentinel (0), so even a perfect ranking scores 0.995.
@pytest.mark.parametrize(
    "recall, precision, expected",
    [
        ([1.0], [1.0], 0.995),  # 0.01 * (99 whole steps at 1 + half a step)
        # hit, false positive, hit (2 true boxes): envelope 1 up to recall 0.5, then 2/3:
        # 0.01 * (49.5 + 0.5 * 2/3 + 49 * 2/3 + 0.5 * 2/3) = 0.828333...
        ([0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3], 0.8283333333333),
        ([1 / 3], [1.0], 0.335),  # one of three boxes found: 0.01 * 33.5, nothing beyond recall 1/3
    ],
)
def test_average_precision_by_hand(recall, precision, expected):
    value = average_precision(np.array(recall, float), np.array(precision, float))[0]
    assert value == pytest.approx(expected, abs=1e-9)


# Two crossing scratches T1 and T2 (IoU 0.667 with each other). A (0.9) is T1 exactly; B (0.8)
# overlaps T1 by 0.852 and T2 by 0.786. A claims T1; B then claims T2, the best box still free.
T1, T2 = (0.0, 0.0, 100.0, 100.0), (20.0, 0.0, 120.0, 100.0)
A, B = (*T1, 0.9), (8.0, 0.0, 108.0, 100.0, 0.8)


def test_a_lower_scored_box_takes_the_best_true_box_still_free():
    metrics = evaluate([image(T1, T2)], [predicted(A, B)])
    # IoU 0.50-0.75 (6 thresholds): both hit, AP 0.995. 0.80-0.95 (4): B (0.786) misses, and
    # hit + false positive over 2 boxes gives 0.01 * 49.5 = 0.495. Mean: (6 * 0.995 + 4 * 0.495) / 10.
    assert metrics.map50 == pytest.approx(0.995, abs=1e-9)
    assert metrics.map50_95 == pytest.approx(0.795, abs=1e-9)
    # The rule of Ultralytics <= 8.3 (pairs sorted by IoU, unique per prediction, then per true
    # box) gave T1 to A and B nothing: map50 0.495. That was the gap to Ultralytics' val.
    assert match_predictions(np.zeros(2, np.int64), np.zeros(2, np.int64), box_iou(
        np.array([T1, T2], np.float32), np.array([A[:4], B[:4]], np.float32)))[:, 0].tolist() == [True, True]


def test_matching_needs_the_class_and_uses_each_true_box_once():
    truth = LabeledImage("img", b"", np.zeros((300, 450, 3), np.uint8), np.array([TRUTH, TRUTH], np.float32),
                         np.array([0, 1]))
    # Three boxes on the same spot: class 1 (hit), class 0 (hit), class 0 again (no box left: false positive).
    found = ImageDetections(np.array([TRUTH] * 3, np.float32), np.array([0.9, 0.8, 0.7], np.float32), np.array([1, 0, 0]))
    metrics = evaluate([truth], [found])
    assert metrics.per_class["1"]["ap50"] == pytest.approx(0.995)
    assert metrics.per_class["0"]["ap50"] == pytest.approx(0.995)  # the false positive ranks below the hit
    assert metrics.map50 == pytest.approx(0.995)


def test_predictions_out_of_score_order_are_ranked_first():
    # The same detections listed lowest score first: the metric must not depend on the order given.
    in_order = evaluate([image(T1, T2)], [predicted(A, B)])
    reversed_ = evaluate([image(T1, T2)], [predicted(B, A)])
    assert (reversed_.map50, reversed_.map50_95) == (in_order.map50, in_order.map50_95)


def test_evaluation_refuses_mismatched_inputs():
    with pytest.raises(ValueError, match="1 images but 0 prediction sets"):
        evaluate([image(TRUTH)], [])


@pytest.mark.parametrize(
    "metrics, policy, passed",
    [
        ({"test": {"map50_95": 0.45}}, PromotionPolicy(), True),  # default gate: 0.40 on test
        ({"test": {"map50_95": 0.39}, "val": {"map50_95": 0.5}}, PromotionPolicy(), False),  # val does not count by default
        ({"val": {"map50_95": 0.40}}, PromotionPolicy(gate_split="val"), True),  # the reference gate, inclusive
        ({"test": {"map50": 0.81}}, PromotionPolicy(gate_metric="map50", gate_threshold=0.8), True),  # another metric
    ],
)
def test_gate(metrics, policy, passed):
    assert gate(metrics, policy).passed is passed


def test_gate_names_a_missing_split():
    with pytest.raises(ValueError, match="no map50_95 for split 'test'"):
        gate({"val": {"map50_95": 0.9}}, PromotionPolicy())


def test_policy_refuses_unknown_metric_or_split():
    with pytest.raises(ValueError, match="gate_metric"):
        PromotionPolicy(gate_metric="accuracy")
    with pytest.raises(ValueError, match="gate_split"):
        PromotionPolicy(gate_split="train")


@pytest.mark.parametrize(
    "challenger, champion, policy, approve",
    [
        (0.50, 0.45, PromotionPolicy(), True),  # beats by more than the 0.01 margin
        (0.455, 0.45, PromotionPolicy(), False),  # better, but within the margin: a person decides
        (0.45, 0.45, PromotionPolicy(champion_margin=0.0), True),  # margin 0: a tie is enough
        (0.60, None, PromotionPolicy(), False),  # no champion: the first model waits for a person
        (0.60, None, PromotionPolicy(approve_without_champion=True), True),  # unless configured
    ],
)
def test_champion_challenger(challenger, champion, policy, approve):
    comparison = compare_with_champion({"map50_95": challenger}, None if champion is None else {"map50_95": champion},
                                       None if champion is None else 3, policy)
    assert comparison.approve is approve
    assert ("v3" in comparison.reason) is (champion is not None)


def test_evaluation_metadata_shows_curves_grid_and_metrics(chain: Chain):
    metadata = materialization(chain.result, "model_evaluation")
    assert {"test_map50", "test_map50_95", "test_precision", "test_recall", "val_map50_95"} <= metadata.keys()
    assert "data:image/png;base64," in metadata["pr_curve"]
    assert "data:image/jpeg;base64," in metadata["test_predictions"]
    assert metadata["champion_version"] == 0 and "champion_test_map50" not in metadata
    document = chain.store.get_json(metadata["evaluation_key"])
    assert document["source"].startswith("onnx") and document["metrics"]["test"]["map50"] == metadata["test_map50"]
    # The drift baseline of line_results: one best score per test image.
    scores = document["best_scores"]["test"]
    assert len(scores) == metadata["test_images"] and all(0.0 <= s <= 1.0 for s in scores)


def test_default_gate_blocks_registration(chain: Chain):
    registry = LocalModelRegistry(chain.store)
    before = [entry.to_dict() for entry in registry.list_versions()]
    commit = chain.store.get_bytes(model_key(chain.model_id, COMMIT_FILE))
    result = materialize_chain(chain.instance, chain.version, chain.resources(),
                               selection=[model_evaluation, promotion_gate, registered_model], raise_on_error=False)
    gate_result = check_results(result)["promotion_gate"]
    assert not result.success and not gate_result.passed
    assert "map50_95 on test" in gate_result.description and "fails the gate (>= 0.4000)" in gate_result.description
    assert result.asset_materializations_for_node("registered_model") == []
    assert [entry.to_dict() for entry in registry.list_versions()] == before
    # Re-evaluation adds an evaluation record and never rewrites the committed model.
    assert chain.store.get_bytes(model_key(chain.model_id, COMMIT_FILE)) == commit
    evaluations = list(chain.store.list_objects(model_key(chain.model_id, EVALUATIONS_DIR + "/")))
    assert len(evaluations) >= 2


def test_registration_reapplies_the_gate_when_run_alone(chain: Chain):
    result = materialize_chain(chain.instance, chain.version, chain.resources(), selection=[registered_model],
                               raise_on_error=False)
    assert f"{chain.model_id} is not registered: map50_95 on test" in step_failure(result, "registered_model")


CROSS_CHECK = """
import json, sys
import numpy as np
import torch
from ultralytics.models.yolo.detect import DetectionValidator
from ultralytics.utils.metrics import ap_per_class
from ultralytics.utils.nms import non_max_suppression
from edge_runtime.detector import Thresholds
from tagqa_assets.training.detections import ImageDetections, LabeledImage, box_iou, multi_label_nms
from tagqa_assets.training.evaluation import evaluate, match_predictions
rng = np.random.default_rng(int(sys.argv[1]))
validator = DetectionValidator()
images, preds, theirs_tp, same_matches = [], [], [], 0
for _ in range(60):
    n = int(rng.integers(0, 5))
    xy = rng.uniform(0, 200, (n, 2))
    truth = np.concatenate([xy, xy + rng.uniform(20, 100, (n, 2))], 1).astype(np.float32)
    images.append(LabeledImage("x", b"", np.zeros((1, 1, 3), np.uint8), truth, rng.integers(0, 2, n)))
    boxes = [truth[rng.integers(0, n)] + rng.normal(0, 10, 4) if n and rng.random() < 0.7 else
             np.concatenate([p := rng.uniform(0, 300, 2), p + rng.uniform(20, 100, 2)]) for _ in range(int(rng.integers(0, 9)))]
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    scores = np.sort(rng.uniform(0, 1, len(boxes)).astype(np.float32))[::-1].copy()
    preds.append(ImageDetections(boxes, scores, rng.integers(0, 2, len(boxes))))
    iou = box_iou(images[-1].boxes, boxes)
    ours = match_predictions(preds[-1].classes, images[-1].classes, iou)
    theirs = validator.match_predictions(torch.from_numpy(preds[-1].classes), torch.from_numpy(images[-1].classes),
                                         torch.from_numpy(iou.astype(np.float32))).numpy()
    same_matches += int((ours == theirs).all())
    theirs_tp.append(theirs)
ours = evaluate(images, preds)
result = ap_per_class(np.concatenate(theirs_tp), np.concatenate([p.scores for p in preds]),
                      np.concatenate([p.classes for p in preds]), np.concatenate([i.classes for i in images]))
# Multi-label NMS on a raw 3-class output with overlapping candidates.
raw = np.concatenate([rng.uniform(100, 200, (2, 500)), rng.uniform(10, 80, (2, 500)),
                      rng.uniform(0, 0.3, (3, 500)) ** 2], 0).astype(np.float32)
mine = multi_label_nms(raw, Thresholds(conf=0.001, iou=0.7, max_detections=300))
kept = non_max_suppression(torch.from_numpy(raw[None]), 0.001, 0.7, multi_label=True, max_det=300)[0].numpy()
same_nms = len(kept) == len(mine[1]) and np.allclose(kept[:, :4], mine[0], atol=1e-3) and np.allclose(kept[:, 4], mine[1]) \
    and (kept[:, 5] == mine[2]).all()
print(json.dumps({"ours": [ours.map50, ours.map50_95, ours.precision, ours.recall],
                  "ultralytics": [result[5][:, 0].mean(), result[5].mean(), result[2].mean(), result[3].mean()],
                  "images_matched_alike": same_matches, "images": len(images), "nms_alike": bool(same_nms),
                  "nms_boxes": len(mine[1]), "nms_classes": sorted(set(mine[2].tolist()))}))
"""


@pytest.mark.slow  # imports Ultralytics for the reference metrics
@pytest.mark.parametrize("seed", [0, 1])
def test_matching_metrics_and_multi_label_nms_equal_ultralytics(seed: int, tmp_path):
    # Run in a child: importing Ultralytics would patch PIL.Image.open for the whole test session.
    env = {**os.environ, "YOLO_CONFIG_DIR": str(tmp_path / "yolo"), "YOLO_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", CROSS_CHECK, str(seed)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    numbers = json.loads(done.stdout.strip().splitlines()[-1])
    assert numbers["images_matched_alike"] == numbers["images"]  # box for box, threshold for threshold
    assert numbers["ours"] == pytest.approx(numbers["ultralytics"], abs=1e-9)
    assert numbers["ours"][0] > 0
    assert numbers["nms_alike"] and numbers["nms_boxes"] > 10 and len(numbers["nms_classes"]) > 1


def test_a_champion_newer_than_the_evaluation_means_manual_approval(chain: Chain, tmp_path):
    # The champion changed between evaluation and registration (someone approved another model):
    # the comparison is stale, so even a clear winner waits for a person.
    shutil.copytree(chain.root / "store", tmp_path / "store")
    store = LocalObjectStore(tmp_path / "store")
    for info in list(store.list_objects(REGISTRY_PREFIX)):
        store.delete(info.key)
    registry = LocalModelRegistry(store)
    registry.register(ModelVersion(0, "v0000-00000000-00000000", "v0000-00000000", APPROVED, "", {}, {}, "", "unknown", {}))
    result = materialize_chain(chain.instance, chain.version,
                               resources(store.root, tmp_path / "work", gate_threshold=0.0, champion_margin=-1.0),
                               selection=[registered_model])
    assert result.success
    entry = registry.find_model(chain.model_id)
    assert entry.status == PENDING and "champion v1 was not evaluated on this test split" in entry.status_reason


def test_the_first_registered_model_says_it_waits_for_a_person(chain: Chain):
    # No champion yet: the newcomer's first model is PendingManualApproval, and its page says what to run.
    metadata = materialization(chain.result, "registered_model")
    assert metadata["status"] == PENDING
    assert metadata["next_step"].startswith(f"waits for a person: tagqa models approve {metadata['model_version']}")
    assert [row.data["class"] for row in metadata["test_per_class"].records] == ["scratch"]


# From scratch on the real tags, small enough for CI's 2 cores (several minutes). imgsz 288 maps
# the 450x300 tags to exactly 288x192, so val()'s loader (long side to imgsz, short side rounded
# up) and the letterbox a device runs (rounded) make the same pixels; at 320 they differ by a
# row (213 vs 214) and the two sides would see slightly different images (docs/training.md).
REAL_TAGS_TRAINING = {"epochs": 30, "imgsz": 288, "batch": 16, "workers": 1, "patience": 100, "seed": 0}


@pytest.mark.slow  # trains a yolov8n on the real tags: ~7 min on 2 idle cores, over the default 900 s when busy
@pytest.mark.timeout(3600)
def test_evaluation_agrees_with_ultralytics_val_on_a_model_trained_on_the_real_tags(real_dataset, tmp_path):
    store = LocalObjectStore(tmp_path / "store")
    version = build_real_version(store, real_dataset)
    result = materialize_chain(dg.DagsterInstance.ephemeral(), version, resources(store.root, tmp_path / "work"),
                               training=REAL_TAGS_TRAINING, selection=[trained_model, onnx_model, model_evaluation])
    evaluation = store.get_json(materialization(result, "model_evaluation")["evaluation_key"])
    model_id = evaluation["model_id"]
    ours = evaluation["metrics"]["test"]
    # Ultralytics' own val() on the same exported ONNX file and the same test split.
    folder = tmp_path / "reference"
    data_yaml = DatasetVersionStore(store).stage_yolo(version, folder / "dataset")
    onnx_file = stage_onnx(store, model_id, folder / "model") / "model.onnx"
    run_task(["val", str(onnx_file), str(data_yaml), str(REAL_TAGS_TRAINING["imgsz"]), str(folder / "val.json"),
              "--split", "test", "--conf", "0.001", "--iou", "0.7", "--max-det", "300"],
             settings_dir=tmp_path / "ultralytics", cwd=folder)
    theirs = json.loads((folder / "val.json").read_text())
    print(f"test split of {version}: ours {ours}, Ultralytics val {theirs}")
    assert ours["map50"] > 0.2, f"the model learned too little for the comparison to mean anything: {ours}"
    assert ours["map50"] == pytest.approx(theirs["map50"], abs=0.005)
    assert ours["map50_95"] == pytest.approx(theirs["map50_95"], abs=0.005)
