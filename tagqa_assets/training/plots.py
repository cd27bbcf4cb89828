"""Charts for the Dagster UI and the model directory, drawn with matplotlib's Agg backend (PNG bytes)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

LOSS_SERIES = ("box_loss", "cls_loss", "dfl_loss", "val_box_loss", "val_cls_loss", "val_dfl_loss")
METRIC_SERIES = ("map50", "map50_95", "precision", "recall")


def _figure(width: float, height: float, columns: int = 1):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(1, columns, figsize=(width, height), dpi=80)


def _png(plt: Any, figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def training_curves_png(epochs: Sequence[dict[str, Any]], title: str) -> bytes:
    """Losses (left) and validation metrics (right) per epoch."""
    plt, figure, (losses, metrics) = _figure(10, 3.6, columns=2)
    x = [record["epoch"] for record in epochs]
    for name in LOSS_SERIES:
        if any(name in record for record in epochs):
            losses.plot(x, [record.get(name, float("nan")) for record in epochs], label=name,
                        linestyle="--" if name.startswith("val_") else "-")
    for name in METRIC_SERIES:
        if any(name in record for record in epochs):
            metrics.plot(x, [record.get(name, float("nan")) for record in epochs], label=name)
    losses.set(title="losses", xlabel="epoch")
    metrics.set(title="validation", xlabel="epoch", ylim=(0, 1))
    for axes in (losses, metrics):
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    figure.suptitle(title, fontsize=9)
    return _png(plt, figure)


def pr_curves_png(curves: dict[str, tuple[Sequence[float], Sequence[float], float]], title: str) -> bytes:
    """Precision-recall curves at IoU 0.5: ``{label: (recall, precision, mAP50)}``."""
    plt, figure, axes = _figure(5, 4)
    for label, (recall, precision, map50) in curves.items():
        axes.plot(recall, precision, label=f"{label} (mAP50 {map50:.3f})")
    axes.set(title=title, xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="lower left")
    return _png(plt, figure)


def epochs_csv(epochs: Sequence[dict[str, Any]]) -> bytes:
    """Per-epoch records as CSV (one column per key seen in any epoch)."""
    columns: list[str] = []
    for record in epochs:
        columns.extend(key for key in record if key not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(epochs)
    return buffer.getvalue().encode()
