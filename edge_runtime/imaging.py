"""Image decoding by content (libjpeg-turbo via simplejpeg, Pillow for the rest), format sniffing, JPEG encoding.

Decoding gives what Ultralytics' pipeline sees (OpenCV's imread: EXIF orientation applied,
libjpeg-turbo's accurate DCT and fancy upsampling); the letterbox that follows lives in
``edge_runtime.letterbox``.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

try:  # libjpeg-turbo in one call without the GIL; Pillow is the fallback and the authority on errors
    import simplejpeg
except ImportError:  # pragma: no cover - a platform without its wheel decodes everything with Pillow
    simplejpeg = None


class ImageDecodeError(ValueError):
    """The bytes are not a complete, decodable image."""


class FrameTooLarge(ImageDecodeError):
    """The image's header declares more pixels than allowed; nothing was decoded."""


def decode_image(data: bytes, *, max_pixels: int | None = None) -> np.ndarray:
    """Decode image bytes (any format Pillow knows, recognised by content) to HxWx3 uint8 RGB.

    EXIF orientation is applied, as OpenCV's imread does. Raises ImageDecodeError for
    corrupt, truncated or empty data, and FrameTooLarge, before any pixel is decoded, when
    the header declares more than ``max_pixels`` pixels (None: Pillow's own bomb limit).

    Plain JPEGs (the camera's frames) go through libjpeg-turbo directly (simplejpeg, same
    library and settings as Pillow and OpenCV: bit-identical pixels) in one call that
    releases the GIL; Pillow's Python-level header parsing and its copy out of the image
    hold the GIL, stalling the other worker (docs/benchmarks.md). JPEGs with EXIF, very
    large ones, CMYK/YCCK ones (whose RGB conversion differs between libraries) and any data
    it rejects go the Pillow way, which also decides what counts as corrupt.
    """
    if simplejpeg is not None and data[:3] == b"\xff\xd8\xff" and not _jpeg_has_exif(data):
        try:
            height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
        except ValueError:
            pass
        else:
            _check_size(width, height, max_pixels)
            if colorspace in ("YCbCr", "Gray") and height * width <= (Image.MAX_IMAGE_PIXELS or height * width):
                try:
                    return simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=False, fastupsample=False,
                                                  strict=True)
                except ValueError:
                    pass
    return _decode_with_pillow(data, max_pixels)


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header alone (nothing decoded), or None when the header is unreadable."""
    if data[:3] == b"\xff\xd8\xff":
        size = _jpeg_frame_size(data)
        if size is not None:
            return size
    if simplejpeg is not None and data[:3] == b"\xff\xd8\xff":
        try:
            height, width, _, _ = simplejpeg.decode_jpeg_header(data)
            return width, height
        except ValueError:
            pass
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None


def _check_size(width: int, height: int, max_pixels: int | None) -> None:
    if max_pixels and width * height > max_pixels:
        raise FrameTooLarge(f"{width}x{height} = {width * height} pixels is over the frame limit of {max_pixels}")


def _decode_with_pillow(data: bytes, max_pixels: int | None = None) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as image:
            _check_size(*image.size, max_pixels)  # from the header: nothing decoded yet
            image.load()
            if image.getexif().get(0x0112, 1) != 1:
                image = ImageOps.exif_transpose(image)
            rgb = image if image.mode == "RGB" else image.convert("RGB")
            return np.asarray(rgb)
    except FrameTooLarge:
        raise
    except Image.DecompressionBombError as exc:  # a header declaring far more pixels than Pillow's own limit
        raise FrameTooLarge(str(exc)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(str(exc) or type(exc).__name__) from None


def _jpeg_has_exif(data: bytes) -> bool:
    """True when a JPEG has an APP1 Exif segment before its scan (or its markers cannot be walked)."""
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return True  # not a marker where one must be: let Pillow judge
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA:  # start of scan: no more metadata segments
            return False
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker == 0xE1 and data[pos + 4:pos + 10] == b"Exif\x00\x00":
            return True
        pos += 2 + length
    return True


# Start-of-frame markers (baseline, extended, progressive, lossless, ...); C4, C8 and CC are other segments.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_frame_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's start-of-frame segment, walking its markers in Python.

    A few microseconds with the GIL held: the frame workers call this once per frame, and a C
    header parser that releases the GIL for a microsecond makes the worker queue for the GIL
    again behind the other threads (docs/benchmarks.md). None when the markers cannot be walked.
    """
    pos, end = 2, len(data)
    while pos + 9 <= end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in _SOF_MARKERS:
            height = int.from_bytes(data[pos + 5:pos + 7], "big")
            width = int.from_bytes(data[pos + 7:pos + 9], "big")
            return (width, height) if width and height else None
        if marker == 0xDA:
            return None
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    return None


_SIGNATURES = (
    (b"\xff\xd8\xff", "jpg", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png", "image/png"),
    (b"BM", "bmp", "image/bmp"),
    (b"GIF87a", "gif", "image/gif"),
    (b"GIF89a", "gif", "image/gif"),
    (b"II*\x00", "tif", "image/tiff"),
    (b"MM\x00*", "tif", "image/tiff"),
)


def image_format(data: bytes) -> tuple[str, str]:
    """File extension and MIME type of encoded image bytes, by content (``("bin", ...)`` when unknown)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp", "image/webp"
    for magic, extension, mime in _SIGNATURES:
        if data.startswith(magic):
            return extension, mime
    return "bin", "application/octet-stream"


def encode_jpeg(pixels: np.ndarray, quality: int = 95) -> bytes:
    """Encode HxWx3 uint8 RGB pixels (camera frames) as JPEG so they can be captured and uploaded."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
