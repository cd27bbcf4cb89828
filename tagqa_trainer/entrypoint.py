"""The training entry point: one YOLO training run on one staged dataset, locally or in SageMaker.

    python -m tagqa_trainer.entrypoint --data DIR --config params.json --output OUT \
        [--weights START.pt] [--settings-dir DIR] [--work DIR]
    python -m tagqa_trainer.entrypoint --sagemaker [--sagemaker-root /opt/ml]

``DIR`` is a YOLO export (``data.yaml``, ``images/<split>/``, ``labels/<split>/``); in
SageMaker it is the ``training`` channel, the start weights the optional ``weights``
channel, the configuration the ``tagqa_config`` hyper-parameter, and the output
``/opt/ml/model`` (which SageMaker uploads as ``model.tar.gz``).

Output: ``weights/best.pt``, ``epochs.jsonl`` (one object per epoch), ``summary.json``.
Stdout carries one ``TAGQA_EPOCH {json}`` line per epoch and, on failure, one
``TAGQA_ERROR {json}`` line. Exit codes: 0 done, 2 bad input, 3 diverged (NaN/inf loss), 1 other.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from tagqa_trainer.offline import NetworkGuard, configure_settings, prepare_environment
from tagqa_trainer.params import TrainingParams

EPOCH_MARK = "TAGQA_EPOCH "
ERROR_MARK = "TAGQA_ERROR "
EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3
EPOCHS_FILE = "epochs.jsonl"
SUMMARY_FILE = "summary.json"
BEST_WEIGHTS = "weights/best.pt"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}

_METRIC_NAMES = {
    "train/box_loss": "box_loss",
    "train/cls_loss": "cls_loss",
    "train/dfl_loss": "dfl_loss",
    "val/box_loss": "val_box_loss",
    "val/cls_loss": "val_cls_loss",
    "val/dfl_loss": "val_dfl_loss",
    "metrics/precision(B)": "precision",
    "metrics/recall(B)": "recall",
    "metrics/mAP50(B)": "map50",
    "metrics/mAP50-95(B)": "map50_95",
    "lr/pg0": "lr",
    "fitness": "fitness",
}


class BadTrainingInput(ValueError):
    """The dataset or configuration cannot be trained on; the message says which file and why."""


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


def normalize_metrics(values: dict[str, Any]) -> dict[str, float]:
    """Ultralytics' metric names mapped to tagqa's (``metrics/mAP50-95(B)`` -> ``map50_95``)."""
    return {_METRIC_NAMES[key]: float(value) for key, value in values.items() if key in _METRIC_NAMES}


def write_data_yaml(dataset_dir: Path, target: Path, class_names: tuple[str, ...] = ()) -> Path:
    """A ``data.yaml`` for ``dataset_dir`` with an absolute ``path``; checks train and val have images.

    Uses the folder's own ``data.yaml`` when it has one, else ``images/<split>/`` and
    ``class_names`` (a SageMaker channel holds the export as stored, without the yaml).
    """
    import yaml

    source = dataset_dir / "data.yaml"
    if source.is_file():
        data = yaml.safe_load(source.read_text())
        if not isinstance(data, dict) or "names" not in data:
            raise BadTrainingInput(f"{source}: not an Ultralytics dataset description (no 'names')")
    elif class_names:
        data = {split: f"images/{split}" for split in ("train", "val", "test") if (dataset_dir / "images" / split).is_dir()}
        data["names"] = dict(enumerate(class_names))
    else:
        raise BadTrainingInput(f"{source}: no data.yaml in the dataset folder and no class names given")
    for split in ("train", "val"):
        folder = dataset_dir / str(data.get(split, f"images/{split}"))
        count = sum(1 for p in folder.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else 0
        if count == 0:
            raise BadTrainingInput(f"{folder}: the {split!r} split has no images; training needs at least one")
    data["path"] = str(dataset_dir.resolve())
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(data, sort_keys=False))
    return target


class EpochRecorder:
    """Ultralytics callbacks: fail fast on a non-finite loss, stream and keep one record per epoch."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.started = time.monotonic()
        self.records: list[dict[str, Any]] = []
        self.best_epoch = 0
        self.best_metrics: dict[str, float] = {}
        self._best_fitness = -math.inf
        self._epochs_trained = 0

    def check_finite(self, trainer: Any) -> None:
        """``on_train_batch_end``: raise ``TrainingDiverged`` as soon as the running loss is NaN/inf."""
        losses = {name: float(value) for name, value in (trainer.tloss or {}).items()}
        if trainer.loss is not None:
            losses["total"] = float(trainer.loss)
        bad = {name: value for name, value in losses.items() if not math.isfinite(value)}
        if bad:
            raise TrainingDiverged(
                f"training diverged: loss became non-finite {bad} at epoch {trainer.epoch + 1}; "
                "lower lr0 or check the labels"
            )

    def on_train_epoch_end(self, trainer: Any) -> None:
        """``on_train_epoch_end``: count real epochs (the final validation of best.pt is not one)."""
        self._epochs_trained += 1

    def on_epoch(self, trainer: Any) -> None:
        """``on_fit_epoch_end``: append the epoch's losses, val metrics and learning rate.

        Ultralytics fires this event once more after the last epoch, for its validation of
        ``best.pt``; that one is kept as ``best_metrics`` instead of an epoch.
        """
        if len(self.records) >= self._epochs_trained:
            self.best_metrics = normalize_metrics(trainer.metrics or {})
            return
        values = {**trainer.label_loss_items(trainer.tloss, prefix="train"), **(trainer.metrics or {}), **trainer.lr}
        record = {"epoch": trainer.epoch + 1, "epochs": trainer.epochs, "seconds": round(time.monotonic() - self.started, 2)}
        record.update(normalize_metrics(values))
        fitness = trainer.fitness if trainer.fitness is not None else -math.inf
        if fitness > self._best_fitness:
            self._best_fitness, self.best_epoch = fitness, record["epoch"]
        self.records.append(record)
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        print(EPOCH_MARK + json.dumps(record), flush=True)


