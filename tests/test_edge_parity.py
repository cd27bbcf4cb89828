"""Our detections equal Ultralytics' own predictions on the same ONNX file and images.

Ultralytics runs in a subprocess (the edge package never imports it); both read the same
image files. Boxes must agree within 1 px and scores within 1e-3, box for box.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_fixtures import REAL_DATASET, synthetic_tag_image, tiny_models, ultralytics_predictions  # noqa: F401
from edge_runtime.detector import Detector, Thresholds
from edge_runtime.imaging import decode_image
from edge_runtime.models import load_verified_model

CONF = 0.01  # low enough that the tiny models report several boxes per image


def _images(tmp_path: Path) -> list[Path]:
    synthetic = [  # non-square sizes around the model input: up- and downscaling, portrait and landscape
        synthetic_tag_image(tmp_path / f"synthetic-{w}x{h}.jpg", seed=w + h, size=(w, h))
        for w, h in ((450, 300), (120, 80), (100, 150), (64, 200), (333, 127))
    ]
    real = sorted((REAL_DATASET / "images").glob("*/*.jpg"))[::8]  # ~30 real tags when the dataset is there
    return synthetic + real


def _compare(ours, theirs: dict, conf: float) -> int:
    """Match every box of each side to the other side; return how many boxes were compared."""
    our_boxes = np.array([d.box_xyxy for d in ours.detections], np.float64).reshape(-1, 4)
    our_scores = np.array([d.score for d in ours.detections], np.float64)
    their_boxes = np.array(theirs["boxes"], np.float64).reshape(-1, 4)
    their_scores = np.array(theirs["scores"], np.float64)
    compared = 0
    for boxes_a, scores_a, boxes_b, scores_b in ((our_boxes, our_scores, their_boxes, their_scores),
                                                 (their_boxes, their_scores, our_boxes, our_scores)):
        for box, score in zip(boxes_a, scores_a):
            if len(boxes_b):
                distance = np.abs(boxes_b - box).max(axis=1) + np.abs(scores_b - score) * 1000
                j = int(distance.argmin())
                if np.abs(boxes_b[j] - box).max() <= 1.0 and abs(scores_b[j] - score) <= 1e-3:
                    compared += 1
                    continue
            # A box may only be missing on one side when its score sits at the threshold.
            assert score <= conf + 1e-3, f"unmatched box {box.round(2)} score {score:.5f}"
    return compared // 2


@pytest.mark.slow
@pytest.mark.parametrize("model_key", ["a", "b"])  # imgsz 128 and 160: two different input sizes
def test_detections_match_ultralytics(tiny_models, model_key: str, tmp_path: Path) -> None:
    model_dir = tiny_models[model_key]
    model = load_verified_model(model_dir)
    images = _images(tmp_path)
    reference = ultralytics_predictions(model_dir / "model.onnx", model.card.imgsz, CONF, images, tmp_path)
    detector = Detector()
    compared = 0
    for image in images:
        ours = detector.detect(decode_image(image.read_bytes()), model, Thresholds(conf=CONF, iou=0.7))
        compared += _compare(ours, reference[str(image)], CONF)
    assert compared > 3 * len(images), f"only {compared} boxes compared: the comparison would be vacuous"


def test_odd_extensions_are_read_by_content(real_dataset: Path, tiny_models) -> None:
    """Ultralytics refuses the dataset's ``.jpg_0`` files by extension; the runtime reads them by content."""
    odd = sorted(p for p in (real_dataset / "images").glob("*/*") if p.suffix.startswith(".jpg_"))
    assert len(odd) == 10
    model = load_verified_model(tiny_models["a"])
    for path in odd:
        found = Detector().detect(decode_image(path.read_bytes()), model, Thresholds(conf=CONF))
        assert (found.image_width, found.image_height) == (450, 300)
