"""The demo camera: a loop of synthetic tag frames written into a local device's incoming folder.

``make run`` starts it (``tagqa edge demo-camera``) beside the local device so a newcomer sees
live traffic once the first model is deployed: the device reads ``<device>/incoming/``
(``folderOnRead: delete``), publishes a result per frame and sends uncertain frames back to
``raw/edge-feedback/<device>/``.

The frames are tags the demo set never contained (their own seed), drawn once at start with
the defect kinds of the taxonomy and then repeated in order. Each one is written under a
hidden ``.part`` name and renamed, so the device never reads half a file, and named
``demo-camera-<UTC time>-<frame>.jpg``: unique across restarts, so its results are never
taken for duplicates. The camera keeps at most ``max_pending`` of its frames waiting in the
folder: until a model is deployed (the device reads nothing yet) or while the device is
stopped it waits instead of filling the disk, and the first model starts on those frames.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from tagqa_assets.ingestion.synthetic import DEFECT_KINDS, generate_tags

log = logging.getLogger(__name__)

FRAME_PREFIX = "demo-camera-"
PART_PREFIX = ".demo-camera-"
FRAME_SEED = 7_000_001  # not a seed `tagqa demo` uses for the training set (it starts at 0)


@dataclass(frozen=True)
class CameraFrame:
    """One frame of the loop: its name stem and JPEG bytes."""

    stem: str
    jpeg: bytes


def demo_frames(count: int, defects: tuple[str, ...]) -> list[CameraFrame]:
    """``count`` synthetic tags with the ``defects`` kinds the generator can draw (all the same seed
    each start). Raises ``ValueError`` when none of ``defects`` can be drawn."""
    drawable = tuple(kind for kind in defects if kind in DEFECT_KINDS)
    if not drawable:
        raise ValueError(f"the demo camera draws {list(DEFECT_KINDS)}; the taxonomy {list(defects)} has none of them")
    if count < 1:
        raise ValueError(f"the demo camera needs at least one frame, got {count}")
    # Class ids are positions in ``defects``; the camera's frames carry no labels, so the kinds it draws are enough.
    return [CameraFrame(Path(tag.name).stem, tag.jpeg)
            for tag in generate_tags(count, seed=FRAME_SEED, prefix="frame", defects=drawable)]


class DemoCamera:
    """Writes ``frames`` into ``folder`` in a loop, one every ``1 / fps`` seconds, until ``stop`` is set.

    Guarantees: a frame appears in ``folder`` whole (rename of a hidden ``.part`` file) or not at
    all; at most ``max_pending`` of the camera's own frames wait in ``folder`` at any time; a
    ``.part`` file left by a killed camera is removed at the next start.
    """

    def __init__(self, folder: Path, frames: list[CameraFrame], *, fps: float = 1.0, max_pending: int = 10) -> None:
        if fps <= 0:
            raise ValueError(f"the demo camera's frame rate must be positive, got {fps}")
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        if not frames:
            raise ValueError("the demo camera has no frames")
        self.folder = Path(folder)
        self.frames = frames
        self.interval = 1.0 / fps
        self.max_pending = max_pending
        self.written = 0

    def pending(self) -> int:
        """The camera's frames in the folder that the device has not consumed yet."""
        with os.scandir(self.folder) as entries:
            return sum(1 for e in entries if e.name.startswith(FRAME_PREFIX) and e.is_file())

    def _clean_partials(self) -> None:
        with os.scandir(self.folder) as entries:
            for entry in entries:
                if entry.name.startswith(PART_PREFIX) and entry.name.endswith(".part"):
                    Path(entry.path).unlink(missing_ok=True)

    def write(self, frame: CameraFrame) -> Path:
        """Put ``frame`` into the folder under a new unique name; returns its path."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        name = f"{FRAME_PREFIX}{stamp}-{frame.stem}.jpg"
        partial = self.folder / f".{name}.part"
        try:
            partial.write_bytes(frame.jpeg)
            os.replace(partial, self.folder / name)
        finally:
            partial.unlink(missing_ok=True)
        self.written += 1
        return self.folder / name

    def run(self, stop: threading.Event) -> None:
        """Feed the folder until ``stop`` is set; logs when it starts and stops waiting for the device."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._clean_partials()
        log.info("demo camera: %d frames in a loop into %s, one every %.2f s (at most %d waiting)",
                 len(self.frames), self.folder, self.interval, self.max_pending)
        index, waiting = 0, False
        while not stop.is_set():
            if self.pending() >= self.max_pending:
                if not waiting:
                    log.info("demo camera: %d frames wait in %s (no model deployed yet, or the device is not reading); "
                             "paused until it reads them", self.max_pending, self.folder)
                    waiting = True
                stop.wait(self.interval)
                continue
            if waiting:
                log.info("demo camera: the device reads again; feeding")
                waiting = False
            self.write(self.frames[index % len(self.frames)])
            index += 1
            stop.wait(self.interval)
        log.info("demo camera stopped after %d frames", self.written)
