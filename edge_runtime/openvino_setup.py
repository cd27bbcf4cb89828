"""Which ONNX Runtime build serves OpenVINO on this device, settled once when the component installs.

The ``edge-openvino`` extra installs OpenVINO's plugin execution provider (onnxruntime-ep-openvino)
beside the standard onnxruntime wheel. The plugin offers Intel CPUs, GPUs and NPUs only; on any other
x86-64 CPU, ONNX Runtime's own OpenVINO build (onnxruntime-openvino) serves OpenVINO instead
(docs/edge_runtime.md, "Intel hardware only"). The two cannot sit side by side: onnxruntime-openvino
replaces onnxruntime, whose ``onnxruntime`` package files both wheels own.

The Greengrass component's Install step runs ``tagqa-edge setup-openvino`` after
``pip install "tagqa[<installExtras>]"`` in a freshly cleared venv. With ``openvinoBuild`` "auto" it
asks a child process whether the plugin offers a device (a process that registered the plugin
keeps it loaded, so the question is never asked in this one); where it does not, it uninstalls the
plugin and onnxruntime, installs onnxruntime-openvino from the component's wheels (offline) and asks
again. "plugin" keeps the plugin whatever it offers; "onnxruntime-openvino" swaps whatever the hardware.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

OPENVINO = "OpenVINOExecutionProvider"
PLUGIN_DISTRIBUTION = "onnxruntime-ep-openvino"
BUILT_IN_DISTRIBUTION = "onnxruntime-openvino"
BUILT_IN_WHEEL_GLOB = "onnxruntime_openvino-*.whl"


def bundles_built_in(platform: str | None) -> bool:
    """Whether the component's wheels for ``platform`` (a wheel platform tag; None: this machine) carry
    onnxruntime-openvino: PyPI has it for linux x86-64 only."""
    if platform:
        return "linux" in platform and platform.endswith("x86_64")
    return sys.platform.startswith("linux") and os.uname().machine == "x86_64"


class OpenVinoSetupError(RuntimeError):
    """The build asked for cannot be set up here; the message says what is missing and where."""


@dataclass(frozen=True)
class ProviderProbe:
    """What a fresh process of ``python`` reports for OpenVINO: available, or why not."""

    available: bool
    reason: str


def installed(distribution: str) -> bool:
    """Whether ``distribution`` is installed in this interpreter's environment (read from disk on every call)."""
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def probe_openvino() -> ProviderProbe:
    """Ask a new ``python -m edge_runtime providers`` process of this interpreter whether OpenVINO can build
    sessions there.

    Raises OpenVinoSetupError when that process fails or does not answer in JSON (a broken install)."""
    done = subprocess.run([sys.executable, "-m", "edge_runtime", "providers", OPENVINO], capture_output=True,
                          text=True, timeout=300)
    try:
        report = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        report = None
    if done.returncode != 0 or not isinstance(report, dict):
        raise OpenVinoSetupError(f"`{sys.executable} -m edge_runtime providers {OPENVINO}` failed "
                                 f"(exit {done.returncode}): {(done.stderr or done.stdout).strip()[-2000:]}")
    return ProviderProbe(OPENVINO in report.get("available", []), report.get("unavailable", {}).get(OPENVINO, ""))


def _pip(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise OpenVinoSetupError(f"`pip {' '.join(args)}` failed (exit {done.returncode}): "
                                 f"{(done.stderr or done.stdout).strip()[-2000:]}")


def built_in_wheel(wheels: Path) -> Path | None:
    """The onnxruntime-openvino wheel in ``wheels`` (the newest name when several), or None."""
    found = sorted(Path(wheels).glob(BUILT_IN_WHEEL_GLOB))
    return found[-1] if found else None


def swap_to_built_in(wheel: Path, wheels: Path) -> None:
    """Replace onnxruntime and the plugin with ``wheel`` (onnxruntime-openvino), its dependencies from ``wheels``,
    offline. Raises OpenVinoSetupError when pip fails."""
    # All three: an earlier swap's files would otherwise be half overwritten by a reinstalled onnxruntime.
    _pip("uninstall", "--yes", PLUGIN_DISTRIBUTION, "onnxruntime", BUILT_IN_DISTRIBUTION)
    _pip("install", "--no-index", "--find-links", str(wheels), str(wheel))


def setup_openvino(build: str, wheels: Path) -> str:
    """Settle the OpenVINO build of this interpreter's environment (the device's venv); what was done.

    Guarantees on return: nothing to do (no OpenVINO build installed), or the plugin kept (it offers a
    device, ``build`` is "plugin", or "auto" found no onnxruntime-openvino wheel to swap to: then the
    runtime refuses OpenVINO with the plugin's reason and serves on the next provider), or
    onnxruntime-openvino installed in place of onnxruntime and serving OpenVINO. Raises
    OpenVinoSetupError when "onnxruntime-openvino" was asked for and cannot be installed, or the
    installed build does not serve OpenVINO.
    """
    plugin, built_in = installed(PLUGIN_DISTRIBUTION), installed(BUILT_IN_DISTRIBUTION)
    if not plugin and not built_in:
        return "no OpenVINO build installed (installExtras without edge-openvino): nothing to do"
    if built_in and not plugin:
        probe = probe_openvino()
        if not probe.available:
            raise OpenVinoSetupError(f"{BUILT_IN_DISTRIBUTION} is installed but does not serve OpenVINO: {probe.reason}")
        return f"{BUILT_IN_DISTRIBUTION} serves OpenVINO (already in place)"
    wheel = built_in_wheel(wheels)
    if build != "onnxruntime-openvino":
        probe = probe_openvino()
        if probe.available:
            return f"the {PLUGIN_DISTRIBUTION} plugin serves OpenVINO here: kept"
        if build == "plugin":
            return f"openvinoBuild is 'plugin': kept the plugin, which does not serve OpenVINO here ({probe.reason})"
        if wheel is None:
            return (f"the plugin does not serve OpenVINO here and {wheels} holds no {BUILT_IN_WHEEL_GLOB} to swap to: "
                    f"kept the plugin; the runtime will refuse OpenVINO and serve on the next provider "
                    f"({probe.reason})")
    if wheel is None:
        raise OpenVinoSetupError(f"{wheels} holds no {BUILT_IN_WHEEL_GLOB} (the component's wheels were built without "
                                 "it: onnxruntime-openvino exists for linux x86-64 only; prepare_artifact.py "
                                 "--extras edge,edge-openvino bundles it there)")
    swap_to_built_in(wheel, wheels)
    probe = probe_openvino()
    if not probe.available:
        raise OpenVinoSetupError(f"installed {wheel.name} in place of onnxruntime, but it does not serve OpenVINO: "
                                 f"{probe.reason}")
    return f"installed {wheel.name} in place of onnxruntime and the plugin: it serves OpenVINO here"
