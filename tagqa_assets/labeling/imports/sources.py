"""Where label files come from: a local path (``tagqa labels import``) or the labels inbox.

Inbox objects (``inbox/labels/<name>``) are imported and then moved beside their report
(``labels/imports/<import_id>/source/<name>``), so the inbox holds only what is still to be
imported and every imported file can be found again next to what became of its rows. A
file whose format cannot be recognised is moved the same way, with one reject saying so.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from tagqa_assets.contracts.keys import LABELS_INBOX_PREFIX
from tagqa_assets.labeling.imports.box_checks import UNPARSEABLE
from tagqa_assets.labeling.imports.format_yolo import parse_yolo_folder
from tagqa_assets.labeling.imports.formats import parse_label_bytes
from tagqa_assets.labeling.imports.matching import RawImageIndex
from tagqa_assets.labeling.imports.pipeline import IMPORTS_PREFIX, ImportReport, import_parsed, new_import_id
from tagqa_assets.labeling.imports.rows import YOLO, ParsedFile, Reject
from tagqa_assets.labeling.label_store import LabelStore
from tagqa_assets.storage import ObjectNotFound, ObjectStore


def import_path(
    store: ObjectStore, label_store: LabelStore, path: Path, *, fmt: str | None = None, images_root: Path | None = None
) -> ImportReport:
    """Import a local label file or YOLO folder (``tagqa labels import``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"label file {path} does not exist")
    if path.is_dir():
        if fmt not in (None, YOLO):
            raise ValueError(f"{path} is a folder; only the {YOLO!r} format is a folder")
        parsed = parse_yolo_folder(path, images_root=images_root)
        seed = "\n".join(f"{r.source_ref}:{r.event_time}" for r in parsed.rows).encode()
    else:
        data = path.read_bytes()
        parsed = parse_label_bytes(data, path.name, fmt=fmt, event_time=path.stat().st_mtime, images_root=images_root)
        seed = data
    return import_parsed(store, label_store, parsed, source=str(path.resolve()), import_id=new_import_id(seed))


def inbox_keys(store: ObjectStore) -> list[str]:
    """Label files waiting in ``inbox/labels/``, in key order."""
    return [info.key for info in store.list_objects(LABELS_INBOX_PREFIX)]


def import_inbox_object(store: ObjectStore, label_store: LabelStore, key: str, *, index: RawImageIndex | None = None) -> ImportReport | None:
    """Import one inbox object and move it beside its report (see module docstring).

    Returns ``None`` when the object is gone (another run imported it first); importing the
    same object twice stores its records once.
    """
    try:
        data = store.get_bytes(key)
    except ObjectNotFound:
        return None
    name = key.rsplit("/", 1)[-1]
    import_id = new_import_id(key.encode() + hashlib.sha256(data).digest())
    info = next(iter(store.list_objects(key)), None)
    event_time = info.last_modified.timestamp() if info is not None else 0.0
    try:
        parsed = parse_label_bytes(data, name, fmt=None, event_time=event_time)
    except ValueError as exc:
        parsed = ParsedFile("unknown", rejects=[Reject(0, key, UNPARSEABLE, str(exc))])
    report = import_parsed(store, label_store, parsed, source=store.uri_for(key), index=index, import_id=import_id)
    try:
        store.move(key, f"{IMPORTS_PREFIX}{import_id}/source/{name}")
    except ObjectNotFound:
        pass  # a concurrent run moved it after importing the same records
    return report
