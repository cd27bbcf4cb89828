"""ONNX/PyTorch parity: the exported model must find what the checkpoint finds.

The PyTorch side is Ultralytics end to end (``LetterBox``, the fused ``DetectionModel`` from
the checkpoint, ``non_max_suppression``, ``scale_boxes``), in a child process; the ONNX side
is the edge runtime (``detections.OnnxModel``). Both get the same decoded pixels. Detections are matched per
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
from edge_runtime.letterbox import letterbox
from tagqa_assets.training.detections import ImageDetections, LabeledImage, OnnxModel, box_iou
from tagqa_trainer.ultralytics_tasks import run_task

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


def torch_detections(weights: Path, imgsz: int, images: list[LabeledImage], thresholds: Thresholds, *,
                     settings_dir: Path, scratch: Path) -> tuple[list[ImageDetections], list[np.ndarray]]:
    """Ultralytics' detections and raw outputs for ``images`` (run in a child process, see ultralytics_tasks)."""
    scratch.mkdir(parents=True, exist_ok=True)
    names = [f"{index:05d}" for index in range(len(images))]
    np.savez(scratch / "pixels.npz", **{name: image.pixels for name, image in zip(names, images)})
    run_task(["predict", str(weights), str(imgsz), str(scratch / "pixels.npz"), str(scratch / "torch.npz"),
              "--conf", str(thresholds.conf), "--iou", str(thresholds.iou), "--max-det", str(thresholds.max_detections)],
             settings_dir=settings_dir, cwd=scratch)
    with np.load(scratch / "torch.npz") as found:
        detections = [ImageDetections(found[f"{n}/boxes"], found[f"{n}/scores"], found[f"{n}/classes"]) for n in names]
        raws = [found[f"{n}/raw"] for n in names]
    return detections, raws


def check_parity(weights: Path, imgsz: int, onnx_dir: Path, images: list[LabeledImage], *, conf: float, settings_dir: Path,
                 scratch: Path, iou: float = 0.7, min_iou: float = MIN_IOU, max_score_diff: float = MAX_SCORE_DIFF) -> ParityReport:
    """Compare the checkpoint with the exported model on ``images`` (see module docstring)."""
    thresholds = Thresholds(conf=conf, iou=iou, max_detections=300)
    torch_side, raws = torch_detections(weights, imgsz, images, thresholds, settings_dir=settings_dir, scratch=scratch)
    onnx_model = OnnxModel(onnx_dir)
    results, raw_diff = [], 0.0
    for image, torch_dets, torch_raw in zip(images, torch_side, raws):
        results.append(compare_image(image.name, torch_dets, onnx_model.predict(image.pixels, thresholds), conf=conf,
                                     min_iou=min_iou, max_score_diff=max_score_diff))
        tensor, _ = letterbox(image.pixels, imgsz, imgsz)
        raw_diff = max(raw_diff, float(np.abs(torch_raw - onnx_model.loaded.infer(tensor)).max()))
    problems = [problem for result in results for problem in result.problems]
    return ParityReport(results, conf, min_iou, max_score_diff, round(raw_diff, 6), problems)
