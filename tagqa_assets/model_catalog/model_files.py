"""Reading and writing model directories ``models/<model_id>/`` (layout: contracts/models.py).

Writers add files in any order and ``commit_model`` writes ``model.json`` last; every reader
here refuses a directory without it, so a failed, killed or gate-blocked run never hands
out half a model.
"""

from __future__ import annotations

import json
import subprocess
from functools import lru_cache
from pathlib import Path

from tagqa_assets.contracts.keys import model_prefix
from tagqa_assets.contracts.models import (
    COMMIT_FILE,
    INT8,
    INT8_MODEL_CARD_FILE,
    INT8_ONNX_FILE,
    FP32,
    METRICS_FILE,
    MODEL_CARD_FILE,
    ONNX_FILE,
    ModelRecord,
    model_key,
)
from tagqa_assets.storage import ObjectNotFound, ObjectStore


def model_dir_uri(store: ObjectStore, model_id: str) -> str:
    """Address of a model directory (local path or ``s3://`` URI, no trailing slash)."""
    return store.uri_for(model_prefix(model_id).rstrip("/"))


def is_committed(store: ObjectStore, model_id: str) -> bool:
    """Whether ``models/<model_id>/model.json`` exists."""
    return store.exists(model_key(model_id, COMMIT_FILE))


def commit_model(store: ObjectStore, record: ModelRecord, metrics_document: dict) -> None:
    """Write ``metrics.json`` then the commit record ``model.json`` (last)."""
    store.put_json(model_key(record.model_id, METRICS_FILE), metrics_document)
    store.put_json(model_key(record.model_id, COMMIT_FILE), record.to_dict())


def read_model_record(store: ObjectStore, model_id: str) -> ModelRecord:
    """The commit record; raises ``ValueError`` naming the key when the model is not committed."""
    key = model_key(model_id, COMMIT_FILE)
    try:
        return ModelRecord.from_dict(store.get_json(key))
    except ObjectNotFound:
        raise ValueError(f"model {model_id!r} is not committed (no {store.uri_for(key)}); it is incomplete or failed") from None


def variant_files(precision: str) -> tuple[str, str]:
    """``(onnx, model card)`` file names of a model's ``precision`` variant in its directory."""
    if precision not in (FP32, INT8):
        raise ValueError(f"no model variant for precision {precision!r}")
    return (ONNX_FILE, MODEL_CARD_FILE) if precision == FP32 else (INT8_ONNX_FILE, INT8_MODEL_CARD_FILE)


def stage_onnx(store: ObjectStore, model_id: str, directory: Path, *, precision: str = FP32) -> Path:
    """Download ``model.onnx`` + ``model_card.json`` of a model's ``precision`` variant into ``directory`` (for
    ``OnnxModel``), and the verification frames file its card names, so the edge runtime verifies it as a
    device would."""
    directory.mkdir(parents=True, exist_ok=True)
    for key, name in zip(variant_files(precision), (ONNX_FILE, MODEL_CARD_FILE)):
        store.download_file(model_key(model_id, key), directory / name)
    frames = json.loads((directory / MODEL_CARD_FILE).read_text()).get("verification_frames")
    if isinstance(frames, dict) and isinstance(frames.get("file"), str):
        name = Path(frames["file"]).name
        store.download_file(model_key(model_id, name), directory / name)
    return directory


@lru_cache(maxsize=1)
def git_sha(start: Path = Path(__file__).resolve().parent) -> str:
    """The commit of the checkout this code runs from, or ``"unknown"`` outside a git checkout."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=start, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    sha = result.stdout.strip()
    return sha if result.returncode == 0 and len(sha) == 40 else "unknown"
