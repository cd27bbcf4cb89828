"""ONNX/PyTorch parity: the exported model must find what the checkpoint finds.

The PyTorch side is Ultralytics end to end (``LetterBox``, the ``DetectionModel`` from the
checkpoint, ``non_max_suppression``, ``scale_boxes``); the ONNX side is the edge runtime
(``detections.OnnxModel``). Both get the same decoded pixels. Detections are matched per
image (same class, highest IoU first); the check passes when every image has the same
count and every matched pair has IoU >= ``min_iou`` and a score difference <= ``max_score_diff``.
A detection within ``max_score_diff`` of the confidence threshold may be missing on one
side: a 1e-4 numeric difference must not flip a pass into a fail at the threshold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edge_runtime.detector import Thresholds
from tagqa_assets.training.detections import ImageDetections, LabeledImage, OnnxModel, box_iou

MIN_IOU = 0.99
MAX_SCORE_DIFF = 1e-3


@dataclass(frozen=True)
class ImageParity:
    """One image's comparison."""

    name: str
    torch_count: int
    onnx_count: int
    matched: int
    min_iou: float
    max_score_diff: float
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class ParityReport:
    """All images' comparisons and the verdict."""

    images: list[ImageParity]
    conf: float
    min_iou_required: float
    max_score_diff_allowed: float
    max_raw_output_diff: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """No image had a problem."""
        return not self.problems

    @property
    def matched(self) -> int:
        """Detection pairs compared."""
        return sum(image.matched for image in self.images)

    @property
    def worst_iou(self) -> float:
        """Lowest IoU among matched pairs (1.0 when none)."""
        return min((image.min_iou for image in self.images if image.matched), default=1.0)

    @property
    def worst_score_diff(self) -> float:
        """Largest score difference among matched pairs."""
        return max((image.max_score_diff for image in self.images), default=0.0)

    def to_dict(self) -> dict:
        """JSON-ready dict including the verdict."""
        return {**asdict(self), "passed": self.passed, "matched": self.matched, "worst_iou": self.worst_iou,
                "worst_score_diff": self.worst_score_diff}


def compare_image(name: str, torch_dets: ImageDetections, onnx_dets: ImageDetections, *, conf: float,
                  min_iou: float = MIN_IOU, max_score_diff: float = MAX_SCORE_DIFF) -> ImageParity:
    """Match one image's detections and list every violation (empty ``problems`` = parity)."""
    iou = box_iou(torch_dets.boxes, onnx_dets.boxes) * (torch_dets.classes[:, None] == onnx_dets.classes[None, :])
    pairs: list[tuple[int, int]] = []
    used_t, used_o = set(), set()
    for flat in np.argsort(-iou, axis=None):
        t, o = np.unravel_index(flat, iou.shape)
        if iou[t, o] <= 0:
            break
        if t not in used_t and o not in used_o:
            pairs.append((int(t), int(o)))
            used_t.add(t)
            used_o.add(o)
    problems = []
    ious = [float(iou[t, o]) for t, o in pairs]
    diffs = [abs(float(torch_dets.scores[t]) - float(onnx_dets.scores[o])) for t, o in pairs]
    for (t, o), pair_iou, diff in zip(pairs, ious, diffs):
        if pair_iou < min_iou or diff > max_score_diff:
            problems.append(f"{name}: box {t} IoU {pair_iou:.4f}, score {torch_dets.scores[t]:.5f} vs {onnx_dets.scores[o]:.5f}")
    borderline = conf + max_score_diff
    for side, dets, used in (("PyTorch", torch_dets, used_t), ("ONNX", onnx_dets, used_o)):
        for index in range(len(dets.scores)):
            if index not in used and dets.scores[index] > borderline:
                problems.append(f"{name}: {side} found a box (score {dets.scores[index]:.4f}) the other side did not")
    return ImageParity(name, len(torch_dets.scores), len(onnx_dets.scores), len(pairs), min(ious, default=1.0),
                       max(diffs, default=0.0), tuple(problems))


class TorchModel:
    """The checkpoint run the way Ultralytics predicts (letterbox, forward, NMS, scale back)."""

    def __init__(self, weights: Path, imgsz: int) -> None:
        from ultralytics.nn.tasks import load_checkpoint

        self.model, _ = load_checkpoint(str(weights), device="cpu", fuse=True)
        self.model = self.model.float().eval()
        self.imgsz = imgsz

    def input_tensor(self, pixels: np.ndarray):
        """``pixels`` (RGB) letterboxed by Ultralytics' ``LetterBox`` as a 1x3xSxS float tensor."""
        import torch
        from ultralytics.data.augment import LetterBox

        boxed = LetterBox((self.imgsz, self.imgsz), auto=False, stride=32)(image=np.ascontiguousarray(pixels[..., ::-1]))
        chw = np.ascontiguousarray(boxed[..., ::-1].transpose(2, 0, 1))
        return torch.from_numpy(chw).float().div(255).unsqueeze(0)

    def raw(self, pixels: np.ndarray) -> np.ndarray:
        """The model's raw ``1 x (4 + nc) x anchors`` output."""
        import torch

        with torch.inference_mode():
            output = self.model(self.input_tensor(pixels))
        return (output[0] if isinstance(output, (list, tuple)) else output).numpy()

    def predict(self, pixels: np.ndarray, thresholds: Thresholds) -> ImageDetections:
        """Ultralytics' detections in original pixels, sorted by score."""
        import torch
        from ultralytics.utils.nms import non_max_suppression
        from ultralytics.utils.ops import scale_boxes

        raw = torch.from_numpy(self.raw(pixels))
        kept = non_max_suppression(raw, thresholds.conf, thresholds.iou, max_det=thresholds.max_detections,
                                   max_time_img=60.0)[0]
        boxes = scale_boxes((self.imgsz, self.imgsz), kept[:, :4].clone(), pixels.shape[:2]).numpy()
        order = np.argsort(-kept[:, 4].numpy(), kind="stable")
        return ImageDetections(boxes[order].astype(np.float32), kept[:, 4].numpy()[order].astype(np.float32),
                               kept[:, 5].numpy()[order].astype(np.int64))


def check_parity(weights: Path, imgsz: int, onnx_dir: Path, images: list[LabeledImage], *, conf: float,
                 iou: float = 0.7, min_iou: float = MIN_IOU, max_score_diff: float = MAX_SCORE_DIFF) -> ParityReport:
    """Compare the checkpoint with the exported model on ``images`` (see module docstring)."""
    thresholds = Thresholds(conf=conf, iou=iou, max_detections=300)
    torch_model = TorchModel(weights, imgsz)
    onnx_model = OnnxModel(onnx_dir)
    results, raw_diff = [], 0.0
    for image in images:
        results.append(compare_image(image.name, torch_model.predict(image.pixels, thresholds),
                                     onnx_model.predict(image.pixels, thresholds), conf=conf, min_iou=min_iou,
                                     max_score_diff=max_score_diff))
        tensor = torch_model.input_tensor(image.pixels).numpy()
        raw_diff = max(raw_diff, float(np.abs(torch_model.raw(image.pixels) - onnx_model.loaded.infer(tensor)).max()))
    problems = [problem for result in results for problem in result.problems]
    return ParityReport(results, conf, min_iou, max_score_diff, round(raw_diff, 6), problems)
