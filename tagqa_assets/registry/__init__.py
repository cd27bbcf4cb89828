"""Model registry stage: gated, evaluated models become numbered versions with approval.

``defs`` holds ``registered_model`` and the promotion checks on ``model_evaluation``
(``promotion_gate``, blocking; ``beats_champion``). Its resources, ``model_registry`` (the
model catalog, TAGQA_REGISTRY_BACKEND), ``promotion_policy`` (gate and champion margin;
defaults in ``tagqa_assets/settings.py``, see docs/training.md) and ``pre_annotation`` (the
champion's boxes for labeling), are configured in ``tagqa_assets/resources.py``. The registry
backends live beneath the stages in ``model_catalog``.
"""

from tagqa_assets.registry.definitions import defs

__all__ = ["defs"]
