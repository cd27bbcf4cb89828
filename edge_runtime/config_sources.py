"""Where the device configuration comes from: a local JSON file, Greengrass, or nothing (flags only).

Every source offers ``read()`` (the raw JSON object) and ``poll_changed()`` (True once after
each change); the runtime re-reads and validates on change and keeps the old configuration
when the new one is invalid.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Callable

from edge_runtime.device_config import DeviceConfigError

log = logging.getLogger(__name__)

GREENGRASS_SOCKET_ENV = "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"


class NoConfigSource:
    """Command-line flags only."""

    description = "command line"

    def read(self) -> dict[str, Any]:
        return {}

    def poll_changed(self) -> bool:
        return False

    def close(self) -> None:
        pass


class FileConfigSource:
    """A JSON file, re-read when its size, mtime or inode changes (atomic rewrites via rename included)."""

    def __init__(self, path: Path, defaults: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.description = str(self.path)
        self._defaults = defaults or {}
        self._signature = self._stat()

    def _stat(self) -> tuple | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return (stat.st_size, stat.st_mtime_ns, stat.st_ino)

    def read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DeviceConfigError(f"{self.path}: config file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DeviceConfigError(f"{self.path}: unreadable config ({exc})") from None
        if not isinstance(data, dict):
            raise DeviceConfigError(f"{self.path}: expected a JSON object")
        return {**self._defaults, **data}

    def poll_changed(self) -> bool:
        signature = self._stat()
        if signature != self._signature:
            self._signature = signature
            return True
        return False

    def close(self) -> None:
        pass


class GreengrassConfigSource:
    """The component's configuration via IPC (GetConfiguration + SubscribeToConfigurationUpdate).

    It also answers the nucleus' configuration validation (SubscribeToValidateConfigurationUpdates):
    a deployment whose configuration the runtime would refuse (invalid keys, a model directory
    that fails verification) is reported REJECTED, so the deployment fails and can roll back
    instead of succeeding while the device keeps serving the old model.
    """

    description = "greengrass component configuration"

    def __init__(self, ipc_client: Any, defaults: dict[str, Any] | None = None) -> None:
        self._ipc = ipc_client
        self._defaults = defaults or {}
        self._changed = threading.Event()
        self._validator: Callable[[dict[str, Any]], str | None] | None = None
        _, self._operation = ipc_client.subscribe_to_configuration_update(
            key_path=[], on_stream_event=self._on_update, on_stream_error=self._on_error)
        _, self._validation = ipc_client.subscribe_to_validate_configuration_updates(
            on_stream_event=self._on_validate, on_stream_error=self._on_error)

    def set_validator(self, validator: Callable[[dict[str, Any]], str | None]) -> None:
        """``validator(proposed configuration)`` returns None to accept or the reason to reject."""
        self._validator = validator

    def _on_validate(self, event: Any) -> None:
        from awsiot.greengrasscoreipc.model import ConfigurationValidityReport, ConfigurationValidityStatus

        proposal = event.validate_configuration_update_event
        proposed = {**self._defaults, **(proposal.configuration or {})}
        reason = self._validator(proposed) if self._validator else None
        if reason is None:
            status, message = ConfigurationValidityStatus.ACCEPTED, "accepted"
        else:
            status, message = ConfigurationValidityStatus.REJECTED, reason
            log.error("rejected the configuration of deployment %s: %s", proposal.deployment_id, reason)
        self._ipc.send_configuration_validity_report(configuration_validity_report=ConfigurationValidityReport(
            status=status, deployment_id=proposal.deployment_id, message=message[:1000]))

    def _on_update(self, event: Any) -> None:
        log.info("configuration update from Greengrass: %s", getattr(event.configuration_update_event, "key_path", None))
        self._changed.set()

    def _on_error(self, error: Exception) -> bool:
        log.error("configuration update stream: %s", error)
        return False  # keep the stream open

    def read(self) -> dict[str, Any]:
        response = self._ipc.get_configuration(key_path=[])
        return {**self._defaults, **(response.value or {})}

    def poll_changed(self) -> bool:
        if self._changed.is_set():
            self._changed.clear()
            return True
        return False

    def close(self) -> None:
        self._operation.close()
        self._validation.close()


def greengrass_available() -> bool:
    """True when running as a Greengrass component (the nucleus socket and service UID are in the env)."""
    return bool(os.environ.get(GREENGRASS_SOCKET_ENV) and os.environ.get("SVCUID"))


def connect_greengrass_ipc() -> Any:
    """Open the IPC connection to the nucleus (GreengrassCoreIPCClientV2)."""
    from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

    return GreengrassCoreIPCClientV2()
