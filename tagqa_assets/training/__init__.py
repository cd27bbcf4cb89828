"""Training stage: YOLO training per dataset version, ONNX export with parity check, evaluation.

Resources: ``training_backend`` (local | sagemaker, TAGQA_TRAINING_BACKEND) and
``training_profile`` (what automated runs train with), configured in
``tagqa_assets/resources.py``; ``model_handoff`` (the IO manager that passes a model's id from
asset to asset, see lineage.py) needs no settings and is supplied here. The training run
itself is ``tagqa_trainer`` (no Dagster), started by the backends.
"""

import dagster as dg

from tagqa_assets.training.assets import onnx_model, trained_model
from tagqa_assets.training.checks import onnx_parity
from tagqa_assets.training.evaluation_asset import model_evaluation
from tagqa_assets.training.lineage import HANDOFF_IO_MANAGER, ModelHandoffIOManager
from tagqa_assets.training.sensors import model_training_sensor

defs = dg.Definitions(
    assets=[trained_model, onnx_model, model_evaluation],
    asset_checks=[onnx_parity],
    sensors=[model_training_sensor],
    resources={HANDOFF_IO_MANAGER: ModelHandoffIOManager()},
)
