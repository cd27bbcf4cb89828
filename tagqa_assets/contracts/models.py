"""Model artifact layout, the model commit record and the registry entry (contract version 1).

One training run makes one model directory ``models/<model_id>/``:

- ``weights/best.pt``: the PyTorch checkpoint (best epoch by Ultralytics' fitness on val);
- ``training_config.json``: the exact training configuration;
- ``training_curves.csv`` / ``training_curves.png``: per-epoch losses and val metrics;
- ``training.json``: the training summary (``TrainingSummary``); ``training.log``: its output;
- ``model.onnx`` + ``model_card.json``: the export the edge runs (card: ``edge_runtime.contracts.ModelCard``);
- ``int8/model.onnx`` + ``int8/model_card.json``: its int8 variant (``model_evaluation``; the card
  names the precision and the calibration set);
- ``parity.json``: the ONNX/PyTorch parity report;
- ``evaluations/<run_id>.json``: every evaluation (new key each time, never overwritten);
- ``metrics.json``: the evaluation the model was committed with;
- ``model.json``: the commit record (``ModelRecord``), written LAST. A directory without it
  is incomplete (failed, killed or blocked run) and no reader may use it.

``model_id`` is ``<dataset_version>-<8 hex>``, the hex digits hashing the training config and
the run id, so every training run, including a backfill with a changed config, gets a new
directory and never overwrites an older model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from tagqa_assets.contracts.keys import REGISTRY_PREFIX, model_prefix

MODEL_CONTRACT_VERSION = 1

WEIGHTS_FILE = "weights/best.pt"
TRAINING_CONFIG_FILE = "training_config.json"
TRAINING_SUMMARY_FILE = "training.json"
TRAINING_LOG_FILE = "training.log"
CURVES_CSV_FILE = "training_curves.csv"
CURVES_PNG_FILE = "training_curves.png"
ONNX_FILE = "model.onnx"
MODEL_CARD_FILE = "model_card.json"
PARITY_FILE = "parity.json"
EVALUATIONS_DIR = "evaluations"
METRICS_FILE = "metrics.json"
COMMIT_FILE = "model.json"

# Precisions a model ships in: the export itself, or its int8 variant (training/quantization.py).
FP32 = "fp32"
INT8 = "int8"
PRECISIONS = (FP32, INT8)
INT8_ONNX_FILE = "int8/" + ONNX_FILE
INT8_MODEL_CARD_FILE = "int8/" + MODEL_CARD_FILE

# Registry statuses: the names SageMaker Model Registry uses for ModelApprovalStatus.
PENDING = "PendingManualApproval"
APPROVED = "Approved"
REJECTED = "Rejected"
REGISTRY_STATUSES = (PENDING, APPROVED, REJECTED)

# Metric names in metrics.json and the registry, one dict per split.
METRIC_NAMES = ("map50", "map50_95", "precision", "recall")
LOCAL_REGISTRY_PREFIX = REGISTRY_PREFIX + "models/"


def config_sha256(config: dict[str, Any]) -> str:
    """Hash of a training configuration (canonical JSON), independent of key order."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def new_model_id(dataset_version: str, config: dict[str, Any], run_id: str) -> str:
    """``<dataset_version>-<8 hex of sha256(config hash + run id)>``: unique per training run."""
    digest = hashlib.sha256(f"{config_sha256(config)}:{run_id}".encode()).hexdigest()
    return f"{dataset_version}-{digest[:8]}"


def model_key(model_id: str, name: str) -> str:
    """Store key of one file of a model directory, e.g. ``model_key(id, ONNX_FILE)``."""
    return model_prefix(model_id) + name


def registry_key(version: int) -> str:
    """Key of one local registry entry: ``registry/models/<version:06d>.json`` (sorts numerically)."""
    if version < 1:
        raise ValueError(f"model versions start at 1, got {version}")
    return f"{LOCAL_REGISTRY_PREFIX}{version:06d}.json"


@dataclass(frozen=True)
class TrainingSummary:
    """``training.json``: what a training run produced, whichever backend ran it."""

    model_id: str
    dataset_version: str
    backend: str
    epochs_completed: int
    best_epoch: int
    train_seconds: float
    final: dict[str, float]  # last epoch's losses and val metrics
    best: dict[str, float]  # best epoch's val metrics
    training_job: str = ""  # SageMaker training job name, empty for local runs
    job_artifact_uri: str = ""  # SageMaker model.tar.gz
    network_attempts_blocked: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingSummary:
        """Inverse of ``to_dict``."""
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})


