"""Artifact contracts shared between the edge runtime and the platform.

Defined once here (stdlib only, so the platform may import this module without pulling in
onnxruntime): the model card a model directory carries, the inference result published on
``tagqa/<device>/detections``, the health message, the operator feedback message and the
store layout of feedback captures. ``docs/edge_runtime.md`` ("Contracts") documents the
same shapes for people.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from edge_runtime.device_config import DeviceConfig, DeviceConfigError  # noqa: F401  (re-exported contract)

MODEL_CARD_SCHEMA = "tagqa.model_card/1"
RESULT_SCHEMA = "tagqa.detection/1"
FRAME_ERROR_SCHEMA = "tagqa.frame_error/1"
FRAME_ERROR_REASONS = ("corrupt", "too-large", "inference", "non-finite", "internal")
HEALTH_SCHEMA = "tagqa.health/1"
FEEDBACK_SIDECAR_SCHEMA = "tagqa.edge_feedback/1"
MODEL_CARD_FILE = "model_card.json"
VERIFICATION_FRAMES_FILE = "verification_frames.tar"
VERIFICATION_FRAMES_KEY = "verification_frames"

_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")


class ContractError(ValueError):
    """A document does not have the shape its contract requires; the message names where and why."""


def validate_identifier(value: object, what: str) -> str:
    """Return ``value`` if it is a non-empty id safe in MQTT topics and store keys, else raise ContractError."""
    if not isinstance(value, str) or not _ID_PATTERN.match(value):
        raise ContractError(
            f"{what} must be 1-128 characters of letters, digits, '_', '.', ':' or '-' "
            f"starting with a letter or digit, got {value!r}"
        )
    return value


@dataclass(frozen=True)
class ModelCard:
    """What the registry hands the device next to ``model.onnx`` (``model_card.json``)."""

    model_id: str
    model_version: str | None
    dataset_version: str
    class_names: tuple[str, ...]
    imgsz: int
    onnx_sha256: str
    opset: int
    onnx_file: str = "model.onnx"
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = MODEL_CARD_FILE) -> "ModelCard":
        """Validate ``data`` and build a card; unknown keys are kept in ``extra`` and written back."""
        if not isinstance(data, Mapping):
            raise ContractError(f"{source}: expected a JSON object, got {type(data).__name__}")
        if data.get("schema") != MODEL_CARD_SCHEMA:
            raise ContractError(f"{source}: 'schema' must be {MODEL_CARD_SCHEMA!r}, got {data.get('schema')!r}")

        def need(key: str, kind: type | tuple[type, ...]) -> Any:
            if key not in data:
                raise ContractError(f"{source}: missing key {key!r}")
            value = data[key]
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ContractError(f"{source}: {key!r} has the wrong type ({type(value).__name__})")
            return value

        version = data.get("model_version")
        if version is not None and (not isinstance(version, str) or not version):
            raise ContractError(f"{source}: 'model_version' must be a non-empty string or null")
        names = need("class_names", list)
        if not names or not all(isinstance(n, str) and n for n in names):
            raise ContractError(f"{source}: 'class_names' must be a non-empty list of names")
        imgsz = need("imgsz", int)
        if not 32 <= imgsz <= 4096 or imgsz % 32:
            raise ContractError(f"{source}: 'imgsz' must be a multiple of 32 in [32, 4096], got {imgsz}")
        sha = need("onnx_sha256", str).lower()
        if not _SHA256_PATTERN.match(sha):
            raise ContractError(f"{source}: 'onnx_sha256' must be 64 hex digits")
        onnx_file = data.get("onnx_file", "model.onnx")
        if not isinstance(onnx_file, str) or Path(onnx_file).name != onnx_file or not onnx_file.endswith(".onnx"):
            raise ContractError(f"{source}: 'onnx_file' must be a plain *.onnx file name, got {onnx_file!r}")
        known = {"schema", "model_id", "model_version", "dataset_version", "class_names", "imgsz",
                 "onnx_sha256", "opset", "onnx_file"}
        return cls(
            model_id=validate_identifier(need("model_id", str), f"{source}: 'model_id'"),
            model_version=version,
            dataset_version=need("dataset_version", str),
            class_names=tuple(names),
            imgsz=imgsz,
            onnx_sha256=sha,
            opset=need("opset", int),
            onnx_file=onnx_file,
            extra={k: v for k, v in data.items() if k not in known},
        )

    def to_dict(self) -> dict[str, Any]:
        """The card as written to ``model_card.json`` (round-trips through ``from_dict``)."""
        return {
            **dict(self.extra),
            "schema": MODEL_CARD_SCHEMA,
            "model_id": self.model_id,
            "model_version": self.model_version,
            "dataset_version": self.dataset_version,
            "class_names": list(self.class_names),
            "imgsz": self.imgsz,
            "onnx_file": self.onnx_file,
            "onnx_sha256": self.onnx_sha256,
            "opset": self.opset,
        }

    @classmethod
    def read(cls, model_dir: Path) -> "ModelCard":
        """Read and validate ``<model_dir>/model_card.json``."""
        path = Path(model_dir) / MODEL_CARD_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ContractError(f"{path}: model card not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ContractError(f"{path}: unreadable model card ({exc})") from None
        return cls.from_dict(data, source=str(path))


def pack_verification_frames(frames: Mapping[str, bytes]) -> tuple[bytes, dict[str, Any]]:
    """A model's verification frames as one uncompressed tar (sorted, fixed metadata: the same frames give
    the same bytes) and the model card entry describing it (``verification_frames``)."""
    if not frames:
        raise ContractError("verification frames: at least one frame is needed")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name in sorted(frames):
            if Path(name).name != name or not name:
                raise ContractError(f"verification frames: {name!r} is not a plain file name")
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(frames[name]), 0, 0o644
            archive.addfile(info, io.BytesIO(frames[name]))
    data = buffer.getvalue()
    return data, {"file": VERIFICATION_FRAMES_FILE, "sha256": hashlib.sha256(data).hexdigest(),
                  "frames": sorted(frames)}


def read_verification_frames(model_dir: Path, entry: Any) -> dict[str, bytes]:
    """The frames a model card's ``verification_frames`` entry names, checked against its sha256."""
    where = Path(model_dir) / MODEL_CARD_FILE
    if not isinstance(entry, Mapping) or not isinstance(entry.get("file"), str) or Path(entry["file"]).name != \
            entry["file"] or not _SHA256_PATTERN.match(str(entry.get("sha256", ""))):
        raise ContractError(f"{where}: 'verification_frames' must be {{file, sha256, frames}}, got {entry!r}")
    path = Path(model_dir) / entry["file"]
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ContractError(f"{path}: verification frames unreadable ({exc.strerror or exc})") from None
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise ContractError(f"{path}: sha256 does not match the model card's verification_frames entry")
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
            frames = {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}
    except tarfile.TarError as exc:
        raise ContractError(f"{path}: not a tar archive ({exc})") from None
    if not frames:
        raise ContractError(f"{path}: holds no frames")
    return frames


