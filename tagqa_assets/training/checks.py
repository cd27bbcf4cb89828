"""Asset check of the training stage: ONNX/PyTorch parity of the exported model (blocking)."""

import shutil

import dagster as dg

from tagqa_assets.contracts.models import PARITY_FILE, TRAINING_CONFIG_FILE, WEIGHTS_FILE, model_key
from tagqa_assets.model_catalog.model_files import stage_onnx
from tagqa_assets.partitions import dataset_version_check
from tagqa_assets.previews import metadata_table
from tagqa_assets.storage import StoreResource
from tagqa_assets.training.assets import onnx_model
from tagqa_assets.training.detections import load_split
from tagqa_assets.training.lineage import MODEL_ID, staged_dataset
from tagqa_assets.training.parity import MAX_SCORE_DIFF, MIN_IOU, check_parity
from tagqa_assets.training.resources import TrainingBackendResource


class ParityConfig(dg.Config):
    """Parity thresholds (the issue's: IoU >= 0.99, score difference <= 1e-3, same counts)."""

    conf: float = 0.01  # low, so that nearly every candidate box is compared, not only confident ones
    min_iou: float = MIN_IOU
    max_score_diff: float = MAX_SCORE_DIFF


@dataset_version_check(asset=onnx_model, blocking=True)
def onnx_parity(
    context: dg.AssetCheckExecutionContext, config: ParityConfig, store: StoreResource, training_backend: TrainingBackendResource,
    onnx_model: str,
) -> dg.AssetCheckResult:
    """ONNX Runtime (edge pipeline) and PyTorch (Ultralytics) find the same boxes on the test split."""
    object_store = store.open()
    version = context.partition_key
    model_id = onnx_model
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
            "problems": metadata_table([{"problem": p} for p in report.problems[:30]]),
        },
        description=("ONNX matches PyTorch" if report.passed else f"{len(report.problems)} parity problem(s): "
                     + "; ".join(report.problems[:3])),
    )
