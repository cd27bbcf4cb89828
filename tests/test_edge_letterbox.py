"""Letterboxing as pure functions, on non-square images like the real 450x300 tags: native kernel,
numpy passes and OpenCV agree bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime import letterbox as lb
from edge_runtime.letterbox import letterbox, letterbox_geometry, resize_bilinear


@pytest.fixture
def cv2():
    """OpenCV is the reference implementation (installed with the dev extras through ultralytics)."""
    import cv2

    return cv2


@pytest.mark.parametrize("src, dst, resized, pad_top, pad_left", [
    ((300, 450), (480, 480), (320, 480), 80, 0),  # the dataset's landscape tags, scaled up at imgsz 480
    ((300, 450), (640, 640), (427, 640), 106, 0),  # odd padding: 213 rows split 106 above / 107 below
    ((300, 450), (128, 128), (85, 128), 21, 0),  # scaled down (the test models)
    ((450, 300), (480, 480), (480, 320), 0, 80),  # portrait: padding moves to the sides
    ((480, 480), (480, 480), (480, 480), 0, 0),  # already the input size: no resize, no padding
    ((1, 3000), (640, 640), (1, 640), 319, 0),  # a sliver keeps one row; 639 rows split 319 above
])
def test_letterbox_geometry(src, dst, resized, pad_top, pad_left) -> None:
    g = letterbox_geometry(src[0], src[1], dst[0], dst[1])
    assert (g.resized_height, g.resized_width) == resized
    assert (g.pad_top, g.pad_left) == (pad_top, pad_left)


def test_letterbox_pads_with_grey_and_places_the_image() -> None:
    image = np.zeros((300, 450, 3), np.uint8)
    image[:, :, 0] = 255  # pure red
    tensor, g = letterbox(image, 480, 480)
    assert tensor.shape == (1, 3, 480, 480) and tensor.dtype == np.float32
    assert np.all(tensor[0, :, : g.pad_top] == np.float32(114) / np.float32(255))
    assert np.all(tensor[0, :, g.pad_top + g.resized_height:] == np.float32(114) / np.float32(255))
    inside = tensor[0, :, g.pad_top: g.pad_top + g.resized_height]
    assert np.all(inside[0] == 1.0) and np.all(inside[1:] == 0.0)


@pytest.mark.parametrize("fill", [lb.letterbox_into, lb.letterbox_into_numpy])
def test_letterbox_reuses_a_buffer_completely(fill) -> None:
    buffer = np.full((1, 3, 160, 160), 7.0, np.float32)  # garbage from a previous frame
    fill(np.full((90, 160, 3), 200, np.uint8), buffer)
    assert buffer.max() <= 1.0


def test_numpy_letterbox_with_reused_scratch_matches_a_fresh_one() -> None:
    rng = np.random.default_rng(3)
    tensor, scratch = np.empty((1, 3, 160, 160), np.float32), {}
    # Shapes alternate so reused buffers shrink and grow: a short last block, then longer blocks again.
    for shape in [(300, 450), (90, 160), (1080, 1920), (300, 450), (7, 5)]:
        image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        lb.letterbox_into_numpy(image, tensor, scratch)
        fresh = np.empty_like(tensor)
        lb.letterbox_into_numpy(image, fresh)
        assert np.array_equal(tensor, fresh)


def test_native_letterbox_kernel_is_built() -> None:
    assert lb.NATIVE_LETTERBOX, (
        "edge_runtime._letterbox was not built: `pip install -e .` needs a C compiler (make setup installs gcc "
        "when missing); without it the runtime falls back to the slower numpy letterbox")


@pytest.mark.parametrize("src", [(300, 450), (450, 300), (301, 451), (7, 5), (1, 3000), (3000, 1), (1080, 1920),
                                 (480, 480), (640, 640), (2, 2)])
@pytest.mark.parametrize("dst", [(480, 480), (640, 640), (128, 128), (96, 160), (160, 96)])
def test_native_letterbox_matches_numpy(src, dst) -> None:
    rng = np.random.default_rng(src[0] * 7 + dst[1])
    image = rng.integers(0, 256, (*src, 3), dtype=np.uint8)
    native = np.full((1, 3, *dst), 9.0, np.float32)  # stale values from a previous frame must all go
    reference = np.full((1, 3, *dst), -9.0, np.float32)
    assert lb.letterbox_into(image, native) == lb.letterbox_into_numpy(image, reference)
    assert np.array_equal(native, reference)


def test_letterbox_of_a_strided_view_takes_the_numpy_path_with_the_same_result() -> None:
    rng = np.random.default_rng(11)
    image = rng.integers(0, 256, (300, 450, 3), dtype=np.uint8)
    mirrored = image[:, ::-1]  # not C-contiguous: the native kernel only reads contiguous rows
    tensor, expected = np.empty((1, 3, 480, 480), np.float32), np.empty((1, 3, 480, 480), np.float32)
    lb.letterbox_into(mirrored, tensor)
    lb.letterbox_into(np.ascontiguousarray(mirrored), expected)
    assert np.array_equal(tensor, expected)


@pytest.mark.parametrize("change, error", [
    (lambda a: a.update(image=a["image"].astype(np.int16)), ValueError),  # not uint8
    (lambda a: a.update(image=a["image"][:, :, :2].copy()), ValueError),  # two channels
    (lambda a: a.update(tensor=a["tensor"].astype(np.float64)), ValueError),
    (lambda a: a.update(tensor=a["tensor"][:, :, :, ::2]), ValueError),  # strided output (numpy says so)
    (lambda a: a.update(x0=a["x0"].astype(np.int64)), TypeError),
    (lambda a: a.update(y1=np.append(a["y1"], np.int32(0))), ValueError),  # tables of different lengths
    (lambda a: a["x1"].__setitem__(5, 450), ValueError),  # a column past the image
    (lambda a: a["y0"].__setitem__(0, -1), ValueError),
    (lambda a: a["wy1"].__setitem__(3, 4096), ValueError),  # a weight that could overflow
    (lambda a: a.update(top=200), ValueError),  # the resized image would not fit below row 200
])
def test_native_kernel_refuses_inconsistent_input(change, error) -> None:
    """Checked before a pixel is written: a bad call raises instead of reading or writing out of bounds."""
    geometry, taps = lb._native_plan(300, 450, 480, 480)
    args = dict(image=np.zeros((300, 450, 3), np.uint8), tensor=np.zeros((1, 3, 480, 480), np.float32),
                top=geometry.pad_top, left=geometry.pad_left,
                **{name: t.copy() for name, t in zip(["x0", "x1", "wx0", "wx1", "y0", "y1", "wy0", "wy1"], taps)})
    change(args)
    with pytest.raises(error):
        lb._letterbox.letterbox_f32(*args.values(), 0.5)


@pytest.mark.parametrize("src, dst", [
    ((300, 450), (320, 480)),  # upscale, as at imgsz 480 on the real tags
    ((300, 450), (427, 640)),  # upscale at imgsz 640, odd target height
    ((300, 450), (85, 128)),  # downscale by 3.5x
    ((300, 450), (43, 64)),  # strong downscale
    ((301, 451), (213, 320)),  # odd sizes everywhere
    ((450, 300), (480, 320)),  # portrait
    ((7, 5), (64, 46)),  # tiny source, big upscale: border clamping dominates
    ((1080, 1920), (360, 640)),  # a camera frame: a block reads scattered rows, only those are resized
])
def test_resize_is_bit_identical_to_opencv(cv2, src, dst) -> None:
    rng = np.random.default_rng(src[0] * dst[1])
    image = rng.integers(0, 256, (*src, 3), dtype=np.uint8)
    expected = cv2.resize(image, (dst[1], dst[0]), interpolation=cv2.INTER_LINEAR)
    ours = resize_bilinear(image, *dst).transpose(1, 2, 0)
    assert np.array_equal(ours, expected)


@pytest.mark.parametrize("src, size", [((300, 450), 640), ((300, 450), 480), ((450, 301), 320), ((1080, 1920), 640)])
def test_letterbox_is_bit_identical_to_an_opencv_letterbox(cv2, src, size) -> None:
    """The model input itself (native kernel where built), against Ultralytics' way: cv2.resize, grey border, / 255."""
    rng = np.random.default_rng(size + src[0])
    image = rng.integers(0, 256, (*src, 3), dtype=np.uint8)
    tensor, g = letterbox(image, size, size)
    resized = cv2.resize(image, (g.resized_width, g.resized_height), interpolation=cv2.INTER_LINEAR)
    bottom, right = size - g.pad_top - g.resized_height, size - g.pad_left - g.resized_width
    padded = cv2.copyMakeBorder(resized, g.pad_top, bottom, g.pad_left, right, cv2.BORDER_CONSTANT,
                                value=(114, 114, 114))
    expected = padded.transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255)
    assert np.array_equal(tensor, expected)
