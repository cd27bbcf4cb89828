"""Dagster definitions of the registry stage: ``registered_model`` and the promotion checks.

Its resources (``model_registry``, ``promotion_policy``, ``pre_annotation``) are wired from the
settings in ``tagqa_assets/resources.py``.
"""

import dagster as dg

from tagqa_assets.registry.assets import registered_model
from tagqa_assets.registry.checks import beats_champion, promotion_gate

defs = dg.Definitions(assets=[registered_model], asset_checks=[promotion_gate, beats_champion])
