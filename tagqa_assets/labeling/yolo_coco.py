"""Parsing COCO JSON files and YOLO txt folders into label rows (see ``importers.py``).

COCO: one row per entry of ``images`` (an image without annotations is a label saying
"no scratch"); boxes are ``bbox = [x, y, w, h]`` pixels; categories map by name.
YOLO: one row per label file ``<stem>.txt`` (lines ``class cx cy w h``, fractions of the
image size); class names come from ``data.yaml``/``classes.txt`` when present, else the
ids are ours. Both find the image file itself (``--images-root`` or the folder's
``images/``) so it can be matched by content hash; else they match by name.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import yaml

from tagqa_assets.contracts.labels import Annotation
from tagqa_assets.labeling.box_checks import INVALID_VALUE, MISSING_FIELD, UNPARSEABLE, RowRejected, class_id_for
from tagqa_assets.labeling.importers import COCO, YOLO, LabelRow, ParsedFile, Reject

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def _coco_time(info: dict, fallback: float) -> float:
    text = str(info.get("date_created") or "")
    for pattern in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y/%m/%d", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, pattern).timestamp()
        except ValueError:
            continue
    return fallback


def parse_coco(data: bytes, name: str, *, event_time: float, images_root: Path | None = None) -> ParsedFile:
    """A COCO detection file; ``event_time`` is used when ``info.date_created`` is absent."""
    parsed = ParsedFile(COCO)
    try:
        document = json.loads(data)
        images, annotations = document["images"], document.get("annotations", [])
        categories = {c["id"]: c["name"] for c in document.get("categories", [])}
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        parsed.rejects.append(Reject(0, name, UNPARSEABLE, f"not a COCO detection file: {exc!r}"))
        return parsed
    when = _coco_time(document.get("info") or {}, event_time)
    boxes_by_image: dict[object, list[dict]] = defaultdict(list)
    known_ids = {image.get("id") for image in images if isinstance(image, dict)}
    for index, annotation in enumerate(annotations, start=1):
        image_id = annotation.get("image_id") if isinstance(annotation, dict) else None
        if image_id not in known_ids:
            parsed.rejects.append(Reject(index, f"annotation {annotation.get('id', index) if isinstance(annotation, dict) else index}", INVALID_VALUE, f"refers to image id {image_id!r}, which is not in 'images'"))
            continue
        boxes_by_image[image_id].append(annotation)
    for line, image in enumerate(images, start=1):
        ref = str(image.get("file_name") or "") if isinstance(image, dict) else ""
        try:
            if not ref:
                raise RowRejected(MISSING_FIELD, "image entry lacks file_name")
            boxes = []
            for annotation in boxes_by_image.get(image.get("id"), []):
                bbox = annotation.get("bbox")
                if not isinstance(bbox, list) or len(bbox) != 4:
                    raise RowRejected(INVALID_VALUE, f"annotation {annotation.get('id')} has bbox {bbox!r}, expected [x, y, w, h]")
                category = categories.get(annotation.get("category_id"), annotation.get("category_id"))
                boxes.append(Annotation(class_id_for(category), *(float(v) for v in bbox)))
            local = images_root / ref if images_root is not None and (images_root / ref).is_file() else None
            parsed.rows.append(
                LabelRow(
                    line=line,
                    source_ref=ref,
                    annotations=boxes,
                    event_time=when,
                    labeling_job=f"coco:{name}",
                    width=int(image["width"]) if image.get("width") else None,
                    height=int(image["height"]) if image.get("height") else None,
                    local_image=str(local) if local else None,
                )
            )
        except (RowRejected, TypeError, ValueError) as exc:
            reason, detail = (exc.reason, exc.detail) if isinstance(exc, RowRejected) else (INVALID_VALUE, str(exc))
            parsed.rejects.append(Reject(line, ref, reason, detail))
    return parsed


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
