"""Uploads queued captures to the store: image first, sidecar last, retrying with backoff."""

from __future__ import annotations

import json
import logging
import random
import threading
from typing import Callable

from edge_runtime.capture_queue import CaptureQueue
from edge_runtime.stores import FeedbackStore, StoreError

log = logging.getLogger(__name__)


class CaptureUploader:
    """One thread draining the capture queue; a failed upload leaves the item queued and backs off.

    Backoff doubles from ``min_backoff`` up to ``max_backoff`` seconds with +-20 % jitter and
    resets after a success. The store is fetched per item, so a configuration change applies.
    """

    def __init__(self, queue: CaptureQueue, store: Callable[[], FeedbackStore | None], *,
                 min_backoff: float = 1.0, max_backoff: float = 120.0) -> None:
        self._queue = queue
        self._store = store
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capture-uploader", daemon=True)
        self.uploaded = 0
        self.failures = 0
        self.last_error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._queue.wake()
        self._thread.join()

    def _run(self) -> None:
        backoff = self._min_backoff
        while not self._stop.is_set():
            item = self._queue.peek(timeout=1.0)
            store = self._store()
            if item is None or store is None:
                if item is not None:
                    self._stop.wait(1.0)  # nowhere to upload to: keep the queue until a store is configured
                continue
            contents = self._queue.read(item)
            if contents is None:
                continue
            image, sidecar = contents
            keys = json.loads(sidecar)
            try:
                store.put(keys["image_key"], image, keys["content_type"])
                store.put(keys["sidecar_key"], sidecar, "application/json")
            except StoreError as exc:
                self.failures += 1
                self.last_error = str(exc)
                delay = backoff * random.uniform(0.8, 1.2)
                log.warning("upload of %s failed (%s); retrying in %.1f s", item.name, exc, delay)
                self._stop.wait(delay)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            self._queue.remove(item)
            self.uploaded += 1
            self.last_error = None
            backoff = self._min_backoff
