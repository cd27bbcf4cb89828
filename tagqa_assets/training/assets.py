"""``trained_model`` and ``onnx_model``: one YOLO detector per dataset version, and its ONNX export."""

import json
import shutil

import dagster as dg

from tagqa_assets.contracts.models import (
    CURVES_CSV_FILE,
    CURVES_PNG_FILE,
    MODEL_CARD_FILE,
    ONNX_FILE,
    TRAINING_CONFIG_FILE,
    TRAINING_LOG_FILE,
    TRAINING_SUMMARY_FILE,
    WEIGHTS_FILE,
    TrainingSummary,
    model_key,
    new_model_id,
)
from tagqa_assets.datasets.versions import DatasetVersionStore
from tagqa_assets.model_catalog.model_files import model_dir_uri
from tagqa_assets.model_catalog.resources import ModelRegistryResource
from tagqa_assets.partitions import dataset_versions
from tagqa_assets.previews import image_markdown, metadata_table
from tagqa_assets.storage import StoreResource
from tagqa_assets.training.backends import TrainingFailed, TrainingJob
from tagqa_assets.training.export import export_onnx, model_card
from tagqa_assets.training.lineage import HANDOFF_IO_MANAGER, MODEL_ID
from tagqa_assets.training.plots import epochs_csv, training_curves_png
from tagqa_assets.training.resources import TrainingBackendResource
from tagqa_assets.training.start_weights import start_point
from tagqa_trainer.params import TrainingParams

TRAINING_CODE_VERSION = "train-v1"
EXPORT_CODE_VERSION = "export-v1"
EPOCH_TABLE_COLUMNS = ("epoch", "box_loss", "cls_loss", "dfl_loss", "map50", "map50_95", "precision", "recall", "seconds")


_DEFAULTS = TrainingParams()


class TrainingConfig(dg.Config):
    """Training settings; the defaults are ``TrainingParams``' (the documented CPU configuration, docs/training.md)."""

    epochs: int = _DEFAULTS.epochs
    imgsz: int = _DEFAULTS.imgsz
    batch: int = _DEFAULTS.batch
    device: str = _DEFAULTS.device
    seed: int = _DEFAULTS.seed
    patience: int = _DEFAULTS.patience
    workers: int = _DEFAULTS.workers
    architecture: str = _DEFAULTS.architecture
    optimizer: str = _DEFAULTS.optimizer
    lr0: float = _DEFAULTS.lr0
    fraction: float = _DEFAULTS.fraction
    base_weights: str = _DEFAULTS.base_weights
    warm_start: str = _DEFAULTS.warm_start
    timeout_minutes: float = _DEFAULTS.timeout_minutes
    integrations: list[str] = []
    overrides: dict[str, str] = {}

    def params(self) -> TrainingParams:
        """The validated ``TrainingParams`` (``overrides`` values are parsed as JSON when they are JSON)."""
        values = self.model_dump()
        values["integrations"] = tuple(values["integrations"])
        values["overrides"] = {key: _json_or_text(value) for key, value in self.overrides.items()}
        return TrainingParams.from_dict(values)


def _json_or_text(value: str) -> object:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _epoch_line(record: dict) -> str:
    parts = [f"epoch {record['epoch']}/{record.get('epochs', '?')}"]
    parts += [f"{name} {record[name]:.4f}" for name in ("box_loss", "cls_loss", "dfl_loss") if name in record]
    parts += [f"val {name} {record[name]:.4f}" for name in ("map50", "map50_95") if name in record]
    return "  ".join(parts)


