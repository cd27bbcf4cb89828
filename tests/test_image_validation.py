"""Images are judged by content; every kind of bad input gets its own reason."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tagqa_assets.ingestion import validation
from tagqa_assets.ingestion.validation import InvalidImage, inspect_image


def _encode(fmt: str, size=(60, 40), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, 90 if mode in ("L", "1") else (90, 90, 90)).save(buffer, format=fmt)
    return buffer.getvalue()


JPEG = _encode("JPEG")
PNG = _encode("PNG")


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        (JPEG, "JPEG"),  # the common case
        (PNG, "PNG"),  # a PNG uploaded as .jpg is accepted as what it is
        (_encode("BMP"), "BMP"),  # uncompressed camera dumps
        (_encode("PNG", mode="L"), "PNG"),  # grayscale sensors
    ],
)
def test_valid_images_are_described(data, fmt):
    info = inspect_image(data)
    assert (info.format, info.width, info.height, info.bytes) == (fmt, 60, 40, len(data))
    assert info.sha256 == validation.sha256_hex(data)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", validation.EMPTY_FILE),  # zero-byte upload
        (b"this is a text file, not a picture\n", validation.NOT_AN_IMAGE),  # text named .jpg
        (JPEG[: len(JPEG) // 2], validation.TRUNCATED),  # camera cut off mid-write
        (PNG[:-30], validation.TRUNCATED),  # truncated PNG loses its last chunks
        (b"GIF89a" + b"\x00" * 40, validation.NOT_AN_IMAGE),  # garbage behind a valid magic number
    ],
)
def test_bad_inputs_are_refused_with_reason(data, reason):
    with pytest.raises(InvalidImage) as caught:
        inspect_image(data)
    assert caught.value.reason == reason


def test_decompression_bomb_is_refused_before_decoding():
    # 10,000 x 10,000 px of one colour compresses to a few hundred KB of PNG.
    bomb = _encode("PNG", size=(10_000, 10_000), mode="1")
    assert len(bomb) < 2_000_000
    with pytest.raises(InvalidImage) as caught:
        inspect_image(bomb, max_pixels=20_000_000)
    assert caught.value.reason == validation.TOO_MANY_PIXELS
    assert "100000000" in caught.value.detail


def test_unsupported_format_is_named():
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="GIF")
    with pytest.raises(InvalidImage) as caught:
        inspect_image(buffer.getvalue())
    assert caught.value.reason == validation.UNSUPPORTED_FORMAT
    assert "GIF" in caught.value.detail
