"""PyTorch checkpoint -> ONNX with a static input (the training imgsz), and the model card beside it.

The export itself runs in a child process (``ultralytics_tasks``); this side checks what
came out with ``onnx`` and hashes it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from edge_runtime.contracts import ModelCard
from tagqa_trainer.ultralytics_tasks import EXPORT_RECORD, ONNX_FILE, run_task


@dataclass(frozen=True)
class ExportResult:
    """An exported model: where it is, its hash, opset and static shapes."""

    onnx_path: Path
    sha256: str
    opset: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    seconds: float
    size_bytes: int


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_onnx(weights: Path, imgsz: int, out_dir: Path, *, settings_dir: Path, opset: int | None = None) -> ExportResult:
    """Export ``weights`` to ``out_dir/model.onnx`` with input ``1x3ximgszximgsz``.

    Guarantees the file loads with ``onnx``, its input shape is exactly static and the
    output is ``1 x (4 + classes) x anchors``; raises ``RuntimeError`` naming the file otherwise.
    """
    import onnx

    args = ["export", str(weights), str(imgsz), str(out_dir)] + (["--opset", str(opset)] if opset else [])
    run_task(args, settings_dir=settings_dir, cwd=out_dir)
    target = out_dir / ONNX_FILE
    record = json.loads((out_dir / EXPORT_RECORD).read_text())
    model = onnx.load(str(target))
    input_shape = tuple(d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim)
    output_shape = tuple(d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim)
    if input_shape != (1, 3, imgsz, imgsz):
        raise RuntimeError(f"{target}: input shape {input_shape} is not the static (1, 3, {imgsz}, {imgsz})")
    if len(output_shape) != 3 or 0 in output_shape:
        raise RuntimeError(f"{target}: output shape {output_shape} is not a static YOLO detection head")
    opsets = [entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")]
    return ExportResult(target, file_sha256(target), opsets[0] if opsets else 0, input_shape, output_shape,
                        record["seconds"], target.stat().st_size)


def model_card(model_id: str, dataset_version: str, class_names: tuple[str, ...], imgsz: int, export: ExportResult,
               *, started_from: dict | None = None) -> ModelCard:
    """The card the edge verifies ``model.onnx`` against (``model_version`` is set at deployment);
    ``started_from`` (the training config's record of a warm start's champion) is kept in it."""
    return ModelCard(
        model_id=model_id,
        model_version=None,
        dataset_version=dataset_version,
        class_names=tuple(class_names),
        imgsz=imgsz,
        onnx_sha256=export.sha256,
        opset=export.opset,
        onnx_file=ONNX_FILE,
        extra={"input_shape": list(export.input_shape), "output_shape": list(export.output_shape),
               **({"started_from": started_from} if started_from else {})},
    )
