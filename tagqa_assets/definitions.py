"""The tagqa code location: each stage's definitions plus the resources they share.

Built lazily (``@dg.definitions``): settings are read when Dagster loads the code location,
not when this module is imported. Precedence: the shell, then ``tagqa.env``, then the
defaults in ``tagqa_assets/settings.py``; with no settings at all it is the embedded default.
"""

import dagster as dg

from tagqa_assets import datasets, deployment, ingestion, labeling, monitoring, registry, training
from tagqa_assets.resources import build_resources
from tagqa_assets.settings import load_settings

# Declarative automation (hard_examples is eager) is evaluated by this sensor; Dagster's
# implicit one starts stopped, and the loop should move out of the box.
automation = dg.AutomationConditionSensorDefinition(
    "default_automation_condition_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
)


@dg.definitions
def defs() -> dg.Definitions:
    """All stages with the resources configured from the settings in force now."""
    return dg.Definitions.merge(
        ingestion.defs,
        labeling.defs,
        datasets.defs,
        training.defs,
        registry.defs,
        deployment.defs,
        monitoring.defs,
        dg.Definitions(resources=build_resources(load_settings()), sensors=[automation]),
    )
