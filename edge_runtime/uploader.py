"""Uploads queued captures to the store: image first, sidecar last, retrying with backoff."""

from __future__ import annotations

import json
import logging
import random
import threading
from typing import Callable

from edge_runtime.capture_queue import CaptureQueue
from edge_runtime.stores import FeedbackStore, StoreError
from edge_runtime.supervision import SupervisedThread, ThreadFaults

log = logging.getLogger(__name__)


class CaptureUploader:
    """One supervised thread draining the capture queue; a failed upload leaves the item queued and backs off.

    Backoff doubles from ``min_backoff`` up to ``max_backoff`` seconds with +-20 % jitter and
    resets after a success. The store is fetched per item, so a configuration change applies.
    Any exception from the store counts as a failed upload (a store endpoint that answers
    garbage raises what its HTTP client raises); an item whose sidecar is not valid JSON with
    the keys needed is moved aside (``bad_items``) instead of blocking the queue.
    """

    def __init__(self, queue: CaptureQueue, store: Callable[[], FeedbackStore | None], *,
                 min_backoff: float = 1.0, max_backoff: float = 120.0, faults: ThreadFaults | None = None) -> None:
        self._queue = queue
        self._store = store
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._stop = threading.Event()
        self._backoff = min_backoff
        self.faults = faults or ThreadFaults()
        self._thread = SupervisedThread("capture-uploader", self._run, self.faults, stop=self._stop)
        self.uploaded = 0
        self.failures = 0
        self.bad_items = 0
        self.last_error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._queue.wake()
        self._thread.join()

    def _run(self, supervisor: SupervisedThread) -> None:
        while not self._stop.is_set():
            supervisor.beat()
            item = self._queue.peek(timeout=1.0)
            store = self._store()
            if item is None or store is None:
                if item is not None:
                    self._stop.wait(1.0)  # nowhere to upload to: keep the queue until a store is configured
                continue
            supervisor.item = f"capture {item.name}"
            contents = self._queue.read(item)
            if contents is None:
                continue
            image, sidecar = contents
            try:
                keys = json.loads(sidecar)
                image_key, content_type, sidecar_key = keys["image_key"], keys["content_type"], keys["sidecar_key"]
            except (ValueError, KeyError, TypeError) as exc:
                self.bad_items += 1
                log.error("capture %s has an unusable sidecar (%s: %s); moved aside", item.name,
                          type(exc).__name__, exc)
                self._queue.set_aside(item, f"unusable sidecar: {type(exc).__name__}: {exc}")
                continue
            try:
                store.put(image_key, image, content_type)
                store.put(sidecar_key, sidecar, "application/json")
            except Exception as exc:  # StoreError, or whatever a broken endpoint makes the HTTP client raise
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, StoreError) else str(exc)
                delay = self._backoff * random.uniform(0.8, 1.2)
                log.warning("upload of %s failed (%s); retrying in %.1f s", item.name, self.last_error, delay)
                self._stop.wait(delay)
                self._backoff = min(self._backoff * 2, self._max_backoff)
                continue
            self._queue.remove(item)
            self.uploaded += 1
            self.last_error = None
            self._backoff = self._min_backoff
            supervisor.item = None
