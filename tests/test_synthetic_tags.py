"""The demo's synthetic tags: deterministic, labels that match what was drawn, clean tags, both kinds."""

from __future__ import annotations

import io
from collections import Counter

import numpy as np
import pytest
from PIL import Image, ImageFilter

from tagqa_assets.ingestion.synthetic import DEFAULT_DEFECT_RATE, HEIGHT, WIDTH, generate_tags

CLASSES = ("scratch", "dent")
# A defect stands out from the metal around it by far more than the faint unlabeled scuffs,
# the brushing and the JPEG noise do (measured: defects >= 52 grey levels, the rest <= 24).
MARK = 38
# Well inside every plate, away from the punched hole (the plate's position varies a little).
PLATE_INTERIOR = (slice(55, 260), slice(40, 410))
HOLE_CORNER = (slice(0, 95), slice(0, 85))


def _deviation(jpeg: bytes) -> np.ndarray:
    """Grey-level distance of every pixel from the median of its 25 x 25 neighbourhood."""
    image = Image.open(io.BytesIO(jpeg)).convert("L")
    background = image.filter(ImageFilter.MedianFilter(25))
    return np.abs(np.asarray(image, np.float32) - np.asarray(background, np.float32))


def test_the_same_seed_gives_the_same_images_and_labels_and_another_seed_does_not():
    first = generate_tags(6, seed=11, defects=CLASSES)
    again = generate_tags(6, seed=11, defects=CLASSES)
    assert [(t.name, t.jpeg, t.annotations) for t in first] == [(t.name, t.jpeg, t.annotations) for t in again]
    # Each image has its own random stream: asking for more images keeps the first ones.
    assert [t.jpeg for t in generate_tags(3, seed=11, defects=CLASSES)] == [t.jpeg for t in first[:3]]
    other = generate_tags(6, seed=12, defects=CLASSES)
    assert not {t.jpeg for t in first} & {t.jpeg for t in other}


def test_every_box_holds_a_drawn_defect_and_no_defect_lies_outside_the_boxes():
    tags = generate_tags(25, seed=3, defects=CLASSES)
    assert sum(len(t.annotations) for t in tags) > 25
    for tag in tags:
        image = Image.open(io.BytesIO(tag.jpeg))
        assert image.size == (tag.width, tag.height) == (WIDTH, HEIGHT) and image.mode == "RGB"
        deviation = _deviation(tag.jpeg)
        covered = np.zeros_like(deviation, dtype=bool)
        for box in tag.annotations:
            assert 0 <= box.left and 0 <= box.top and box.left + box.width <= WIDTH and box.top + box.height <= HEIGHT
            assert box.width >= 4 and box.height >= 4, f"{tag.name}: degenerate box {box}"
            rows = slice(int(box.top), int(np.ceil(box.top + box.height)))
            cols = slice(int(box.left), int(np.ceil(box.left + box.width)))
            assert deviation[rows, cols].max() > MARK, f"{tag.name}: nothing drawn in {box}"
            covered[rows, cols] = True
        interior = np.zeros_like(covered)
        interior[PLATE_INTERIOR] = True
        interior[HOLE_CORNER] = False
        assert deviation[interior & ~covered].max() < MARK, f"{tag.name}: a defect outside every box"


def test_a_realistic_share_of_tags_is_clean_and_both_kinds_are_drawn():
    tags = generate_tags(200, seed=5, defects=CLASSES)
    clean = sum(not t.annotations for t in tags) / len(tags)
    assert abs(clean - (1 - DEFAULT_DEFECT_RATE)) < 0.07
    kinds = Counter(box.class_id for t in tags for box in t.annotations)
    assert set(kinds) == {0, 1} and kinds[0] > kinds[1] > 0.25 * sum(kinds.values())
    # Defects per image like the real tags: mostly one or two, sometimes three.
    per_image = Counter(len(t.annotations) for t in tags if t.annotations)
    assert set(per_image) <= {1, 2, 3} and per_image[3] < per_image[1]
    # The scratch-only taxonomy draws scratches only; nothing clean when every tag must be defective.
    only = generate_tags(30, seed=5, defects=("scratch",), defect_rate=1.0)
    assert all(t.annotations and {b.class_id for b in t.annotations} == {0} for t in only)


def test_scratches_are_light_or_dark_and_thin():
    tags = generate_tags(30, seed=9, defects=("scratch",), defect_rate=1.0)
    light = dark = 0
    for tag in tags:
        image = Image.open(io.BytesIO(tag.jpeg)).convert("L")
        signed = np.asarray(image, np.float32) - np.asarray(image.filter(ImageFilter.MedianFilter(25)), np.float32)
        for box in tag.annotations:
            rows = slice(int(box.top), int(np.ceil(box.top + box.height)))
            cols = slice(int(box.left), int(np.ceil(box.left + box.width)))
            difference = signed[rows, cols]
            strong = np.abs(difference) > MARK
            # Thin: the stroke covers a small part of its box (a blob or a filled box would not).
            assert strong.mean() < 0.35, f"{tag.name}: {box} is mostly stroke"
            if difference[strong].mean() > 0:
                light += 1
            else:
                dark += 1
    assert light > dark > 0


@pytest.mark.parametrize("kwargs", [{"count": -1}, {"count": 1, "defect_rate": 1.5}, {"count": 1, "defects": ("crack",)}, {"count": 1, "defects": ()}])
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(ValueError):
        generate_tags(**kwargs)
