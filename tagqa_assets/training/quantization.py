"""The int8 variant of an exported model: static quantization calibrated on training images.

ONNX Runtime's static quantization (``onnxruntime.quantization.quantize_static``) in QDQ
format: int8 per-channel weights, uint8 activations, MinMax calibration, convolutions only.
The detection head's concatenation and box decoding stay float: box coordinates (pixels) and
class scores (0-1) share that tensor, and one uint8 scale for both would blur the scores.
Calibration frames go through the edge runtime's own decode and letterbox, so the activation
ranges are those a device feeds the model. The same images give the same file.

Used by ``model_evaluation`` (every new model gets an int8 variant, docs/training.md) and by
``benchmarks/edge_inference.py int8``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edge_runtime.contracts import MODEL_CARD_FILE, VERIFICATION_FRAMES_KEY, ContractError, ModelCard
from edge_runtime.imaging import ImageDecodeError, decode_image
from edge_runtime.letterbox import letterbox

QUANTIZATION_METHOD = "onnxruntime static QDQ: int8 per-channel weights, uint8 activations, Conv only, MinMax"
DEFAULT_CALIBRATION_IMAGES = 64  # what the int8 study used (docs/benchmarks.md); more changed nothing measurable


class QuantizationFailed(RuntimeError):
    """The int8 variant could not be built; the message names the model and the reason."""


@dataclass(frozen=True)
class CalibrationSet:
    """The images an int8 variant was calibrated on, as its model card names them."""

    dataset_version: str
    split: str
    images: int
    names_sha256: str  # sha256 of the sorted image file names, one per line: which images exactly

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict."""
        return dataclasses.asdict(self)


def calibration_images(folder: Path, count: int) -> list[Path]:
    """Up to ``count`` image files of ``folder``, spread evenly over its sorted names (the same folder gives the
    same choice); raises ``QuantizationFailed`` naming the folder when it holds none."""
    paths = sorted(p for p in Path(folder).glob("*") if p.is_file())
    if not paths:
        raise QuantizationFailed(f"{folder}: no calibration images")
    if len(paths) <= count:
        return paths
    step = len(paths) / count
    return [paths[int(index * step)] for index in range(count)]


def calibration_set(dataset_version: str, split: str, images: list[Path]) -> CalibrationSet:
    """The card entry describing ``images`` of ``split`` of ``dataset_version``."""
    names = "\n".join(sorted(p.name for p in images)).encode()
    return CalibrationSet(dataset_version, split, len(images), hashlib.sha256(names).hexdigest())


def quantize_model_dir(source: Path, out: Path, images: list[Path], calibration: CalibrationSet | None = None) -> Path:
    """Write the int8 variant of the model directory ``source`` into ``out`` and return ``out``.

    ``out`` gets ``model.onnx`` (int8) and ``model_card.json``: the source card with the int8
    file's digest, ``precision: int8``, ``quantization`` (the method) and ``calibration``
    (``calibration`` or, without one, the image count), plus the verification frames file the
    card names, when ``source`` has it. Raises ``QuantizationFailed`` naming the model when its
    card is invalid, a calibration image does not decode, or ONNX Runtime cannot quantize it.
    """
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source, out = Path(source), Path(out)
    try:
        card = ModelCard.read(source)
    except ContractError as exc:
        raise QuantizationFailed(str(exc)) from None
    if not images:
        raise QuantizationFailed(f"{source}: no calibration images given")
    size = card.imgsz

    class Frames(CalibrationDataReader):
        """Letterboxed calibration frames, one at a time (never all in memory)."""

        def __init__(self, input_name: str) -> None:
            self._paths = iter(images)
            self._input = input_name

        def get_next(self) -> dict | None:
            path = next(self._paths, None)
            if path is None:
                return None
            try:
                pixels = decode_image(path.read_bytes())
            except (OSError, ImageDecodeError) as exc:
                raise QuantizationFailed(f"{path}: calibration image cannot be read ({exc})") from None
            return {self._input: letterbox(pixels, size, size)[0]}

    out.mkdir(parents=True, exist_ok=True)
    target = out / card.onnx_file
    with tempfile.TemporaryDirectory(prefix="tagqa-int8-") as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        try:
            quant_pre_process(str(source / card.onnx_file), str(prepared))
            input_name = _input_name(prepared)
            quantize_static(str(prepared), str(target), Frames(input_name), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            op_types_to_quantize=["Conv"], calibrate_method=CalibrationMethod.MinMax)
        except QuantizationFailed:
            raise
        except Exception as exc:  # ONNX / ONNX Runtime raise many unrelated types for graphs they cannot handle
            raise QuantizationFailed(f"{source / card.onnx_file}: int8 quantization failed "
                                     f"({type(exc).__name__}: {exc})") from None
    entry = calibration.to_dict() if calibration else {"images": len(images)}
    card = dataclasses.replace(card, onnx_sha256=hashlib.sha256(target.read_bytes()).hexdigest(), extra={
        **card.extra, "precision": "int8", "quantization": QUANTIZATION_METHOD, "calibration": entry})
    (out / MODEL_CARD_FILE).write_text(json.dumps(card.to_dict(), indent=2, sort_keys=True))
    frames = card.extra.get(VERIFICATION_FRAMES_KEY)
    if isinstance(frames, dict) and isinstance(frames.get("file"), str) and (source / frames["file"]).is_file():
        shutil.copyfile(source / frames["file"], out / Path(frames["file"]).name)
    return out


def _input_name(model_path: Path) -> str:
    import onnx

    return onnx.load(str(model_path), load_external_data=False).graph.input[0].name
