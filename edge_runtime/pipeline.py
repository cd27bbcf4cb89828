"""The frame pipeline: source thread -> worker pool (decode + inference) -> in-order sink.

Workers each take a whole frame (decode, letterbox, ONNX Runtime, NMS), so decoding one
frame overlaps inference of the next and every core is busy; results still leave in source
order because the sink consumes the workers' futures in submission order. Each frame is
bound to the serving model when it is read, so a model swap lands between two frames, no
frame is dropped, and no frame after the swap runs on the old model.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from edge_runtime.detector import Detector, FrameDetections, Thresholds
from edge_runtime.imaging import ImageDecodeError, decode_image, encode_jpeg
from edge_runtime.models import LoadedModel, ModelSlot
from edge_runtime.sources import Frame, FrameSource

log = logging.getLogger(__name__)

_END = object()


@dataclass(frozen=True)
class FrameOutcome:
    """A processed frame: detections (None when the image could not be decoded) and the model used."""

    frame: Frame
    data: bytes | None
    found: FrameDetections | None
    model: LoadedModel
    latency_ms: float
    error: str | None = None
    error_kind: str | None = None  # "corrupt" (undecodable image) or "inference" (the model run failed)


class FramePipeline:
    """Runs frames from a (switchable) source through the model and hands outcomes to ``on_outcome`` in order."""

    def __init__(self, *, slot: ModelSlot, thresholds: Callable[[], Thresholds], workers: int,
                 open_source: Callable[[], FrameSource], on_outcome: Callable[[FrameOutcome], None],
                 on_source_error: Callable[[str | None], None], max_frames: int | None = None) -> None:
        self._slot = slot
        self._thresholds = thresholds
        self._open_source = open_source
        self._on_outcome = on_outcome
        self._on_source_error = on_source_error
        self._max_frames = max_frames
        self._detector = Detector()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="frame-worker")
        self._pending: queue.Queue = queue.Queue(maxsize=workers * 2)
        self._stopping = threading.Event()
        self._source_stop = threading.Event()
        self.finished = threading.Event()
        self._threads = [threading.Thread(target=self._source_loop, name="frame-source", daemon=True),
                         threading.Thread(target=self._sink_loop, name="frame-sink", daemon=True)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def switch_source(self) -> None:
        """Re-open the source (after a configuration change); frames already read still complete."""
        self._source_stop.set()

    def stop(self) -> None:
        """Stop reading, finish the frames in flight, and wait for the sink."""
        self._stopping.set()
        self._source_stop.set()
        for thread in self._threads:
            thread.join()
        self._executor.shutdown(wait=True)

    # ----------------------------------------------------------------- threads
    def _source_loop(self) -> None:
        produced = 0
        try:
            while not self._stopping.is_set():
                self._source_stop = stop = threading.Event()
                if self._stopping.is_set():
                    break
                try:
                    source = self._open_source()
                except (ValueError, OSError, ImportError) as exc:
                    self._on_source_error(f"source: {exc}")
                    stop.wait(2.0)
                    continue
                self._on_source_error(None)
                log.info("reading frames from %s", source.description)
                for frame in source.frames(stop):
                    self._submit(frame)
                    produced += 1
                    if self._max_frames is not None and produced >= self._max_frames:
                        return
        finally:
            self._pending.put(_END)

    def _submit(self, frame: Frame) -> None:
        # The model is chosen here, in source order, so after a swap no later frame runs on the old model.
        future = self._executor.submit(self._process, frame, self._slot.current)
        self._pending.put((frame, future))  # blocks while the workers are behind: back-pressure on the source

    def _sink_loop(self) -> None:
        while True:
            item = self._pending.get()
            if item is _END:
                break
            _, future = item
            outcome: FrameOutcome = future.result()
            try:
                self._on_outcome(outcome)
            except Exception:  # a bug in result handling must not stop the line; it is logged loudly
                log.exception("handling the result of %s failed", outcome.frame.image_id)
        self.finished.set()

    # ----------------------------------------------------------------- workers
    def _process(self, frame: Frame, model: LoadedModel) -> FrameOutcome:
        started = time.perf_counter()
        try:
            pixels = frame.pixels if frame.pixels is not None else decode_image(frame.data or b"")
        except ImageDecodeError as exc:
            return FrameOutcome(frame, frame.data, None, model, 0.0, error=str(exc), error_kind="corrupt")
        try:
            found = self._detector.detect(pixels, model, self._thresholds())
        except Exception as exc:  # e.g. an ORT kernel error on an odd image: skip the frame, keep the line up
            log.exception("inference failed on %s", frame.image_id)
            return FrameOutcome(frame, frame.data, None, model, 0.0, error=f"{type(exc).__name__}: {exc}",
                                error_kind="inference")
        latency_ms = (time.perf_counter() - started) * 1000
        data = frame.data if frame.data is not None else encode_jpeg(pixels)
        return FrameOutcome(frame, data, found, model, latency_ms)
