"""The frame pipeline: source thread -> worker pool (decode + inference) -> in-order sink.

Workers each take a whole frame (decode, letterbox, ONNX Runtime, NMS), so decoding one
frame overlaps inference of the next and every core is busy; results still leave in source
order because the sink consumes the workers' futures in submission order. Each frame is
bound to the serving model when it is read, so a model swap lands between two frames, no
frame is dropped, and no frame after the swap runs on the old model.

Every frame yields exactly one outcome: detections, or an error kind the runtime turns into
an error record (``corrupt``, ``too-large``, ``inference``, ``non-finite``, ``internal``). A
worker never raises; the source and sink loops run supervised (edge_runtime.supervision), so
an unexpected exception restarts them with backoff instead of stalling the line.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np

from edge_runtime.detector import Detector, FrameDetections, Thresholds
from edge_runtime.imaging import FrameTooLarge, ImageDecodeError, decode_image, encode_jpeg, image_size
from edge_runtime.models import LoadedModel, ModelSlot
from edge_runtime.sources import Frame, FrameSource
from edge_runtime.supervision import SupervisedThread, ThreadFaults

log = logging.getLogger(__name__)

_END = object()
# Frames above this many pixels are decoded and run one at a time (the other workers go on with small
# ones), so the memory of two large frames is never held at once.
LARGE_FRAME_PIXELS = 2_000_000


@dataclass(frozen=True)
class FrameOutcome:
    """A processed frame: detections, or (``found`` None) the error kind and message."""

    frame: Frame
    data: bytes | None
    found: FrameDetections | None
    model: LoadedModel
    latency_ms: float
    error: str | None = None
    # "corrupt" (undecodable), "too-large" (over the pixel limit, refused before decoding),
    # "inference" (the model run failed), "non-finite" (the model returned NaN/inf), "internal" (a bug)
    error_kind: str | None = None


class NonFiniteOutput(ValueError):
    """The model returned NaN or infinite values for a frame."""


class FramePipeline:
    """Runs frames from a (switchable) source through the model and hands outcomes to ``on_outcome`` in order.

    ``on_outcome`` raising is a bug in result handling: ``on_internal_error(outcome, exc)`` is then
    asked to record the frame, and the sink restarts under supervision.
    """

    def __init__(self, *, slot: ModelSlot, thresholds: Callable[[], Thresholds], workers: int,
                 open_source: Callable[[], FrameSource], on_outcome: Callable[[FrameOutcome], None],
                 on_source_error: Callable[[str | None], None], max_frames: int | None = None,
                 faults: ThreadFaults | None = None, detector: Detector | None = None,
                 max_pixels: Callable[[], int | None] = lambda: None,
                 on_internal_error: Callable[[FrameOutcome, Exception], None] | None = None,
                 encode: Callable[[np.ndarray], bytes] = encode_jpeg) -> None:
        self._slot = slot
        self._thresholds = thresholds
        self._open_source = open_source
        self._on_outcome = on_outcome
        self._on_source_error = on_source_error
        self._on_internal_error = on_internal_error
        self._max_frames = max_frames
        self._max_pixels = max_pixels
        self.faults = faults or ThreadFaults()
        self._detector = detector or Detector()
        self._encode = encode
        self._large_frames = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="frame-worker")
        self._pending: queue.Queue = queue.Queue(maxsize=workers * 2)
        self._stopping = threading.Event()
        self._source_stop = threading.Event()
        self._produced = 0
        self._source_done = False
        self._end_lock = threading.Lock()  # an outside frame is never queued behind the end marker
        self.finished = threading.Event()
        self._threads = [SupervisedThread("frame-source", self._source_loop, self.faults, stop=self._stopping),
                         SupervisedThread("frame-sink", self._sink_loop, self.faults, stop=self._stopping)]

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
    def _source_loop(self, supervisor: SupervisedThread) -> None:
        if self._source_done:
            return
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
                supervisor.beat()
                log.info("reading frames from %s", source.description)
                supervisor.item = f"source {source.description}"
                for frame in source.frames(stop):
                    supervisor.item = f"frame {frame.image_id} ({frame.source_name})"
                    self._submit(frame)
                    supervisor.item = f"source {source.description}, reading after {frame.source_name}"
                    supervisor.beat()
                    self._produced += 1
                    if self._max_frames is not None and self._produced >= self._max_frames:
                        self._finish_source()
                        return
        except BaseException:
            if self._stopping.is_set():
                self._finish_source()
            raise
        self._finish_source()

    def _finish_source(self) -> None:
        with self._end_lock:
            if not self._source_done:
                self._source_done = True
                self._pending.put(_END)

    def submit_external(self, frame: Frame) -> bool:
        """Run a frame that did not come from the source (an HTTP request) in order with the source's frames.

        Its outcome goes to ``on_outcome`` like any other. Blocks while the sink is behind, as the
        source does; False (nothing queued) once the pipeline is finishing or stopping.
        """
        with self._end_lock:
            if self._source_done or self._stopping.is_set():
                return False
            self._submit(frame)
        return True

    def _submit(self, frame: Frame) -> None:
        # The model is chosen here, in source order, so after a swap no later frame runs on the old model.
        future = self._executor.submit(self._process, frame, self._slot.current)
        self._pending.put((frame, future))  # blocks while the workers are behind: back-pressure on the source

    def _sink_loop(self, supervisor: SupervisedThread) -> None:
        while True:
            try:
                item = self._pending.get(timeout=0.5)
            except queue.Empty:
                supervisor.beat()
                continue
            if item is _END:
                break
            frame, future = item
            supervisor.item = f"frame {frame.image_id} ({frame.source_name})"
            try:
                outcome: FrameOutcome = future.result()
            except Exception as exc:  # _process never raises; a cancelled future is the one way here
                outcome = FrameOutcome(frame, frame.data, None, self._slot.current, 0.0,
                                       error=f"{type(exc).__name__}: {exc}", error_kind="internal")
            try:
                self._on_outcome(outcome)
            except Exception as exc:
                if self._on_internal_error is not None:
                    self._on_internal_error(outcome, exc)
                raise
            supervisor.item = None
            supervisor.beat()
        self.finished.set()

    # ----------------------------------------------------------------- workers
    def _process(self, frame: Frame, model: LoadedModel) -> FrameOutcome:
        """Decode, detect and (camera frames) encode one frame; never raises: failures become error outcomes."""
        if frame.data is not None:
            size = image_size(frame.data)
            if size is not None and size[0] * size[1] > LARGE_FRAME_PIXELS:
                with self._large_frames:
                    return self._process_one(frame, model)
        return self._process_one(frame, model)

    def _process_one(self, frame: Frame, model: LoadedModel) -> FrameOutcome:
        started = time.perf_counter()
        try:
            limit = self._max_pixels()
            if frame.pixels is not None:
                pixels = frame.pixels
                if limit and pixels.shape[0] * pixels.shape[1] > limit:
                    raise FrameTooLarge(f"{pixels.shape[1]}x{pixels.shape[0]} pixels is over the limit of {limit}")
            else:
                pixels = decode_image(frame.data or b"", max_pixels=limit)
        except FrameTooLarge as exc:
            return FrameOutcome(frame, frame.data, None, model, 0.0, error=str(exc), error_kind="too-large")
        except ImageDecodeError as exc:
            return FrameOutcome(frame, frame.data, None, model, 0.0, error=str(exc), error_kind="corrupt")
        except Exception as exc:  # e.g. MemoryError on a huge frame
            log.exception("decoding %s (%s) failed", frame.image_id, frame.source_name)
            return FrameOutcome(frame, frame.data, None, model, 0.0, error=f"{type(exc).__name__}: {exc}",
                                error_kind="internal")
        try:
            found = self._detector.detect(pixels, model, self._thresholds())
            if not (math.isfinite(found.best_score)
                    and all(math.isfinite(v) for d in found.detections for v in (d.score, *d.box_xyxy))):
                raise NonFiniteOutput(f"model {model.label} returned NaN or infinite values")
        except NonFiniteOutput as exc:
            log.error("%s on %s (%s)", exc, frame.image_id, frame.source_name)
            return FrameOutcome(frame, frame.data, None, model, 0.0, error=str(exc), error_kind="non-finite")
        except Exception as exc:  # e.g. an ORT kernel error on an odd image: record the frame, keep the line up
            log.exception("frame-workers: inference failed on %s (%s)", frame.image_id, frame.source_name)
            self.faults.failed("frame-workers", f"frame-workers: inference failed on {frame.image_id}: "
                                                f"{type(exc).__name__}: {exc}")
            return FrameOutcome(frame, frame.data, None, model, 0.0, error=f"{type(exc).__name__}: {exc}",
                                error_kind="inference")
        latency_ms = (time.perf_counter() - started) * 1000
        try:
            data = frame.data if frame.data is not None else self._encode(pixels)
        except Exception as exc:
            log.exception("frame-workers: encoding failed on %s (%s)", frame.image_id, frame.source_name)
            self.faults.failed("frame-workers", f"frame-workers: encoding {frame.image_id} failed: "
                                                f"{type(exc).__name__}: {exc}")
            data = None
        else:
            self.faults.recovered("frame-workers")
        return FrameOutcome(frame, data, found, model, latency_ms)
