"""Detection metrics (mAP50, mAP50-95, precision, recall) with the definitions Ultralytics' ``val()`` uses.

- Matching, per image and per IoU threshold 0.50:0.05:0.95: predictions in descending score
  order each claim the unclaimed true box of their class with the highest IoU (COCO's greedy
  rule; Ultralytics 8.4's ``match_predictions``).
- AP per class: the precision envelope over the score-ranked predictions of all images,
  sampled at 101 recall points (``np.interp``) and integrated with the trapezoid rule
  (Ultralytics' ``compute_ap``); mAP is the mean over the classes that have true boxes.
- Precision and recall are read at the confidence that maximises the (smoothed) mean F1.
- The detections come from ``detections.OnnxModel.predict_all`` with ``EVAL_THRESHOLDS``
  (conf 0.001, NMS IoU 0.7, at most 300 boxes; multi-label NMS for several classes), like
  ``val()``'s. Images without a label file count as images without objects.

The numbers therefore agree with ``model.val()`` on the same ONNX file and split (checked in
tests/test_evaluation.py against Ultralytics itself), without importing Ultralytics into this
process (see tagqa_trainer/ultralytics_tasks.py for why). docs/training.md says what is left.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tagqa_assets.training.detections import ImageDetections, LabeledImage, box_iou

# float32 like Ultralytics' torch.linspace, so a box on a threshold falls on the same side.
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10).astype(np.float32)


@dataclass(frozen=True)
class SplitMetrics:
    """Metrics of one model on one split, plus the PR curve at IoU 0.5 (for plots)."""

    map50: float
    map50_95: float
    precision: float
    recall: float
    images: int
    instances: int
    conf_at_max_f1: float
    pr_recall: list[float] = field(default_factory=list, repr=False)
    pr_precision: list[float] = field(default_factory=list, repr=False)
    # class id (as text) -> {"ap50", "ap50_95", "instances"}, for every class with true boxes;
    # map50 / map50_95 are the means over these classes.
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)

    def headline(self) -> dict[str, float]:
        """The four registry metrics, rounded to 4 decimals."""
        return {name: round(getattr(self, name), 4) for name in ("map50", "map50_95", "precision", "recall")}

    def per_class_named(self, class_names: tuple[str, ...]) -> dict[str, dict[str, float]]:
        """``per_class`` keyed by class name (``class <id>`` for an id outside ``class_names``)."""
        return {
            (class_names[int(cid)] if int(cid) < len(class_names) else f"class {cid}"): values for cid, values in sorted(self.per_class.items(), key=lambda kv: int(kv[0]))
        }

    def to_dict(self, *, with_curve: bool = False) -> dict[str, Any]:
        """JSON-ready dict; the PR curve only when asked (it is long)."""
        data = asdict(self)
        if not with_curve:
            data.pop("pr_recall")
            data.pop("pr_precision")
        return data


def match_predictions(pred_classes: np.ndarray, true_classes: np.ndarray, iou: np.ndarray) -> np.ndarray:
    """Boolean ``(predictions, 10)``: whether each prediction is a true positive at each IoU threshold.

    ``iou`` is ``(true boxes, predictions)`` and the predictions must be in descending score
    order. Greedy by confidence, per threshold: each prediction in turn claims the
    still-unclaimed true box of its class with the highest IoU, and is a hit when that IoU
    reaches the threshold. This is COCO's rule and Ultralytics' ``match_predictions``
    (8.4, default ``use_scipy=False``). The older rule (pairs sorted by IoU, made unique per
    prediction, then per true box) let a lower-scored box lose to a better-scored one on
    its best true box without trying its second best, and counted it as a false positive.
    """
    correct = np.zeros((len(pred_classes), len(IOU_THRESHOLDS)), dtype=bool)
    if len(pred_classes) == 0 or len(true_classes) == 0:
        return correct
    iou = iou * (true_classes[:, None] == pred_classes[None, :])
    claimed = np.zeros((len(true_classes), len(IOU_THRESHOLDS)), dtype=bool)
    columns = np.arange(len(IOU_THRESHOLDS))
    for prediction in np.flatnonzero((iou >= IOU_THRESHOLDS[0]).any(0)):
        available = np.where(claimed, 0.0, iou[:, prediction, None])  # (true boxes, thresholds)
        best = available.argmax(0)
        correct[prediction] = available[best, columns] >= IOU_THRESHOLDS
        claimed[best, columns] |= correct[prediction]
    return correct


def average_precision(recall: np.ndarray, precision: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AP as the area under the precision envelope at 101 recall points; also returns the envelope curve.

    Recall the detections never reach earns no precision: the envelope drops to 0 right
    after the last recall achieved.
    """
    last = recall[-1] if len(recall) else 1.0
    recall = np.concatenate(([0.0], recall, [last], [1.0]))
    envelope = np.flip(np.maximum.accumulate(np.flip(np.concatenate(([1.0], precision, [0.0], [0.0])))))
    points = np.linspace(0, 1, 101)
    return float(np.trapezoid(np.interp(points, recall, envelope), points)), recall, envelope


