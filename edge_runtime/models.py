"""Loading a model directory with verification, and the slot that makes swaps atomic.

A model directory holds ``model.onnx`` and ``model_card.json`` (edge_runtime.contracts.ModelCard).
``load_verified_model`` accepts it only when the ONNX bytes hash to the card's
``onnx_sha256``, ONNX Runtime loads exactly those bytes, the input is 1x3ximgszximgsz,
the output is a YOLO detection head for the card's classes, and inference is finite and
well-shaped on a blank frame and on every *verification frame* the card names
(``verification_frames``: a handful of the model's validation images shipped beside it, as
the platform's model component does). A model that is finite on grey but NaN on real frames
is refused. A directory without verification frames is verified on the blank frame only,
with a warning.

The model itself is judged on CPU. The session then runs on the first execution provider of
the configured list that is available, builds, and gives the CPU's output on those same
frames (edge_runtime.providers); the ones before it are refused with a logged reason, kept on
the model (``provider_refusals``) for the health message.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import onnxruntime as ort

from edge_runtime.contracts import (MODEL_CARD_FILE, VERIFICATION_FRAMES_KEY, ContractError, ModelCard,
                                    read_verification_frames)
from edge_runtime.device_config import CPU_PROVIDER, ProviderSpec
from edge_runtime.imaging import ImageDecodeError, decode_image
from edge_runtime.letterbox import PAD_VALUE, letterbox
from edge_runtime.providers import (NOT_ENABLED_HINTS, OnnxRuntimeSessions, ProviderCheck, SessionFactory, check_hint,
                                    compare_outputs, with_concurrency_defaults)
from edge_runtime.yolo_decode import decode_predictions


log = logging.getLogger(__name__)

FP32 = "fp32"
_INPUT_PRECISIONS = {"tensor(float)": FP32, "tensor(float16)": "fp16", "tensor(uint8)": "uint8", "tensor(int8)": "int8"}


class ModelRejected(Exception):
    """A model directory failed verification; the message names the directory and the reason."""


@dataclass(frozen=True)
class LoadedModel:
    """A verified model: one ONNX Runtime session plus what the card says about it."""

    directory: Path
    card: ModelCard
    session: ort.InferenceSession
    input_name: str
    input_height: int
    input_width: int
    loaded_at: float
    provider: str = CPU_PROVIDER  # the execution provider the session runs on
    provider_refusals: tuple[tuple[str, str], ...] = ()  # (provider, why) for each one tried before it
    precision: str = FP32  # the variant: the card's ``precision``, else from the input type (model_precision)

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        """Run the session on a 1x3xHxW float32 tensor and return the raw detection output."""
        return self.session.run(None, {self.input_name: tensor})[0]

    @property
    def label(self) -> str:
        """A short name for logs: model id and version."""
        return f"{self.card.model_id}@{self.card.model_version or 'unversioned'}"


def model_precision(card: ModelCard, input_type: str) -> str:
    """The model's precision variant: the card's ``precision`` (``fp32``/``int8``; model components of registry
    entries with variants carry it), else ``fp32`` for a float input (cards from before variants), ``fp16`` for
    a float16 one, else ONNX's input type as it is."""
    named = card.extra.get("precision")
    if isinstance(named, str) and named:
        return named
    return _INPUT_PRECISIONS.get(input_type, input_type)


