"""Camera sources: a watched folder, a looping image set, an OpenCV capture device.

Every source yields ``Frame`` objects from ``frames(stop)`` until ``stop`` is set. Frames
carry encoded bytes (folder, loop) or decoded pixels (camera); decoding happens on the
worker threads, not here, so a source only does I/O.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Protocol

import numpy as np

log = logging.getLogger(__name__)

# Names writers use while a file is still being written; such files are never read.
_PARTIAL_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".filepart")


@dataclass
class Frame:
    """One image from a source; ``on_done`` runs once its result (or error record) is safe on disk or at the broker."""

    image_id: str
    source_name: str
    captured_at: datetime
    data: bytes | None = None
    pixels: np.ndarray | None = None
    on_done: Callable[[], None] | None = field(default=None, repr=False)


class FrameSource(Protocol):
    description: str

    def frames(self, stop: threading.Event) -> Iterator[Frame]: ...


def _id_stem(source_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(source_name).stem).strip("._-")[:64] or "frame"


def new_image_id(source_name: str) -> str:
    """A unique, key-safe id that still says where the frame came from: ``<stem>-<10 hex>`` (random).

    For frames that exist only once (camera, simulated camera): nothing can read them again.
    """
    return f"{_id_stem(source_name)}-{uuid.uuid4().hex[:10]}"


def stable_image_id(source_name: str, data: bytes) -> str:
    """``<stem>-<10 hex of sha256(name, NUL, bytes)>``: the same file gives the same id in every process.

    A file read again after a crash or restart keeps its id, so consumers de-duplicate its
    results by (device, image id).
    """
    digest = hashlib.sha256(source_name.encode("utf-8") + b"\0" + data).hexdigest()
    return f"{_id_stem(source_name)}-{digest[:10]}"


def _is_candidate(name: str) -> bool:
    return not name.startswith((".", "~")) and not name.lower().endswith(_PARTIAL_SUFFIXES)


class FolderSource:
    """New files in a folder, oldest first; every non-hidden, non-partial file is a frame (format by content).

    A file counts as written once its mtime is ``settle_seconds`` old; a file that changes
    after it was read (a half-written file completed late) is read again. Image ids are
    derived from the file name and content (``stable_image_id``), so a file read again after
    a restart keeps its id. With ``on_read="delete"`` the file is removed once its result is
    safe (fsync'ed or acknowledged by the broker: the frame's ``on_done``), never earlier; with
    ``"keep"`` each version of a file is read once per process, and names of files that
    disappear are forgotten, so memory follows the folder.
    """

    def __init__(self, folder: Path, *, on_read: str = "keep", settle_seconds: float = 0.2,
                 poll_seconds: float = 0.05) -> None:
        self.folder = Path(folder)
        self.on_read = on_read
        self.settle_seconds = settle_seconds
        self.poll_seconds = poll_seconds
        self.description = f"folder:{self.folder}"
        self._seen: dict[str, tuple[int, int]] = {}

    def _scan(self) -> list[tuple[int, str, tuple[int, int]]]:
        now_ns = time.time_ns()
        settle_ns = int(self.settle_seconds * 1e9)
        ready, present = [], set()
        with os.scandir(self.folder) as entries:
            for entry in entries:
                if not _is_candidate(entry.name) or not entry.is_file():
                    continue
                present.add(entry.name)
                stat = entry.stat()
                version = (stat.st_size, stat.st_mtime_ns)
                if self._seen.get(entry.name) == version:
                    continue
                if now_ns - stat.st_mtime_ns >= settle_ns:
                    ready.append((stat.st_mtime_ns, entry.name, version))
        for name in self._seen.keys() - present:
            del self._seen[name]
        return sorted(ready)

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        while not stop.is_set():
            try:
                ready = self._scan()
            except OSError as exc:
                log.error("cannot list source folder %s: %s", self.folder, exc)
                stop.wait(1.0)
                continue
            for _, name, version in ready:
                if stop.is_set():
                    return
                self._seen[name] = version
                path = self.folder / name
                try:
                    data = path.read_bytes()
                except OSError as exc:
                    log.warning("cannot read %s: %s", path, exc)
                    continue
                yield Frame(stable_image_id(name, data), name, datetime.now(timezone.utc), data=data,
                            on_done=(lambda p=path, v=version: _delete_if_unchanged(p, v))
                            if self.on_read == "delete" else None)
            if not ready:
                stop.wait(self.poll_seconds)


def _delete_if_unchanged(path: Path, version: tuple[int, int]) -> None:
    """Delete an input whose result is safe, unless it was rewritten since it was read (then it is read again)."""
    try:
        stat = path.stat()
        if (stat.st_size, stat.st_mtime_ns) == version:
            path.unlink()
    except FileNotFoundError:
        pass


class LoopSource:
    """The images of a folder in name order, over and over (a simulated camera)."""

    def __init__(self, folder: Path, *, interval_seconds: float = 0.0) -> None:
        self.folder = Path(folder)
        self.interval_seconds = interval_seconds
        self.description = f"loop:{self.folder}"

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        while not stop.is_set():
            names = sorted(n for n in os.listdir(self.folder) if _is_candidate(n) and (self.folder / n).is_file())
            if not names:
                log.warning("loop source %s has no images; waiting", self.folder)
                stop.wait(1.0)
                continue
            for name in names:
                if stop.is_set():
                    return
                started = time.monotonic()
                try:
                    data = (self.folder / name).read_bytes()
                except OSError as exc:
                    log.warning("cannot read %s: %s", self.folder / name, exc)
                    continue
                yield Frame(new_image_id(name), name, datetime.now(timezone.utc), data=data)
                if self.interval_seconds:
                    stop.wait(max(0.0, self.interval_seconds - (time.monotonic() - started)))


class CameraSource:
    """Frames from an OpenCV capture device (index), stream URL or video file; reopens on failure."""

    def __init__(self, target: str, *, interval_seconds: float = 0.0, reopen_seconds: float = 2.0) -> None:
        import cv2  # optional dependency: only a camera source needs OpenCV

        self._cv2 = cv2
        self.target: int | str = int(target) if target.isdigit() else target
        self.interval_seconds = interval_seconds
        self.reopen_seconds = reopen_seconds
        self.description = f"camera:{target}"
        self._name = f"camera{target}" if isinstance(self.target, int) else Path(str(target)).name

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        while not stop.is_set():
            capture = self._cv2.VideoCapture(self.target)
            if not capture.isOpened():
                log.error("cannot open camera %s; retrying in %.0f s", self.target, self.reopen_seconds)
                stop.wait(self.reopen_seconds)
                continue
            try:
                while not stop.is_set():
                    started = time.monotonic()
                    ok, bgr = capture.read()
                    if not ok:
                        log.warning("camera %s returned no frame; reopening", self.target)
                        break
                    yield Frame(new_image_id(self._name), self._name, datetime.now(timezone.utc),
                                pixels=np.ascontiguousarray(bgr[:, :, ::-1]))
                    if self.interval_seconds:
                        stop.wait(max(0.0, self.interval_seconds - (time.monotonic() - started)))
            finally:
                capture.release()


def open_source(spec: str, *, interval_seconds: float = 0.0, on_read: str = "keep",
                settle_seconds: float = 0.2) -> FrameSource:
    """``folder:PATH`` or a bare path (watched folder), ``loop:PATH``, or ``camera:INDEX|URL|FILE``."""
    kind, sep, rest = spec.partition(":")
    if sep and kind == "camera":
        return CameraSource(rest, interval_seconds=interval_seconds)
    if sep and kind == "loop":
        path = Path(rest)
        if not path.is_dir():
            raise ValueError(f"source {spec!r}: {path} is not a directory")
        return LoopSource(path, interval_seconds=interval_seconds)
    path = Path(rest if sep and kind == "folder" else spec)
    if not path.is_dir():
        raise ValueError(f"source {spec!r}: {path} is not a directory")
    return FolderSource(path, on_read=on_read, settle_seconds=settle_seconds)
