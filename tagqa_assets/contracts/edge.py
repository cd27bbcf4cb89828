"""Edge component and deployment contracts (version 1; prose: docs/interfaces.md, "Edge component").

A *release* is what runs on a device: one model component version (``model.onnx`` +
``model_card.json`` of one registry version) and one inference component version (the
``edge_runtime`` package as wheels). Both live in the store under
``edge/components/<name>/<semver>/``: the artifacts, ``build.json`` (what was built from
what) and ``recipe.yaml``, written LAST: a version folder without its recipe is incomplete
and no reader uses it. Deployment history is one JSON record per deployment under
``edge/deployments/<target>/``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from tagqa_assets.contracts.keys import EDGE_COMPONENTS_PREFIX, check_key, edge_component_prefix

EDGE_CONTRACT_VERSION = 1

MODEL_COMPONENT = "ScratchModel"
INFERENCE_COMPONENT = "EdgeInference"
RECIPE_FILE = "recipe.yaml"
BUILD_FILE = "build.json"
INFERENCE_ARCHIVE = "greengrass.zip"
DEPLOYMENTS_PREFIX = "edge/deployments/"

# Deployment record statuses.
IN_PROGRESS = "in_progress"
DEPLOYED = "deployed"
FAILED = "failed"
TIMED_OUT = "timed_out"
DEPLOYMENT_STATUSES = (IN_PROGRESS, DEPLOYED, FAILED, TIMED_OUT)
# Deployment kinds.
DEPLOY = "deploy"
ROLLBACK = "rollback"
AUTO_ROLLBACK = "auto-rollback"

_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
_TARGET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


def model_component_version(model_version: int, *, registry_choice: bool = True) -> str:
    """Component version of registry version ``model_version``: ``N.0.0`` (7 -> ``7.0.0``) for the variant the
    registry entry ships, ``N.1.0`` for the fp32 variant of an entry that ships int8 (deployed to NVIDIA
    providers; tagqa_assets/deployment/precision.py)."""
    if model_version < 1:
        raise ValueError(f"model versions start at 1, got {model_version}")
    return f"{model_version}.{0 if registry_choice else 1}.0"


def parse_semver(version: str) -> tuple[int, int, int]:
    """``(major, minor, patch)`` of a ``MAJOR.MINOR.PATCH`` version; ``ValueError`` naming it otherwise."""
    match = _SEMVER.match(version)
    if not match:
        raise ValueError(f"component version {version!r} is not MAJOR.MINOR.PATCH")
    return int(match[1]), int(match[2]), int(match[3])


def component_key(name: str, version: str, file_name: str) -> str:
    """Store key of one file of a component version."""
    return check_key(edge_component_prefix(name, version) + file_name)


def component_name_prefix(name: str) -> str:
    """Prefix under which all versions of component ``name`` live."""
    return check_key(f"{EDGE_COMPONENTS_PREFIX}{name}") + "/"


def check_target_id(target: str) -> str:
    """``target`` if it is a valid target id (``local``, ``greengrass:<thing group>``), else ``ValueError``."""
    if not _TARGET.match(target):
        raise ValueError(f"invalid deployment target id {target!r}")
    return target


def deployments_prefix(target: str) -> str:
    """Prefix of one target's deployment records."""
    return f"{DEPLOYMENTS_PREFIX}{check_target_id(target)}/"


def deployment_record_key(target: str, started_at: str, deployment_id: str) -> str:
    """``edge/deployments/<target>/<started, compact UTC>-<deployment id>.json``: sorts by start time."""
    stamp = re.sub(r"[^0-9TZ]", "", started_at)
    return check_key(f"{deployments_prefix(target)}{stamp}-{deployment_id}.json")


def utc_now() -> str:
    """Current UTC time, ISO-8601 with microseconds and a Z."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class ComponentRef:
    """One component version."""

    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class Release:
    """What a deployment puts on a target: a model component and the inference component that serves it."""

    model_version: int
    model_id: str
    dataset_version: str
    model: ComponentRef
    inference: ComponentRef

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Release:
        """Inverse of ``to_dict``; ``ValueError`` naming a missing field."""
        try:
            return cls(int(data["model_version"]), data["model_id"], data["dataset_version"],
                       ComponentRef(**data["model"]), ComponentRef(**data["inference"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"release record lacks or mistypes a field: {exc}") from None


@dataclass(frozen=True)
class DeploymentRecord:
    """One deployment to one target (``edge/deployments/<target>/...json``)."""

    deployment_id: str
    target: str
    kind: str  # DEPLOY | ROLLBACK | AUTO_ROLLBACK
    release: Release | None  # None: the target's tagqa components were removed (rollback with nothing before)
    status: str
    started_at: str
    finished_at: str = ""
    run_id: str = ""
    devices: dict[str, dict[str, str]] = field(default_factory=dict)  # device -> {"status", "detail"}
    error: str = ""
    replaces: str = ""  # deployment id that was current on the target before this one
    target_deployment_id: str = ""  # the target's own id (Greengrass deployment id), when it has one
    contract_version: int = EDGE_CONTRACT_VERSION

    def __post_init__(self) -> None:
        if self.status not in DEPLOYMENT_STATUSES:
            raise ValueError(f"deployment {self.deployment_id}: status {self.status!r} is not one of {DEPLOYMENT_STATUSES}")

    @property
    def key(self) -> str:
        """Store key of this record."""
        return deployment_record_key(self.target, self.started_at, self.deployment_id)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        data = asdict(self)
        data["release"] = self.release.to_dict() if self.release else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeploymentRecord:
        """Inverse of ``to_dict``; ``ValueError`` naming a missing field."""
        try:
            release = Release.from_dict(data["release"]) if data.get("release") else None
            return cls(
                deployment_id=data["deployment_id"], target=data["target"], kind=data["kind"], release=release,
                status=data["status"], started_at=data["started_at"], finished_at=data.get("finished_at", ""),
                run_id=data.get("run_id", ""), devices={k: dict(v) for k, v in data.get("devices", {}).items()},
                error=data.get("error", ""), replaces=data.get("replaces", ""),
                target_deployment_id=data.get("target_deployment_id", ""),
                contract_version=int(data.get("contract_version", EDGE_CONTRACT_VERSION)),
            )
        except KeyError as exc:
            raise ValueError(f"deployment record {data.get('deployment_id', '?')!r} lacks field {exc}") from None
