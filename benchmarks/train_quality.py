"""Training quality on the real metal-tag dataset: the documented CPU configuration, from scratch, offline.

The data goes the production way (upload -> ingestion -> ``labels.csv`` import -> approved
snapshot -> dataset version with the default 80/10/10 content-hash split), then one Dagster
run materializes the whole model chain for that version: ``trained_model`` (yolov8n.yaml
from scratch, no downloads), ``onnx_model`` + the blocking ``onnx_parity`` check,
``model_evaluation`` (test split, computed from the exported ONNX model through the edge
runtime's pipeline) + the blocking ``promotion_gate`` (default: mAP50-95 >= 0.40 on test),
and ``registered_model``. Targets: test mAP50 >= 0.80 and mAP50-95 >= 0.45, training under
40 minutes on a 2-core CPU.

    python benchmarks/train_quality.py [--epochs 55] [--imgsz 480] [--batch 16] [--workers 2]

Last line: ``RESULT map50=X map50_95=Y minutes=M`` (M = wall minutes of the training step).
Everything (store, Dagster home, Ultralytics settings) lives in a temporary folder unless
``--state DIR`` is given.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATASET = REPO.parent / "shared" / "data" / "metal-tags"
CONFIG = {"epochs": 55, "imgsz": 480, "batch": 16, "workers": 2, "patience": 100, "seed": 0}


def build_real_version(store, dataset: Path) -> str:
    """Upload, ingest, import labels.csv and commit a dataset version; returns its name."""
    from tagqa_assets.contracts.datasets import dataset_version_name
    from tagqa_assets.datasets.build import build_dataset_version
    from tagqa_assets.ingestion.ingest import ingest_keys
    from tagqa_assets.ingestion.writers import upload_folder
    from tagqa_assets.labeling.imports.format_tagqa import parse_labels_csv
    from tagqa_assets.labeling.imports.pipeline import import_parsed
    from tagqa_assets.labeling.label_store import LocalLabelStore

    upload = upload_folder(store, dataset / "images", source="import")
    ingest_keys(store, upload.keys, run_id="benchmark")
    labels = LocalLabelStore(store)
    report = import_parsed(store, labels, parse_labels_csv((dataset / "labels.csv").read_bytes(), "labels.csv"),
                           source="labels.csv")
    print(f"labels.csv: {report.imported} imported, {len(report.rejects)} rejected")
    snapshot = labels.snapshot()
    version = dataset_version_name(1, snapshot.snapshot_id)
    result = build_dataset_version(store, snapshot, version)
    print(f"dataset version {version}: {result.record.counts} images, {result.record.box_counts} boxes")
    return version


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, value in CONFIG.items():
        parser.add_argument(f"--{name}", type=type(value), default=value)
    parser.add_argument("--state", type=Path, help="keep the store and Dagster home here (default: a temp folder)")
    args = parser.parse_args()
    if not (DATASET / "labels.csv").is_file():
        print(f"real dataset not found at {DATASET}", file=sys.stderr)
        return 2
    state = (args.state or Path(tempfile.mkdtemp(prefix="tagqa-train-quality-"))).resolve()
    (state / "dagster").mkdir(parents=True, exist_ok=True)
    # Before anything imports ultralytics: its settings stay in the state folder.
    os.environ.update({"DAGSTER_HOME": str(state / "dagster"), "YOLO_CONFIG_DIR": str(state / "ultralytics"),
                       "YOLO_OFFLINE": "1", "MPLCONFIGDIR": str(state / "matplotlib")})
    sys.path.insert(0, str(REPO))
    import dagster as dg

    from tagqa_assets.model_catalog.resources import ModelRegistryResource
    from tagqa_assets.partitions import dataset_versions
    from tagqa_assets.registry.assets import registered_model
    from tagqa_assets.registry.checks import beats_champion, promotion_gate
    from tagqa_assets.registry.policy import PromotionPolicyResource
    from tagqa_assets.storage import LocalObjectStore, StoreResource
    from tagqa_assets.training.assets import onnx_model, trained_model
    from tagqa_assets.training.checks import onnx_parity
    from tagqa_assets.training.evaluation_asset import model_evaluation
    from tagqa_assets.training.lineage import HANDOFF_IO_MANAGER, ModelHandoffIOManager
    from tagqa_assets.training.resources import TrainingBackendResource

    store = LocalObjectStore(state / "store")
    version = build_real_version(store, DATASET)
    config = {name: getattr(args, name) for name in CONFIG}
    print(f"config: yolov8n.yaml from scratch, {config}, device cpu, {os.cpu_count()} cores")
    instance = dg.DagsterInstance.get()
    instance.add_dynamic_partitions(dataset_versions.name, [version])
    resources = {"store": StoreResource(root=str(store.root)), "training_backend": TrainingBackendResource(),
                 "model_registry": ModelRegistryResource(), "promotion_policy": PromotionPolicyResource(),
                 HANDOFF_IO_MANAGER: ModelHandoffIOManager()}
    started = time.monotonic()
    training_run = dg.materialize([trained_model], partition_key=version, instance=instance, raise_on_error=False,
                                  resources=resources, run_config={"ops": {"trained_model": {"config": config}}})
    train_wall = (time.monotonic() - started) / 60
    rest = dg.materialize(
        [trained_model, onnx_model, onnx_parity, model_evaluation, promotion_gate, beats_champion, registered_model],
        selection=dg.AssetSelection.assets(onnx_model, model_evaluation, registered_model),  # trained_model: handed off from the run above
        partition_key=version, instance=instance, raise_on_error=False, resources=resources,
    ) if training_run.success else None
    total = (time.monotonic() - started) / 60
    metadata = {}
    events = training_run.all_events + (rest.all_events if rest else [])
    for event in events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            materialization = event.event_specific_data.materialization
            metadata[materialization.asset_key.to_user_string()] = {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}
        elif event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data
            print(f"check {evaluation.check_name}: {'passed' if evaluation.passed else 'FAILED'} - {evaluation.description}")
        elif event.event_type_value == "STEP_FAILURE":
            print(f"step {event.step_key} failed: {event.event_specific_data.error.message.strip()[:500]}")
    training = metadata.get("trained_model", {})
    evaluation = metadata.get("model_evaluation", {})
    registered = metadata.get("registered_model", {})
    print(f"training: {training.get('epochs_completed')} epochs, best epoch {training.get('best_epoch')}, "
          f"{training.get('train_minutes')} min inside the trainer; val mAP50 {training.get('val_map50')}, "
          f"mAP50-95 {training.get('val_map50_95')} (PyTorch, Ultralytics val)")
    for split in ("test", "val"):
        print(f"ONNX {split}: " + ", ".join(f"{n} {evaluation.get(f'{split}_{n}')}" for n in ("map50", "map50_95", "precision", "recall")))
    print(f"registered: version {registered.get('model_version')} {registered.get('status')}; state in {state}")
    print(f"int8 variant: test mAP50 {evaluation.get('int8_test_map50')}, mAP50-95 {evaluation.get('int8_test_map50_95')} "
          f"(fp32 {evaluation.get('fp32_test_map50')}, {evaluation.get('fp32_test_map50_95')}); "
          f"{evaluation.get('fp32_size_mb')} MB -> {evaluation.get('int8_size_mb')} MB; {registered.get('precision_reason')}")
    success = training_run.success and rest is not None and rest.success
    print(f"trained_model step: {train_wall:.1f} min wall; whole chain {total:.1f} min; {'succeeded' if success else 'FAILED'}")
    minutes = train_wall
    print(f"RESULT map50={evaluation.get('test_map50', float('nan')):.4f} "
          f"map50_95={evaluation.get('test_map50_95', float('nan')):.4f} minutes={minutes:.1f}")
    return 0 if success else 1


if __name__ == "__main__":
    sys.exit(main())