@dataclass(frozen=True)
class ModelRecord:
    """``model.json``: the commit record of a complete model directory."""

    model_id: str
    dataset_version: str
    created_at: str
    run_id: str
    class_names: tuple[str, ...]
    imgsz: int
    training_config: dict[str, Any]
    config_sha256: str
    code_versions: dict[str, str]  # asset name -> Dagster code_version
    git_sha: str
    files: dict[str, str]  # file name in the directory -> sha256
    metrics: dict[str, dict[str, float]]  # split -> METRIC_NAMES
    opset: int
    training: dict[str, Any] = field(default_factory=dict)  # TrainingSummary.to_dict()
    contract_version: int = MODEL_CONTRACT_VERSION

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        data = asdict(self)
        data["class_names"] = list(self.class_names)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelRecord:
        """Inverse of ``to_dict``; raises ``ValueError`` naming a missing field."""
        try:
            return cls(
                model_id=data["model_id"],
                dataset_version=data["dataset_version"],
                created_at=data["created_at"],
                run_id=data["run_id"],
                class_names=tuple(data["class_names"]),
                imgsz=int(data["imgsz"]),
                training_config=dict(data["training_config"]),
                config_sha256=data["config_sha256"],
                code_versions=dict(data["code_versions"]),
                git_sha=data["git_sha"],
                files=dict(data["files"]),
                metrics={split: dict(values) for split, values in data["metrics"].items()},
                opset=int(data["opset"]),
                training=dict(data.get("training", {})),
                contract_version=int(data.get("contract_version", MODEL_CONTRACT_VERSION)),
            )
        except KeyError as exc:
            raise ValueError(f"model record for {data.get('model_id', '?')!r} lacks field {exc}") from exc


@dataclass(frozen=True)
class ModelVersion:
    """One registered model version (local ``registry/models/<n>.json`` or a SageMaker model package)."""

    version: int
    model_id: str
    dataset_version: str
    status: str
    created_at: str
    metrics: dict[str, dict[str, float]]  # split -> METRIC_NAMES, from the ONNX evaluation
    training_config: dict[str, Any]
    config_sha256: str
    code_version: str  # git sha of the code that trained it, "unknown" outside a git checkout
    artifacts: dict[str, str]  # model_dir, weights, onnx, model_card, metrics -> URI
    status_reason: str = ""
    updated_at: str = ""
    external_id: str = ""  # SageMaker model package ARN
    # The variant the model component ships (FP32 or INT8), why (max_int8_map_loss), and each
    # variant's {"metrics": {split: {...}}, "size_bytes": n} as evaluated through the edge pipeline.
    precision: str = FP32
    precision_reason: str = ""
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    # What the labels since its parent bought (training/lineage.py ``since_parent``): parent,
    # parent_version, via, labels_spent / labels_added / labels_relabeled, test_gain, hard_gain.
    since_parent: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in REGISTRY_STATUSES:
            raise ValueError(f"model version {self.version}: status {self.status!r} is not one of {REGISTRY_STATUSES}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"model version {self.version}: precision {self.precision!r} is not one of {PRECISIONS}")
        if self.precision != FP32 and self.precision not in self.variants:
            raise ValueError(f"model version {self.version}: ships {self.precision} but records no such variant")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelVersion:
        """Inverse of ``to_dict``; raises ``ValueError`` naming a missing field."""
        try:
            return cls(
                version=int(data["version"]),
                model_id=data["model_id"],
                dataset_version=data["dataset_version"],
                status=data["status"],
                created_at=data["created_at"],
                metrics={split: dict(values) for split, values in data["metrics"].items()},
                training_config=dict(data["training_config"]),
                config_sha256=data["config_sha256"],
                code_version=data["code_version"],
                artifacts=dict(data["artifacts"]),
                status_reason=data.get("status_reason", ""),
                updated_at=data.get("updated_at", ""),
                external_id=data.get("external_id", ""),
                precision=data.get("precision", FP32),
                precision_reason=data.get("precision_reason", ""),
                variants={name: dict(values) for name, values in (data.get("variants") or {}).items()},
                since_parent=dict(data.get("since_parent") or {}),
            )
        except KeyError as exc:
            raise ValueError(f"registry entry {data.get('version', '?')!r} lacks field {exc}") from exc
