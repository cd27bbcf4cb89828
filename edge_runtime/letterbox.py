"""YOLO letterboxing as pure functions: Ultralytics' inference preprocessing, bit for bit.

The letterbox reproduces Ultralytics' ``LetterBox`` (``cv2.resize(..., INTER_LINEAR)`` and
grey 114 padding, then / 255) without OpenCV: ``resize_bilinear`` re-implements OpenCV's
fixed-point bilinear kernel, so the model sees bit-identical pixels to the ones it was
validated on (tests compare against cv2).

``letterbox_into`` runs the same arithmetic in a small C kernel (``_letterbox.c``, built
with the package when a compiler is present) in one pass over the model input, faster than
the numpy passes (docs/benchmarks.md) and without the GIL; where it was not built, the numpy
implementation (``letterbox_into_numpy``) computes the same pixels. Tests hold the two equal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

import numpy as np

try:  # the optional native letterbox kernel (setup.py); same pixels as the numpy passes below
    from edge_runtime import _letterbox
except ImportError:  # pragma: no cover - built without a C compiler, or TAGQA_PURE_PYTHON=1
    _letterbox = None

NATIVE_LETTERBOX = _letterbox is not None

PAD_VALUE = 114
_PAD = np.float32(PAD_VALUE) / np.float32(255)  # what Ultralytics gets from uint8 114 / 255
_COEF_BITS = 11  # OpenCV's INTER_RESIZE_COEF_BITS
_COEF_SCALE = np.float32(1 << _COEF_BITS)


@dataclass(frozen=True)
class LetterboxGeometry:
    """Where the resized image sits inside the model input; maps boxes back exactly."""

    src_height: int
    src_width: int
    dst_height: int
    dst_width: int
    resized_height: int
    resized_width: int
    pad_top: int
    pad_left: int

    @property
    def gain_x(self) -> float:
        return self.resized_width / self.src_width

    @property
    def gain_y(self) -> float:
        return self.resized_height / self.src_height


def letterbox_geometry(src_height: int, src_width: int, dst_height: int, dst_width: int) -> LetterboxGeometry:
    """Scale to fit ``dst`` keeping the aspect ratio (up or down) and centre, as Ultralytics' LetterBox."""
    ratio = min(dst_height / src_height, dst_width / src_width)
    resized_w = max(round(src_width * ratio), 1)
    resized_h = max(round(src_height * ratio), 1)
    pad_w = (dst_width - resized_w) / 2
    pad_h = (dst_height - resized_h) / 2
    return LetterboxGeometry(src_height, src_width, dst_height, dst_width, resized_h, resized_w,
                             pad_top=round(pad_h - 0.1), pad_left=round(pad_w - 0.1))


@lru_cache(maxsize=64)
def _linear_taps(n_in: int, n_out: int, clamp_weights: bool) -> tuple[np.ndarray, ...]:
    """Source indices and fixed-point weights of OpenCV's INTER_LINEAR along one axis."""
    scale = n_in / n_out
    pos = ((np.arange(n_out) + 0.5) * scale - 0.5).astype(np.float32)
    first = np.floor(pos).astype(np.intp)
    frac = (pos - first.astype(np.float32)).astype(np.float32)
    if clamp_weights:  # OpenCV clamps horizontal taps at the borders, vertical ones only by row index
        low = first < 0
        frac[low], first[low] = 0, 0
        high = first >= n_in - 1
        frac[high], first[high] = 0, n_in - 1
    w0 = np.rint((np.float32(1) - frac) * _COEF_SCALE).astype(np.int32)
    w1 = np.rint(frac * _COEF_SCALE).astype(np.int32)
    i0 = np.clip(first, 0, n_in - 1)
    i1 = np.clip(first + 1, 0, n_in - 1)
    for array in (w0, w1, i0, i1):
        array.flags.writeable = False
    return i0, i1, w0, w1


