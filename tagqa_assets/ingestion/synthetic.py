"""Synthetic metal-tag images with exact ground truth, for demos and tests.

A tag is a dark brushed-metal plate with a punched hole; a scratch is a thin bright
polyline. The ground-truth box of a scratch is the bounding box of its stroke, so labels
are exact by construction. The same seed gives the same images, byte for byte.
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


def generate_tags(count: int, *, seed: int = 0, prefix: str = "tag", scratch_rate: float = 0.8) -> list[SyntheticTag]:
    """``count`` tags; about ``scratch_rate`` of them carry 1-3 scratches, the rest none."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    rng = random.Random(seed)
    tags = []
    for index in range(count):
        plate = _plate(rng, WIDTH, HEIGHT)
        draw = ImageDraw.Draw(plate)
        scratches = rng.randint(1, 3) if rng.random() < scratch_rate else 0
        annotations = tuple(_scratch(rng, draw, WIDTH, HEIGHT) for _ in range(scratches))
        plate = plate.filter(ImageFilter.GaussianBlur(0.6))
        buffer = io.BytesIO()
        plate.save(buffer, format="JPEG", quality=92)
        tags.append(SyntheticTag(f"{prefix}-{seed:04d}-{index:05d}.jpg", buffer.getvalue(), WIDTH, HEIGHT, annotations))
    return tags
