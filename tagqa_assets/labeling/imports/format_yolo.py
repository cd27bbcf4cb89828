"""YOLO txt label folders into label rows (see ``rows.py``).

One row per label file ``<stem>.txt`` (lines ``class cx cy w h``, fractions of the image
size); class names come from ``data.yaml``/``classes.txt`` when present, else the ids are
ours. The image file itself (the folder's ``images/`` or ``--images-root``) is found so it
can be matched by content hash; else it is matched by stem.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from tagqa_assets.contracts.labels import Annotation
from tagqa_assets.labeling.imports.box_checks import UNPARSEABLE, RowRejected, class_id_for
from tagqa_assets.labeling.imports.rows import YOLO, LabelRow, ParsedFile, Reject

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def _yolo_names(folder: Path) -> dict[str, str] | None:
    data_yaml = next((p for p in (folder / "data.yaml", folder / "dataset.yaml") if p.is_file()), None)
    if data_yaml is not None:
        names = (yaml.safe_load(data_yaml.read_text()) or {}).get("names")
        if isinstance(names, list):
            return {str(i): str(n) for i, n in enumerate(names)}
        if isinstance(names, dict):
            return {str(k): str(v) for k, v in names.items()}
    classes = folder / "classes.txt"
    if classes.is_file():
        return {str(i): line.strip() for i, line in enumerate(classes.read_text().splitlines()) if line.strip()}
    return None


def _yolo_image(label_file: Path, folder: Path, images_root: Path | None) -> Path | None:
    relative = label_file.relative_to(folder)
    parts = ["images" if part == "labels" else part for part in relative.parent.parts]
    stem = label_file.stem
    for base in [folder.joinpath(*parts), folder / "images", images_root]:
        if base is None or not base.is_dir():
            continue
        for candidate in sorted(base.glob(f"{stem}.*")):
            if candidate.is_file() and (candidate.suffix.lower() in IMAGE_SUFFIXES or ".jpg_" in candidate.name):
                return candidate
    return None


def parse_yolo_folder(folder: Path, *, images_root: Path | None = None) -> ParsedFile:
    """Every ``*.txt`` label file below ``folder`` (except ``classes.txt``)."""
    parsed = ParsedFile(YOLO)
    folder = Path(folder)
    class_map = _yolo_names(folder)
    label_files = sorted(p for p in folder.rglob("*.txt") if p.is_file() and p.name != "classes.txt")
    for line, path in enumerate(label_files, start=1):
        relative = path.relative_to(folder).with_suffix("").as_posix()
        try:
            boxes = []
            for number, text in enumerate(path.read_text().splitlines(), start=1):
                fields = text.split()
                if not fields:
                    continue
                if len(fields) != 5:
                    raise RowRejected(UNPARSEABLE, f"line {number}: expected 'class cx cy w h', got {text!r}")
                try:
                    cx, cy, w, h = (float(v) for v in fields[1:])
                except ValueError:
                    raise RowRejected(UNPARSEABLE, f"line {number}: non-numeric value in {text!r}") from None
                class_id = class_id_for(fields[0], class_map)
                boxes.append(Annotation(class_id, cx - w / 2, cy - h / 2, w, h))
            image = _yolo_image(path, folder, images_root)
            parsed.rows.append(
                LabelRow(
                    line=line,
                    source_ref=relative,
                    annotations=boxes,
                    event_time=path.stat().st_mtime,
                    labeling_job=f"yolo:{folder.name}",
                    normalized=True,
                    by_stem=True,
                    local_image=str(image) if image else None,
                )
            )
        except (RowRejected, UnicodeDecodeError) as exc:
            reason, detail = (exc.reason, exc.detail) if isinstance(exc, RowRejected) else (UNPARSEABLE, str(exc))
            parsed.rejects.append(Reject(line, relative, reason, detail))
    return parsed
