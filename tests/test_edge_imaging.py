"""Decoding by content (simplejpeg fast path, Pillow), format sniffing and JPEG encoding."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from edge_runtime import imaging
from edge_runtime.imaging import ImageDecodeError, decode_image, encode_jpeg, image_format


def _jpeg(width: int, height: int, **save) -> bytes:
    rng = np.random.default_rng(width * 1000 + height)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(buffer, "JPEG", **save)
    return buffer.getvalue()


@pytest.fixture
def cv2():
    """OpenCV is the reference implementation (installed with the dev extras through ultralytics)."""
    import cv2

    return cv2


def test_decode_matches_opencv_on_a_jpeg(cv2) -> None:
    data = _jpeg(450, 300, quality=90)
    expected = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    assert np.array_equal(decode_image(data), expected)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_decode_converts_other_modes_to_rgb(mode: str) -> None:
    buffer = io.BytesIO()
    Image.new(mode, (45, 30)).save(buffer, "PNG")
    assert decode_image(buffer.getvalue()).shape == (30, 45, 3)


def test_decode_applies_exif_orientation() -> None:
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view": a camera held sideways
    Image.new("RGB", (450, 300)).save(buffer, "JPEG", exif=exif)
    assert decode_image(buffer.getvalue()).shape == (450, 300, 3)


def _pillow_jpeg(mode: str, size: tuple[int, int], **save) -> bytes:
    rng = np.random.default_rng(7)
    channels = {"L": 1, "RGB": 3, "CMYK": 4}[mode]
    pixels = rng.integers(0, 255, (size[1], size[0], channels), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels, mode).save(buffer, "JPEG", **save)
    return buffer.getvalue()


@pytest.mark.parametrize("data, fast", [
    (_pillow_jpeg("RGB", (450, 300), quality=90), True),  # the camera's frames: 4:2:0
    (_pillow_jpeg("RGB", (451, 299), quality=95, subsampling=0), True),  # 4:4:4, odd sizes
    (_pillow_jpeg("RGB", (300, 450), progressive=True), True),
    (_pillow_jpeg("L", (450, 300)), True),  # a grey camera: replicated to RGB like Pillow does
    (_pillow_jpeg("CMYK", (45, 30)), True),  # libraries convert CMYK differently: Pillow decodes it
    (_pillow_jpeg("RGB", (450, 300), exif=Image.Exif()), False),  # EXIF present: Pillow applies it
])
def test_jpeg_fast_path_gives_pillows_pixels(data: bytes, fast: bool) -> None:
    assert imaging.simplejpeg is not None, "simplejpeg is a dependency of the edge extra"
    assert imaging._jpeg_has_exif(data) is not fast
    assert np.array_equal(decode_image(data), imaging._decode_with_pillow(data))


def test_jpeg_fast_path_on_the_real_tags(real_dataset) -> None:
    for path in sorted((real_dataset / "images").glob("*/*"))[:60]:
        data = path.read_bytes()
        assert not imaging._jpeg_has_exif(data), path
        assert imaging._jpeg_frame_size(data) == Image.open(io.BytesIO(data)).size, path
        assert np.array_equal(decode_image(data), imaging._decode_with_pillow(data)), path


@pytest.mark.parametrize("data", [
    _pillow_jpeg("RGB", (451, 299), quality=95, subsampling=0),
    _pillow_jpeg("RGB", (300, 450), progressive=True),
    _pillow_jpeg("L", (450, 300)),
    _pillow_jpeg("CMYK", (45, 30)),
    _pillow_jpeg("RGB", (450, 300), exif=Image.Exif()),
])
def test_jpeg_frame_size_from_the_markers_matches_pillow(data: bytes) -> None:
    """The per-frame size check walks the markers in Python (no GIL round trip); Pillow's header agrees."""
    assert imaging._jpeg_frame_size(data) == imaging.image_size(data) == Image.open(io.BytesIO(data)).size


def test_jpeg_frame_size_gives_up_on_data_it_cannot_walk() -> None:
    assert imaging._jpeg_frame_size(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 64) is None
    assert imaging._jpeg_frame_size(_jpeg(450, 300)[:8]) is None
    assert imaging.image_size(b"not an image at all") is None


@pytest.mark.parametrize("data", [
    b"",  # empty file (camera wrote nothing yet)
    b"not an image at all",  # a stray text file
    _jpeg(450, 300)[:2000],  # half-written JPEG
    _jpeg(450, 300)[:-400],  # JPEG cut inside its scan (the fast path must not pad it with grey)
    b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 64,  # a JPEG header and nothing else
])
def test_decode_rejects_corrupt_input(data: bytes) -> None:
    with pytest.raises(ImageDecodeError):
        decode_image(data)


@pytest.mark.parametrize("data, extension", [
    (_jpeg(20, 10), "jpg"),  # content, not the file name, decides (the dataset's .jpg_0 files)
    (b"\x89PNG\r\n\x1a\n....", "png"),
    (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "webp"),
    (b"garbage", "bin"),
])
def test_image_format_by_content(data: bytes, extension: str) -> None:
    assert image_format(data)[0] == extension


def test_encode_jpeg_round_trips_camera_pixels() -> None:
    pixels = np.full((30, 45, 3), 120, np.uint8)
    assert decode_image(encode_jpeg(pixels)).shape == (30, 45, 3)
