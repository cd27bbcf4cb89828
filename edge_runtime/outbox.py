"""Ordered, at-least-once delivery of results through an append-only log on disk (bounded).

Every result is appended to a segment file under ``directory`` before ``put`` returns (one
``write``: from then on it survives the process being killed, ``kill -9`` included); nothing
is held only in memory. A committer thread makes the appended lines durable against power
loss with one ``fsync`` per group: it waits ``commit_interval`` seconds after the first
uncommitted result, then syncs everything written so far (group commit). A result counts as
*safe* once it is fsync'ed or acknowledged by the broker (PUBACK), whichever comes first;
only then does its ``on_safe`` callback run, which is where a source deletes or acknowledges
the input the result belongs to (docs/edge_runtime.md, "Delivery guarantee").

The sender reads the log from the oldest unacknowledged result on and publishes with a
window of unacknowledged messages; when a publish fails it waits for the window to settle
and re-sends what was not acknowledged, in order. A segment is deleted once every result in
it is acknowledged. The log is bounded by ``max_bytes``: the oldest segment is evicted and
its unsent results counted (``evicted``).

The sequence number up to which every result is acknowledged is written to ``acked`` (renamed
into place by the committer, not fsync'ed: a stale value only means more duplicates), so a
restart re-sends only what was acknowledged since the last commit round, not whole segments.

Crash leftovers are repaired at start-up: empty segments are removed, a cut-off last line
is truncated (counted in ``corrupt_lines``); a line whose checksum does not match (a torn
write after a power loss) is skipped and counted. New segments are named after their first
sequence number, which is always above every number already on disk, so a name is never
reused.

Line format: ``<seq>\\t<crc32 hex of the rest>\\t<topic>\\t<payload>\\n`` (payloads are
compact JSON, which never contains a raw newline).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import zlib
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edge_runtime.publishers import Publisher
from edge_runtime.supervision import SupervisedThread, ThreadFaults

log = logging.getLogger(__name__)

_SEGMENT_NAME = re.compile(r"^seg-(\d{16})\.jsonl$")
_READ_CHUNK = 256 * 1024


@dataclass(eq=False)
class _Segment:
    path: Path
    first_seq: int
    count: int = 0  # complete lines in the file
    done: int = 0  # acknowledged, or skipped as corrupt
    size: int = 0
    closed: bool = False  # no more appends (older run, or rotated)
    held: int = 0  # entries read by the sender and not yet acknowledged (the segment is not evicted meanwhile)
    read_offset: int = 0  # bytes the sender has read
    read_lines: int = 0  # lines the sender has read (line i holds sequence number first_seq + i)


@dataclass(eq=False)
class _Entry:
    seq: int
    topic: str
    payload: bytes
    segment: _Segment


class ResultOutbox:
    """See the module docstring. Thread-safe ``put``; a sender and a committer thread, both supervised."""

    def __init__(self, directory: Path, publisher: Publisher, *, max_bytes: int, window: int = 32,
                 settle_timeout: float = 30.0, commit_interval: float = 0.05, segment_bytes: int | None = None,
                 faults: ThreadFaults | None = None, fsync: Callable[[int], None] = os.fsync) -> None:
        self._dir = Path(directory)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._publisher = publisher
        self.max_bytes = max_bytes
        self.commit_interval = commit_interval
        self._window = window
        self._settle_timeout = settle_timeout
        self._segment_bytes = segment_bytes or max(4096, min(1 << 20, max_bytes // 8))
        self._fsync = fsync
        self._faults = faults or ThreadFaults()
        self._cond = threading.Condition()
        self.published = 0
        self.evicted = 0
        self.corrupt_lines = 0
        self._segments: list[_Segment] = self._recover()
        self._disk_bytes = sum(s.size for s in self._segments)
        self._next_seq = max((s.first_seq + s.count for s in self._segments), default=1)
        self._written_seq = self._synced_seq = self._next_seq - 1
        self._acked_through = self._read_acked()  # every seq <= this is acknowledged (or evicted)
        self._acked_later: set[int] = set()  # acknowledged above a gap
        self._acked_written = self._acked_through
        self._writer: tuple[_Segment, object] | None = None
        self._unsynced: list[object] = []  # rotated segment files awaiting their fsync and close
        self._dir_dirty = False  # a segment was created since the last directory fsync
        self._waiting: dict[int, Callable[[], None]] = {}  # seq -> on_safe, in seq order
        self._cursor: _Segment | None = self._segments[0] if self._segments else None
        self._readahead: deque[_Entry] = deque()
        self._retry: deque[_Entry] = deque()
        self._inflight: deque[tuple[_Entry, Future]] = deque()
        self._stop = threading.Event()
        self._sender = SupervisedThread("result-sender", self._send_loop, self._faults, stop=self._stop)
        self._committer = SupervisedThread("result-committer", self._commit_loop, self._faults, stop=self._stop)

    # ----------------------------------------------------------------- acknowledgement watermark
    def _read_acked(self) -> int:
        try:
            value = int((self._dir / "acked").read_text().strip() or 0)
        except (OSError, ValueError):
            return 0
        return min(value, self._next_seq - 1)

    def _mark_done(self, low: int, high: int) -> None:
        """Sequence numbers ``low..high`` will never be sent again (acknowledged, corrupt or evicted)."""
        if low <= self._acked_through + 1 <= high:
            self._acked_through = high
        elif low > self._acked_through + 1:
            self._acked_later.update(range(low, high + 1))
            return
        while self._acked_through + 1 in self._acked_later:
            self._acked_later.discard(self._acked_through + 1)
            self._acked_through += 1
        self._acked_later = {seq for seq in self._acked_later if seq > self._acked_through}

    def _write_acked(self) -> None:
        with self._cond:
            value = self._acked_through
        if value != self._acked_written:
            tmp = self._dir / "acked.tmp"
            tmp.write_text(f"{value}\n")
            os.replace(tmp, self._dir / "acked")
            self._acked_written = value

    # ----------------------------------------------------------------- start-up repair
    def _recover(self) -> list[_Segment]:
        segments = []
        for path in sorted(self._dir.glob("seg-*.jsonl")):
            match = _SEGMENT_NAME.match(path.name)
            if not match:
                log.warning("result log: ignoring %s (not a segment name)", path)
                continue
            data = path.read_bytes()
            end = data.rfind(b"\n") + 1
            if end < len(data):
                self.corrupt_lines += 1
                log.warning("result log: %s ends in a cut-off line (%d bytes), removed", path.name, len(data) - end)
            if end == 0:
                path.unlink()
                continue
            if end < len(data):
                os.truncate(path, end)
            segments.append(_Segment(path, int(match.group(1)), count=data.count(b"\n", 0, end), size=end,
                                     closed=True))
        return segments

    # ------------------------------------------------------------------ producer side
    def put(self, topic: str, payload: bytes, on_safe: Callable[[], None] | None = None) -> int:
        """Append one result to the log (in the OS before this returns) and return its sequence number.

        ``on_safe`` runs once the result is fsync'ed or acknowledged by the broker (on the committer
        or sender thread); it must not block. Never blocks on the network.
        """
        if b"\n" in payload or "\t" in topic or "\n" in topic:
            raise ValueError("result payloads must be single-line (compact JSON) and topics tab-free")
        body = topic.encode("utf-8") + b"\t" + payload
        with self._cond:
            seq = self._next_seq
            line = b"%d\t%08x\t" % (seq, zlib.crc32(body)) + body + b"\n"
            if self._writer is None:
                path = self._dir / f"seg-{seq:016d}.jsonl"
                segment = _Segment(path, seq)
                self._writer = (segment, open(path, "xb", buffering=0))  # "x": a name is never reused
                self._segments.append(segment)
                self._dir_dirty = True
                if self._cursor is None:
                    self._cursor = segment
            segment, handle = self._writer
            view = memoryview(line)
            while view:
                view = view[handle.write(view):]
            self._next_seq = seq + 1
            self._written_seq = seq
            # A connected sender that has read everything gets the entry from here instead of reading its
            # line back (bounded by the window; while disconnected the log alone holds results, evictable).
            handed = (self._cursor is segment and segment.read_offset == segment.size
                      and len(self._readahead) < self._window and self._publisher.is_connected())
            segment.count += 1
            segment.size += len(line)
            if handed:
                segment.read_offset = segment.size
                segment.read_lines += 1
                segment.held += 1
                self._readahead.append(_Entry(seq, topic, payload, segment))
            self._disk_bytes += len(line)
            if on_safe is not None:
                self._waiting[seq] = on_safe
            if segment.size >= self._segment_bytes:
                self._rotate()
            self._evict_over_budget()
            self._cond.notify_all()
        return seq

    def _rotate(self) -> None:
        segment, handle = self._writer
        segment.closed = True
        self._unsynced.append(handle)
        self._writer = None
        self._delete_if_done(segment)

    def backlog(self) -> int:
        """Results on disk not yet acknowledged (or evicted)."""
        with self._cond:
            return sum(s.count - s.done for s in self._segments)

    @property
    def disk_bytes(self) -> int:
        return self._disk_bytes

    @property
    def faults(self) -> ThreadFaults:
        return self._faults

    def _evict_over_budget(self) -> None:
        while self._disk_bytes > self.max_bytes:
            victim = next((s for s in self._segments if s.closed and s.held == 0), None)
            if victim is None:
                if self._writer is not None and self._writer[0].held == 0:
                    self._rotate()
                    continue
                return
            lost = victim.count - victim.done
            self._remove_segment(victim)
            self._mark_done(victim.first_seq, victim.first_seq + victim.count - 1)
            last = victim.first_seq + victim.count
            for seq in [s for s in self._waiting if s < last]:
                if seq >= victim.first_seq:
                    del self._waiting[seq]  # evicted before it was safe: the input stays where it was
            self.evicted += lost
            log.warning("result log over %d bytes: evicted %d oldest results (%s)", self.max_bytes, lost,
                        victim.path.name)

    def _remove_segment(self, segment: _Segment) -> None:
        if self._cursor is segment:
            index = self._segments.index(segment)
            self._cursor = self._segments[index + 1] if index + 1 < len(self._segments) else None
        self._segments.remove(segment)
        self._disk_bytes -= segment.size
        try:
            segment.path.unlink()
        except FileNotFoundError:
            pass

    def _delete_if_done(self, segment: _Segment) -> None:
        if segment.closed and segment.done >= segment.count and segment in self._segments:
            self._remove_segment(segment)

    # ------------------------------------------------------------------ committer
    def _commit_loop(self, supervisor: SupervisedThread) -> None:
        while True:
            with self._cond:
                while (self._written_seq == self._synced_seq and not self._unsynced and not self._dir_dirty
                       and self._acked_through == self._acked_written and not self._stop.is_set()):
                    self._cond.wait(0.5)
                    supervisor.beat()
                idle = self._written_seq == self._synced_seq and not self._unsynced and not self._dir_dirty
            if idle:  # nothing to sync: record the acknowledgement progress, or stop
                self._write_acked()
                if self._stop.is_set():
                    return
                continue
            if not self._stop.is_set():
                self._stop.wait(self.commit_interval)  # the group: whatever arrives meanwhile shares the fsync
            self.commit()
            supervisor.beat()

    def commit(self) -> None:
        """fsync everything appended so far, then run the ``on_safe`` callbacks it covers."""
        with self._cond:
            target = self._written_seq
            rotated, self._unsynced = self._unsynced, []
            current = os.dup(self._writer[1].fileno()) if self._writer is not None else None
            dir_dirty, self._dir_dirty = self._dir_dirty, False
        try:
            while rotated:
                self._fsync(rotated[0].fileno())
                rotated.pop(0).close()
            if current is not None:
                self._fsync(current)
            if dir_dirty:
                descriptor = os.open(self._dir, os.O_RDONLY)
                try:
                    self._fsync(descriptor)
                finally:
                    os.close(descriptor)
        except BaseException:
            with self._cond:  # try again on the next round
                self._unsynced[:0] = rotated
                self._dir_dirty = self._dir_dirty or dir_dirty
            raise
        finally:
            if current is not None:
                os.close(current)
        self._write_acked()
        with self._cond:
            self._synced_seq = max(self._synced_seq, target)
            ready = []
            for seq in list(self._waiting):
                if seq > target:
                    break
                ready.append(self._waiting.pop(seq))
        _run_callbacks(ready)

    # ------------------------------------------------------------------ sender side
    def start(self) -> None:
        self._sender.start()
        self._committer.start()

    def _next_entry(self) -> _Entry | None:
        with self._cond:
            if self._retry:
                return self._retry.popleft()
            if not self._readahead:
                self._read_more()
            return self._readahead.popleft() if self._readahead else None

    def _read_more(self) -> None:
        """Read the next complete lines at the cursor into the read-ahead (caller holds the lock)."""
        while self._cursor is not None:
            segment = self._cursor
            if segment.read_offset < segment.size:
                with open(segment.path, "rb") as handle:
                    handle.seek(segment.read_offset)
                    chunk = handle.read(min(_READ_CHUNK, segment.size - segment.read_offset))
                end = chunk.rfind(b"\n") + 1
                if end == 0:
                    chunk = self._read_line_at(segment)
                    end = len(chunk)
                segment.read_offset += end
                for raw in chunk[:end].splitlines():
                    expected = segment.first_seq + segment.read_lines
                    segment.read_lines += 1
                    entry = self._parse(raw, segment)
                    if entry is None or entry.seq <= self._acked_through:
                        if entry is None:
                            self.corrupt_lines += 1
                        segment.done += 1
                        self._mark_done(expected, expected)
                    else:
                        segment.held += 1
                        self._readahead.append(entry)
                if self._readahead:
                    return
                self._delete_if_done(segment)
                continue
            if not segment.closed:
                return  # caught up with the writer
            index = self._segments.index(segment) if segment in self._segments else -1
            following = self._segments[index + 1:] if index >= 0 else [s for s in self._segments
                                                                        if s.first_seq > segment.first_seq]
            self._cursor = following[0] if following else None

    @staticmethod
    def _read_line_at(segment: _Segment) -> bytes:
        with open(segment.path, "rb") as handle:
            handle.seek(segment.read_offset)
            return handle.readline()

    @staticmethod
    def _parse(raw: bytes, segment: _Segment) -> _Entry | None:
        try:
            if raw.startswith(b"{"):  # segments written by runtimes before the checksummed format
                record = json.loads(raw)
                return _Entry(int(record["seq"]), record["topic"], record["payload"].encode("utf-8"), segment)
            seq, crc, body = raw.split(b"\t", 2)
            if int(crc, 16) != zlib.crc32(body):
                return None
            topic, payload = body.split(b"\t", 1)
            return _Entry(int(seq), topic.decode("utf-8"), payload, segment)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def _acknowledged(self, entry: _Entry) -> None:
        with self._cond:
            self.published += 1
            segment = entry.segment
            segment.done += 1
            segment.held -= 1
            self._mark_done(entry.seq, entry.seq)
            callback = self._waiting.pop(entry.seq, None)
            self._delete_if_done(segment)
        _run_callbacks([callback] if callback else [])

    def _send_loop(self, supervisor: SupervisedThread) -> None:
        inflight = self._inflight
        with self._cond:  # after a crash of this loop: what was in flight goes out again, in order
            self._retry.extendleft(reversed([entry for entry, _ in inflight]))
            inflight.clear()
        while not self._stop.is_set():
            supervisor.beat()
            while len(inflight) < self._window and self._publisher.is_connected():
                entry = self._next_entry()
                if entry is None:
                    break
                supervisor.item = f"result #{entry.seq}"
                try:
                    future = self._publisher.publish(entry.topic, entry.payload, qos=1)
                except BaseException:
                    with self._cond:
                        self._retry.appendleft(entry)
                    raise
                inflight.append((entry, future))
            supervisor.item = None
            if not inflight:
                if not self._publisher.is_connected():
                    self._publisher.wait_connected(0.2)
                else:
                    with self._cond:
                        if not self._retry and not self._readahead and not self._unread():
                            self._cond.wait(0.2)
                continue
            entry, future = inflight[0]
            try:
                future.result(timeout=0.2)
            except TimeoutError:
                continue
            except Exception as exc:  # any transport failure: re-send what was not acknowledged
                log.warning("publish failed (%s); %d results will be re-sent in order", exc, len(inflight))
                self._requeue(time.monotonic() + self._settle_timeout)
                continue
            inflight.popleft()
            self._acknowledged(entry)
        self._requeue(time.monotonic() + 2.0)

    def _unread(self) -> bool:
        cursor = self._cursor
        return cursor is not None and (cursor.read_offset < cursor.size or cursor.closed)

    def _requeue(self, deadline: float) -> None:
        """Wait (until ``deadline``) for the window to settle, then put back the unacknowledged, in order."""
        for _, future in self._inflight:
            try:
                future.result(timeout=max(0.0, deadline - time.monotonic()))
            except Exception:
                pass
        failed = []
        for entry, future in self._inflight:
            if future.done() and not future.cancelled() and future.exception() is None:
                self._acknowledged(entry)
            else:
                failed.append(entry)
        self._inflight.clear()
        with self._cond:
            self._retry.extendleft(reversed(failed))

    def stop(self, flush_timeout: float = 5.0) -> None:
        """Keep delivering for up to ``flush_timeout`` seconds, then sync and close; the rest stays on disk."""
        deadline = time.monotonic() + flush_timeout
        while time.monotonic() < deadline and self.backlog():
            time.sleep(0.05)
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._sender.join()
        self._committer.join()
        self.commit()
        with self._cond:
            if self._writer is not None:
                segment, handle = self._writer
                self._writer = None
                segment.closed = True
                handle.close()
                self._delete_if_done(segment)


def _run_callbacks(callbacks: list[Callable[[], None]]) -> None:
    for callback in callbacks:
        try:
            callback()
        except Exception:  # a failing callback (e.g. deleting an input) must not stop delivery
            log.exception("result-safe callback %r failed", callback)
