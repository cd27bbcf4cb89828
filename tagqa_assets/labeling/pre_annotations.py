"""Model-assisted labeling: box suggestions for the images of a new labeling job.

Labeling sits upstream of training, so it cannot ask the registry for the champion itself
(stages depend downstream-on-upstream only). It declares what it needs instead: a
``PreAnnotationResource`` whose ``suggest`` returns boxes per raw key. This base resource
suggests nothing; the registry stage provides ``ChampionPreAnnotationResource``, which runs
the current champion, and ``definitions.py`` wires that one in.
"""

import dagster as dg

from tagqa_assets.contracts.labels import Annotation
from tagqa_assets.labeling.backends.base import ImageRef
from tagqa_assets.storage import ObjectStore


class PreAnnotationResource(dg.ConfigurableResource):
    """Suggested boxes for images about to be labeled; this base suggests none."""

    def suggest(self, store: ObjectStore, images: list[ImageRef]) -> dict[str, list[Annotation]]:
        """Boxes per raw key (images without suggestions may be missing); ``{}`` here."""
        return {}
