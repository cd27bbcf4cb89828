"""The tagqa code location: each stage's definitions plus the resources they share.

Every setting comes from the environment at run time (``dg.EnvVar``); ``make run`` and
``make test`` write defaults into ``.env``, which the Dagster CLI loads (see .env.example).
"""

import dagster as dg

from tagqa_assets import datasets, deployment, ingestion, labeling, monitoring, training
from tagqa_assets.registry import definitions as registry
from tagqa_assets.storage import StoreResource

store = StoreResource(
    root=dg.EnvVar("TAGQA_STORE"),
    s3_endpoint_url=dg.EnvVar("TAGQA_S3_ENDPOINT_URL"),
    aws_region=dg.EnvVar("TAGQA_AWS_REGION"),
)

# Declarative automation (hard_examples is eager) is evaluated by this sensor; Dagster's
# implicit one starts stopped, and the loop should move out of the box.
automation = dg.AutomationConditionSensorDefinition(
    "default_automation_condition_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
)

defs = dg.Definitions.merge(
    ingestion.defs,
    labeling.defs,
    datasets.defs,
    training.defs,
    registry.defs,
    deployment.defs,
    monitoring.defs,
    dg.Definitions(resources={"store": store}, sensors=[automation]),
)
