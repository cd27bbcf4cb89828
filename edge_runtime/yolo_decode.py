"""YOLOv8 output decoding and non-maximum suppression in numpy.

Mirrors Ultralytics' ``non_max_suppression`` for detection models (best class per box,
strict ``> conf`` filter, class-offset NMS, ``max_det`` cut) and ``scale_boxes``, in float32
like the original, so boxes and scores match its predictions on the same ONNX file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_runtime.letterbox import LetterboxGeometry

MAX_NMS_CANDIDATES = 30000
_CLASS_OFFSET = np.float32(7680)  # Ultralytics' max_wh: separates classes so NMS never mixes them


@dataclass(frozen=True)
class RawDetections:
    """Detections in model-input pixels before mapping back (float32 arrays, sorted by score)."""

    boxes_xyxy: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    best_score: float


def decode_predictions(output: np.ndarray, conf_threshold: float, iou_threshold: float, max_detections: int
                       ) -> RawDetections:
    """Decode one image's ``(4 + nc, anchors)`` output (or ``(1, 4 + nc, anchors)``) into NMS-filtered boxes.

    ``best_score`` is the highest class score over all anchors, also when it is below the
    confidence threshold (the capture policy uses it to find uncertain images).
    """
    if output.ndim == 3:
        output = output[0]
    class_scores = output[4:]
    if class_scores.shape[0] == 0:
        raise ValueError(f"model output has {output.shape[0]} rows; YOLO detection needs 4 box rows + classes")
    # ufunc reductions directly: ndarray.max's Python wrapper layers cost more than the work here.
    best_per_anchor = class_scores[0] if class_scores.shape[0] == 1 else np.maximum.reduce(class_scores, axis=0)
    best_score = float(np.maximum.reduce(best_per_anchor)) if best_per_anchor.size else 0.0
    keep = np.flatnonzero(best_per_anchor > np.float32(conf_threshold))
    if keep.size == 0:
        empty = np.zeros((0, 4), np.float32)
        return RawDetections(empty, np.zeros(0, np.float32), np.zeros(0, np.int64), best_score)
    candidates = output[:, keep]
    scores = best_per_anchor[keep]
    class_ids = class_scores[:, keep].argmax(axis=0)
    boxes = xywh_to_xyxy(candidates[:4].T)
    if keep.size > MAX_NMS_CANDIDATES:
        top = np.argsort(-scores, kind="stable")[:MAX_NMS_CANDIDATES]
        boxes, scores, class_ids = boxes[top], scores[top], class_ids[top]
    kept = nms(boxes + class_ids[:, None].astype(np.float32) * _CLASS_OFFSET, scores, iou_threshold)
    kept = kept[:max_detections]
    return RawDetections(boxes[kept], scores[kept], class_ids[kept], best_score)


def xywh_to_xyxy(xywh: np.ndarray) -> np.ndarray:
    """Centre/size boxes to corner boxes, in the input's dtype."""
    half = xywh[:, 2:4] / 2
    return np.concatenate([xywh[:, :2] - half, xywh[:, :2] + half], axis=1)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS: indices of kept boxes by descending score; a box goes when IoU > threshold with a kept one."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
    areas = (x2 - x1) * (y2 - y1)
    kept: list[int] = []
    while order.size:
        best = order[0]
        kept.append(int(best))
        rest = order[1:]
        inter_w = np.maximum(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0)
        inter_h = np.maximum(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0)
        inter = inter_w * inter_h
        iou = inter / (areas[best] + areas[rest] - inter)
        order = rest[~(iou > iou_threshold)]
    return np.asarray(kept, dtype=np.intp)


def boxes_to_original(boxes_xyxy: np.ndarray, geometry: LetterboxGeometry) -> np.ndarray:
    """Map boxes from model-input pixels to original-image pixels and clip them to the image."""
    out = boxes_xyxy.astype(np.float32, copy=True)
    xs, ys = out[:, 0::2], out[:, 1::2]  # views: x1, x2 and y1, y2
    xs -= np.float32(geometry.pad_left)
    ys -= np.float32(geometry.pad_top)
    xs /= np.float32(geometry.gain_x)
    ys /= np.float32(geometry.gain_y)
    np.clip(xs, 0, geometry.src_width, out=xs)
    np.clip(ys, 0, geometry.src_height, out=ys)
    return out
