"""Putting images into ``raw/`` the way the raw-image sensor expects (names sort by arrival)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from tagqa_assets.contracts.keys import LABELS_INBOX_PREFIX, raw_key
from tagqa_assets.contracts.labels import DEMO_LABELING_JOB, LabelRecord
from tagqa_assets.ingestion.synthetic import generate_tags
from tagqa_assets.ingestion.validation import sha256_hex
from tagqa_assets.storage import ObjectStore

# How many images `tagqa demo` (and `make demo`) writes: enough for a from-scratch detector to
# learn both defect kinds with the demo profile (docs/training.md), and a test split (10%) large
# enough that its mAP is not the luck of a few images.
DEMO_IMAGES = 300


def arrival_name(original: str, when: datetime) -> str:
    """``<HHMMSSffffff>-<original>``: the time prefix makes names sort in arrival order."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", original).lstrip(".") or "image"
    return f"{when:%H%M%S%f}-{safe}"


@dataclass(frozen=True)
class UploadResult:
    """What ``upload_folder`` did: keys written, and files it refused (path, reason)."""

    keys: list[str]
    refused: list[tuple[str, str]]


def _files(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*")):
        if path.is_symlink() or path.is_file():
            yield path


def upload_folder(store: ObjectStore, folder: Path, *, source: str = "import") -> UploadResult:
    """Send every regular file under ``folder`` to ``raw/<source>/<today>/``.

    Nothing is validated here (ingestion decodes every file and quarantines bad ones with a
    reason); symlinks are refused, so an upload never reads outside ``folder``. Sub-folder
    names are kept in the object name (``a/b.jpg`` becomes ``..-a__b.jpg``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"upload folder {folder} does not exist or is not a folder")
    keys, refused = [], []
    for path in _files(folder):
        relative = path.relative_to(folder).as_posix()
        if path.is_symlink():
            refused.append((relative, "symlink (not followed)"))
            continue
        now = datetime.now(timezone.utc)
        key = raw_key(source, arrival_name(relative.replace("/", "__"), now), now)
        store.put_file(key, path)
        keys.append(key)
    return UploadResult(keys, refused)


def write_demo_set(
    store: ObjectStore, count: int, *, seed: int = 0, source: str = "camera-demo", with_labels: bool = True,
    defects: tuple[str, ...] = ("scratch",),
) -> tuple[list[str], str | None]:
    """Write ``count`` synthetic tags with the ``defects`` kinds (class id = position) to
    ``raw/<source>/`` and, optionally, their exact labels as label-record JSON lines into the
    labels inbox. Returns ``(raw_keys, inbox_key)``."""
    keys, rows = [], []
    for tag in generate_tags(count, seed=seed, defects=defects):
        now = datetime.now(timezone.utc)
        key = raw_key(source, arrival_name(tag.name, now), now)
        store.put_bytes(key, tag.jpeg)
        keys.append(key)
        record = LabelRecord(
            source_ref=key,
            image_sha256=sha256_hex(tag.jpeg),
            image_width=tag.width,
            image_height=tag.height,
            annotations=tag.annotations,
            event_time=now.timestamp(),
            labeling_job=DEMO_LABELING_JOB,
        )
        rows.append(json.dumps(record.to_row()))
    inbox_key = None
    if with_labels and rows:
        inbox_key = f"{LABELS_INBOX_PREFIX}demo-{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}-seed{seed}.jsonl"
        store.put_bytes(inbox_key, ("\n".join(rows) + "\n").encode())
    return keys, inbox_key
