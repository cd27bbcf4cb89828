"""Edge deployment stage: Greengrass components from approved models, deployments, history, rollback.

``defs`` holds the ``edge_component`` and ``edge_deployment`` assets and ``model_approval_sensor``
(the ``deployment`` resource is configured in ``tagqa_assets/resources.py``).
"""

import dagster as dg

from tagqa_assets.deployment.assets import edge_component, edge_deployment
from tagqa_assets.deployment.sensors import model_approval_sensor

defs = dg.Definitions(assets=[edge_component, edge_deployment], sensors=[model_approval_sensor])