def session_options(intra_op_threads: int, concurrent_runs: int = 1) -> ort.SessionOptions:
    """Session options for the device: ``intra_op_threads`` 0 lets ONNX Runtime decide."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if intra_op_threads:
        options.intra_op_num_threads = intra_op_threads
    # A memory pattern is one pre-planned block per run; with runs in parallel every run holds its
    # own (docs/benchmarks.md), while plain arena allocation shares freed memory.
    options.enable_mem_pattern = concurrent_runs <= 1
    # Spinning threads would steal the core the decode work runs on.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def model_dir_signature(model_dir: Path) -> tuple:
    """Cheap change detector: (size, mtime) of the card and every ONNX file in the directory."""
    entries = []
    try:
        for entry in sorted(os.scandir(model_dir), key=lambda e: e.name):
            if entry.name == MODEL_CARD_FILE or entry.name.endswith(".onnx"):
                stat = entry.stat()
                entries.append((entry.name, stat.st_size, stat.st_mtime_ns, stat.st_ino))
    except OSError as exc:
        return ("unreadable", str(exc))
    return tuple(entries)


def load_verified_model(model_dir: Path | str, *, intra_op_threads: int = 0, concurrent_runs: int = 1,
                        providers: Sequence[ProviderSpec] = (ProviderSpec(CPU_PROVIDER),),
                        check: ProviderCheck = ProviderCheck(), sessions: SessionFactory | None = None) -> LoadedModel:
    """Load ``model_dir`` on the first provider of ``providers`` that passes, or raise ModelRejected saying why.

    The model is verified on a CPU session (a model fault is a ModelRejected whatever the
    providers); another provider is accepted when its session's output on the blank frame and
    the verification frames passes ``compare_outputs`` against CPU's. When no provider of the
    list passes, ModelRejected lists every refusal.
    """
    model_dir = Path(model_dir)
    try:
        card = ModelCard.read(model_dir)
    except ContractError as exc:
        raise ModelRejected(str(exc)) from None
    onnx_path = model_dir / card.onnx_file
    try:
        data = onnx_path.read_bytes()
    except OSError as exc:
        raise ModelRejected(f"{onnx_path}: cannot read ({exc.strerror or exc})") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != card.onnx_sha256:
        raise ModelRejected(f"{onnx_path}: sha256 {digest} does not match model card onnx_sha256 {card.onnx_sha256}")
    sessions = sessions or OnnxRuntimeSessions()
    cpu_first = bool(providers) and providers[0].name == CPU_PROVIDER
    try:
        # Loading the verified bytes (not the path) means a file swapped after hashing cannot slip in.
        reference = sessions.create(data, providers[0] if cpu_first else ProviderSpec(CPU_PROVIDER),
                                    session_options(intra_op_threads, concurrent_runs))
    except Exception as exc:  # ORT raises several unrelated types for bad graphs
        raise ModelRejected(f"{onnx_path}: ONNX Runtime cannot load it ({type(exc).__name__}: {exc})") from None
    model = _check_signature(model_dir, card, reference)
    frames = _check_frames(model)
    expected = [_check_inference(model, tensor, what) for what, tensor in frames]
    if cpu_first:
        return model
    # The CPU session has given its reference outputs: free it before another provider's session is built (peak
    # memory is then one session, not two), and build it again only if the list falls back to CPU.
    model, reference = dataclasses.replace(model, session=None), None
    refusals: list[tuple[str, str]] = []
    available: frozenset[str] | None = None
    for spec in providers:
        if spec.name == CPU_PROVIDER:
            try:
                session = sessions.create(data, spec, session_options(intra_op_threads, concurrent_runs))
            except Exception as exc:
                raise ModelRejected(f"{onnx_path}: ONNX Runtime cannot load it again on CPU "
                                    f"({type(exc).__name__}: {exc})") from None
            return dataclasses.replace(model, session=session, provider_refusals=tuple(refusals))
        if available is None:
            available = sessions.available({s.name for s in providers})
        if spec.name not in available:
            outcome: LoadedModel | str = _unavailable(sessions, spec.name)
        else:
            outcome = _try_provider(model, data, with_concurrency_defaults(spec, concurrent_runs), sessions,
                                    session_options(intra_op_threads, concurrent_runs), frames, expected, check)
        if isinstance(outcome, LoadedModel):
            log.info("%s runs on %s (output matches CPU's on %d check frames)", model.label, spec.name, len(frames))
            return dataclasses.replace(outcome, provider_refusals=tuple(refusals))
        refusals.append((spec.name, outcome))
        log.warning("%s: execution provider %s refused: %s", model_dir, spec.name, outcome)
    raise ModelRejected(f"{onnx_path}: no execution provider of {[s.name for s in providers]} passed: "
                        + "; ".join(f"{name}: {why}" for name, why in refusals))


def _unavailable(sessions: SessionFactory, name: str) -> str:
    explain = getattr(sessions, "unavailable_reason", None)
    return explain(name) if explain else "not available in this ONNX Runtime"


def _try_provider(model: LoadedModel, data: bytes, spec: ProviderSpec, sessions: SessionFactory,
                  options: ort.SessionOptions, frames: list[tuple[str, np.ndarray]], expected: list[np.ndarray],
                  check: ProviderCheck) -> LoadedModel | str:
    """The model on ``spec``'s session if it gives CPU's ``expected`` outputs on ``frames``, else why not."""
    try:
        session = sessions.create(data, spec, options)
    except Exception as exc:
        return f"cannot build a session ({type(exc).__name__}: {str(exc)[:300]})"
    enabled = session.get_providers()
    if not enabled or enabled[0] != spec.name:
        hint = NOT_ENABLED_HINTS.get(spec.name)
        return f"ONNX Runtime did not enable it (the session runs on {enabled})" + (f"; {hint}" if hint else "")
    candidate = dataclasses.replace(model, session=session, provider=spec.name, loaded_at=time.time())
    for (what, tensor), reference in zip(frames, expected):
        try:
            output = candidate.infer(tensor)
        except Exception as exc:
            return f"inference on {what} failed ({type(exc).__name__}: {str(exc)[:300]})"
        why = compare_outputs(reference, output, check)
        if why:
            hint = check_hint(spec, model.card.extra)
            return f"on {what}: {why}" + (f" ({hint})" if hint else "")
    return candidate


def _check_signature(model_dir: Path, card: ModelCard, session: ort.InferenceSession) -> LoadedModel:
    where = model_dir / card.onnx_file
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ModelRejected(f"{where}: expected one input, found {len(inputs)}")
    shape = inputs[0].shape
    if len(shape) != 4 or shape[1] != 3:
        raise ModelRejected(f"{where}: input shape {shape} is not N x 3 x H x W")
    height = shape[2] if isinstance(shape[2], int) else card.imgsz
    width = shape[3] if isinstance(shape[3], int) else card.imgsz
    if (height, width) != (card.imgsz, card.imgsz):
        raise ModelRejected(f"{where}: input is {height}x{width} but the model card says imgsz {card.imgsz}")
    rows = session.get_outputs()[0].shape
    expected_rows = 4 + len(card.class_names)
    if len(rows) != 3 or (isinstance(rows[1], int) and rows[1] != expected_rows):
        raise ModelRejected(f"{where}: output shape {rows} is not 1 x {expected_rows} x anchors "
                            f"(4 box rows + {len(card.class_names)} classes from the model card)")
    return LoadedModel(model_dir, card, session, inputs[0].name, height, width, time.time(),
                       precision=model_precision(card, inputs[0].type))


def _check_frames(model: LoadedModel) -> list[tuple[str, np.ndarray]]:
    """Input tensors of the blank frame and of every verification frame the card names (checked, decoded)."""
    blank = np.full((model.input_height, model.input_width, 3), PAD_VALUE, dtype=np.uint8)
    frames = [("a blank frame", blank)]
    entry = model.card.extra.get(VERIFICATION_FRAMES_KEY)
    if entry is None:
        log.warning("%s ships no verification frames; verified on a blank frame only", model.directory)
    else:
        try:
            files = read_verification_frames(model.directory, entry)
        except ContractError as exc:
            raise ModelRejected(str(exc)) from None
        for name, data in sorted(files.items()):
            try:
                frames.append((f"verification frame {name}", decode_image(data)))
            except ImageDecodeError as exc:
                raise ModelRejected(f"{model.directory}: verification frame {name} does not decode ({exc})") from None
    return [(what, letterbox(pixels, model.input_height, model.input_width)[0]) for what, pixels in frames]


def _check_inference(model: LoadedModel, tensor: np.ndarray, what: str) -> np.ndarray:
    """The model's output on ``tensor``; ModelRejected unless finite and shaped like the card's detection head."""
    where = model.directory / model.card.onnx_file
    try:
        output = model.infer(tensor)
    except Exception as exc:  # an ORT kernel error on a well-formed input is a broken model
        raise ModelRejected(f"{where}: inference on {what} failed ({type(exc).__name__}: {exc})") from None
    expected_rows = 4 + len(model.card.class_names)
    if output.ndim != 3 or output.shape[:2] != (1, expected_rows) or output.shape[2] < 1:
        raise ModelRejected(f"{where}: inference on {what} returned shape {output.shape}, "
                            f"expected (1, {expected_rows}, N)")
    if not np.isfinite(output).all():
        raise ModelRejected(f"{where}: inference on {what} returned NaN or infinite values")
    decode_predictions(output, 0.25, 0.7, 300)
    return output


class ModelSlot:
    """Holds the serving model; readers take ``current`` once per frame, so a swap lands between frames."""

    def __init__(self, model: LoadedModel) -> None:
        self._model = model
        self._lock = threading.Lock()

    @property
    def current(self) -> LoadedModel:
        return self._model

    def swap(self, model: LoadedModel) -> LoadedModel:
        """Install ``model`` and return the one it replaces (frames already running finish on that one)."""
        with self._lock:
            previous, self._model = self._model, model
        return previous