def _buffer(scratch: dict | None, name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """A contiguous ``shape`` array from ``scratch`` (per-thread), or a new one when no scratch is given.

    The scratch keeps one flat array per name and hands out views of its prefix, so the
    shorter last block of a pass, or the next frame's shape, reuses it instead of allocating.
    """
    size = math.prod(shape)
    if scratch is None:
        return np.empty(shape, dtype)
    flat = scratch.get(name)
    if flat is None or flat.size < size or flat.dtype != dtype:
        flat = scratch[name] = np.empty(size, dtype)
    return flat[:size].reshape(shape)


_BLOCK_ROWS = 64  # output rows per vertical block: intermediates stay cache-sized


def _resize_channels(image: np.ndarray, height: int, width: int, scratch: dict | None
                     ) -> Iterator[tuple[int, int, int, np.ndarray]]:
    """OpenCV's fixed-point bilinear resize, yielding (channel, first row, end row, int32 rows x W block).

    The horizontal pass runs on the transposed image, where gathering source columns is
    gathering contiguous rows (several times faster in numpy than a gather along the last
    axis); one transposed copy per channel brings the result back for the vertical pass.
    All arithmetic stays in int32 (no mixed-type loops), one channel at a time so the
    intermediates stay small.
    """
    x0, x1, wx0, wx1 = _linear_taps(image.shape[1], width, True)
    y0, y1, wy0, wy1 = _linear_taps(image.shape[0], height, False)
    src_h, src_w, channels = image.shape
    columns = _buffer(scratch, "columns", (channels, src_w, src_h), np.uint8)
    np.copyto(columns, image.transpose(2, 1, 0))
    gathered = _buffer(scratch, "gathered", (width, src_h), np.uint8)
    acc = _buffer(scratch, "acc", (width, src_h), np.int32)
    tmp = _buffer(scratch, "tmp", (width, src_h), np.int32)
    horizontal = _buffer(scratch, "horizontal", (src_h, width), np.int32)
    for channel in range(channels):
        # Horizontal pass: sum = c0 * w0 + c1 * w1, kept as (sum >> 4) like OpenCV's SIMD kernel.
        np.take(columns[channel], x0, axis=0, out=gathered)
        np.multiply(gathered, wx0[:, None], out=acc)
        np.take(columns[channel], x1, axis=0, out=gathered)
        np.multiply(gathered, wx1[:, None], out=tmp)
        acc += tmp
        acc >>= 4
        np.copyto(horizontal, acc.T)
        # Vertical pass as OpenCV's SIMD kernel: ((w0 * a) >> 16) + ((w1 * b) >> 16), then (+ 2) >> 2.
        for r0 in range(0, height, _BLOCK_ROWS):
            r1 = min(r0 + _BLOCK_ROWS, height)
            top = _buffer(scratch, "top", (r1 - r0, width), np.int32)
            bottom = _buffer(scratch, "bottom", (r1 - r0, width), np.int32)
            np.take(horizontal, y0[r0:r1], axis=0, out=top)
            top *= wy0[r0:r1, None]
            top >>= 16
            np.take(horizontal, y1[r0:r1], axis=0, out=bottom)
            bottom *= wy1[r0:r1, None]
            bottom >>= 16
            top += bottom
            top += 2
            top >>= 2
            yield channel, r0, r1, top


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize HxWxC uint8 to CxHxW int32 in [0, 255], bit-identical to ``cv2.resize(INTER_LINEAR)``.

    Channel-first because the model input is; the runtime itself streams the blocks straight
    into the model input (``letterbox_into``) instead of materialising this array.
    """
    out = np.empty((image.shape[2], height, width), np.int32)
    for channel, r0, r1, block in _resize_channels(image, height, width, None):
        out[channel, r0:r1] = block
    return out


def letterbox_into(image: np.ndarray, tensor: np.ndarray, scratch: dict | None = None) -> LetterboxGeometry:
    """Letterbox HxWx3 uint8 RGB ``image`` into ``tensor`` (1x3xHxW float32, values / 255).

    ``tensor`` is overwritten completely, so callers can reuse one buffer (and ``scratch``) per
    thread. Uses the native kernel when it is built and the arrays suit it (C-contiguous uint8
    image, C-contiguous float32 tensor), the numpy implementation otherwise: same pixels.
    """
    if (_letterbox is not None and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
            and image.flags.c_contiguous and tensor.dtype == np.float32 and tensor.flags.c_contiguous
            and tensor.flags.writeable):
        dst_h, dst_w = tensor.shape[2], tensor.shape[3]
        geometry, taps = _native_plan(image.shape[0], image.shape[1], dst_h, dst_w)
        _letterbox.letterbox_f32(image, tensor, geometry.pad_top, geometry.pad_left, *taps, float(_PAD))
        return geometry
    return letterbox_into_numpy(image, tensor, scratch)


@lru_cache(maxsize=64)
def _native_plan(src_height: int, src_width: int, dst_height: int, dst_width: int
                 ) -> tuple[LetterboxGeometry, tuple[np.ndarray, ...]]:
    """Geometry and int32 tap tables (x0, x1, wx0, wx1, y0, y1, wy0, wy1) for the native kernel."""
    geometry = letterbox_geometry(src_height, src_width, dst_height, dst_width)
    x_taps = _linear_taps(src_width, geometry.resized_width, True)
    y_taps = _linear_taps(src_height, geometry.resized_height, False)
    taps = tuple(np.ascontiguousarray(t, dtype=np.int32) for t in (*x_taps, *y_taps))
    for array in taps:
        array.flags.writeable = False
    return geometry, taps


def letterbox_into_numpy(image: np.ndarray, tensor: np.ndarray, scratch: dict | None = None) -> LetterboxGeometry:
    """``letterbox_into`` in numpy passes (the portable implementation and the native kernel's reference)."""
    dst_h, dst_w = tensor.shape[2], tensor.shape[3]
    geometry = letterbox_geometry(image.shape[0], image.shape[1], dst_h, dst_w)
    rh, rw, top, left = geometry.resized_height, geometry.resized_width, geometry.pad_top, geometry.pad_left
    tensor[0, :, :top, :] = _PAD
    tensor[0, :, top + rh:, :] = _PAD
    tensor[0, :, top:top + rh, :left] = _PAD
    tensor[0, :, top:top + rh, left + rw:] = _PAD
    region = tensor[0, :, top:top + rh, left:left + rw]
    if (rh, rw) == image.shape[:2]:
        np.divide(image.transpose(2, 0, 1), 255, out=region, dtype=np.float32)
    else:
        for channel, r0, r1, block in _resize_channels(image, rh, rw, scratch):
            np.divide(block, 255, out=region[channel, r0:r1], dtype=np.float32)
    return geometry


def letterbox(image: np.ndarray, height: int, width: int) -> tuple[np.ndarray, LetterboxGeometry]:
    """Allocate and fill a 1x3xHxW float32 model input for ``image``."""
    tensor = np.empty((1, 3, height, width), dtype=np.float32)
    return tensor, letterbox_into(image, tensor)
