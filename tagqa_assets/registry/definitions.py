"""Dagster definitions of the registry stage (its ``model_registry`` resource is configured in ``tagqa_assets/resources.py``)."""

import dagster as dg

from tagqa_assets.registry.assets import registered_model

defs = dg.Definitions(assets=[registered_model])
