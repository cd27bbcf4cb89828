"""Detection metrics (mAP50, mAP50-95, precision, recall) with Ultralytics' definitions.

Predictions are matched to true boxes the way Ultralytics' ``DetectionValidator`` does (per
IoU threshold 0.50:0.05:0.95, same class, highest IoU first, one match per box), and
``ultralytics.utils.metrics.ap_per_class`` turns the matches into AP, so numbers are
comparable with ``model.val()``. Precision and recall are Ultralytics' too: taken at the
confidence that maximises the mean F1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tagqa_assets.training.detections import ImageDetections, LabeledImage, box_iou

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)


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

    def headline(self) -> dict[str, float]:
        """The four registry metrics, rounded to 4 decimals."""
        return {name: round(getattr(self, name), 4) for name in ("map50", "map50_95", "precision", "recall")}

    def to_dict(self, *, with_curve: bool = False) -> dict[str, Any]:
        """JSON-ready dict; the PR curve only when asked (it is long)."""
        data = asdict(self)
        if not with_curve:
            data.pop("pr_recall")
            data.pop("pr_precision")
        return data


def match_predictions(pred_classes: np.ndarray, true_classes: np.ndarray, iou: np.ndarray) -> np.ndarray:
    """Boolean ``(predictions, 10)``: whether each prediction is a true positive at each IoU threshold.

    ``iou`` is ``(true boxes, predictions)``. Mirrors Ultralytics' ``match_predictions``.
    """
    correct = np.zeros((len(pred_classes), len(IOU_THRESHOLDS)), dtype=bool)
    if len(pred_classes) == 0 or len(true_classes) == 0:
        return correct
    iou = iou * (true_classes[:, None] == pred_classes[None, :])
    for index, threshold in enumerate(IOU_THRESHOLDS):
        matches = np.array(np.nonzero(iou >= threshold)).T  # (true, pred) pairs
        if not matches.shape[0]:
            continue
        if matches.shape[0] > 1:
            matches = matches[iou[matches[:, 0], matches[:, 1]].argsort()[::-1]]
            matches = matches[np.unique(matches[:, 1], return_index=True)[1]]
            matches = matches[np.unique(matches[:, 0], return_index=True)[1]]
        correct[matches[:, 1].astype(int), index] = True
    return correct


def evaluate(images: list[LabeledImage], predictions: list[ImageDetections]) -> SplitMetrics:
    """Metrics of ``predictions`` (one per image, same order) against the images' true boxes."""
    from ultralytics.utils.metrics import ap_per_class, smooth

    if len(images) != len(predictions):
        raise ValueError(f"{len(images)} images but {len(predictions)} prediction sets")
    tp, conf, pred_cls, target_cls = [], [], [], []
    for image, pred in zip(images, predictions):
        tp.append(match_predictions(pred.classes, image.classes, box_iou(image.boxes, pred.boxes)))
        conf.append(pred.scores)
        pred_cls.append(pred.classes)
        target_cls.append(image.classes)
    tp_all = np.concatenate(tp) if tp else np.zeros((0, 10), bool)
    targets = np.concatenate(target_cls) if target_cls else np.zeros(0)
    if len(targets) == 0 or len(tp_all) == 0:
        return SplitMetrics(0.0, 0.0, 0.0, 0.0, len(images), int(len(targets)), 0.0)
    result = ap_per_class(tp_all, np.concatenate(conf), np.concatenate(pred_cls), targets)
    _, _, p, r, f1, ap, _, _, _, f1_curve, x, prec_values = result
    best = int(smooth(f1_curve.mean(0), 0.1).argmax()) if len(f1_curve) else 0
    return SplitMetrics(
        map50=float(ap[:, 0].mean()),
        map50_95=float(ap.mean()),
        precision=float(p.mean()),
        recall=float(r.mean()),
        images=len(images),
        instances=int(len(targets)),
        conf_at_max_f1=round(float(x[best]), 4),
        pr_recall=[round(float(v), 4) for v in x[::10]],
        pr_precision=[round(float(v), 4) for v in np.asarray(prec_values).mean(0)[::10]],
    )