@dataclass(frozen=True)
class Detection:
    """One box in original-image pixels."""

    class_name: str
    class_id: int
    score: float
    box_xyxy: tuple[float, float, float, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "class": self.class_name,
            "class_id": self.class_id,
            "score": round(self.score, 6),
            "box_xyxy": [round(v, 2) for v in self.box_xyxy],
        }


@dataclass(frozen=True)
class DetectionResult:
    """The message on the detections topic: one per frame, published also when nothing is found."""

    device: str
    image_id: str
    timestamp: datetime
    model_id: str
    model_version: str | None
    dataset_version: str
    detections: tuple[Detection, ...]
    best_score: float
    latency_ms: float
    verdict: str
    image_width: int
    image_height: int
    source_name: str
    captured: str | None = None
    provider: str | None = None  # the ONNX Runtime execution provider that ran the model
    precision: str | None = None  # the model's precision variant (fp32, int8): the drift baseline to compare with

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": RESULT_SCHEMA,
            "device": self.device,
            "image_id": self.image_id,
            "timestamp": iso_utc(self.timestamp),
            "model_id": self.model_id,
            "model_version": self.model_version,
            "dataset_version": self.dataset_version,
            "detections": [d.to_dict() for d in self.detections],
            "best_score": round(self.best_score, 6),
            "latency_ms": round(self.latency_ms, 3),
            "verdict": self.verdict,
            "image_width": self.image_width,
            "image_height": self.image_height,
            "source_name": self.source_name,
            "captured": self.captured,
            "provider": self.provider,
            "precision": self.precision,
        }

    def to_json(self) -> bytes:
        return result_payload(self.to_dict())


def result_payload(record: dict[str, Any]) -> bytes:
    """The MQTT payload of a result or error record: compact UTF-8 JSON, strict (ValueError on NaN/inf)."""
    return json.dumps(record, separators=(",", ":"), allow_nan=False).encode("utf-8")


@dataclass(frozen=True)
class FrameError:
    """The record published on the detections topic for a frame that produced no result."""

    device: str
    image_id: str
    timestamp: datetime
    source_name: str
    reason: str  # one of FRAME_ERROR_REASONS
    detail: str
    model_id: str
    model_version: str | None
    kept: str | None  # "quarantine" when the input was kept on the device, else None
    provider: str | None = None  # the execution provider of the model the frame was bound to
    precision: str | None = None  # that model's precision variant (fp32, int8)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": FRAME_ERROR_SCHEMA,
            "device": self.device,
            "image_id": self.image_id,
            "timestamp": iso_utc(self.timestamp),
            "source_name": self.source_name,
            "reason": self.reason,
            "detail": self.detail[:500],
            "model_id": self.model_id,
            "model_version": self.model_version,
            "kept": self.kept,
            "provider": self.provider,
            "precision": self.precision,
        }


