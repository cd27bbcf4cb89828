"""Ultralytics YOLO export of one dataset version: file names, label lines, upright pixels.

Labels are in display pixels (EXIF orientation applied, docs/interfaces.md). An image
stored with an Orientation tag of 2-8 is exported with its pixels turned upright and the
tag removed (``upright_image_bytes``), so every reader of the dataset, whether it honours
EXIF or not, sees the pixels the label fractions refer to. Images stored upright are copied
byte for byte.
"""

from __future__ import annotations

import io
import json

from PIL import Image, ImageOps

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


def upright_image_bytes(data: bytes, image_format: str) -> bytes:
    """``data`` re-encoded with its EXIF orientation applied to the pixels and the tag dropped.

    JPEG and WebP are written at quality 95 (one more generation; lossless formats stay
    lossless), in the same format so the export's file name still fits. Raises ``ValueError``
    naming the format when Pillow cannot write it.
    """
    with Image.open(io.BytesIO(data)) as image:
        upright = ImageOps.exif_transpose(image)
        exif = upright.getexif()
        exif.pop(0x0112, None)
        out = io.BytesIO()
        fmt = "JPEG" if image_format.upper() in ("JPEG", "MPO") else image_format.upper()
        options = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
        try:
            upright.save(out, format=fmt, exif=exif.tobytes(), **options)
        except (KeyError, OSError) as exc:
            raise ValueError(f"cannot write an upright {image_format} image: {exc}") from exc
        return out.getvalue()