def _smooth(values: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    width = round(len(values) * fraction * 2) // 2 + 1
    padded = np.pad(values, width // 2, mode="edge")
    return np.convolve(padded, np.ones(width) / width, mode="valid")


def evaluate(images: list[LabeledImage], predictions: list[ImageDetections]) -> SplitMetrics:
    """Metrics of ``predictions`` (one per image, same order) against the images' true boxes."""
    if len(images) != len(predictions):
        raise ValueError(f"{len(images)} images but {len(predictions)} prediction sets")
    predictions = [p.by_score() for p in predictions]
    tp = np.concatenate([match_predictions(p.classes, i.classes, box_iou(i.boxes, p.boxes)) for i, p in zip(images, predictions)]
                        or [np.zeros((0, 10), bool)])
    conf = np.concatenate([p.scores for p in predictions] or [np.zeros(0)])
    pred_cls = np.concatenate([p.classes for p in predictions] or [np.zeros(0)])
    targets = np.concatenate([i.classes for i in images] or [np.zeros(0)])
    if len(targets) == 0 or len(tp) == 0:
        return SplitMetrics(0.0, 0.0, 0.0, 0.0, len(images), int(len(targets)), 0.0)
    order = np.argsort(-conf)  # Ultralytics' call, so tied scores rank alike on both sides
    tp, conf, pred_cls = tp[order], conf[order], pred_cls[order]
    grid = np.linspace(0, 1, 1000)
    classes = np.unique(targets)
    ap = np.zeros((len(classes), len(IOU_THRESHOLDS)))
    p_curve, r_curve, pr_curve = np.zeros((len(classes), 1000)), np.zeros((len(classes), 1000)), np.zeros((len(classes), 1000))
    for index, cls in enumerate(classes):
        mine = pred_cls == cls
        if not mine.any():
            continue
        hits = tp[mine].cumsum(0)
        misses = (1 - tp[mine]).cumsum(0)
        recall = hits / (np.count_nonzero(targets == cls) + 1e-16)
        precision = hits / (hits + misses)
        r_curve[index] = np.interp(-grid, -conf[mine], recall[:, 0], left=0)
        p_curve[index] = np.interp(-grid, -conf[mine], precision[:, 0], left=1)
        for threshold in range(len(IOU_THRESHOLDS)):
            ap[index, threshold], m_recall, envelope = average_precision(recall[:, threshold], precision[:, threshold])
            if threshold == 0:
                pr_curve[index] = np.interp(grid, m_recall, envelope)
    f1 = 2 * p_curve * r_curve / (p_curve + r_curve + 1e-16)
    best = int(_smooth(f1.mean(0)).argmax())
    return SplitMetrics(
        map50=float(ap[:, 0].mean()),
        map50_95=float(ap.mean()),
        precision=float(p_curve[:, best].mean()),
        recall=float(r_curve[:, best].mean()),
        images=len(images),
        instances=int(len(targets)),
        conf_at_max_f1=round(float(grid[best]), 4),
        pr_recall=[round(float(v), 4) for v in grid[::10]],
        pr_precision=[round(float(v), 4) for v in pr_curve.mean(0)[::10]],
        per_class={
            str(int(cls)): {
                "ap50": round(float(ap[index, 0]), 4),
                "ap50_95": round(float(ap[index].mean()), 4),
                "instances": int(np.count_nonzero(targets == cls)),
            }
            for index, cls in enumerate(classes)
        },
    )


def best_scores(predictions: list[ImageDetections]) -> list[float]:
    """Each image's highest detection score (0 without any): the drift baseline ``line_results_drift`` reads."""
    return [round(float(p.scores.max()), 6) if len(p.scores) else 0.0 for p in predictions]
