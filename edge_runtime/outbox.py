"""Ordered, at-least-once delivery of results, buffered on disk (bounded) while the link is down.

Results go to memory while the publisher keeps up; when it does not (broker down, slow
link) they are appended to JSON-lines segments under ``directory``. The sender publishes
from the oldest entry on, with a window of unacknowledged messages; when a publish fails
it waits for the window to settle and re-sends what was not acknowledged, in order. The
disk buffer is bounded by ``max_bytes``: the oldest segment is evicted and its results
counted. On stop, unsent results are written to disk and sent first after a restart.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from edge_runtime.publishers import Publisher

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    seq: int
    topic: str
    payload: bytes
    segment: str | None = None  # the disk segment still holding this entry


class ResultOutbox:
    """See the module docstring. Thread-safe ``put``; one sender thread."""

    def __init__(self, directory: Path, publisher: Publisher, *, max_bytes: int, memory_items: int = 512,
                 window: int = 32, settle_timeout: float = 30.0) -> None:
        self._dir = Path(directory)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._publisher = publisher
        self.max_bytes = max_bytes
        self._memory_items = memory_items
        self._window = window
        self._settle_timeout = settle_timeout
        self._segment_bytes = max(4096, min(1 << 20, max_bytes // 8))
        self._cond = threading.Condition()
        self._memory: deque[_Entry] = deque()
        self._closed: list[Path] = sorted(self._dir.glob("seg-*.jsonl"))
        self._loaded: dict[str, int] = {}  # segment name -> entries not yet acknowledged
        self._writer: tuple[Path, object] | None = None
        self._disk_bytes = sum(p.stat().st_size for p in self._closed)
        self._disk_entries = sum(_count_lines(p) for p in self._closed)
        self._next_seq = self._last_seq_on_disk() + 1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.published = 0
        self.evicted = 0
        self.corrupt_lines = 0

    def _last_seq_on_disk(self) -> int:
        if not self._closed:
            return 0
        return int(self._closed[-1].stem.split("-")[1]) + _count_lines(self._closed[-1]) - 1

    # ----------------------------------------------------------------- producer side
    def put(self, topic: str, payload: bytes) -> None:
        """Queue one message; never blocks on the network."""
        with self._cond:
            entry = _Entry(self._next_seq, topic, payload)
            self._next_seq += 1
            if self._closed or self._writer or len(self._memory) >= self._memory_items:
                self._append_to_disk([entry])
            else:
                self._memory.append(entry)
            self._cond.notify_all()

    def backlog(self) -> int:
        """Messages not yet acknowledged (memory + disk, approximate for disk)."""
        with self._cond:
            return len(self._memory) + self._disk_entries

    @property
    def disk_bytes(self) -> int:
        return self._disk_bytes

    # ------------------------------------------------------------------- disk side
    def _append_to_disk(self, entries: list[_Entry]) -> None:
        if self._writer is None:
            path = self._dir / f"seg-{entries[0].seq:016d}.jsonl"
            self._writer = (path, path.open("ab"))
        path, handle = self._writer
        for entry in entries:
            line = json.dumps({"seq": entry.seq, "topic": entry.topic, "payload": entry.payload.decode("utf-8")},
                              separators=(",", ":")).encode("utf-8") + b"\n"
            handle.write(line)
            self._disk_bytes += len(line)
            self._disk_entries += 1
        handle.flush()
        if handle.tell() >= self._segment_bytes:
            self._close_writer()
        self._evict_over_budget()

    def _close_writer(self) -> None:
        if self._writer is not None:
            path, handle = self._writer
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            bisect.insort(self._closed, path)
            self._writer = None

    def _evict_over_budget(self) -> None:
        while self._disk_bytes > self.max_bytes:
            victims = [p for p in self._closed if p.name not in self._loaded]
            if not victims:
                if self._writer is None:
                    return
                self._close_writer()
                continue
            victim = victims[0]
            lines = _count_lines(victim)
            self._disk_bytes -= victim.stat().st_size
            self._disk_entries -= lines
            victim.unlink()
            self._closed.remove(victim)
            self.evicted += lines
            log.warning("result buffer over %d bytes: evicted %d oldest results (%s)", self.max_bytes, lines, victim.name)

    def _refill(self) -> None:
        """Move the oldest disk segment into memory (entries keep a reference to it until acknowledged)."""
        if not self._closed and self._writer is not None:
            self._close_writer()
        candidates = [p for p in self._closed if p.name not in self._loaded]
        if not candidates:
            return
        segment = candidates[0]
        count = 0
        for raw in segment.read_bytes().splitlines():
            try:
                record = json.loads(raw)
                self._memory.append(_Entry(record["seq"], record["topic"], record["payload"].encode("utf-8"),
                                           segment.name))
                count += 1
            except (ValueError, KeyError, TypeError, AttributeError):
                self.corrupt_lines += 1  # a line cut short by a power loss
        self._disk_entries -= count
        self._loaded[segment.name] = count
        if count == 0:
            self._forget_segment(segment.name)

    def _forget_segment(self, name: str) -> None:
        path = self._dir / name
        self._loaded.pop(name, None)
        if path in self._closed:
            self._closed.remove(path)
        try:
            self._disk_bytes -= path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            pass

    def _acknowledged(self, entry: _Entry) -> None:
        with self._cond:
            self.published += 1
            if entry.segment is not None and entry.segment in self._loaded:
                self._loaded[entry.segment] -= 1
                if self._loaded[entry.segment] <= 0:
                    self._forget_segment(entry.segment)

    # ------------------------------------------------------------------ sender side
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="result-outbox", daemon=True)
        self._thread.start()

    def _next_entry(self) -> _Entry | None:
        with self._cond:
            if not self._memory:
                self._refill()
            return self._memory.popleft() if self._memory else None

    def _run(self) -> None:
        inflight: deque[tuple[_Entry, Future]] = deque()
        while not self._stop.is_set():
            while len(inflight) < self._window and self._publisher.is_connected():
                entry = self._next_entry()
                if entry is None:
                    break
                inflight.append((entry, self._publisher.publish(entry.topic, entry.payload, qos=1)))
            if not inflight:
                if not self._publisher.is_connected():
                    self._publisher.wait_connected(0.2)
                with self._cond:
                    if not self._memory and not self._closed and not self._writer:
                        self._cond.wait(0.2)
                continue
            entry, future = inflight[0]
            try:
                future.result(timeout=0.2)
            except TimeoutError:
                continue
            except Exception as exc:  # any transport failure: re-send what was not acknowledged
                log.warning("publish failed (%s); %d results will be re-sent in order", exc, len(inflight))
                self._requeue(inflight, time.monotonic() + self._settle_timeout)
                continue
            inflight.popleft()
            self._acknowledged(entry)
        self._requeue(inflight, time.monotonic() + 2.0)

    def _requeue(self, inflight: deque, deadline: float) -> None:
        """Wait (until ``deadline``) for the window to settle, then put back the unacknowledged, in order."""
        for _, future in inflight:
            try:
                future.result(timeout=max(0.0, deadline - time.monotonic()))
            except Exception:
                pass
        failed = []
        for entry, future in inflight:
            if future.done() and future.exception() is None:
                self._acknowledged(entry)
            else:
                failed.append(entry)
        inflight.clear()
        with self._cond:
            self._memory.extendleft(reversed(failed))

    def stop(self, flush_timeout: float = 5.0) -> None:
        """Keep delivering (and reconnecting) for up to ``flush_timeout`` seconds, then persist the rest to disk."""
        deadline = time.monotonic() + flush_timeout
        while time.monotonic() < deadline and self.backlog():
            time.sleep(0.05)
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._cond:
            unsent = [e for e in self._memory if e.segment is None]
            self._memory.clear()
            self._close_writer()
            if unsent:
                # Named by their own (lower) sequence numbers, so they sort before later segments.
                self._append_to_disk(unsent)
                self._close_writer()


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)
