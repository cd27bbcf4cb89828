"""The local target: device folders laid out like a Greengrass core, each watched by a ``tagqa-edge``.

``<devices root>/<device>/`` (``tagqa edge up`` creates it and writes ``device.json``)::

    packages/recipes/<name>@<version>.recipe.yaml
    packages/artifacts/<name>/<version>/<artifact>               verified against the recipe digest
    packages/artifacts-unarchived/<name>/<version>/<zip stem>/   ZIP artifacts, extracted
    config/effective-config.json    every tagqa component's version and configuration
    config/edge-runtime.json        the inference component's configuration: what tagqa-edge watches
    edge.pid                        the device process (tagqa edge up, then tagqa-edge in the same process)

``apply`` rewrites ``config/edge-runtime.json`` atomically with ``modelDir`` pointing at the
model component's artifact folder; the running runtime verifies and hot-swaps, and its
next health message says whether it now serves that folder or refused it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import yaml

from edge_runtime.contracts import resolve_topic, validate_identifier
from edge_runtime.device_config import DeviceConfig, DeviceConfigError
from tagqa_assets.contracts.edge import DEPLOYED, FAILED, TIMED_OUT, Release
from tagqa_assets.deployment.components import StoredComponent
from tagqa_assets.deployment.device_health import HealthWatcher
from tagqa_assets.deployment.recipes import recipe_yaml
from tagqa_assets.deployment.targets import DeploymentError, DeploymentOutcome, DeploymentTarget, DeviceOutcome, TargetNotFound
from tagqa_assets.storage import ObjectStore, write_atomically

DEVICE_FILE = "device.json"
PID_FILE = "edge.pid"
RUNTIME_CONFIG = "config/edge-runtime.json"
EFFECTIVE_CONFIG = "config/effective-config.json"


def process_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists (and is not a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return True


class LocalDeviceTarget(DeploymentTarget):
    """Device folders under ``devices_root``; devices confirm through their health messages on ``broker``."""

    kind = "local"

    def __init__(self, store: ObjectStore, *, devices_root: Path | str, device_ids: list[str], broker: str,
                 timeout_seconds: float = 60.0, device_configuration: dict[str, Any] | None = None) -> None:
        if not device_ids:
            raise ValueError("the local target needs at least one device id")
        self.store = store
        self.root = Path(devices_root).resolve()
        self.device_ids = [validate_identifier(d, "device id") for d in device_ids]
        self.broker = broker
        self.timeout_seconds = timeout_seconds
        self.device_configuration = dict(device_configuration or {})

    @property
    def target_id(self) -> str:
        return "local"

    def device_dir(self, device: str) -> Path:
        return self.root / device

    def check(self) -> list[str]:
        for device in self.device_ids:
            if not (self.device_dir(device) / DEVICE_FILE).is_file():
                raise TargetNotFound(f"local device {device!r} does not exist: no {self.device_dir(device) / DEVICE_FILE} "
                                     f"(start it with `tagqa edge up --device-id {device}`)")
        return list(self.device_ids)

    # ------------------------------------------------------------------ publish
    def publish(self, components: list[StoredComponent]) -> None:
        for device in self.device_ids:
            for component in components:
                self._install(self.device_dir(device) / "packages", component)

    def _install(self, packages: Path, component: StoredComponent) -> None:
        """Install like a nucleus: verified artifacts, extracted archives, then the recipe (last)."""
        ref = component.ref
        recipe_path = packages / "recipes" / f"{ref.name}@{ref.version}.recipe.yaml"
        if recipe_path.is_file():
            return
        staging = packages / f".staging-{uuid.uuid4().hex}"
        unzip = {a["URI"].rpartition("/")[2] for m in component.recipe["Manifests"] for a in m.get("Artifacts", [])
                 if a.get("Unarchive") == "ZIP"}
        try:
            for file_name, (key, sha256) in component.artifacts.items():
                data = self.store.get_bytes(key)
                actual = hashlib.sha256(data).hexdigest()
                if actual != sha256:
                    raise DeploymentError(f"{self.store.uri_for(key)}: sha256 {actual} does not match the recipe "
                                          f"digest {sha256} of {ref}; not installed")
                (staging / "artifacts").mkdir(parents=True, exist_ok=True)
                (staging / "artifacts" / file_name).write_bytes(data)
                if file_name in unzip:
                    _extract(staging / "artifacts" / file_name, staging / "unarchived" / Path(file_name).stem)
            for part, folder in (("artifacts", "artifacts"), ("unarchived", "artifacts-unarchived")):
                target = packages / folder / ref.name / ref.version
                if (staging / part).is_dir():
                    shutil.rmtree(target, ignore_errors=True)  # an install interrupted before its recipe
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(staging / part, target)
            write_atomically(recipe_path, recipe_yaml(component.recipe))
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    # -------------------------------------------------------------------- apply
    def _configuration(self, device: str, release: Release) -> dict[str, Any]:
        """Effective configuration of the inference component on ``device`` (recipe defaults + deployment merge)."""
        recipe_path = (self.device_dir(device) / "packages" / "recipes"
                       / f"{release.inference.name}@{release.inference.version}.recipe.yaml")
        try:
            recipe = yaml.safe_load(recipe_path.read_text(encoding="utf-8"))
        except OSError:
            raise DeploymentError(f"{recipe_path} is missing: {release.inference} is not installed on {device}") from None
        defaults = dict(recipe.get("ComponentConfiguration", {}).get("DefaultConfiguration") or {})
        defaults.pop("accessControl", None)
        model_dir = self.device_dir(device) / "packages" / "artifacts" / release.model.name / release.model.version
        config = {**defaults, **self.device_configuration, "modelDir": str(model_dir), "deviceId": device}
        try:
            DeviceConfig.from_mapping(config, source=f"configuration of {release.inference} on {device}")
        except DeviceConfigError as exc:
            raise DeploymentError(str(exc)) from None
        return config

    def _running(self, device: str) -> str | None:
        """None while the device process runs (or nothing says otherwise); else why it is not running."""
        pid_file = self.device_dir(device) / PID_FILE
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return None if process_alive(pid) else f"device process {pid} ({pid_file}) is not running"

    def apply(self, release: Release | None) -> DeploymentOutcome:
        configs = {d: (self._configuration(d, release) if release else None) for d in self.device_ids}
        dead = {d: why for d in self.device_ids if (why := self._running(d))}
        if dead:
            raise DeploymentError("; ".join(f"{d}: {why} (start it with `tagqa edge up --device-id {d}`)"
                                            for d, why in dead.items()))
        if release is None:
            for device in self.device_ids:
                (self.device_dir(device) / RUNTIME_CONFIG).unlink(missing_ok=True)
                write_atomically(self.device_dir(device) / EFFECTIVE_CONFIG, b'{"services": {}}\n')
            return DeploymentOutcome(DEPLOYED, {d: DeviceOutcome(DEPLOYED, "tagqa components removed") for d in configs})
        topics = {d: resolve_topic(DeviceConfig.from_mapping(c, source=d).health_topic, d) for d, c in configs.items()}
        with HealthWatcher(self.broker, topics) as watcher:
            for device, config in configs.items():
                self._write(device, release, config)
            deadline = time.monotonic() + self.timeout_seconds
            devices = {d: self._confirm(watcher, d, configs[d], deadline) for d in self.device_ids}
        failed = {d: o for d, o in devices.items() if o.status != DEPLOYED}
        if not failed:
            return DeploymentOutcome(DEPLOYED, devices)
        status = FAILED if any(o.status == FAILED for o in failed.values()) else TIMED_OUT
        error = "; ".join(f"{d}: {o.detail}" for d, o in failed.items())
        refused = any(o.status == FAILED and o.detail.startswith("refused") for o in failed.values())
        return DeploymentOutcome(status, devices, error, device_refused=refused)

    def _write(self, device: str, release: Release, config: dict[str, Any]) -> None:
        folder = self.device_dir(device)
        effective = {"services": {
            release.model.name: {"version": release.model.version, "configuration": {}},
            release.inference.name: {"version": release.inference.version, "configuration": config}},
            "release": release.to_dict()}
        write_atomically(folder / EFFECTIVE_CONFIG, json.dumps(effective, indent=2).encode())
        write_atomically(folder / RUNTIME_CONFIG, json.dumps(config, indent=2).encode())

    def _confirm(self, watcher: HealthWatcher, device: str, config: dict[str, Any], deadline: float) -> DeviceOutcome:
        model_dir, config_path = str(Path(config["modelDir"])), str(self.device_dir(device) / RUNTIME_CONFIG)

        def decide(health: dict[str, Any]) -> DeviceOutcome | None:
            model = health.get("model") or {}
            if str(Path(str(model.get("directory", "")))) == model_dir:
                return DeviceOutcome(DEPLOYED, f"serving {model.get('model_id')}@{model.get('model_version')} "
                                               f"(health {health.get('status')})")
            error = str(health.get("error") or "")
            if health.get("status") == "error" and (model_dir in error or config_path in error):
                return DeviceOutcome(FAILED, f"refused by the device: {error}")
            return None

        def gone() -> DeviceOutcome | None:
            why = self._running(device)
            return DeviceOutcome(FAILED, why) if why else None

        verdict = watcher.wait(device, decide, deadline, gone)
        return verdict or DeviceOutcome(TIMED_OUT, f"no health message from {device} confirming {model_dir} within "
                                                   f"{self.timeout_seconds:.0f} s (is `tagqa edge up` running and "
                                                   f"the broker {self.broker} the one it uses?)")


def _extract(archive: Path, target: Path) -> None:
    """Extract a ZIP, refusing members that would land outside ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as zipped:
        for member in zipped.namelist():
            if member.startswith("/") or ".." in Path(member).parts:
                raise DeploymentError(f"{archive.name}: unsafe member {member!r}; not installed")
        zipped.extractall(target)

