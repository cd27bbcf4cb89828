"""Where releases go: the ``DeploymentTarget`` interface and the outcome of a deployment.

Two implementations: ``LocalDeviceTarget`` (local_target.py: device folders laid out like a
Greengrass core, watched by local ``tagqa-edge`` processes; the default) and
``GreengrassTarget`` (greengrass_target.py: AWS IoT Greengrass v2 component versions and
deployments to a thing group or one core device). deployer.py drives either the same way:
``check`` -> ``publish`` -> ``apply``, and ``apply`` of the previous release to roll back.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from tagqa_assets.contracts.edge import DEPLOYED, Release
from tagqa_assets.deployment.components import StoredComponent


class TargetNotFound(LookupError):
    """The configured target (device folder, thing group, core device) does not exist."""


class DeploymentError(RuntimeError):
    """The target refused or could not take the components before any device was changed."""


@dataclass(frozen=True)
class DeviceOutcome:
    """What one device reported: ``deployed``, ``failed`` or ``timed_out``, and why."""

    status: str
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"status": self.status, "detail": self.detail}


@dataclass(frozen=True)
class DeploymentOutcome:
    """Result of ``apply``: DEPLOYED only when every device confirmed the release."""

    status: str
    devices: dict[str, DeviceOutcome] = field(default_factory=dict)
    error: str = ""
    # True when a device itself refused the release (the model is then marked in the registry);
    # False for timeouts and unreachable devices, which say nothing about the model.
    device_refused: bool = False
    target_deployment_id: str = ""

    @property
    def succeeded(self) -> bool:
        return self.status == DEPLOYED

    def device_dicts(self) -> dict[str, dict[str, str]]:
        return {name: outcome.to_dict() for name, outcome in self.devices.items()}


class DeploymentTarget(ABC):
    """A set of devices that run one release at a time."""

    kind: str

    @property
    @abstractmethod
    def target_id(self) -> str:
        """Stable id of the target in the deployment history (``local``, ``greengrass:<thing group>``)."""

    @abstractmethod
    def check(self) -> list[str]:
        """The target's devices; raises TargetNotFound naming what is missing. Changes nothing."""

    @abstractmethod
    def publish(self, components: list[StoredComponent]) -> None:
        """Make the component versions available to the devices without changing what they run.

        Verifies every artifact against its recipe digest first; raises DeploymentError.
        """

    @abstractmethod
    def apply(self, release: Release | None) -> DeploymentOutcome:
        """Switch every device to ``release`` (None: remove tagqa's components) and wait for their verdict."""
