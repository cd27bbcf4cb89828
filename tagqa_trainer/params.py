"""The training configuration as plain data, shared by Dagster, the backends and the entry point.

``TrainingParams`` is what the training entry point (``python -m
tagqa_trainer.entrypoint``) receives as JSON, locally and inside a SageMaker
training job, so it must not depend on Dagster.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

# Ultralytics integrations tagqa can switch on; all are off unless named in ``integrations``.
INTEGRATIONS = ("mlflow", "wandb", "comet", "clearml", "tensorboard", "dvc", "raytune")
WARM_START_CHOICES = ("", "champion")
# Ultralytics arguments tagqa sets itself (paths, offline behaviour, reproducibility).
_RESERVED_ARGS = frozenset({"data", "project", "name", "plots", "exist_ok", "resume", "model", "deterministic"})


@dataclass(frozen=True)
class TrainingParams:
    """Hyper-parameters and run settings of one training run (see docs/training.md)."""

    epochs: int = 55
    imgsz: int = 480
    batch: int = 16
    device: str = "cpu"
    seed: int = 0
    patience: int = 100
    workers: int = 2
    architecture: str = "yolov8n.yaml"
    optimizer: str = "auto"
    lr0: float = 0.01
    fraction: float = 1.0
    base_weights: str = ""
    warm_start: str = ""
    timeout_minutes: float = 0.0
    integrations: tuple[str, ...] = field(default_factory=tuple)
    # Any other Ultralytics training argument (``{"mosaic": 0.5, "warmup_epochs": 1}``).
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 1:
            problems.append(f"epochs must be >= 1, got {self.epochs}")
        if self.imgsz < 32 or self.imgsz % 32:
            problems.append(f"imgsz must be a multiple of 32 (the YOLO stride), got {self.imgsz}")
        if self.batch < 1:
            problems.append(f"batch must be >= 1, got {self.batch}")
        if not 0 < self.fraction <= 1:
            problems.append(f"fraction must be in (0, 1], got {self.fraction}")
        if self.warm_start not in WARM_START_CHOICES:
            problems.append(f"warm_start must be one of {WARM_START_CHOICES}, got {self.warm_start!r}")
        if self.base_weights and self.warm_start:
            problems.append("set base_weights or warm_start, not both")
        if self.base_weights and not self.base_weights.endswith(".pt"):
            problems.append(f"base_weights must name a .pt checkpoint, got {self.base_weights!r}")
        unknown = sorted(set(self.integrations) - set(INTEGRATIONS))
        if unknown:
            problems.append(f"unknown integrations {unknown}; known: {list(INTEGRATIONS)}")
        reserved = sorted(set(self.overrides) & (_RESERVED_ARGS | {f.name for f in fields(self)}))
        if reserved:
            problems.append(f"overrides may not set {reserved}: use the config fields or let tagqa set them")
        if self.timeout_minutes < 0:
            problems.append(f"timeout_minutes must be >= 0, got {self.timeout_minutes}")
        if problems:
            raise ValueError("invalid training config: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``integrations`` as a sorted list)."""
        data = asdict(self)
        data["integrations"] = sorted(self.integrations)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingParams:
        """Build from a dict; raises ``ValueError`` naming unknown keys (typos must not pass silently)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training config keys {unknown}; known: {sorted(known)}")
        values = dict(data)
        if "integrations" in values:
            values["integrations"] = tuple(values["integrations"])
        return cls(**values)

    def ultralytics_args(self) -> dict[str, Any]:
        """Arguments for ``YOLO.train`` (besides data/project/name, which the entry point sets)."""
        return {
            **self.overrides,
            "epochs": self.epochs,
            "imgsz": self.imgsz,
            "batch": self.batch,
            "device": self.device,
            "seed": self.seed,
            "deterministic": True,
            "patience": self.patience,
            "workers": self.workers,
            "optimizer": self.optimizer,
            "lr0": self.lr0,
            "fraction": self.fraction,
            # Plots would make Ultralytics look for fonts (a download when missing); tagqa draws its own.
            "plots": False,
            "exist_ok": True,
            "verbose": False,
        }
