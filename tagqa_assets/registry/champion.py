"""The champion (newest Approved model version) and its predictions, for model-assisted labeling.

Labeling declares a ``PreAnnotationResource``; this stage supplies ``ChampionPreAnnotationResource``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from edge_runtime.detector import Thresholds
from edge_runtime.imaging import ImageDecodeError, decode_image
from tagqa_assets.contracts.labels import Annotation
from tagqa_assets.labeling.backends.base import ImageRef
from tagqa_assets.labeling.pre_annotations import PreAnnotationResource
from tagqa_assets.model_catalog.model_files import stage_onnx
from tagqa_assets.model_catalog.registry import ModelRegistry
from tagqa_assets.model_catalog.resources import ModelRegistryResource
from tagqa_assets.storage import ObjectStore
from tagqa_assets.training.detections import OnnxModel

PRE_LABEL_THRESHOLDS = Thresholds(conf=0.25, iou=0.7, max_detections=100)


def predict_boxes(
    store: ObjectStore, images: Sequence[ImageRef], *, registry: ModelRegistry,
    thresholds: Thresholds = PRE_LABEL_THRESHOLDS,
) -> dict[str, list[Annotation]]:
    """The champion's boxes for each image, by image key; ``{}`` when there is no champion.

    Runs the champion's ONNX model through the edge runtime's pipeline (what devices run).
    Raises ``ValueError`` naming an image whose bytes do not decode.
    """
    champion = registry.champion()
    if champion is None or not images:
        return {}
    with tempfile.TemporaryDirectory(prefix="tagqa-champion-") as folder:
        model = OnnxModel(stage_onnx(store, champion.model_id, Path(folder)))
        predictions: dict[str, list[Annotation]] = {}
        for image in images:
            try:
                pixels = decode_image(store.get_bytes(image.key))
            except ImageDecodeError as exc:
                raise ValueError(f"{store.uri_for(image.key)}: cannot decode image for pre-labeling ({exc})") from None
            found = model.predict(pixels, thresholds)
            predictions[image.key] = [
                Annotation(int(c), float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1]))
                for b, c in zip(found.boxes, found.classes)
            ]
    return predictions


class ChampionPreAnnotationResource(PreAnnotationResource):
    """Model-assisted labeling: the current champion's boxes as suggestions for new labeling jobs."""

    model_registry: ModelRegistryResource

    def suggest(self, store: ObjectStore, images: list[ImageRef]) -> dict[str, list[Annotation]]:
        """The champion's boxes per raw key; ``{}`` while no version is Approved."""
        return predict_boxes(store, images, registry=self.model_registry.open(store))
