"""A model's precision variants in ``model_evaluation``: the int8 variant built, stored and evaluated like fp32.

The int8 variant is built once per model, before the model is committed, into
``models/<id>/int8/`` (so the commit record hashes it too), calibrated on the dataset
version's training split; later evaluations of the model reuse it. Both variants are
evaluated on the same splits through the same edge pipeline (``OnnxModel``). Which one a
device gets is the registry's decision (``registry/gates.py:choose_precision``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_runtime.contracts import ModelCard
from edge_runtime.models import ModelRejected
from tagqa_assets.contracts.models import FP32, INT8, INT8_MODEL_CARD_FILE, INT8_ONNX_FILE, MODEL_CARD_FILE, ONNX_FILE, model_key
from tagqa_assets.model_catalog.model_files import is_committed, stage_onnx
from tagqa_assets.storage import ObjectStore
from tagqa_assets.training.detections import LabeledImage, OnnxModel
from tagqa_assets.training.evaluation import SplitMetrics, best_scores, evaluate
from tagqa_assets.training.quantization import (QuantizationFailed, calibration_images, calibration_set,
                                                quantize_model_dir)

CALIBRATION_SPLIT = "train"


@dataclass(frozen=True)
class VariantEvaluation:
    """One precision variant of a model, evaluated; ``error`` says why there is none (then no metrics)."""

    precision: str
    metrics: dict[str, SplitMetrics] = field(default_factory=dict)
    size_bytes: int = 0
    onnx_sha256: str = ""
    card_extra: dict[str, Any] = field(default_factory=dict)  # precision, quantization, calibration (int8)
    built: bool = False  # built by this evaluation (else found in the store)
    error: str = ""
    best_scores: list[float] = field(default_factory=list)  # each test image's best score (drift baseline)

    def document(self, class_names: tuple[str, ...]) -> dict[str, Any]:
        """The evaluation document's ``variants.<precision>`` entry."""
        if self.error:
            return {"error": self.error}
        return {
            "metrics": {split: m.headline() for split, m in self.metrics.items()},
            "per_class": {split: m.per_class_named(class_names) for split, m in self.metrics.items()},
            "size_bytes": self.size_bytes, "onnx_sha256": self.onnx_sha256,
            **({"best_scores": {"test": self.best_scores}} if self.best_scores else {}),
            **{key: self.card_extra[key] for key in ("quantization", "calibration") if key in self.card_extra},
        }


def evaluated_fp32(model_dir: Path, metrics: dict[str, SplitMetrics]) -> VariantEvaluation:
    """The exported model itself (already evaluated by the caller) as the fp32 variant."""
    card = ModelCard.read(model_dir)
    return VariantEvaluation(FP32, metrics, (model_dir / card.onnx_file).stat().st_size, card.onnx_sha256)


def evaluate_int8(store: ObjectStore, model_id: str, dataset_version: str, dataset_dir: Path, fp32_dir: Path,
                  scratch: Path, splits: dict[str, list[LabeledImage]], *, calibration_count: int) -> VariantEvaluation:
    """The int8 variant of ``model_id`` evaluated on ``splits``: the stored one, else built from ``fp32_dir``
    (the staged export) with ``calibration_count`` images of ``dataset_dir``'s training split and stored.

    A variant that cannot be built or that the edge runtime refuses comes back with ``error`` set
    (the reason, naming the file); a committed model without one is not changed afterwards.
    """
    if calibration_count <= 0:
        return VariantEvaluation(INT8, error="not built: int8_calibration_images is 0")
    built = False
    if not store.exists(model_key(model_id, INT8_ONNX_FILE)):
        if is_committed(store, model_id):
            return VariantEvaluation(INT8, error=f"model {model_id} was committed without an int8 variant "
                                                 "(before they were built) and is not changed afterwards")
        try:
            images = calibration_images(dataset_dir / "images" / CALIBRATION_SPLIT, calibration_count)
            out = quantize_model_dir(fp32_dir, scratch / "int8-build", images,
                                     calibration_set(dataset_version, CALIBRATION_SPLIT, images))
        except QuantizationFailed as exc:
            return VariantEvaluation(INT8, error=str(exc))
        # The card last: a reader that finds it finds the model it describes.
        store.put_file(model_key(model_id, INT8_ONNX_FILE), out / ONNX_FILE)
        store.put_file(model_key(model_id, INT8_MODEL_CARD_FILE), out / MODEL_CARD_FILE)
        built = True
    staged = stage_onnx(store, model_id, scratch / "int8", precision=INT8)
    try:
        model = OnnxModel(staged)
    except ModelRejected as exc:
        return VariantEvaluation(INT8, error=f"the edge runtime refuses it: {exc}", built=built)
    card = model.loaded.card
    predictions = {split: model.predict_all(images) for split, images in splits.items()}
    metrics = {split: evaluate(images, predictions[split]) for split, images in splits.items()}
    return VariantEvaluation(INT8, metrics, (staged / card.onnx_file).stat().st_size, card.onnx_sha256,
                             dict(card.extra), built, best_scores=best_scores(predictions.get("test", [])))
