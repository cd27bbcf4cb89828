"""Model registry stage: gated, evaluated models become numbered versions with approval.

``defs`` holds ``registered_model``, the promotion checks on ``model_evaluation``
(``promotion_gate``, blocking; ``beats_champion``), and the resources ``model_registry``
(the model catalog, TAGQA_REGISTRY_BACKEND), ``promotion_policy`` (gate and champion
margin; defaults in code, see docs/training.md) and ``pre_annotation`` (the champion's
boxes for labeling). The registry backends live beneath the stages in ``model_catalog``.
"""

from tagqa_assets.registry.definitions import defs

__all__ = ["defs"]
