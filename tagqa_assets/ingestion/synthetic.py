"""Synthetic metal-tag images with exact ground truth, for demos and tests.

What a tag looks like (modelled on the real line camera's images, docs/ingestion.md): a grey
brushed-metal plate with rounded corners and a backlit punched hole, lying on a lighter
fixture, under uneven light (a gradient in a random direction plus a soft hot spot). The
plate carries faint, unlabeled scuffs, as real tags do. A *scratch* is a thin, slightly
curved, oriented stroke, bright (the usual case) or dark, beaded along its length; a *dent*
is a small dish shaded by the light: bright on one side, dark on the other. About
``1 - defect_rate`` of the tags are clean.

The ground-truth box of a defect is the bounding box of what was drawn plus a fixed margin
(``LABEL_MARGIN``, as a labeler leaves around a stroke), so labels are exact by
construction. The same seed (and defect list) gives the same images, byte for byte.
"""

from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from tagqa_assets.contracts.labels import Annotation

WIDTH, HEIGHT = 450, 300
DEFECT_KINDS = ("scratch", "dent")  # the defect names the generator can draw
DEFAULT_DEFECT_RATE = 0.8  # share of tags with at least one defect; the rest are clean
LABEL_MARGIN = 8.0  # pixels a scratch's box leaves around the stroke (the real labels leave 5-25)
DARK_SCRATCH_SHARE = 0.3  # share of scratches darker than the plate (the rest are bright)
_SUPERSAMPLE = 3  # strokes are drawn at this scale and averaged down: anti-aliased, sub-pixel widths


@dataclass(frozen=True)
class SyntheticTag:
    """One generated image: JPEG bytes plus its exact defect boxes."""

    name: str
    jpeg: bytes
    width: int
    height: int
    annotations: tuple[Annotation, ...]


@dataclass(frozen=True)
class _Plate:
    left: int
    top: int
    right: int
    bottom: int
    hole: tuple[float, float, float]  # centre x, centre y, radius

    def inside(self, x: float, y: float, margin: float) -> bool:
        return self.left + margin <= x <= self.right - margin and self.top + margin <= y <= self.bottom - margin

    def clear_of_hole(self, x: float, y: float, margin: float) -> bool:
        hx, hy, radius = self.hole
        return math.hypot(x - hx, y - hy) > radius + margin