@dg.asset(
    partitions_def=dataset_versions,
    deps=[dg.AssetKey("dataset_version")],
    group_name="training",
    kinds={"pytorch", "python"},
    code_version=TRAINING_CODE_VERSION,
    io_manager_key=HANDOFF_IO_MANAGER,
)
def trained_model(
    context: dg.AssetExecutionContext, config: TrainingConfig, store: StoreResource,
    training_backend: TrainingBackendResource, model_registry: ModelRegistryResource,
) -> dg.Output[str]:
    """A YOLO detector trained on one dataset version (``models/<model_id>/weights/best.pt``).

    Offline (no weight, font or settings download), Ultralytics settings and run folders
    under the work folder, experiment-tracking integrations off unless configured. Each
    run gets a new ``model_id`` (the output handed to ``onnx_model``), so retraining never
    overwrites an older model. The blocking ``dataset_version_sanity`` check keeps empty
    splits from reaching training. Per-epoch
    losses and validation metrics stream into the run log; a NaN/inf loss, a killed
    trainer or a failed SageMaker job fails the run with the reason and stores nothing.
    """
    object_store = store.open()
    version = context.partition_key
    record = DatasetVersionStore(object_store).read(version)
    try:
        params = config.params()
    except ValueError as exc:
        raise dg.Failure(str(exc)) from None
    model_id = new_model_id(version, params.to_dict(), context.run.run_id)
    registry = model_registry.open(object_store)
    started = start_point(params, object_store, registry, context.log, class_names=record.class_names)
    start = started.weights
    backend = training_backend.build()
    job = TrainingJob(model_id, version, params, record.class_names, start)
    context.log.info(f"training {model_id} on {version} ({record.counts}) with backend {backend.name}: {params.to_dict()}")
    try:
        outcome = backend.train(job, object_store, on_epoch=lambda r: context.log.info(_epoch_line(r)), log=context.log)
    except TrainingFailed as exc:
        raise dg.Failure(description=f"training {model_id} failed: {exc}", metadata={MODEL_ID: model_id}) from None
    summary = TrainingSummary(
        model_id=model_id, dataset_version=version, backend=backend.name,
        epochs_completed=outcome.summary["epochs_completed"], best_epoch=outcome.summary["best_epoch"],
        train_seconds=outcome.summary["train_seconds"], final=outcome.summary["final"], best=outcome.summary["best"],
        training_job=outcome.training_job, job_artifact_uri=outcome.job_artifact_uri,
        network_attempts_blocked=outcome.summary.get("network_attempts_blocked", 0),
    )
    curves = training_curves_png(outcome.epochs, f"{model_id} on {version}")
    object_store.put_file(model_key(model_id, WEIGHTS_FILE), outcome.weights)
    object_store.put_json(model_key(model_id, TRAINING_CONFIG_FILE),
                          {**params.to_dict(), "start_weights": start, "started_from": started.lineage()})
    object_store.put_bytes(model_key(model_id, CURVES_CSV_FILE), epochs_csv(outcome.epochs))
    object_store.put_bytes(model_key(model_id, CURVES_PNG_FILE), curves)
    if outcome.log_file and outcome.log_file.is_file():
        object_store.put_file(model_key(model_id, TRAINING_LOG_FILE), outcome.log_file)
    object_store.put_json(model_key(model_id, TRAINING_SUMMARY_FILE), summary.to_dict())
    backend.cleanup(outcome)
    best = summary.best
    return dg.Output(
        model_id,
        metadata={
            MODEL_ID: model_id,
            "dataset_version": version,
            "backend": backend.name,
            "training_job": summary.training_job or "(local)",
            "model_dir": model_dir_uri(object_store, model_id),
            "epochs_completed": summary.epochs_completed,
            "best_epoch": summary.best_epoch,
            "train_minutes": round(summary.train_seconds / 60, 2),
            "val_map50": float(best.get("map50", 0.0)),
            "val_map50_95": float(best.get("map50_95", 0.0)),
            "start_weights": start or "(from scratch: " + params.architecture + ")",
            "started_from": (f"champion v{started.champion_version} ({started.champion_model_id})"
                             if started.champion_model_id else started.note or ("checkpoint" if start else "scratch")),
            "network_attempts_blocked": summary.network_attempts_blocked,
            "training_curves": image_markdown(curves, "training curves"),
            "epochs": metadata_table([{c: r.get(c, "") for c in EPOCH_TABLE_COLUMNS} for r in outcome.epochs[-30:]]),
            "config": dg.MetadataValue.json(params.to_dict()),
        }
    )


class ExportConfig(dg.Config):
    """ONNX export settings."""

    opset: int = 0  # 0: the opset Ultralytics picks for the installed torch (recorded in the card)


@dg.asset(
    partitions_def=dataset_versions,
    group_name="training",
    kinds={"onnx"},
    code_version=EXPORT_CODE_VERSION,
    io_manager_key=HANDOFF_IO_MANAGER,
)
def onnx_model(
    context: dg.AssetExecutionContext, config: ExportConfig, store: StoreResource, training_backend: TrainingBackendResource,
    trained_model: str,
) -> dg.Output[str]:
    """The trained model as ONNX (``model.onnx`` + ``model_card.json``): static input of the training imgsz.

    This is what the edge runs; the blocking ``onnx_parity`` check compares it with the
    PyTorch checkpoint before anything downstream may use it.
    """
    object_store = store.open()
    version = context.partition_key
    model_id = trained_model
    params = object_store.get_json(model_key(model_id, TRAINING_CONFIG_FILE))
    record = DatasetVersionStore(object_store).read(version)
    scratch = training_backend.work_root() / "export" / model_id
    shutil.rmtree(scratch, ignore_errors=True)
    weights = object_store.download_file(model_key(model_id, WEIGHTS_FILE), scratch / "best.pt")
    result = export_onnx(weights, int(params["imgsz"]), scratch / "onnx", opset=config.opset or None,
                         settings_dir=training_backend.work_root() / "ultralytics")
    card = model_card(model_id, version, record.class_names, int(params["imgsz"]), result,
                      started_from=params.get("started_from"))
    object_store.put_file(model_key(model_id, ONNX_FILE), result.onnx_path)
    object_store.put_json(model_key(model_id, MODEL_CARD_FILE), card.to_dict())
    shutil.rmtree(scratch, ignore_errors=True)
    context.log.info(f"exported {model_id}: opset {result.opset}, input {result.input_shape}, sha256 {result.sha256}")
    return dg.Output(
        model_id,
        metadata={
            MODEL_ID: model_id,
            "dataset_version": version,
            "opset": result.opset,
            "onnx_sha256": result.sha256,
            "input_shape": str(list(result.input_shape)),
            "output_shape": str(list(result.output_shape)),
            "size_mb": round(result.size_bytes / 1e6, 2),
            "export_seconds": result.seconds,
            "onnx_uri": object_store.uri_for(model_key(model_id, ONNX_FILE)),
            "model_card": dg.MetadataValue.json(card.to_dict()),
        }
    )