def run_training(
    dataset_dir: Path, params: TrainingParams, output_dir: Path, *, work_dir: Path, settings_dir: Path,
    weights: Path | None = None, class_names: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Train on ``dataset_dir`` and write ``output_dir`` (see module docstring); returns the summary."""
    guard = NetworkGuard()
    prepare_environment(settings_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / EPOCHS_FILE).unlink(missing_ok=True)
    data_yaml = write_data_yaml(dataset_dir, work_dir / "data.yaml", class_names)
    if weights is not None and not weights.is_file():
        raise BadTrainingInput(f"{weights}: start weights not found")
    guard.enabled = not params.integrations  # a configured integration may need its server
    import torch
    from ultralytics import YOLO, __version__

    configure_settings(runs_dir=work_dir / "runs", integrations=params.integrations)
    recorder = EpochRecorder(output_dir / EPOCHS_FILE)
    model = YOLO(str(weights) if weights else params.architecture)
    model.add_callback("on_train_batch_end", recorder.check_finite)
    model.add_callback("on_train_epoch_end", recorder.on_train_epoch_end)
    model.add_callback("on_fit_epoch_end", recorder.on_epoch)
    started = time.monotonic()
    model.train(data=str(data_yaml), project=str(work_dir), name="train", **params.ultralytics_args())
    trained = work_dir / "train" / BEST_WEIGHTS
    if not trained.is_file():
        raise RuntimeError(f"{trained}: Ultralytics finished without writing best weights")
    (output_dir / "weights").mkdir(exist_ok=True)
    shutil.copyfile(trained, output_dir / BEST_WEIGHTS)
    summary = {
        "epochs_completed": len(recorder.records),
        "best_epoch": recorder.best_epoch,
        "train_seconds": round(time.monotonic() - started, 2),
        "final": recorder.records[-1] if recorder.records else {},
        "best": recorder.best_metrics,
        "network_attempts_blocked": len(guard.attempts),
        "network_attempts": guard.attempts[:20],
        "start_weights": str(weights) if weights else "",
        "ultralytics_version": __version__,
        "torch_version": torch.__version__,
    }
    guard.enabled = False
    (output_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    return summary


def _sagemaker_paths(root: Path) -> dict[str, Any]:
    hyper = json.loads((root / "input" / "config" / "hyperparameters.json").read_text())
    weights_dir = root / "input" / "data" / "weights"
    candidates = sorted(weights_dir.glob("*.pt")) if weights_dir.is_dir() else []
    return {
        "params": TrainingParams.from_dict(json.loads(hyper["tagqa_config"])),
        "dataset_dir": root / "input" / "data" / "training",
        "output_dir": root / "model",
        "weights": candidates[0] if candidates else None,
        "class_names": tuple(json.loads(hyper.get("class_names", "[]"))),
    }


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, train, map failures to exit codes (see module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m tagqa_trainer.entrypoint", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path)
    parser.add_argument("--config", type=Path, help="training parameters JSON (TrainingParams)")
    parser.add_argument("--output", type=Path)
    parser.add_argument("--weights", type=Path, help="start from this checkpoint instead of the architecture")
    parser.add_argument("--settings-dir", type=Path, help="Ultralytics settings folder (YOLO_CONFIG_DIR)")
    parser.add_argument("--names", type=json.loads, help="class names as a JSON list, when DIR has no data.yaml")
    parser.add_argument("--work", type=Path, help="scratch folder for Ultralytics' run directory")
    parser.add_argument("--sagemaker", action="store_true", help="read /opt/ml like a SageMaker training job")
    parser.add_argument("--sagemaker-root", type=Path, default=Path("/opt/ml"))
    args = parser.parse_args(argv)
    failure_file = args.sagemaker_root / "output" / "failure" if args.sagemaker else None
    if not args.sagemaker and not (args.data and args.config and args.output):
        parser.error("--data, --config and --output are required without --sagemaker")
    try:
        if args.sagemaker:
            job = _sagemaker_paths(args.sagemaker_root)
        else:
            job = {
                "params": TrainingParams.from_dict(json.loads(args.config.read_text())),
                "dataset_dir": args.data,
                "output_dir": args.output,
                "weights": args.weights,
                "class_names": tuple(args.names or ()),
            }
    except (OSError, KeyError, ValueError) as exc:
        return _fail("bad_input", f"cannot read the training job's inputs: {exc}", EXIT_BAD_INPUT, failure_file)
    work = args.work or Path(tempfile.mkdtemp(prefix="tagqa-train-"))
    settings = args.settings_dir or work / "ultralytics-settings"
    try:
        run_training(job["dataset_dir"], job["params"], job["output_dir"], work_dir=work, settings_dir=settings,
                     weights=job["weights"], class_names=job["class_names"])
        return 0
    except BadTrainingInput as exc:
        return _fail("bad_input", str(exc), EXIT_BAD_INPUT, failure_file)
    except TrainingDiverged as exc:
        return _fail("diverged", str(exc), EXIT_DIVERGED, failure_file)
    except Exception as exc:  # any other failure still leaves one machine-readable line
        traceback.print_exc()
        return _fail("error", f"{type(exc).__name__}: {exc}", 1, failure_file)


def _fail(kind: str, message: str, code: int, failure_file: Path | None) -> int:
    print(ERROR_MARK + json.dumps({"kind": kind, "message": message}), flush=True)
    if failure_file is not None:
        # SageMaker shows this file's content as the job's FailureReason.
        failure_file.parent.mkdir(parents=True, exist_ok=True)
        failure_file.write_text(f"{kind}: {message}"[:1024])
    return code


if __name__ == "__main__":
    sys.exit(main())
