"""Reading committed dataset versions: the API the training stage builds on.

A version counts as existing only once its commit record ``datasets/<version>/dataset.json``
is in the store (it is written last, after the manifest, the YOLO export and the stats), so
a reader never sees a half-built version. Versions are immutable: nothing here writes to
``datasets/``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from tagqa_assets.contracts.datasets import (
    COMMIT_FILE,
    MANIFEST_COLUMNS,
    MANIFEST_FILE,
    STATS_FILE,
    YOLO_DIR,
    DatasetRecord,
    parse_dataset_version,
)
from tagqa_assets.contracts.keys import DATASETS_PREFIX, dataset_prefix
from tagqa_assets.contracts.labels import DEMO_LABELING_JOB
from tagqa_assets.datasets.yolo_export import yolo_label_path
from tagqa_assets.storage import LocalObjectStore, ObjectNotFound, ObjectStore

STAGED_MARKER = ".tagqa-staged.json"
DOWNLOAD_THREADS = 8


def data_yaml_text(root: str, splits_present: dict[str, bool], class_names: tuple[str, ...]) -> str:
    """The Ultralytics ``data.yaml`` for an export rooted at ``root``.

    ``val`` falls back to the train images when the version has no validation image (tiny
    datasets), because Ultralytics refuses to train without a ``val`` entry.
    """
    lines = [f"path: {json.dumps(root)}", "train: images/train"]
    lines.append("val: images/val" if splits_present.get("val") else "val: images/train")
    if splits_present.get("test"):
        lines.append("test: images/test")
    lines.append(f"nc: {len(class_names)}")
    lines.append("names:")
    lines.extend(f"  {index}: {json.dumps(name)}" for index, name in enumerate(class_names))
    return "\n".join(lines) + "\n"


class DatasetVersionStore:
    """Committed dataset versions in one object store."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def list_versions(self) -> list[str]:
        """Committed versions in creation order (sequence number); uncommitted ones are left out."""
        found = []
        for prefix in self.store.list_prefixes(DATASETS_PREFIX):
            name = prefix[len(DATASETS_PREFIX) :].rstrip("/")
            try:
                sequence, _ = parse_dataset_version(name)
            except ValueError:
                continue  # _pending/ and anything else that is not a version folder
            if self.store.exists(dataset_prefix(name) + COMMIT_FILE):
                found.append((sequence, name))
        return [name for _, name in sorted(found)]

    def is_committed(self, version: str) -> bool:
        """Whether ``version`` has its commit record."""
        return self.store.exists(dataset_prefix(version) + COMMIT_FILE)

    def read(self, version: str) -> DatasetRecord:
        """The commit record of ``version``; raises ``ValueError`` naming it when missing or uncommitted."""
        parse_dataset_version(version)
        key = dataset_prefix(version) + COMMIT_FILE
        try:
            data = self.store.get_json(key)
        except ObjectNotFound:
            raise ValueError(
                f"dataset version {version!r} does not exist or is not committed (no {self.store.uri_for(key)})"
            ) from None
        record = DatasetRecord.from_dict(data)
        if record.version != version:
            raise ValueError(f"{self.store.uri_for(key)} names version {record.version!r}, expected {version!r}")
        return record

    def manifest(self, version: str) -> pd.DataFrame:
        """The manifest of a committed version (``MANIFEST_COLUMNS``, one row per image)."""
        self.read(version)
        key = dataset_prefix(version) + MANIFEST_FILE
        frame = pd.read_parquet(io.BytesIO(self.store.get_bytes(key)))
        missing = [column for column in MANIFEST_COLUMNS if column not in frame.columns]
        if missing:
            raise ValueError(f"{self.store.uri_for(key)} lacks manifest columns {missing}")
        return frame

    def is_demo_version(self, version: str) -> bool:
        """Whether every image of ``version`` is labeled by ``tagqa demo`` (``DEMO_LABELING_JOB``):
        the generator's own images with their exact labels, nothing from a camera or a person.
        An empty version is not a demo version."""
        jobs = self.manifest(version)["labeling_job"]
        return bool(len(jobs)) and bool((jobs == DEMO_LABELING_JOB).all())

    def stats(self, version: str) -> dict:
        """``stats.json`` of a committed version."""
        self.read(version)
        return self.store.get_json(dataset_prefix(version) + STATS_FILE)

    def latest(self) -> str | None:
        """The newest committed version, or ``None`` when there is none."""
        versions = self.list_versions()
        return versions[-1] if versions else None

    def stage_yolo(self, version: str, directory: Path) -> Path:
        """Copy the YOLO export of ``version`` into ``directory`` and return its ``data.yaml``.

        The returned ``data.yaml`` has ``path:`` set to the absolute local folder, so
        Ultralytics can train from it as is. Staging the same version into the same folder
        twice reuses the first copy (a marker file records what was staged).
        """
        record = self.read(version)
        directory = Path(directory).expanduser().resolve()
        data_yaml = directory / "data.yaml"
        marker = directory / STAGED_MARKER
        expected = {"version": version, "manifest_sha256": record.manifest_sha256}
        if marker.is_file() and data_yaml.is_file() and json.loads(marker.read_text()) == expected:
            return data_yaml
        if directory.exists() and any(directory.iterdir()):
            shutil.rmtree(directory)
        directory.mkdir(parents=True, exist_ok=True)
        manifest = self.manifest(version)
        prefix = dataset_prefix(version) + YOLO_DIR + "/"
        relative = list(manifest["yolo_image"])
        relative += [yolo_label_path(path) for path in manifest["yolo_image"]]
        with ThreadPoolExecutor(DOWNLOAD_THREADS) as pool:
            list(pool.map(lambda rel: self._fetch(prefix + rel, directory / rel), relative))
        splits = {split: bool((manifest["split"] == split).any()) for split in ("train", "val", "test")}
        for split in splits:
            (directory / "images" / split).mkdir(parents=True, exist_ok=True)
            (directory / "labels" / split).mkdir(parents=True, exist_ok=True)
        data_yaml.write_text(data_yaml_text(str(directory), splits, record.class_names))
        marker.write_text(json.dumps(expected))
        return data_yaml

    def _fetch(self, key: str, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(self.store, LocalObjectStore):
            try:
                # Store objects are never modified in place, so a hard link is a safe copy.
                os.link(self.store.uri_for(key), target)
                return
            except FileNotFoundError:
                raise ObjectNotFound(f"no object {key!r} in store {self.store.uri}") from None
            except OSError:
                pass  # another file system: fall through to a byte copy
        self.store.download_file(key, target)
