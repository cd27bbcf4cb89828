"""Decide whether bytes are an image tagqa accepts, by content, never by file extension.

Orientation rule (docs/interfaces.md, "Image orientation"): an image is what a viewer shows.
A JPEG/TIFF/WebP/PNG whose EXIF ``Orientation`` tag (0x0112) is 2-8 stores its pixels
mirrored or turned; its *display* size (``width`` x ``height``) is the stored size with the
axes swapped for orientations 5-8. Labels, dataset exports, evaluation and the edge runtime
all work in display pixels; the stored size and the orientation are recorded beside it.
"""

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
    """What ingestion records about a valid image: ``width`` x ``height`` as a viewer shows it
    (EXIF orientation applied), ``stored_width`` x ``stored_height`` as the pixels are stored,
    and ``orientation`` (EXIF 1-8; 1 when absent or not a valid value)."""

    sha256: str
    bytes: int
    width: int
    height: int
    format: str
    channels: int
    stored_width: int
    stored_height: int
    orientation: int = 1


EXIF_ORIENTATION = 0x0112
# Orientations 5-8 turn the image by 90 or 270 degrees: display width = stored height.
SWAPS_AXES = frozenset({5, 6, 7, 8})


def exif_orientation(image: Image.Image) -> int:
    """The EXIF Orientation of an open image, 1 when absent or outside 1-8 (viewers ignore those)."""
    try:
        value = int(image.getexif().get(EXIF_ORIENTATION, 1))
    except (TypeError, ValueError, SyntaxError, OSError):
        return 1
    return value if 1 <= value <= 8 else 1


def display_size(stored_width: int, stored_height: int, orientation: int) -> tuple[int, int]:
    """The size a viewer shows for pixels stored as ``stored_width`` x ``stored_height``."""
    return (stored_height, stored_width) if orientation in SWAPS_AXES else (stored_width, stored_height)


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
            orientation = exif_orientation(image)
            shown_width, shown_height = display_size(width, height, orientation)
            return ImageInfo(
                sha256=sha256_hex(data),
                bytes=len(data),
                width=shown_width,
                height=shown_height,
                format=fmt,
                channels=len(image.getbands()),
                stored_width=width,
                stored_height=height,
                orientation=orientation,
            )
