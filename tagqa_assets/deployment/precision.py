"""Which precision variant a deployment ships: the registry entry's, or fp32 where the devices' providers want it.

The registry decides a version's precision once, at registration, from the evaluation
(``max_int8_map_loss``; registry/gates.py). That choice is measured on a CPU, through the
edge pipeline. On an NVIDIA GPU it does not hold: ONNX Runtime's CUDA provider computes the
QDQ int8 graph differently from CPU (the device's provider check refuses CUDA for it, so the
model then serves on the CPU) and runs it at about half fp32's speed (docs/benchmarks.md,
"Issue 18 on an NVIDIA H200"). So with ``TAGQA_EDGE_PRECISION=auto`` (the default) a
deployment whose provider list starts with CUDA or TensorRT ships the entry's fp32 export
instead of its int8 variant. The fp32 variant of an int8 entry is its own model component
version (``N.1.0``; contracts/edge.py), so each component version still holds one fixed set
of bytes whatever the setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from edge_runtime.device_config import NVIDIA_PROVIDERS
from tagqa_assets.contracts.models import FP32, INT8, ModelVersion

AUTO, REGISTRY = "auto", "registry"
# auto: the registry's variant, fp32 for NVIDIA providers; registry: always the registry's; fp32: always fp32.
EDGE_PRECISIONS = (AUTO, REGISTRY, FP32)


@dataclass(frozen=True)
class ShippedVariant:
    """The variant a model component holds, why, and whether it is the one the registry entry ships."""

    precision: str
    reason: str
    registry_choice: bool

    @classmethod
    def of_registry(cls, entry: ModelVersion) -> ShippedVariant:
        """The variant ``entry`` ships by the registry's decision (model component ``N.0.0``)."""
        return cls(entry.precision, entry.precision_reason, registry_choice=True)


def shipped_variant(entry: ModelVersion, providers: Sequence[str], setting: str = AUTO) -> ShippedVariant:
    """The variant of ``entry`` to deploy to devices whose configuration lists ``providers`` (names, in order;
    empty: the recipe's CPU default), under ``setting`` (``TAGQA_EDGE_PRECISION``).

    Guarantees: an fp32 entry always ships fp32 (there is nothing else to ship); an int8 entry ships
    int8 unless ``setting`` is ``fp32``, or ``auto`` with CUDA or TensorRT first in ``providers``.
    Never ships int8 where the registry chose fp32: the policy's verdict on int8 stands.
    ValueError naming TAGQA_EDGE_PRECISION for a value outside ``EDGE_PRECISIONS``.
    """
    if setting not in EDGE_PRECISIONS:
        raise ValueError(f"TAGQA_EDGE_PRECISION={setting!r} is not one of {', '.join(EDGE_PRECISIONS)}")
    registry = ShippedVariant.of_registry(entry)
    if entry.precision != INT8 or setting == REGISTRY:
        return registry
    if setting == FP32:
        return ShippedVariant(FP32, "ships fp32, not the registry's int8: TAGQA_EDGE_PRECISION=fp32",
                              registry_choice=False)
    if providers and providers[0] in NVIDIA_PROVIDERS:
        return ShippedVariant(
            FP32, f"ships fp32, not the registry's int8: the deployment's providers start with {providers[0]}, on "
                  "which ONNX Runtime computes the QDQ int8 model differently from CPU and about half as fast as "
                  "fp32 (TAGQA_EDGE_PRECISION=registry ships int8)", registry_choice=False)
    return registry
