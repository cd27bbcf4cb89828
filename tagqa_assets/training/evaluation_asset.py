"""``model_evaluation``: the ONNX model's metrics on its dataset version, next to the champion's."""

import hashlib
import shutil
from datetime import datetime, timezone

import dagster as dg

from tagqa_assets.contracts.keys import model_prefix
from tagqa_assets.datasets.hard_examples import HARD_SPLIT, load_current, stage_hard_examples
from tagqa_assets.contracts.models import (
    COMMIT_FILE,
    EVALUATIONS_DIR,
    MODEL_CARD_FILE,
    TRAINING_CONFIG_FILE,
    TRAINING_SUMMARY_FILE,
    ModelRecord,
    config_sha256,
    model_key,
)
from tagqa_assets.model_catalog.model_files import commit_model, git_sha, is_committed, stage_onnx
from tagqa_assets.model_catalog.resources import ModelRegistryResource
from tagqa_assets.partitions import dataset_versions
from tagqa_assets.previews import Tile, grid_markdown, image_markdown, metadata_table
from tagqa_assets.storage import ObjectStore, StoreResource
from tagqa_assets.training.assets import EXPORT_CODE_VERSION, TRAINING_CODE_VERSION
from tagqa_assets.training.detections import EVAL_THRESHOLDS, OnnxModel, load_split
from tagqa_assets.training.evaluation import SplitMetrics, best_scores, evaluate
from tagqa_assets.training.lineage import (
    HANDOFF_IO_MANAGER,
    MODEL_ID,
    labels_since,
    model_parent,
    since_parent,
    since_parent_values,
    staged_dataset,
)
from tagqa_assets.training.plots import pr_curves_png
from tagqa_assets.training.quantization import DEFAULT_CALIBRATION_IMAGES
from tagqa_assets.training.resources import TrainingBackendResource
from tagqa_assets.training.variants import VariantEvaluation, evaluate_int8, evaluated_fp32

EVALUATION_CODE_VERSION = "eval-v2"  # v2: matching as Ultralytics 8.4 / COCO (greedy by confidence)
EVALUATION_KEY = "evaluation_key"


class EvaluationConfig(dg.Config):
    """What the preview grid shows."""

    preview_conf: float = 0.25  # predicted boxes drawn (red) at or above this score
    preview_images: int = 12
    # Training images the int8 variant is calibrated on (built once per model); 0: no int8 variant.
    int8_calibration_images: int = DEFAULT_CALIBRATION_IMAGES


def _file_hashes(store: ObjectStore, model_id: str) -> dict[str, str]:
    prefix = model_prefix(model_id)
    hashes = {}
    for info in store.list_objects(prefix):
        name = info.key[len(prefix) :]
        if not name.startswith(EVALUATIONS_DIR + "/") and "/sagemaker/" not in "/" + name:
            hashes[name] = hashlib.sha256(store.get_bytes(info.key)).hexdigest()
    return hashes


def _commit(store: ObjectStore, model_id: str, version: str, run_id: str, document: dict) -> None:
    card = store.get_json(model_key(model_id, MODEL_CARD_FILE))
    config = store.get_json(model_key(model_id, TRAINING_CONFIG_FILE))
    record = ModelRecord(
        model_id=model_id, dataset_version=version, created_at=document["evaluated_at"], run_id=run_id,
        class_names=tuple(card["class_names"]), imgsz=int(card["imgsz"]), training_config=config,
        config_sha256=config_sha256(config),
        code_versions={"trained_model": TRAINING_CODE_VERSION, "onnx_model": EXPORT_CODE_VERSION,
                       "model_evaluation": EVALUATION_CODE_VERSION},
        git_sha=git_sha(), files=_file_hashes(store, model_id),
        metrics={split: values for split, values in document["metrics"].items()}, opset=int(card["opset"]),
        training=store.get_json(model_key(model_id, TRAINING_SUMMARY_FILE)),
    )
    commit_model(store, record, document)