def _smooth_rows(values: np.ndarray, length: int) -> np.ndarray:
    """A running mean of ``length`` along each row (brushing marks run along the rows)."""
    padded = np.pad(values, ((0, 0), (length, length)), mode="reflect")
    summed = np.cumsum(padded, axis=1)
    return ((summed[:, length:] - summed[:, :-length]) / length)[:, length // 2 : length // 2 + values.shape[1]]


def _lighting(rng: random.Random, height: int, width: int) -> np.ndarray:
    """Multiplicative light field around 1: a linear gradient in a random direction and a soft hot spot."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    xx, yy = xx / width - 0.5, yy / height - 0.5
    angle, slope = rng.uniform(0, 2 * math.pi), rng.uniform(0.1, 0.45)
    field = 1 + slope * (xx * math.cos(angle) + yy * math.sin(angle))
    cx, cy, spread, gain = rng.uniform(-0.4, 0.4), rng.uniform(-0.4, 0.4), rng.uniform(0.2, 0.45), rng.uniform(0.05, 0.3)
    field += gain * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * spread**2))
    return field


def _scene(rng: random.Random, noise: np.random.Generator) -> tuple[np.ndarray, _Plate]:
    """The fixture and the plate, grey levels as float32 (no defects yet)."""
    fixture = np.full((HEIGHT, WIDTH), rng.uniform(150, 215), np.float32)
    for _ in range(rng.randint(2, 5)):  # clamp and fixture edges: vertical bands above and below the plate
        x0 = rng.randint(0, WIDTH - 40)
        fixture[:, x0 : x0 + rng.randint(20, 140)] += rng.uniform(-70, 40)
    plate = _Plate(
        left=rng.randint(6, 30), top=rng.randint(18, 42), right=WIDTH - rng.randint(6, 30), bottom=HEIGHT - rng.randint(10, 30),
        hole=(0.0, 0.0, 0.0),
    )
    radius = rng.uniform(8, 11)
    plate = _Plate(plate.left, plate.top, plate.right, plate.bottom,
                   (plate.left + rng.uniform(20, 30), plate.top + rng.uniform(18, 26), radius))
    mask = Image.new("L", (WIDTH, HEIGHT), 0)
    ImageDraw.Draw(mask).rounded_rectangle([plate.left, plate.top, plate.right, plate.bottom], radius=rng.randint(6, 12), fill=255)
    inside = np.asarray(mask, np.float32) / 255
    base = rng.uniform(65, 115)
    brushed = _smooth_rows(noise.normal(0, 9, (HEIGHT, WIDTH)).astype(np.float32), rng.randint(20, 60))
    grain = noise.normal(0, 1.5, (HEIGHT, WIDTH)).astype(np.float32)
    metal = base * _lighting(rng, HEIGHT, WIDTH) + brushed + grain
    if rng.random() < 0.4:  # the plate's bevel catches less light along one side
        edge = np.clip((np.arange(WIDTH, dtype=np.float32) - plate.left) / rng.uniform(6, 16), 0, 1)
        metal *= (0.55 + 0.45 * edge)[None, :]
    gray = fixture * (1 - inside) + metal * inside
    hx, hy, radius = plate.hole
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    hole = np.clip(radius + 0.5 - np.hypot(xx - hx, yy - hy), 0, 1)  # backlit: the light table shows through
    gray = gray * (1 - hole) + rng.uniform(225, 252) * hole
    return gray, plate


def _polyline(rng: random.Random, plate: _Plate, length: float, bend: float, *, off_axis: float = 0.0) -> list[tuple[float, float]] | None:
    """A gently curving stroke of about ``length`` pixels inside the plate and clear of the hole,
    starting at least ``off_axis`` radians away from horizontal and vertical."""
    for _ in range(20):
        x, y = rng.uniform(plate.left + 20, plate.right - 20), rng.uniform(plate.top + 15, plate.bottom - 15)
        angle = rng.uniform(off_axis, math.pi / 2 - off_axis) + rng.choice((0, math.pi / 2))
        points = [(x, y)]
        steps = 6
        for _ in range(steps):
            angle += rng.uniform(-bend, bend)
            x, y = x + math.cos(angle) * length / steps, y + math.sin(angle) * length / steps
            points.append((x, y))
        if all(plate.inside(px, py, 8) and plate.clear_of_hole(px, py, 10) for px, py in points):
            return points
    return None


def _stroke_alpha(points: list[tuple[float, float]], widths: list[float], strengths: list[float]) -> np.ndarray:
    """Coverage (0-1) of a polyline drawn piece by piece with the given widths and strengths, anti-aliased."""
    scale = _SUPERSAMPLE
    canvas = Image.new("L", (WIDTH * scale, HEIGHT * scale), 0)
    draw = ImageDraw.Draw(canvas)
    for (x0, y0), (x1, y1), width, strength in zip(points, points[1:], widths, strengths):
        draw.line([(x0 * scale, y0 * scale), (x1 * scale, y1 * scale)], fill=round(255 * strength),
                  width=max(1, round(width * scale)), joint="curve")
    small = canvas.resize((WIDTH, HEIGHT), Image.Resampling.BOX)
    return np.asarray(small, np.float32) / 255


def _box(xs: list[float], ys: list[float], margin: float, class_id: int) -> Annotation:
    left, top = max(0.0, min(xs) - margin), max(0.0, min(ys) - margin)
    right, bottom = min(float(WIDTH), max(xs) + margin), min(float(HEIGHT), max(ys) + margin)
    return Annotation(class_id=class_id, left=round(left, 1), top=round(top, 1), width=round(right - left, 1), height=round(bottom - top, 1))


def _scratch(rng: random.Random, gray: np.ndarray, plate: _Plate, class_id: int) -> Annotation | None:
    """Draw one labeled scratch into ``gray``; its box, or ``None`` when no place was found."""
    # Long and mostly diagonal, like the labeled scratches of the real tags (boxes 35-140 px a side).
    points = _polyline(rng, plate, rng.uniform(80, 220), bend=0.1, off_axis=math.radians(15))
    if points is None:
        return None
    # Resample into short pieces: the beads along a real scratch are brighter or darker spots.
    pieces = []
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        n = max(1, round(math.hypot(x1 - x0, y1 - y0) / 5))
        pieces += [(x0 + (x1 - x0) * i / n, y0 + (y1 - y0) * i / n) for i in range(n)]
    pieces.append(points[-1])
    width = rng.uniform(1.6, 3.2)
    widths = [width * rng.uniform(0.8, 1.25) for _ in pieces]
    strengths = [rng.uniform(0.65, 1.0) for _ in pieces]
    alpha = _stroke_alpha(pieces, widths, strengths)
    # Relative to the metal under the stroke, so a scratch stands out however the plate is lit.
    under = float((gray * alpha).sum() / max(float(alpha.sum()), 1e-6))
    if rng.random() < DARK_SCRATCH_SHARE:
        shade = max(0.0, under - rng.uniform(50, 80))
    else:
        shade = min(255.0, under + rng.uniform(100, 160))
    gray *= 1 - alpha
    gray += shade * alpha
    covered = np.nonzero(alpha > 0.15)
    if covered[0].size == 0:
        return None
    xs = [float(covered[1].min()), float(covered[1].max()) + 1]
    ys = [float(covered[0].min()), float(covered[0].max()) + 1]
    return _box(xs, ys, LABEL_MARGIN, class_id)


def _dent(rng: random.Random, gray: np.ndarray, plate: _Plate, class_id: int) -> Annotation | None:
    """Draw one dent (a dish lit from one side) into ``gray``; its box, or ``None`` when no place was found."""
    rx, ry = rng.uniform(12, 26), rng.uniform(10, 22)
    for _ in range(20):
        cx, cy = rng.uniform(plate.left + rx + 8, plate.right - rx - 8), rng.uniform(plate.top + ry + 8, plate.bottom - ry - 8)
        if plate.clear_of_hole(cx, cy, max(rx, ry) + 6):
            break
    else:
        return None
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    u, v = (xx - cx) / rx, (yy - cy) / ry
    r2 = u * u + v * v
    inside = r2 < 1
    light = rng.uniform(0, 2 * math.pi)
    # Depth (1 - r^2): its slope towards the light is bright, the far side dark; the floor a little darker.
    slope = -2 * (u * math.cos(light) + v * math.sin(light))
    contrast = rng.uniform(30, 55)
    rim = np.clip((1 - r2) * 10, 0, 1)  # a short fade at the edge: the dish ends where its box does
    gray += np.where(inside, (contrast * slope - rng.uniform(10, 25) * (1 - r2)) * rim, 0)
    return _box([cx - rx, cx + rx], [cy - ry, cy + ry], 1.0, class_id)


def _scuffs(rng: random.Random, gray: np.ndarray, plate: _Plate) -> None:
    """Faint marks real tags carry and labelers leave alone: thin, short, low contrast."""
    for _ in range(rng.randint(2, 9)):
        points = _polyline(rng, plate, rng.uniform(15, 110), bend=0.25)
        if points is None:
            continue
        alpha = _stroke_alpha(points, [rng.uniform(0.5, 1.0)] * len(points), [1.0] * len(points))
        gray += alpha * rng.choice((-1, 1)) * rng.uniform(6, 18)


def generate_tags(
    count: int, *, seed: int = 0, prefix: str = "tag", defect_rate: float = DEFAULT_DEFECT_RATE,
    defects: tuple[str, ...] = ("scratch",),
) -> list[SyntheticTag]:
    """``count`` tags; about ``defect_rate`` of them carry 1-3 defects, the rest none.

    ``defects`` is the taxonomy (class id = position); each defect drawn is one of its kinds,
    chosen at random (scratches a little more often than other kinds). Every annotation is the
    box of a defect drawn in that image. Raises ``ValueError`` for a kind outside
    ``DEFECT_KINDS``, a negative count or a rate outside [0, 1].
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if not 0 <= defect_rate <= 1:
        raise ValueError(f"defect_rate must be in [0, 1], got {defect_rate}")
    unknown = [name for name in defects if name not in DEFECT_KINDS]
    if unknown or not defects:
        raise ValueError(f"the synthetic generator draws {list(DEFECT_KINDS)}, not {unknown or 'nothing'}")
    weights = [1.5 if name == "scratch" else 1.0 for name in defects]
    tags = []
    for index in range(count):
        rng = random.Random(f"{seed}/{index}")  # each image on its own stream: tag i is the same whatever count is
        gray, plate = _scene(rng, np.random.default_rng(rng.getrandbits(63)))
        _scuffs(rng, gray, plate)
        annotations = []
        wanted = rng.choices((1, 2, 3), weights=(4, 4, 2))[0] if rng.random() < defect_rate else 0
        for _ in range(wanted):
            class_id = rng.choices(range(len(defects)), weights=weights)[0]
            draw = _dent if defects[class_id] == "dent" else _scratch
            box = draw(rng, gray, plate, class_id)
            if box is not None:
                annotations.append(box)
        image = Image.fromarray(np.clip(gray + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=92)
        tags.append(SyntheticTag(f"{prefix}-{seed:04d}-{index:05d}.jpg", buffer.getvalue(), WIDTH, HEIGHT, tuple(annotations)))
    return tags
