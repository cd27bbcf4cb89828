"""PyTorch checkpoint -> ONNX with a static input (the training imgsz), and the model card beside it."""

from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from edge_runtime.contracts import ModelCard

ONNX_FILE = "model.onnx"


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


def export_onnx(weights: Path, imgsz: int, out_dir: Path, *, opset: int | None = None) -> ExportResult:
    """Export ``weights`` to ``out_dir/model.onnx`` with input ``1x3ximgszximgsz``.

    Guarantees the file loads with ``onnx``, its input shape is exactly static and the
    output is ``1 x (4 + classes) x anchors``; raises ``RuntimeError`` naming the file otherwise.
    Ultralytics must already be isolated (``offline.isolate_in_process``).
    """
    import onnx
    from ultralytics import YOLO

    out_dir.mkdir(parents=True, exist_ok=True)
    # Ultralytics writes the .onnx beside the checkpoint: export a private copy.
    source = shutil.copyfile(weights, out_dir / "export-source.pt")
    started = time.monotonic()
    exported = YOLO(str(source)).export(
        format="onnx", imgsz=imgsz, dynamic=False, simplify=True, batch=1, device="cpu", half=False,
        opset=opset, verbose=False,
    )
    seconds = time.monotonic() - started
    target = out_dir / ONNX_FILE
    shutil.move(str(exported), target)
    Path(source).unlink()
    model = onnx.load(str(target))
    input_shape = tuple(d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim)
    output_shape = tuple(d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim)
    if input_shape != (1, 3, imgsz, imgsz):
        raise RuntimeError(f"{target}: input shape {input_shape} is not the static (1, 3, {imgsz}, {imgsz})")
    if len(output_shape) != 3 or 0 in output_shape:
        raise RuntimeError(f"{target}: output shape {output_shape} is not a static YOLO detection head")
    opsets = [entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")]
    return ExportResult(target, file_sha256(target), opsets[0] if opsets else 0, input_shape, output_shape,
                        round(seconds, 2), target.stat().st_size)


def model_card(model_id: str, dataset_version: str, class_names: tuple[str, ...], imgsz: int, export: ExportResult) -> ModelCard:
    """The card the edge verifies ``model.onnx`` against (``model_version`` is set at deployment)."""
    return ModelCard(
        model_id=model_id,
        model_version=None,
        dataset_version=dataset_version,
        class_names=tuple(class_names),
        imgsz=imgsz,
        onnx_sha256=export.sha256,
        opset=export.opset,
        onnx_file=ONNX_FILE,
        extra={"input_shape": list(export.input_shape), "output_shape": list(export.output_shape)},
    )
