"""Ultralytics YOLO export of one dataset version: file names and label lines."""

from __future__ import annotations

import json

from tagqa_assets.contracts.labels import Annotation

# Ultralytics picks images by extension: every format ingestion accepts maps to one it reads.
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "BMP": "bmp", "TIFF": "tif", "WEBP": "webp"}
STEM_LENGTH = 16


def yolo_image_path(split: str, sha256: str, image_format: str) -> str:
    """``images/<split>/<sha256[:16]>.<ext>``: a name Ultralytics accepts, whatever the upload was called."""
    try:
        extension = EXTENSIONS[image_format.upper()]
    except KeyError:
        raise ValueError(f"image {sha256[:16]} has format {image_format!r}, which the YOLO export cannot name") from None
    return f"images/{split}/{sha256[:STEM_LENGTH]}.{extension}"


def yolo_label_path(image_path: str) -> str:
    """The label file Ultralytics looks for beside ``images/<split>/<stem>.<ext>``."""
    return "labels/" + image_path[len("images/") :].rsplit(".", 1)[0] + ".txt"


def yolo_label_text(annotations: list[Annotation], width: int, height: int) -> str:
    """One ``class cx cy w h`` line per box, as fractions of the image size (6 decimals).

    Boxes are expected inside the image (the label import clipped them); an image without
    boxes gets an empty file, which Ultralytics reads as a background image.
    """
    lines = []
    for box in annotations:
        cx = (box.left + box.width / 2) / width
        cy = (box.top + box.height / 2) / height
        lines.append(f"{box.class_id} {cx:.6f} {cy:.6f} {box.width / width:.6f} {box.height / height:.6f}")
    return "\n".join(lines) + ("\n" if lines else "")


def manifest_boxes(annotations: list[Annotation]) -> str:
    """The manifest's ``boxes``: JSON ``[[class_id, x1, y1, x2, y2], ...]`` in pixels."""
    return json.dumps([[box.class_id, *(round(v, 3) for v in box.xyxy())] for box in annotations], separators=(",", ":"))


def annotations_from_json(text: str) -> list[Annotation]:
    """Annotations stored as a JSON list of ``{class_id, left, top, width, height}``."""
    return [Annotation.from_dict(item) for item in json.loads(text)]
