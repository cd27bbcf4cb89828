"""Evaluation metrics, the promotion gate and the champion/challenger rule."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from model_fixtures import (
    Chain,
    check_results,
    materialization,
    materialize_chain,
    resources,
    step_failure,
    trained_chain,
)
from tagqa_assets.contracts.keys import REGISTRY_PREFIX
from tagqa_assets.contracts.models import APPROVED, COMMIT_FILE, EVALUATIONS_DIR, PENDING, ModelVersion, model_key
from tagqa_assets.model_catalog.registry import LocalModelRegistry
from tagqa_assets.registry.assets import registered_model
from tagqa_assets.registry.checks import promotion_gate
from tagqa_assets.registry.gates import PromotionPolicy, compare_with_champion, gate
from tagqa_assets.storage import LocalObjectStore
from tagqa_assets.training.detections import ImageDetections, LabeledImage
from tagqa_assets.training.evaluation import evaluate
from tagqa_assets.training.evaluation_asset import model_evaluation


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
from ultralytics.utils.metrics import ap_per_class
from tagqa_assets.training.detections import ImageDetections, LabeledImage, box_iou
from tagqa_assets.training.evaluation import evaluate, match_predictions
rng = np.random.default_rng(int(sys.argv[1]))
images, preds = [], []
for _ in range(40):
    n = int(rng.integers(0, 4))
    xy = rng.uniform(0, 300, (n, 2))
    truth = np.concatenate([xy, xy + rng.uniform(20, 100, (n, 2))], 1).astype(np.float32)
    images.append(LabeledImage("x", b"", np.zeros((1, 1, 3), np.uint8), truth, rng.integers(0, 2, n)))
    boxes = [truth[rng.integers(0, n)] + rng.normal(0, 8, 4) if n and rng.random() < 0.6 else
             np.concatenate([p := rng.uniform(0, 300, 2), p + rng.uniform(20, 100, 2)]) for _ in range(int(rng.integers(0, 6)))]
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    preds.append(ImageDetections(boxes, rng.uniform(0, 1, len(boxes)).astype(np.float32), rng.integers(0, 2, len(boxes))))
ours = evaluate(images, preds)
tp = np.concatenate([match_predictions(p.classes, i.classes, box_iou(i.boxes, p.boxes)) for i, p in zip(images, preds)])
result = ap_per_class(tp, np.concatenate([p.scores for p in preds]), np.concatenate([p.classes for p in preds]),
                      np.concatenate([i.classes for i in images]))
print(json.dumps({"ours": [ours.map50, ours.map50_95, ours.precision, ours.recall],
                  "ultralytics": [result[5][:, 0].mean(), result[5].mean(), result[2].mean(), result[3].mean()]}))
"""


@pytest.mark.slow  # imports Ultralytics for the reference metrics
@pytest.mark.parametrize("seed", [0, 1])
def test_metrics_equal_ultralytics_ap_per_class(seed: int, tmp_path):
    # Run in a child: importing Ultralytics would patch PIL.Image.open for the whole test session.
    env = {**os.environ, "YOLO_CONFIG_DIR": str(tmp_path / "yolo"), "YOLO_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", CROSS_CHECK, str(seed)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    numbers = json.loads(done.stdout.strip().splitlines()[-1])
    assert numbers["ours"] == pytest.approx(numbers["ultralytics"], abs=1e-9)
    assert numbers["ours"][0] > 0


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