def _hard_example_metrics(store: ObjectStore, scratch, challenger: OnnxModel, champion: OnnxModel | None,
                          parent: OnnxModel | None = None) -> dict | None:
    """Challenger, champion and parent on the current hard-example set; ``None`` when the set is empty."""
    hard = load_current(store)
    if hard is None or hard.images == 0:
        return None
    images = load_split(stage_hard_examples(store, hard, scratch / "hard"), HARD_SPLIT)
    measured: dict[int, dict] = {}

    def headline(model: OnnxModel | None) -> dict | None:
        if model is not None and id(model) not in measured:
            measured[id(model)] = evaluate(images, model.predict_all(images)).headline()
        return None if model is None else measured[id(model)]

    return {"set_id": hard.set_id, "images": len(images), "challenger": headline(challenger),
            "champion": headline(champion), "parent": headline(parent)}


@dg.asset(
    partitions_def=dataset_versions,
    deps=[dg.AssetKey("hard_examples")],
    group_name="training",
    kinds={"onnx", "python"},
    code_version=EVALUATION_CODE_VERSION,
    io_manager_key=HANDOFF_IO_MANAGER,
)
def model_evaluation(
    context: dg.AssetExecutionContext, config: EvaluationConfig, store: StoreResource,
    training_backend: TrainingBackendResource, model_registry: ModelRegistryResource, onnx_model: str,
) -> dg.Output[str]:
    """mAP50, mAP50-95, precision and recall of the ONNX model on the version's test (and val) split.

    Predictions go through the edge runtime's own pipeline. The current champion is
    evaluated on the same test split. Each evaluation is stored as
    ``models/<id>/evaluations/<run_id>.json``; the first one also commits the model
    (``metrics.json``, then ``model.json``); its key is the output handed to the
    ``promotion_gate`` check and ``registered_model``.
    """
    object_store = store.open()
    version = context.partition_key
    model_id = onnx_model
    scratch = training_backend.work_root() / "evaluate" / f"{model_id}-{context.run.run_id[:8]}"
    registry = model_registry.open(object_store)
    champion = registry.champion()
    parent = model_parent(object_store, registry, model_id, object_store.get_json(model_key(model_id, TRAINING_CONFIG_FILE)))
    champion_test: SplitMetrics | None = None
    parent_test: SplitMetrics | None = None
    try:
        with staged_dataset(object_store, version, scratch) as dataset_dir:
            test, val = load_split(dataset_dir, "test"), load_split(dataset_dir, "val")
            fp32_dir = stage_onnx(object_store, model_id, scratch / "challenger")
            model = OnnxModel(fp32_dir)
            test_predictions = model.predict_all(test)
            metrics = {"test": evaluate(test, test_predictions), "val": evaluate(val, model.predict_all(val))}
            variants = [evaluated_fp32(fp32_dir, metrics), evaluate_int8(
                object_store, model_id, version, dataset_dir, fp32_dir, scratch, {"test": test, "val": val},
                calibration_count=config.int8_calibration_images)]
            champion_model = None
            if champion is not None:
                champion_model = model if champion.model_id == model_id else OnnxModel(
                    stage_onnx(object_store, champion.model_id, scratch / "champion"))
                champion_test = evaluate(test, champion_model.predict_all(test))
            parent_model = None
            if parent is not None:
                if champion is not None and parent.model_id == champion.model_id:
                    parent_model, parent_test = champion_model, champion_test
                else:
                    parent_model = OnnxModel(stage_onnx(object_store, parent.model_id, scratch / "parent"))
                    parent_test = evaluate(test, parent_model.predict_all(test))
            hard = _hard_example_metrics(object_store, scratch, model, champion_model, parent_model)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for variant in variants:
        if variant.error:
            context.log.warning(f"{model_id}: no {variant.precision} variant: {variant.error}")
        elif variant.built:
            context.log.info(f"{model_id}: built its {variant.precision} variant ({variant.size_bytes / 1e6:.1f} MB)")
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    class_names = tuple(object_store.get_json(model_key(model_id, MODEL_CARD_FILE))["class_names"])
    per_class = {split: m.per_class_named(class_names) for split, m in metrics.items()}
    document = {
        "model_id": model_id, "dataset_version": version, "run_id": context.run.run_id, "evaluated_at": now,
        "code_version": EVALUATION_CODE_VERSION, "source": "onnx (edge_runtime pipeline)",
        "thresholds": {"conf": EVAL_THRESHOLDS.conf, "iou": EVAL_THRESHOLDS.iou, "max_det": EVAL_THRESHOLDS.max_detections},
        "metrics": {split: m.headline() for split, m in metrics.items()},
        "details": {split: m.to_dict() for split, m in metrics.items()},
        "class_names": list(class_names),
        "per_class": per_class,
        # Each precision variant (fp32: the export; int8: its quantized copy) on the same splits.
        "variants": {variant.precision: variant.document(class_names) for variant in variants},
        # The drift baseline of line_results (monitoring stage): each test image's best score.
        "best_scores": {"test": best_scores(test_predictions)},
        "champion": None if champion is None else {
            "version": champion.version, "model_id": champion.model_id, "metrics": {"test": champion_test.headline()}},
        "hard_examples": None if hard is None else {**hard, "champion_version": champion.version if champion else None},
        # What the labels since the parent bought (registered_model copies it into the registry).
        "since_parent": since_parent(
            parent, labels_since(object_store, version, parent.dataset_version if parent else None),
            metrics["test"].headline(), None if parent_test is None else parent_test.headline(),
            None if hard is None else hard["challenger"], None if hard is None else hard["parent"]),
    }
    evaluation_key = model_key(model_id, f"{EVALUATIONS_DIR}/{context.run.run_id}.json")
    object_store.put_json(evaluation_key, document)
    if not is_committed(object_store, model_id):
        _commit(object_store, model_id, version, context.run.run_id, document)
        context.log.info(f"committed {model_id} ({object_store.uri_for(model_key(model_id, COMMIT_FILE))})")
    curves = {f"challenger {model_id}": (metrics["test"].pr_recall, metrics["test"].pr_precision, metrics["test"].map50)}
    if champion_test is not None:
        curves[f"champion v{champion.version}"] = (champion_test.pr_recall, champion_test.pr_precision, champion_test.map50)
    tiles = [
        Tile(image.data, image.name[:20], boxes=[tuple(b) for b in image.boxes],
             other_boxes=[tuple(b) for b in prediction.above(config.preview_conf).boxes])
        for image, prediction in list(zip(test, test_predictions))[: config.preview_images]
    ]
    rows = [{"model": "challenger", **metrics["test"].headline()}]
    if champion_test is not None:
        rows.append({"model": f"champion v{champion.version}", **champion_test.headline()})
    hard_rows = [] if hard is None else [{"model": "challenger", **hard["challenger"]}] + (
        [{"model": f"champion v{champion.version}", **hard["champion"]}] if hard["champion"] else [])
    return dg.Output(
        evaluation_key,
        metadata={
            MODEL_ID: model_id,
            EVALUATION_KEY: evaluation_key,
            "dataset_version": version,
            **{f"{split}_{name}": value for split, m in metrics.items() for name, value in m.headline().items()},
            "test_images": metrics["test"].images,
            "test_instances": metrics["test"].instances,
            "champion_version": champion.version if champion else 0,
            **({f"champion_test_{k}": v for k, v in champion_test.headline().items()} if champion_test else {}),
            "test_split_comparison": metadata_table(rows),
            "test_per_class": metadata_table([{"class": name, **values} for name, values in per_class["test"].items()]),
            **{f"test_ap50_95_{name}": values["ap50_95"] for name, values in per_class["test"].items()},
            **_variant_metadata(variants),
            **since_parent_values(document["since_parent"]),
            "hard_examples_images": 0 if hard is None else hard["images"],
            "hard_examples_comparison": metadata_table(hard_rows),
            "pr_curve": image_markdown(pr_curves_png(curves, f"test split of {version} (IoU 0.5)"), "PR curve"),
            "test_predictions": grid_markdown(tiles, "test images: truth green, predictions red"),
        }
    )


def _variant_metadata(variants: list[VariantEvaluation]) -> dict[str, object]:
    """Both precision variants side by side for the UI: test mAP50 / mAP50-95 and file size per variant."""
    rows, values = [], {}
    for variant in variants:
        if variant.error:
            values[f"{variant.precision}_variant"] = dg.MetadataValue.text(f"none: {variant.error}")
            continue
        test = variant.metrics["test"]
        size_mb = round(variant.size_bytes / 1e6, 2)
        rows.append({"precision": variant.precision, "test_map50": round(test.map50, 4),
                     "test_map50_95": round(test.map50_95, 4), "size_mb": size_mb})
        values.update({f"{variant.precision}_test_map50": round(test.map50, 4),
                       f"{variant.precision}_test_map50_95": round(test.map50_95, 4),
                       f"{variant.precision}_size_mb": size_mb})
    return {**values, "precision_variants": metadata_table(rows)}
