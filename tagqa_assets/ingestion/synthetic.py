"""Synthetic metal-tag images with exact ground truth, for demos and tests.

A tag is a dark brushed-metal plate with a punched hole; a scratch is a thin bright
polyline, a dent a dark dish with a bright rim on its lit side. The ground-truth box of a
defect is the bounding box of what was drawn, so labels are exact by construction. The
same seed (and defect list) gives the same images, byte for byte.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from tagqa_assets.contracts.labels import Annotation

WIDTH, HEIGHT = 450, 300


@dataclass(frozen=True)
class SyntheticTag:
    """One generated image: JPEG bytes plus its exact scratch boxes."""

    name: str
    jpeg: bytes
    width: int
    height: int
    annotations: tuple[Annotation, ...]


def _plate(rng: random.Random, width: int, height: int) -> Image.Image:
    base = rng.randint(45, 80)
    noise = np.random.default_rng(rng.randint(0, 2**31)).normal(0, 6, (height, width))
    # Horizontal brushing: noise smeared along rows, plus a soft vertical light gradient.
    brushed = np.cumsum(noise, axis=1) / np.sqrt(np.arange(1, width + 1))
    gradient = np.linspace(-10, 10, height)[:, None]
    gray = np.clip(base + brushed + gradient, 0, 255).astype(np.uint8)
    plate = Image.fromarray(np.stack([gray] * 3, axis=-1), "RGB")
    draw = ImageDraw.Draw(plate)
    hole = rng.randint(14, 22)
    cx, cy = rng.randint(30, 50), height // 2
    draw.ellipse([cx - hole, cy - hole, cx + hole, cy + hole], fill=(12, 12, 12))
    return plate


def _scratch(rng: random.Random, draw: ImageDraw.ImageDraw, width: int, height: int) -> Annotation:
    length = rng.randint(40, 140)
    x, y = rng.uniform(90, width - 40), rng.uniform(30, height - 30)
    angle = rng.uniform(0, np.pi)
    points = [(x, y)]
    for _ in range(4):
        angle += rng.uniform(-0.35, 0.35)
        x = float(np.clip(x + np.cos(angle) * length / 4, 5, width - 5))
        y = float(np.clip(y + np.sin(angle) * length / 4, 5, height - 5))
        points.append((x, y))
    stroke = rng.randint(2, 3)
    shade = rng.randint(190, 250)
    draw.line(points, fill=(shade, shade, shade), width=stroke, joint="curve")
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    pad = stroke / 2 + 1
    left, top = max(0.0, min(xs) - pad), max(0.0, min(ys) - pad)
    right, bottom = min(float(width), max(xs) + pad), min(float(height), max(ys) + pad)
    return Annotation(class_id=0, left=round(left, 1), top=round(top, 1), width=round(right - left, 1), height=round(bottom - top, 1))


def _dent(rng: random.Random, draw: ImageDraw.ImageDraw, width: int, height: int, class_id: int) -> Annotation:
    rx, ry = rng.uniform(9, 22), rng.uniform(7, 16)
    cx, cy = rng.uniform(90 + rx, width - 10 - rx), rng.uniform(10 + ry, height - 10 - ry)
    dark = rng.randint(10, 30)
    draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=(dark, dark, dark))
    rim = rng.randint(170, 220)
    draw.arc([cx - rx, cy - ry, cx + rx, cy + ry], start=200, end=340, fill=(rim, rim, rim), width=2)
    left, top = max(0.0, cx - rx - 1), max(0.0, cy - ry - 1)
    right, bottom = min(float(width), cx + rx + 1), min(float(height), cy + ry + 1)
    return Annotation(class_id=class_id, left=round(left, 1), top=round(top, 1), width=round(right - left, 1), height=round(bottom - top, 1))


DEFECT_KINDS = ("scratch", "dent")  # the defect names the generator can draw


def generate_tags(
    count: int, *, seed: int = 0, prefix: str = "tag", scratch_rate: float = 0.8, defects: tuple[str, ...] = ("scratch",)
) -> list[SyntheticTag]:
    """``count`` tags; about ``scratch_rate`` of them carry 1-3 defects, the rest none.

    ``defects`` is the taxonomy (class id = position); each defect drawn is one of its kinds,
    chosen at random. Raises ``ValueError`` for a kind outside ``DEFECT_KINDS``.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    unknown = [name for name in defects if name not in DEFECT_KINDS]
    if unknown or not defects:
        raise ValueError(f"the synthetic generator draws {list(DEFECT_KINDS)}, not {unknown or 'nothing'}")
    rng = random.Random(seed)
    tags = []
    for index in range(count):
        plate = _plate(rng, WIDTH, HEIGHT)
        draw = ImageDraw.Draw(plate)
        scratches = rng.randint(1, 3) if rng.random() < scratch_rate else 0
        annotations = tuple(_defect(rng, draw, defects) for _ in range(scratches))
        plate = plate.filter(ImageFilter.GaussianBlur(0.6))
        buffer = io.BytesIO()
        plate.save(buffer, format="JPEG", quality=92)
        tags.append(SyntheticTag(f"{prefix}-{seed:04d}-{index:05d}.jpg", buffer.getvalue(), WIDTH, HEIGHT, annotations))
    return tags


def _defect(rng: random.Random, draw: ImageDraw.ImageDraw, defects: tuple[str, ...]) -> Annotation:
    # One kind only: no extra random draw, so the scratch-only set stays byte-identical.
    class_id = 0 if len(defects) == 1 else rng.randrange(len(defects))
    if defects[class_id] == "dent":
        return _dent(rng, draw, WIDTH, HEIGHT, class_id)
    box = _scratch(rng, draw, WIDTH, HEIGHT)
    return Annotation(class_id, box.left, box.top, box.width, box.height)
