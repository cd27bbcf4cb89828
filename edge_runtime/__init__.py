"""tagqa edge runtime: YOLO inference on the shop floor with ONNX Runtime only.

Importing this package is cheap (stdlib only); names below load their module on first use,
so the platform can ``from edge_runtime.contracts import ModelCard`` without pulling in
onnxruntime. Run it with ``tagqa-edge run`` or ``python -m edge_runtime run``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ModelCard": "edge_runtime.contracts",
    "DetectionResult": "edge_runtime.contracts",
    "Detection": "edge_runtime.contracts",
    "DeviceConfig": "edge_runtime.device_config",
    "ModelRejected": "edge_runtime.models",
    "load_verified_model": "edge_runtime.models",
    "Detector": "edge_runtime.detector",
    "Thresholds": "edge_runtime.detector",
    "EdgeRuntime": "edge_runtime.service",
    "Publisher": "edge_runtime.publishers",
    "MqttPublisher": "edge_runtime.publishers",
    "GreengrassIpcPublisher": "edge_runtime.publishers",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'edge_runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
