"""ONNX export and the blocking parity check: it passes on a faithful export and stops a broken one."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from model_fixtures import Chain, check_results, materialize_chain, resources, trained_chain
from tagqa_assets.contracts.keys import MODELS_PREFIX, REGISTRY_PREFIX
from tagqa_assets.contracts.models import (
    COMMIT_FILE,
    EVALUATIONS_DIR,
    METRICS_FILE,
    MODEL_CARD_FILE,
    ONNX_FILE,
    PARITY_FILE,
    WEIGHTS_FILE,
    model_key,
)
from tagqa_assets.datasets.versions import DatasetVersionStore
from tagqa_assets.model_catalog.registry import LocalModelRegistry
from tagqa_assets.registry.assets import registered_model
from tagqa_assets.registry.checks import promotion_gate
from tagqa_assets.storage import LocalObjectStore, ObjectStore
from tagqa_assets.training.checks import onnx_parity
from tagqa_assets.training.detections import ImageDetections, load_split
from tagqa_assets.training.evaluation_asset import model_evaluation
from tagqa_assets.training.export import export_onnx
from tagqa_assets.training.parity import check_parity, compare_image


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    return trained_chain(tmp_path_factory)


def dets(*rows: tuple[float, float, float, float, float, int]) -> ImageDetections:
    array = np.array(rows, np.float32).reshape(-1, 6)
    return ImageDetections(array[:, :4], array[:, 4], array[:, 5].astype(np.int64))


BOX = (10.0, 10.0, 50.0, 40.0)


@pytest.mark.parametrize(
    "torch_side, onnx_side, ok",
    [
        (dets((*BOX, 0.8, 0)), dets((*BOX, 0.8004, 0)), True),  # float noise well inside 1e-3
        (dets((*BOX, 0.8, 0)), dets((10.0, 10.0, 50.0, 44.0, 0.8, 0)), False),  # IoU 0.91 < 0.99
        (dets((*BOX, 0.8, 0)), dets((*BOX, 0.802, 0)), False),  # score differs by 2e-3
        (dets((*BOX, 0.8, 0)), dets(), False),  # ONNX lost a confident box
        (dets((*BOX, 0.8, 0)), dets((*BOX, 0.8, 1)), False),  # same box, another class: no match
        (dets((*BOX, 0.8, 0), (60, 60, 90, 90, 0.2505, 0)), dets((*BOX, 0.8, 0)), True),  # borderline at conf 0.25
        (dets(), dets(), True),  # nothing found on either side is parity too
    ],
)
def test_compare_image(torch_side: ImageDetections, onnx_side: ImageDetections, ok: bool):
    assert (not compare_image("img", torch_side, onnx_side, conf=0.25).problems) is ok


def test_parity_check_passed_with_boxes_compared(chain: Chain):
    result = check_results(chain.result)["onnx_parity"]
    assert result.passed
    metadata = {key: getattr(value, "value", value) for key, value in result.metadata.items()}
    assert metadata["images"] == DatasetVersionStore(chain.store).read(chain.version).counts["test"]
    assert metadata["boxes_matched"] > 0, "the check compared nothing: lower its conf"
    assert metadata["worst_iou"] >= 0.99 and metadata["worst_score_diff"] <= 1e-3


def test_export_records_the_requested_opset_and_a_static_input(chain: Chain, tmp_path: Path):
    weights = chain.store.download_file(model_key(chain.model_id, WEIGHTS_FILE), tmp_path / "best.pt")
    result = export_onnx(weights, 96, tmp_path / "out", opset=17, settings_dir=chain.root / "work" / "ultralytics")
    assert result.opset == 17 and result.input_shape == (1, 3, 96, 96) and result.output_shape[:2] == (1, 5)
    assert result.sha256 == hashlib.sha256(result.onnx_path.read_bytes()).hexdigest()
    assert not (tmp_path / "best.onnx").exists(), "the export wrote beside the source checkpoint"


def perturb_onnx(store: ObjectStore, model_id: str) -> None:
    """Change the class-score bias of the exported head in the store, as a broken export would."""
    path = Path(store.uri_for(model_key(model_id, ONNX_FILE)))
    model = onnx.load(str(path))
    biases = [t for t in model.graph.initializer if t.name.endswith("bias") and numpy_helper.to_array(t).shape == (1,)]
    assert biases, "no single-class bias found in the exported head"
    for tensor in biases:
        tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) + np.float32(0.5), tensor.name))
    data = model.SerializeToString()
    store.put_bytes(model_key(model_id, ONNX_FILE), data)
    card = store.get_json(model_key(model_id, MODEL_CARD_FILE))
    store.put_json(model_key(model_id, MODEL_CARD_FILE), {**card, "onnx_sha256": hashlib.sha256(data).hexdigest()})


def test_parity_fails_on_a_model_that_differs(chain: Chain, tmp_path: Path):
    store = LocalObjectStore(tmp_path / "copy")
    for name in (ONNX_FILE, MODEL_CARD_FILE):
        store.put_bytes(model_key(chain.model_id, name), chain.store.get_bytes(model_key(chain.model_id, name)))
    perturb_onnx(store, chain.model_id)
    dataset = DatasetVersionStore(chain.store).stage_yolo(chain.version, tmp_path / "dataset").parent
    report = check_parity(chain.store.download_file(model_key(chain.model_id, WEIGHTS_FILE), tmp_path / "best.pt"), 64,
                          Path(store.uri_for(model_key(chain.model_id, ONNX_FILE))).parent, load_split(dataset, "test"),
                          conf=0.001, settings_dir=chain.root / "work" / "ultralytics", scratch=tmp_path / "torch")
    assert not report.passed and report.problems
    assert report.max_raw_output_diff > 1e-3


def test_the_dagster_process_never_imports_ultralytics(chain: Chain):
    # Ultralytics patches PIL.Image.open and cv2.imread in any process that imports it, which
    # would change how every other stage in the same run worker decodes images.
    import subprocess
    import sys

    assert chain.result.success and not chain.ultralytics_imported_by_run
    modules = ["tagqa_assets.definitions", "tagqa_assets.training.parity", "tagqa_assets.training.evaluation",
               "tagqa_assets.training.export", "tagqa_assets.registry.champion", "tagqa_trainer.entrypoint"]
    code = f"import sys; import {', '.join(modules)}; print('ultralytics' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr[-1000:]


def test_failed_parity_blocks_evaluation_and_registration(chain: Chain, tmp_path: Path):
    # The chain's store as it was right after export: no evaluation, no commit, empty registry.
    shutil.copytree(chain.root / "store", tmp_path / "store")
    store = LocalObjectStore(tmp_path / "store")
    for info in list(store.list_objects(MODELS_PREFIX)) + list(store.list_objects(REGISTRY_PREFIX)):
        if info.key.startswith(REGISTRY_PREFIX) or info.key.rsplit("/", 1)[-1] in (COMMIT_FILE, METRICS_FILE, PARITY_FILE) \
                or f"/{EVALUATIONS_DIR}/" in info.key:
            store.delete(info.key)
    perturb_onnx(store, chain.model_id)
    result = materialize_chain(chain.instance, chain.version, resources(store.root, tmp_path / "work", gate_threshold=0.0),
                               selection=[onnx_parity, model_evaluation, promotion_gate, registered_model], raise_on_error=False)
    assert not result.success and not check_results(result)["onnx_parity"].passed
    assert result.asset_materializations_for_node("model_evaluation") == []
    assert not store.exists(model_key(chain.model_id, COMMIT_FILE))
    assert LocalModelRegistry(store).list_versions() == []
