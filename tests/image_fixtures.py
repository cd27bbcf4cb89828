"""Small encoded images for tests (no files from outside the repository needed)."""

from __future__ import annotations

import io

from PIL import Image


def encoded_image(fmt: str = "JPEG", size: tuple[int, int] = (64, 48), shade: int = 90, mode: str = "RGB") -> bytes:
    """A plain image of ``size`` in ``fmt``; different ``shade`` values give different bytes."""
    buffer = io.BytesIO()
    colour = shade if mode in ("L", "1") else (shade, shade, shade)
    Image.new(mode, size, colour).save(buffer, format=fmt)
    return buffer.getvalue()
