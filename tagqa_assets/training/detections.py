"""Test images with their true boxes, and ONNX predictions made exactly as the edge makes them.

Predictions go through ``edge_runtime`` (verified model load, numpy letterbox, decode, NMS),
so every number the platform reports about an ONNX model is what a device would see.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.detector import Detector, Thresholds
from edge_runtime.imaging import decode_image
from edge_runtime.letterbox import letterbox
from edge_runtime.models import load_verified_model
from edge_runtime.yolo_decode import MAX_NMS_CANDIDATES, boxes_to_original, nms, xywh_to_xyxy

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
# Ultralytics' validation thresholds: mAP needs (almost) every candidate box.
EVAL_THRESHOLDS = Thresholds(conf=0.001, iou=0.7, max_detections=300)
# Ultralytics' max_wh: the class offset that keeps class-aware NMS from mixing classes.
_CLASS_OFFSET = np.float32(7680)


@dataclass(frozen=True)
class LabeledImage:
    """One decoded image of a split with its true boxes in pixels (``boxes`` n x 4 xyxy, ``classes`` n)."""

    name: str
    data: bytes
    pixels: np.ndarray  # HxWx3 uint8 RGB
    boxes: np.ndarray
    classes: np.ndarray


@dataclass(frozen=True)
class ImageDetections:
    """Predicted boxes for one image in original pixels, sorted by descending score."""

    boxes: np.ndarray  # n x 4 xyxy float32
    scores: np.ndarray
    classes: np.ndarray

    def by_score(self) -> "ImageDetections":
        """The same detections in descending score order (ties keep their order); ``self`` when already so."""
        if len(self.scores) < 2 or bool(np.all(self.scores[:-1] >= self.scores[1:])):
            return self
        order = np.argsort(-self.scores, kind="stable")
        return ImageDetections(self.boxes[order], self.scores[order], self.classes[order])

    def above(self, conf: float) -> "ImageDetections":
        """Only the detections scoring at least ``conf``."""
        keep = self.scores >= conf
        return ImageDetections(self.boxes[keep], self.scores[keep], self.classes[keep])


def load_split(dataset_dir: Path, split: str, *, limit: int | None = None) -> list[LabeledImage]:
    """Images of ``split`` from a YOLO export folder with their labels converted to pixels.

    Raises ``ValueError`` naming the folder when the split has no images, and naming the
    file when a label line is malformed.
    """
    folder = Path(dataset_dir) / "images" / split
    paths = sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    if not paths:
        raise ValueError(f"{folder}: split {split!r} has no images")
    images = []
    for path in paths[:limit]:
        data = path.read_bytes()
        pixels = decode_image(data)
        height, width = pixels.shape[:2]
        label_file = Path(dataset_dir) / "labels" / split / (path.stem + ".txt")
        rows = _label_rows(label_file)
        boxes = np.zeros((len(rows), 4), np.float32)
        classes = np.zeros(len(rows), np.int64)
        for index, (cls, xc, yc, w, h) in enumerate(rows):
            classes[index] = int(cls)
            boxes[index] = ((xc - w / 2) * width, (yc - h / 2) * height, (xc + w / 2) * width, (yc + h / 2) * height)
        images.append(LabeledImage(path.name, data, pixels, boxes, classes))
    return images


def _label_rows(label_file: Path) -> list[tuple[float, ...]]:
    if not label_file.is_file():
        return []  # Ultralytics' convention: no label file = an image without objects
    rows = []
    for number, line in enumerate(label_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            values = tuple(float(part) for part in parts)
        except ValueError:
            values = ()
        if len(values) != 5:
            raise ValueError(f"{label_file}:{number}: expected 'class xc yc w h', got {line!r}")
        rows.append(values)
    return rows


class OnnxModel:
    """A verified model directory (``model.onnx`` + ``model_card.json``) with one ORT session."""

    def __init__(self, model_dir: Path) -> None:
        self.loaded = load_verified_model(model_dir)
        self._detector = Detector()

    def predict(self, pixels: np.ndarray, thresholds: Thresholds = EVAL_THRESHOLDS) -> ImageDetections:
        """Detections for one HxWx3 RGB image, through the edge runtime's own pipeline."""
        found = self._detector.detect(pixels, self.loaded, thresholds).detections
        if not found:
            return ImageDetections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
        return ImageDetections(
            np.array([d.box_xyxy for d in found], np.float32),
            np.array([d.score for d in found], np.float32),
            np.array([d.class_id for d in found], np.int64),
        )

    def predict_all(self, images: list[LabeledImage], thresholds: Thresholds = EVAL_THRESHOLDS) -> list[ImageDetections]:
        """Detections for metrics, per image in order: Ultralytics' validation protocol.

        With one class this is ``predict``. With several, a box is kept once for every class
        scoring above ``thresholds.conf`` (multi-label NMS, as ``val()`` does), not only for
        its best class as a device reports it: a box whose second class is the right one
        still counts at the tail of that class's PR curve.
        """
        if len(self.loaded.card.class_names) <= 1:
            return [self.predict(image.pixels, thresholds) for image in images]
        return [self.predict_multi_label(image.pixels, thresholds) for image in images]

    def predict_multi_label(self, pixels: np.ndarray, thresholds: Thresholds = EVAL_THRESHOLDS) -> ImageDetections:
        """One image through the runtime's letterbox and model, then Ultralytics' multi-label NMS."""
        tensor, geometry = letterbox(pixels, self.loaded.input_height, self.loaded.input_width)
        output = self.loaded.infer(tensor)
        boxes, scores, classes = multi_label_nms(output[0] if output.ndim == 3 else output, thresholds)
        return ImageDetections(boxes_to_original(boxes, geometry), scores, classes)


def multi_label_nms(output: np.ndarray, thresholds: Thresholds) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ultralytics' ``non_max_suppression(multi_label=True)`` on one ``(4 + nc, anchors)`` output.

    Every (anchor, class) pair scoring above ``conf`` is a candidate (anchor-major order, as
    ``torch.where`` lists them), at most ``MAX_NMS_CANDIDATES`` by score; class-offset NMS;
    the first ``max_detections``. Boxes in model-input pixels, by descending score.
    """
    class_scores = output[4:]
    anchors = np.flatnonzero(np.max(class_scores, axis=0) > np.float32(thresholds.conf))
    pairs_anchor, pairs_class = np.nonzero(class_scores[:, anchors].T > np.float32(thresholds.conf))
    anchors = anchors[pairs_anchor]
    boxes = xywh_to_xyxy(output[:4, anchors].T)
    scores = class_scores[pairs_class, anchors]
    if len(scores) > MAX_NMS_CANDIDATES:
        top = np.argsort(-scores, kind="stable")[:MAX_NMS_CANDIDATES]
        boxes, scores, pairs_class = boxes[top], scores[top], pairs_class[top]
    kept = nms(boxes + pairs_class[:, None].astype(np.float32) * _CLASS_OFFSET, scores, thresholds.iou)
    kept = kept[: thresholds.max_detections]
    return boxes[kept].astype(np.float32), scores[kept].astype(np.float32), pairs_class[kept].astype(np.int64)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``a`` (n x 4) and ``b`` (m x 4) xyxy boxes: an n x m matrix."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float64)
    a = a.astype(np.float64)[:, None, :]
    b = b.astype(np.float64)[None, :, :]
    inter_w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    inter_h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = inter_w * inter_h
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-12)
