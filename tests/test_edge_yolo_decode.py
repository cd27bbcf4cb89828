"""YOLOv8 output decoding, NMS and mapping back to original pixels (pure numpy)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.letterbox import letterbox_geometry
from edge_runtime.yolo_decode import boxes_to_original, decode_predictions, nms


def _output(boxes_xywh: list[tuple], scores: list[list[float]], anchors: int = 20) -> np.ndarray:
    """A (1, 4 + nc, anchors) output with the given boxes in the first columns, zeros elsewhere."""
    nc = len(scores[0])
    out = np.zeros((1, 4 + nc, anchors), np.float32)
    for i, (box, cls) in enumerate(zip(boxes_xywh, scores)):
        out[0, :4, i] = box
        out[0, 4:, i] = cls
    return out


def test_decode_converts_centre_boxes_and_sorts_by_score() -> None:
    out = _output([(50, 50, 20, 10), (200, 100, 40, 40)], [[0.4], [0.9]])
    raw = decode_predictions(out, 0.25, 0.7, 300)
    assert raw.scores.tolist() == pytest.approx([0.9, 0.4])
    assert raw.boxes_xyxy.tolist() == [[180, 80, 220, 120], [40, 45, 60, 55]]
    assert raw.best_score == pytest.approx(0.9)


@pytest.mark.parametrize("score, kept", [
    (0.25, 0),  # Ultralytics keeps only scores strictly above conf
    (0.2500001, 1),  # just above
])
def test_confidence_filter_is_strict(score: float, kept: int) -> None:
    raw = decode_predictions(_output([(50, 50, 10, 10)], [[score]]), 0.25, 0.7, 300)
    assert len(raw.scores) == kept


def test_best_score_is_reported_below_the_threshold() -> None:
    raw = decode_predictions(_output([(50, 50, 10, 10)], [[0.1]]), 0.25, 0.7, 300)
    assert len(raw.scores) == 0 and raw.best_score == pytest.approx(0.1)


def test_nms_suppresses_overlaps_of_the_same_class_only() -> None:
    out = _output([(50, 50, 20, 20), (51, 51, 20, 20), (52, 50, 20, 20)], [[0.9, 0.0], [0.8, 0.0], [0.0, 0.7]])
    raw = decode_predictions(out, 0.25, 0.5, 300)
    assert raw.class_ids.tolist() == [0, 1]  # the class-1 box survives although it overlaps
    assert raw.scores.tolist() == pytest.approx([0.9, 0.7])


@pytest.mark.parametrize("iou_threshold, kept", [
    (0.5, 1),  # IoU of the pair is 0.6: suppressed
    (0.6, 2),  # ... equal IoU is not "greater than": kept (torchvision semantics)
    (0.7, 2),
])
def test_nms_threshold(iou_threshold: float, kept: int) -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 6]], np.float32)  # second inside first: IoU 60/100
    assert len(nms(boxes, np.array([0.9, 0.8], np.float32), iou_threshold)) == kept


def test_max_detections_cuts_after_nms() -> None:
    boxes = [(20 * i + 10, 10, 8, 8) for i in range(10)]
    raw = decode_predictions(_output(boxes, [[0.5 + i / 100] for i in range(10)]), 0.25, 0.7, 3)
    assert raw.scores.tolist() == pytest.approx([0.59, 0.58, 0.57])


def test_empty_output_decodes_to_no_boxes() -> None:
    raw = decode_predictions(np.zeros((1, 5, 30), np.float32), 0.25, 0.7, 300)
    assert raw.boxes_xyxy.shape == (0, 4) and raw.best_score == 0.0


@pytest.mark.parametrize("src", [
    (300, 450),  # landscape tag: vertical padding
    (450, 300),  # portrait: horizontal padding
    (301, 449),  # odd sizes: unequal padding on the two sides
])
def test_boxes_map_back_to_original_pixels(src: tuple[int, int]) -> None:
    g = letterbox_geometry(src[0], src[1], 480, 480)
    original = np.array([[10, 20, 100, 200], [0, 0, src[1], src[0]]], np.float32)
    in_input = original.copy()
    in_input[:, [0, 2]] = original[:, [0, 2]] * g.gain_x + g.pad_left
    in_input[:, [1, 3]] = original[:, [1, 3]] * g.gain_y + g.pad_top
    np.testing.assert_allclose(boxes_to_original(in_input, g), original, atol=1e-3)


def test_boxes_are_clipped_to_the_image() -> None:
    g = letterbox_geometry(300, 450, 480, 480)
    mapped = boxes_to_original(np.array([[-20, 0, 500, 479]], np.float32), g)
    assert mapped.tolist() == [[0, 0, 450, 300]]
