"""Edge deployment stage: Greengrass components from approved models, deployments, history, rollback.

``defs`` holds the ``edge_component`` and ``edge_deployment`` assets, ``model_approval_sensor``
and the ``deployment`` resource configured from the environment (see .env.example).
"""

import dagster as dg

from tagqa_assets.deployment.assets import edge_component, edge_deployment
from tagqa_assets.deployment.resources import DeploymentResource
from tagqa_assets.deployment.sensors import model_approval_sensor

resources = {
    "deployment": DeploymentResource(
        target=dg.EnvVar("TAGQA_DEPLOY_TARGET"),
        device_ids=dg.EnvVar("TAGQA_DEVICE_ID"),
        devices_root=dg.EnvVar("TAGQA_DEVICES_ROOT"),
        mqtt_broker=dg.EnvVar("TAGQA_MQTT_BROKER"),
        greengrass_target_arn=dg.EnvVar("TAGQA_GREENGRASS_TARGET_ARN"),
        greengrass_root=dg.EnvVar("TAGQA_GREENGRASS_ROOT"),
        aws_region=dg.EnvVar("TAGQA_AWS_REGION"),
        component_prefix=dg.EnvVar("TAGQA_COMPONENT_PREFIX"),
        timeout_seconds=dg.EnvVar.int("TAGQA_DEPLOY_TIMEOUT_SECONDS"),
        device_configuration=dg.EnvVar("TAGQA_DEVICE_CONFIGURATION"),
        edge_wheels_dir=dg.EnvVar("TAGQA_EDGE_WHEELS_DIR"),
        edge_wheel_platform=dg.EnvVar("TAGQA_EDGE_WHEEL_PLATFORM"),
        edge_python_version=dg.EnvVar("TAGQA_EDGE_PYTHON_VERSION"),
    ),
}

defs = dg.Definitions(assets=[edge_component, edge_deployment], sensors=[model_approval_sensor], resources=resources)
