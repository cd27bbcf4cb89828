"""One frame through the model: letterbox -> ONNX Runtime -> decode + NMS -> original pixels."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from edge_runtime.contracts import Detection
from edge_runtime.letterbox import letterbox_into
from edge_runtime.models import LoadedModel
from edge_runtime.yolo_decode import boxes_to_original, decode_predictions


@dataclass(frozen=True)
class Thresholds:
    """NMS and reporting thresholds (from the device configuration)."""

    conf: float = 0.25
    iou: float = 0.7
    max_detections: int = 300


@dataclass(frozen=True)
class FrameDetections:
    """What the model found in one image, in original-image pixels."""

    detections: tuple[Detection, ...]
    best_score: float
    image_width: int
    image_height: int


class Detector:
    """Re-entrant detector: the model is passed per call and input buffers are per thread."""

    def __init__(self) -> None:
        self._local = threading.local()

    def _input_buffer(self, height: int, width: int) -> tuple[np.ndarray, dict]:
        buffer = getattr(self._local, "buffer", None)
        if buffer is None or buffer.shape[2:] != (height, width):
            buffer = np.empty((1, 3, height, width), dtype=np.float32)
            self._local.buffer = buffer
            self._local.scratch = {}
        return buffer, self._local.scratch

    def detect(self, image: np.ndarray, model: LoadedModel, thresholds: Thresholds) -> FrameDetections:
        """Detect in an HxWx3 uint8 RGB image with ``model``."""
        tensor, scratch = self._input_buffer(model.input_height, model.input_width)
        geometry = letterbox_into(image, tensor, scratch)
        output = model.infer(tensor)
        raw = decode_predictions(output, thresholds.conf, thresholds.iou, thresholds.max_detections)
        boxes = boxes_to_original(raw.boxes_xyxy, geometry)
        names = model.card.class_names
        detections = tuple(
            Detection(
                class_name=names[int(c)] if int(c) < len(names) else str(int(c)),
                class_id=int(c),
                score=float(s),
                box_xyxy=(float(b[0]), float(b[1]), float(b[2]), float(b[3])),
            )
            for b, s, c in zip(boxes, raw.scores, raw.class_ids)
        )
        return FrameDetections(detections, raw.best_score, image.shape[1], image.shape[0])
