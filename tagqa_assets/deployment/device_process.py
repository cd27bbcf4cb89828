"""A local device: its folder, its registration and the ``tagqa-edge`` process that serves it.

``tagqa edge up`` registers the device (``device.json``, ``edge.pid``), waits for the first
deployment to write the runtime configuration, then replaces itself (``exec``, same PID)
with ``python -m edge_runtime run --config <device>/config/edge-runtime.json ...``: the
runtime re-reads that file on change and hot-swaps to the model it names.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

from edge_runtime.contracts import validate_identifier
from tagqa_assets.contracts.edge import utc_now
from tagqa_assets.deployment.local_target import DEVICE_FILE, PID_FILE, RUNTIME_CONFIG
from tagqa_assets.storage import write_atomically

log = logging.getLogger(__name__)
INCOMING = "incoming"


def device_folder(root: Path | str, device: str) -> Path:
    """The folder of local device ``device`` under ``root`` (absolute; not created)."""
    return Path(root).resolve() / validate_identifier(device, "device id")


def incoming_folder(root: Path | str, device: str) -> Path:
    """The folder the local device's camera source reads (``<device>/incoming``, what ``runtime_argv`` names), created."""
    folder = device_folder(root, device) / INCOMING
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def register_device(root: Path, device: str, *, broker: str) -> Path:
    """Create or refresh the device folder ``root/<device>`` and record this process as the device."""
    folder = device_folder(root, device)
    incoming_folder(root, device)
    known = folder / DEVICE_FILE
    created = json.loads(known.read_text())["created_at"] if known.is_file() else utc_now()
    write_atomically(known, json.dumps({"device_id": device, "broker": broker, "created_at": created,
                                        "started_at": utc_now()}, indent=2).encode())
    write_atomically(folder / PID_FILE, f"{os.getpid()}\n".encode())
    return folder


def runtime_argv(folder: Path, device: str, *, broker: str, source: str, store: str, s3_endpoint_url: str = "",
                 health_interval: float | None = None, log_level: str = "INFO", http: str = "") -> list[str]:
    """The ``python -m edge_runtime run`` command line of a local device (flags pin their keys)."""
    argv = [sys.executable, "-m", "edge_runtime", "--log-level", log_level, "run",
            "--config", str(folder / RUNTIME_CONFIG), "--transport", "mqtt", "--device-id", device,
            "--broker", broker, "--source", source, "--state-dir", str(folder / "work" / "state")]
    if store:
        argv += ["--store", store if store.startswith("s3://") else str(Path(store).resolve())]
    if s3_endpoint_url:
        argv += ["--s3-endpoint-url", s3_endpoint_url]
    if health_interval is not None:
        argv += ["--health-interval", str(health_interval)]
    if http:
        argv += ["--http", http]
    return argv


def wait_for_first_deployment(folder: Path, *, poll_seconds: float = 0.5) -> None:
    """Block until the device has a runtime configuration (a deployment wrote it)."""
    config = folder / RUNTIME_CONFIG
    if not config.is_file():
        log.info("device folder %s ready; waiting for the first deployment to write %s", folder, config)
    while not config.is_file():
        time.sleep(poll_seconds)


def exec_runtime(argv: list[str]) -> None:
    """Become the runtime (same PID, so ``edge.pid`` stays true); does not return."""
    log.info("starting %s", " ".join(argv[1:]))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)
