"""Dagster definitions of the registry stage."""

import dagster as dg

from tagqa_assets.registry.assets import registered_model

defs = dg.Definitions(assets=[registered_model])
