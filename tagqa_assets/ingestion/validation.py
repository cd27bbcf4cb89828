"""Decide whether bytes are an image tagqa accepts, by content, never by file extension."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 50_000_000
ACCEPTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "BMP", "TIFF", "WEBP"})

# Reason codes written into quarantine reason records (docs/interfaces.md lists them).
EMPTY_FILE = "empty_file"
NOT_AN_IMAGE = "not_an_image"
UNSUPPORTED_FORMAT = "unsupported_format"
TOO_MANY_PIXELS = "too_many_pixels"
TRUNCATED = "truncated"
CORRUPT = "corrupt"
UNSAFE_KEY = "unsafe_key"
KEY_LAYOUT = "key_layout"
REASONS = (EMPTY_FILE, NOT_AN_IMAGE, UNSUPPORTED_FORMAT, TOO_MANY_PIXELS, TRUNCATED, CORRUPT, UNSAFE_KEY, KEY_LAYOUT)


class InvalidImage(ValueError):
    """Bytes rejected as an image; ``reason`` is one of ``REASONS``, ``detail`` says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ImageInfo:
    """What ingestion records about a valid image."""

    sha256: str
    bytes: int
    width: int
    height: int
    format: str
    channels: int


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data``: the content identity used across the platform."""
    return hashlib.sha256(data).hexdigest()


def inspect_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Fully decode ``data`` and describe it, or raise ``InvalidImage``.

    Guarantees: the format is detected from the content (a PNG named ``.jpg`` is a PNG);
    the pixel count is checked against ``max_pixels`` before any pixel is decoded, so a
    decompression bomb is refused without allocating it; every pixel is decoded, so a
    truncated file is refused rather than silently padded.
    """
    if not data:
        raise InvalidImage(EMPTY_FILE, "the file has 0 bytes")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            raise InvalidImage(TOO_MANY_PIXELS, str(exc)) from exc
        except UnidentifiedImageError as exc:
            raise InvalidImage(NOT_AN_IMAGE, f"no known image format in the first bytes {data[:16]!r}") from exc
        except (OSError, SyntaxError, ValueError) as exc:
            # The header itself is cut off or malformed.
            raise InvalidImage(TRUNCATED if "runcated" in str(exc) else CORRUPT, str(exc)) from exc
        with image:
            if image.format not in ACCEPTED_FORMATS:
                raise InvalidImage(UNSUPPORTED_FORMAT, f"format {image.format} is not one of {sorted(ACCEPTED_FORMATS)}")
            width, height = image.size
            if width <= 0 or height <= 0:
                raise InvalidImage(CORRUPT, f"image size {width}x{height}")
            if width * height > max_pixels:
                raise InvalidImage(TOO_MANY_PIXELS, f"{width}x{height} = {width * height} pixels exceeds the limit of {max_pixels}")
            try:
                image.load()
            except OSError as exc:
                reason = TRUNCATED if "runcated" in str(exc) else CORRUPT
                raise InvalidImage(reason, str(exc)) from exc
            except (SyntaxError, ValueError, Image.DecompressionBombError) as exc:
                raise InvalidImage(CORRUPT, str(exc)) from exc
            fmt = "JPEG" if image.format == "MPO" else image.format
            return ImageInfo(
                sha256=sha256_hex(data),
                bytes=len(data),
                width=width,
                height=height,
                format=fmt,
                channels=len(image.getbands()),
            )
