"""Asset checks of the model stage: ONNX parity and the promotion gate (both blocking), champion vs challenger."""

import shutil
import warnings

import dagster as dg

from tagqa_assets.contracts.models import PARITY_FILE, TRAINING_CONFIG_FILE, WEIGHTS_FILE, model_key
from tagqa_assets.partitions import dataset_versions
from tagqa_assets.previews import markdown_table
from tagqa_assets.storage import StoreResource
from tagqa_assets.training.artifacts import stage_onnx
from tagqa_assets.training.assets import onnx_model
from tagqa_assets.training.detections import load_split
from tagqa_assets.training.evaluation_asset import EVALUATION_KEY, model_evaluation
from tagqa_assets.training.gates import compare_with_champion, gate
from tagqa_assets.training.lineage import MODEL_ID, staged_dataset, upstream_metadata, upstream_model_id
from tagqa_assets.training.parity import MAX_SCORE_DIFF, MIN_IOU, check_parity
from tagqa_assets.training.resources import PromotionPolicyResource, TrainingBackendResource


def partitioned_check(**kwargs: object):
    """``dg.asset_check`` per dataset version.

    Partitioned checks are a preview feature of Dagster 1.13 that warns at every import of
    the code location; the warning is silenced here, once, for these checks only.
    """

    def wrap(fn):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dg.PreviewWarning)
            return dg.asset_check(partitions_def=dataset_versions, **kwargs)(fn)

    return wrap


class ParityConfig(dg.Config):
    """Parity thresholds (the issue's: IoU >= 0.99, score difference <= 1e-3, same counts)."""

    conf: float = 0.01  # low, so that nearly every candidate box is compared, not only confident ones
    min_iou: float = MIN_IOU
    max_score_diff: float = MAX_SCORE_DIFF


@partitioned_check(asset=onnx_model, blocking=True)
def onnx_parity(
    context: dg.AssetCheckExecutionContext, config: ParityConfig, store: StoreResource, training_backend: TrainingBackendResource,
) -> dg.AssetCheckResult:
    """ONNX Runtime (edge pipeline) and PyTorch (Ultralytics) find the same boxes on the test split."""
    object_store = store.open()
    version = context.partition_key
    model_id = upstream_model_id(context.instance, "onnx_model", version)
    scratch = training_backend.work_root() / "parity" / f"{model_id}-{context.run.run_id[:8]}"
    imgsz = int(object_store.get_json(model_key(model_id, TRAINING_CONFIG_FILE))["imgsz"])
    try:
        weights = object_store.download_file(model_key(model_id, WEIGHTS_FILE), scratch / "best.pt")
        onnx_dir = stage_onnx(object_store, model_id, scratch / "onnx")
        with staged_dataset(object_store, version, scratch) as dataset_dir:
            images = load_split(dataset_dir, "test")
        report = check_parity(weights, imgsz, onnx_dir, images, conf=config.conf, min_iou=config.min_iou,
                              max_score_diff=config.max_score_diff, scratch=scratch / "torch",
                              settings_dir=training_backend.work_root() / "ultralytics")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    object_store.put_json(model_key(model_id, PARITY_FILE), {MODEL_ID: model_id, **report.to_dict()})
    return dg.AssetCheckResult(
        passed=report.passed,
        metadata={
            MODEL_ID: model_id,
            "images": len(report.images),
            "boxes_matched": report.matched,
            "worst_iou": round(report.worst_iou, 6),
            "worst_score_diff": float(report.worst_score_diff),
            "max_raw_output_diff": report.max_raw_output_diff,
            "conf": config.conf,
            "problems": markdown_table([{"problem": p} for p in report.problems[:30]]),
        },
        description=("ONNX matches PyTorch" if report.passed else f"{len(report.problems)} parity problem(s): "
                     + "; ".join(report.problems[:3])),
    )


def _evaluation(context: dg.AssetCheckExecutionContext, store: StoreResource) -> tuple[str, dict]:
    metadata = upstream_metadata(context.instance, "model_evaluation", context.partition_key)
    return str(metadata[MODEL_ID]), store.open().get_json(str(metadata[EVALUATION_KEY]))


@partitioned_check(asset=model_evaluation, blocking=True)
def promotion_gate(
    context: dg.AssetCheckExecutionContext, store: StoreResource, promotion_policy: PromotionPolicyResource,
) -> dg.AssetCheckResult:
    """The model reaches the configured metric on the configured split (default mAP50-95 >= 0.40 on test)."""
    model_id, document = _evaluation(context, store)
    result = gate(document["metrics"], promotion_policy.policy())
    return dg.AssetCheckResult(
        passed=result.passed,
        metadata={MODEL_ID: model_id, "metric": result.metric, "split": result.split, "value": result.value,
                  "threshold": result.threshold},
        description=result.describe(),
    )


@partitioned_check(asset=model_evaluation)
def beats_champion(
    context: dg.AssetCheckExecutionContext, store: StoreResource, promotion_policy: PromotionPolicyResource,
) -> dg.AssetCheckResult:
    """Whether the challenger beats the champion on its own test split (decides auto-approval, never blocks)."""
    model_id, document = _evaluation(context, store)
    champion = document.get("champion")
    comparison = compare_with_champion(
        document["metrics"]["test"], champion["metrics"]["test"] if champion else None,
        champion["version"] if champion else None, promotion_policy.policy(),
    )
    return dg.AssetCheckResult(
        passed=comparison.approve,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={MODEL_ID: model_id, "challenger": comparison.challenger,
                  "champion": comparison.champion if comparison.champion is not None else -1.0,
                  "margin": comparison.margin, "metric": comparison.metric},
        description=comparison.reason,
    )
