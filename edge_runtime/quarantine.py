"""Bad frames kept on the device for inspection, bounded by a disk budget.

A frame that produced an error record (corrupt, too large, failed inference) is written to
``directory`` as ``<image_id>.<ext>`` with ``<image_id>.json`` beside it (the error record),
each fsync'ed and renamed into place, the record last. Over ``max_bytes`` the oldest entries
are deleted and counted (``evicted``); a frame larger than the whole budget is not kept
(counted in ``dropped``).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from edge_runtime.imaging import image_format

log = logging.getLogger(__name__)


class Quarantine:
    """See the module docstring. Thread-safe."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.kept = 0
        self.evicted = 0
        self.dropped = 0
        self._lock = threading.Lock()
        for leftover in self.directory.glob("*.tmp"):
            leftover.unlink()
        self._entries: list[tuple[int, str, int]] = []  # (mtime_ns, stem, bytes), oldest first
        for record in self.directory.glob("*.json"):
            files = list(self.directory.glob(record.stem + ".*"))
            self._entries.append((record.stat().st_mtime_ns, record.stem, sum(f.stat().st_size for f in files)))
        self._entries.sort()
        self.bytes = sum(size for _, _, size in self._entries)

    def put(self, image_id: str, data: bytes, record: dict[str, Any]) -> bool:
        """Keep ``data`` with its error ``record``; False when the frame alone is over the budget."""
        record_bytes = json.dumps(record, indent=1).encode("utf-8")
        size = len(data) + len(record_bytes)
        with self._lock:
            if size > self.max_bytes:
                self.dropped += 1
                log.warning("bad frame %s (%d bytes) is larger than the quarantine budget; not kept", image_id, size)
                return False
            for entry in [e for e in self._entries if e[1] == image_id]:  # the same frame again (after a restart)
                self._entries.remove(entry)
                self.bytes -= entry[2]
            while self._entries and self.bytes + size > self.max_bytes:
                _, stem, freed = self._entries.pop(0)
                for path in self.directory.glob(stem + ".*"):
                    path.unlink(missing_ok=True)
                self.bytes -= freed
                self.evicted += 1
            extension, _ = image_format(data)
            _write_durably(self.directory / f"{image_id}.{extension}", data)
            _write_durably(self.directory / f"{image_id}.json", record_bytes)
            self._entries.append((0, image_id, size))
            self.bytes += size
            self.kept += 1
        return True


def _write_durably(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
