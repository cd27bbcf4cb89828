"""Model-assisted labeling: box suggestions from the current champion model.

The registry stage provides ``tagqa_assets.registry.champion.predict_boxes(store, images)``
(``images``: the ``ImageRef``s of the job; returns ``{raw key: [Annotation, ...]}``, ``{}``
when no champion exists). Until that module exists, labeling jobs open without
suggestions. Only the absence of that module is tolerated: an error inside it propagates.
"""

from __future__ import annotations

from tagqa_assets.contracts.labels import Annotation
from tagqa_assets.labeling.backends.base import ImageRef
from tagqa_assets.storage import ObjectStore

CHAMPION_MODULE = "tagqa_assets.registry.champion"


def champion_pre_annotations(store: ObjectStore, images: list[ImageRef]) -> dict[str, list[Annotation]]:
    """Suggested boxes per raw key for ``images``; ``{}`` when there is no champion model."""
    if not images:
        return {}
    try:
        from tagqa_assets.registry.champion import predict_boxes
    except ModuleNotFoundError as exc:
        if exc.name in (CHAMPION_MODULE, "tagqa_assets.registry"):
            return {}
        raise
    return dict(predict_boxes(store, images))