FRAME_ERROR_REQUIRED_KEYS = frozenset({"schema", "device", "image_id", "timestamp", "source_name", "reason", "detail"})


def validate_frame_error(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Check a received frame error record (platform side); return it unchanged or raise ContractError."""
    missing = FRAME_ERROR_REQUIRED_KEYS - set(data)
    if missing:
        raise ContractError(f"frame error record: missing keys {sorted(missing)}")
    if data["schema"] != FRAME_ERROR_SCHEMA:
        raise ContractError(f"frame error record: schema {data['schema']!r} is not {FRAME_ERROR_SCHEMA!r}")
    if data["reason"] not in FRAME_ERROR_REASONS:
        raise ContractError(f"frame error record: reason {data['reason']!r} is not one of {FRAME_ERROR_REASONS}")
    return data


RESULT_REQUIRED_KEYS = frozenset(
    {"schema", "device", "image_id", "timestamp", "model_version", "dataset_version", "detections",
     "latency_ms", "verdict", "image_width", "image_height", "captured"}
)


def validate_result(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Check a received result message (platform side); return it unchanged or raise ContractError."""
    missing = RESULT_REQUIRED_KEYS - set(data)
    if missing:
        raise ContractError(f"detection result: missing keys {sorted(missing)}")
    if data["schema"] != RESULT_SCHEMA:
        raise ContractError(f"detection result: schema {data['schema']!r} is not {RESULT_SCHEMA!r}")
    if data["verdict"] not in ("ok", "defect"):
        raise ContractError(f"detection result: verdict {data['verdict']!r} is not 'ok' or 'defect'")
    for i, det in enumerate(data["detections"]):
        box = det.get("box_xyxy")
        if not (isinstance(box, list) and len(box) == 4 and isinstance(det.get("score"), (int, float))):
            raise ContractError(f"detection result: detections[{i}] needs 'score' and a 4-number 'box_xyxy'")
    return data


def verdict_for(detections: tuple[Detection, ...] | list[Detection], decision_threshold: float) -> str:
    """'defect' when any detection scores at least ``decision_threshold``, else 'ok'."""
    return "defect" if any(d.score >= decision_threshold for d in detections) else "ok"


@dataclass(frozen=True)
class FeedbackRequest:
    """An operator's or PLC's flag that a result was wrong."""

    image_id: str
    reason: str


def parse_feedback(payload: bytes) -> FeedbackRequest:
    """Parse ``{"image_id": ..., "reason": ...}`` or a bare image id (optionally a JSON string)."""
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ContractError("feedback: payload is not UTF-8") from None
    data: Any = text
    if text.startswith(("{", '"')):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ContractError(f"feedback: invalid JSON ({exc})") from None
    if isinstance(data, str):
        return FeedbackRequest(validate_identifier(data, "feedback image id"), "operator-flag")
    if not isinstance(data, dict):
        raise ContractError("feedback: expected an object or an image id string")
    reason = data.get("reason") or "operator-flag"
    if not isinstance(reason, str) or len(reason) > 500:
        raise ContractError("feedback: 'reason' must be a string of at most 500 characters")
    return FeedbackRequest(validate_identifier(data.get("image_id"), "feedback 'image_id'"), reason)


def iso_utc(moment: datetime) -> str:
    """ISO-8601 in UTC with microseconds and a 'Z' suffix."""
    return moment.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def capture_name(captured_at: datetime, image_id: str, extension: str) -> str:
    """File name of a feedback capture; sorts in capture order within a day."""
    stamp = captured_at.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}-{image_id}.{extension}"


def feedback_image_key(device: str, captured_at: datetime, name: str) -> str:
    """Store key of a captured image: ``raw/edge-feedback/<device>/<YYYY>/<MM>/<DD>/<name>``."""
    return f"raw/edge-feedback/{device}/{captured_at.astimezone(timezone.utc):%Y/%m/%d}/{name}"


def feedback_sidecar_key(device: str, captured_at: datetime, name: str) -> str:
    """Store key of a capture's sidecar JSON; outside ``raw/`` so ingestion never takes it for an image."""
    return f"feedback/{device}/{captured_at.astimezone(timezone.utc):%Y/%m/%d}/{name}.json"


def resolve_topic(template: str, device: str) -> str:
    """Substitute ``{device}`` in a topic template."""
    return template.replace("{device}", device)
