"""Durable on-disk queue of captured frames waiting for upload, bounded by a disk budget.

Each item is two files in ``directory``: ``<priority>-<name>`` (the image bytes as captured)
and ``<priority>-<name>.json`` (the sidecar). Both are written to a temporary name and
renamed, the sidecar last, so an item exists only once it is complete; leftovers of a crash
are removed at start-up. Items are served by priority (0 = operator feedback, 1 = automatic)
then by name, which starts with the capture time. When the budget would be exceeded the
oldest automatic items go first, operator-flagged ones only when nothing else is left; every
eviction is counted.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PRIORITY_OPERATOR = 0
PRIORITY_AUTOMATIC = 1


@dataclass(frozen=True)
class CaptureItem:
    """One queued capture; ``name`` is the capture file name used in the store keys."""

    priority: int
    name: str
    size: int
    generation: int = 0  # tells a replaced item from its successor of the same name

    @property
    def stem(self) -> str:
        return f"{self.priority}-{self.name}"


class CaptureQueue:
    """See the module docstring. All methods are thread-safe."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.evicted = 0
        self._cond = threading.Condition()
        self._items: dict[str, CaptureItem] = {}
        self._bytes = 0
        self._generations = itertools.count(1)
        self._recover()

    def _recover(self) -> None:
        files = {p.name: p for p in self.directory.iterdir() if p.is_file()}
        for name, path in files.items():
            if name.endswith(".tmp"):
                path.unlink()
        for name, path in files.items():
            if name.endswith(".tmp") or name.endswith(".json"):
                continue
            sidecar = files.get(name + ".json")
            priority, _, capture = name.partition("-")
            if sidecar is None or not priority.isdigit():
                log.warning("capture queue: removing incomplete item %s", name)
                path.unlink()
                continue
            item = CaptureItem(int(priority), capture, path.stat().st_size + sidecar.stat().st_size)
            self._items[capture] = item
            self._bytes += item.size
        for name, path in files.items():
            if name.endswith(".json") and name[:-5] not in files:
                path.unlink()

    @property
    def depth(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        return self._bytes

    def put(self, name: str, image: bytes, sidecar: dict[str, Any], *, priority: int) -> bool:
        """Queue a capture; an item of the same name is replaced (keeping the higher priority).

        Returns False (and counts an eviction) when the item alone is larger than the budget.
        """
        sidecar_bytes = json.dumps(sidecar, indent=1).encode("utf-8")
        size = len(image) + len(sidecar_bytes)
        with self._cond:
            existing = self._items.get(name)
            if existing is not None:
                priority = min(priority, existing.priority)
                self._delete(existing)
            if size > self.max_bytes:
                self.evicted += 1
                log.warning("capture %s (%d bytes) is larger than the queue budget %d; dropped",
                            name, size, self.max_bytes)
                return False
            self._make_room(size)
            item = CaptureItem(priority, name, size, next(self._generations))
            _write_atomic(self.directory / item.stem, image)
            _write_atomic(self.directory / f"{item.stem}.json", sidecar_bytes)
            self._items[name] = item
            self._bytes += size
            self._cond.notify_all()
            return True

    def _make_room(self, size: int) -> None:
        while self._items and self._bytes + size > self.max_bytes:
            victim = min(self._items.values(), key=lambda i: (-i.priority, i.name))
            self._delete(victim)
            self.evicted += 1
            log.warning("capture queue over its %d-byte budget: evicted %s", self.max_bytes, victim.name)

    def _delete(self, item: CaptureItem) -> None:
        (self.directory / f"{item.stem}.json").unlink(missing_ok=True)
        (self.directory / item.stem).unlink(missing_ok=True)
        self._items.pop(item.name, None)
        self._bytes -= item.size

    def peek(self, timeout: float = 0.0) -> CaptureItem | None:
        """The next item to upload (highest priority, oldest), waiting up to ``timeout`` for one."""
        with self._cond:
            if not self._items and timeout:
                self._cond.wait(timeout)
            if not self._items:
                return None
            return min(self._items.values(), key=lambda i: (i.priority, i.name))

    def read(self, item: CaptureItem) -> tuple[bytes, bytes] | None:
        """Image and sidecar bytes of ``item``, or None if it was evicted meanwhile."""
        with self._cond:
            if self._items.get(item.name) != item:
                return None
            return (self.directory / item.stem).read_bytes(), (self.directory / f"{item.stem}.json").read_bytes()

    def remove(self, item: CaptureItem) -> None:
        """Drop ``item`` after a successful upload (no-op if it was evicted or replaced meanwhile)."""
        with self._cond:
            if self._items.get(item.name) == item:
                self._delete(item)

    def set_aside(self, item: CaptureItem, reason: str) -> None:
        """Move an item that cannot be uploaded into ``bad/`` with a ``.reason`` file (kept, out of the queue)."""
        with self._cond:
            if self._items.get(item.name) != item:
                return
            bad = self.directory / "bad"
            bad.mkdir(exist_ok=True)
            for suffix in ("", ".json"):
                source = self.directory / f"{item.stem}{suffix}"
                if source.exists():
                    os.replace(source, bad / source.name)
            (bad / f"{item.stem}.reason").write_text(reason + "\n", encoding="utf-8")
            self._items.pop(item.name, None)
            self._bytes -= item.size

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
