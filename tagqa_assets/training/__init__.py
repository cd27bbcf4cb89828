"""Training stage: YOLO training per dataset version, ONNX export with parity check, evaluation and gates.

Resources (configured in ``tagqa_assets/resources.py``): ``training_backend`` (local |
sagemaker, TAGQA_TRAINING_BACKEND), ``promotion_policy`` (gate and champion margin, see
docs/training.md) and ``training_profile``.
"""

import dagster as dg

from tagqa_assets.training.assets import onnx_model, trained_model
from tagqa_assets.training.checks import beats_champion, onnx_parity, promotion_gate
from tagqa_assets.training.evaluation_asset import model_evaluation
from tagqa_assets.training.sensors import model_training_sensor

defs = dg.Definitions(
    assets=[trained_model, onnx_model, model_evaluation],
    asset_checks=[onnx_parity, promotion_gate, beats_champion],
    sensors=[model_training_sensor],
)
