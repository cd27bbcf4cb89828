"""The edge runtime: wires configuration, model, pipeline, outbox, capture queue and health together.

Threads: the pipeline's source, workers and sink; the result outbox's sender and committer;
the capture writer; the capture uploader; and one control thread that applies configuration
changes, verifies and swaps models, handles operator feedback and publishes health every
``healthIntervalSeconds``. All but the control thread run supervised (edge_runtime.supervision):
a crash is logged with its item, restarted with backoff and reported as ``degraded`` in health
until the thread makes progress again.

Every frame read yields one record on the results topic: its detection result, or an error
record (``tagqa.frame_error/1``). The frame's input is released (``Frame.on_done``: a watched
folder deletes the file) only when that record is safe (fsync'ed or acknowledged by the
broker) and its capture or quarantine copy, if any, is on disk.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import queue
import random
import threading
import time
from pathlib import Path
from typing import Any, Callable

from edge_runtime.allocator import tune_malloc
from edge_runtime.capture import CapturePolicy, FrameRing, RingEntry, effective_band
from edge_runtime.capture_queue import PRIORITY_AUTOMATIC, CaptureQueue
from edge_runtime.contracts import (DetectionResult, FrameError, ModelCard, resolve_topic, result_payload,
                                    verdict_for)
from edge_runtime.detector import Detector, Thresholds
from edge_runtime.device_config import DeviceConfig, DeviceConfigError
from edge_runtime.feedback import FeedbackHandler, build_sidecar
from edge_runtime.metrics import RuntimeMetrics, health_message
from edge_runtime.models import ModelRejected, ModelSlot, load_verified_model, model_dir_signature
from edge_runtime.outbox import ResultOutbox
from edge_runtime.pipeline import FrameOutcome, FramePipeline
from edge_runtime.providers import OnnxRuntimeSessions, ProviderCheck, SessionFactory, default_workers
from edge_runtime.publishers import Publisher
from edge_runtime.quarantine import Quarantine
from edge_runtime.sources import FrameSource, open_source
from edge_runtime.stores import FeedbackStore, open_store
from edge_runtime.supervision import SupervisedThread, ThreadFaults
from edge_runtime.uploader import CaptureUploader

log = logging.getLogger(__name__)

# Changing these needs a restart (they shape connections, threads and files opened at start).
RESTART_KEYS = ("device_id", "broker", "broker_ca_file", "broker_cert_file", "broker_key_file", "state_dir",
                "workers", "inference_threads", "feedback_topic", "http", "http_token", "http_max_connections",
                "http_max_body_bytes", "http_queue_size", "http_timeout_seconds")
_CONTROL_TICK = 0.25


class _Completion:
    """Runs ``callback`` once ``parts`` pieces of a frame's bookkeeping are done (thread-safe)."""

    def __init__(self, parts: int, callback: Callable[[], None] | None) -> None:
        self._left = parts
        self._callback = callback
        self._lock = threading.Lock()

    def part_done(self) -> None:
        with self._lock:
            self._left -= 1
            ready = self._left == 0
        if ready and self._callback is not None:
            self._callback()


class EdgeRuntime:
    """One device runtime. ``run()`` blocks until ``request_stop()`` or ``max_frames`` frames are done."""

    def __init__(self, *, config_source: Any, overrides: dict[str, Any],
                 publisher_factory: Callable[[DeviceConfig], Publisher],
                 store_factory: Callable[[DeviceConfig], FeedbackStore | None] | None = None,
                 max_frames: int | None = None, seed: int | None = None, flush_timeout: float = 10.0,
                 source_factory: Callable[[DeviceConfig], FrameSource] | None = None,
                 detector: Detector | None = None, frame_encoder: Callable[[Any], bytes] | None = None,
                 session_factory: SessionFactory | None = None) -> None:
        tune_malloc()
        self._config_source = config_source
        self._overrides = overrides
        self._publisher_factory = publisher_factory
        self._store_factory = store_factory or (lambda c: open_store(c.upload_prefix, endpoint_url=c.s3_endpoint_url,
                                                                      region=c.s3_region))
        self._max_frames = max_frames
        self._source_factory = source_factory
        self._flush_timeout = flush_timeout
        self._seed = seed or 0
        self._stop = threading.Event()
        self._errors: dict[str, str] = {}
        self.faults = ThreadFaults()
        self.metrics = RuntimeMetrics()
        self._capture_policies: dict[tuple, tuple[CapturePolicy, str]] = {}
        self.config = self._load_config()
        cpus = os.cpu_count() or 1
        self.workers = self.config.workers or default_workers(self.config.providers, cpus)
        self._threads = self.config.inference_threads or max(1, cpus // self.workers)
        # Provider caches (TensorRT engines) live in the state folder: they survive restarts, not reinstalls.
        self._sessions = session_factory or OnnxRuntimeSessions(Path(self.config.state_dir) / "provider-cache")
        self.slot = ModelSlot(self._load_model(self.config.model_dir))
        self._model_watch = (self.config.model_dir, model_dir_signature(Path(self.config.model_dir)))
        state = Path(self.config.state_dir)
        self.publisher = publisher_factory(self.config)
        self.outbox = ResultOutbox(state / "results", self.publisher, max_bytes=self.config.result_buffer_max_bytes,
                                   commit_interval=self.config.result_commit_seconds, faults=self.faults)
        self.captures = CaptureQueue(state / "captures", self.config.queue_max_bytes)
        self.quarantine = Quarantine(state / "quarantine", self.config.quarantine_max_bytes)
        self._store = self._store_factory(self.config)
        self.uploader = CaptureUploader(self.captures, lambda: self._store, faults=self.faults)
        # Captures and quarantine copies are fsync'ed off the sink thread; bounded: back-pressure on the line.
        self._disk_jobs: queue.Queue = queue.Queue(maxsize=32)
        self._writer_stop = threading.Event()
        self.capture_writer = SupervisedThread("capture-writer", self._capture_writer_loop, self.faults,
                                               stop=self._writer_stop)
        self.ring = FrameRing(self.config.ring_size, self.config.ring_max_bytes)
        self.feedback = FeedbackHandler(ring=self.ring, captures=self.captures, metrics=self.metrics,
                                        device=lambda: self.config.device_id)
        self._feedback_inbox: queue.Queue[bytes] = queue.Queue(maxsize=1000)
        self.pipeline = FramePipeline(
            slot=self.slot, thresholds=self._thresholds, workers=self.workers, open_source=self._open_source,
            on_outcome=self._on_outcome, on_source_error=lambda e: self._set_error("source", e),
            max_frames=max_frames, faults=self.faults, max_pixels=lambda: self.config.max_frame_pixels, detector=detector,
            on_internal_error=self._on_internal_error,
            **({"encode": frame_encoder} if frame_encoder is not None else {}))
        self._last_health = 0.0
        self._frames_at_last_health = 0
        # Called with every published record (result or frame error) once it is in the outbox.
        self.record_listeners: list[Callable[[dict[str, Any]], None]] = []
        self.http = None
        if self.config.http:
            from edge_runtime.http_api import HttpApi  # binds now: a taken port fails the start, not later

            self.http = HttpApi(self)
        if hasattr(config_source, "set_validator"):
            config_source.set_validator(self.validate_proposed_config)

    # ------------------------------------------------------------ configuration
    def _load_config(self, raw: dict[str, Any] | None = None) -> DeviceConfig:
        """Source configuration (or ``raw``) with command-line flags on top (flags pin their keys)."""
        where = self._config_source.description if raw is None else "proposed configuration"
        raw = self._config_source.read() if raw is None else raw
        config = DeviceConfig.from_mapping({**raw, **self._overrides}, source=where)
        for key, flag in (("device_id", "deviceId' (or --device-id"), ("model_dir", "modelDir' (or --model")):
            if not getattr(config, key):
                raise DeviceConfigError(f"{where}: '{flag}) is required")
        return config

    def _thresholds(self) -> Thresholds:
        c = self.config
        return Thresholds(conf=c.conf_threshold, iou=c.iou_threshold, max_detections=c.max_detections)

    def _open_source(self) -> FrameSource:
        c = self.config
        if self._source_factory is not None:
            return self._source_factory(c)
        if not c.source:
            raise ValueError("no source configured ('source' or --source)")
        return open_source(c.source, interval_seconds=c.frame_interval_seconds, on_read=c.folder_on_read,
                           settle_seconds=c.folder_settle_seconds)

    def _apply_config_change(self) -> None:
        try:
            new = self._load_config()
        except DeviceConfigError as exc:
            log.error("configuration update refused, keeping the current one: %s", exc)
            self._set_error("config", str(exc))
            self.publish_health()
            return
        old = self.config
        for key in RESTART_KEYS:
            if getattr(new, key) != getattr(old, key):
                log.warning("configuration %s changed; it takes effect after a restart", key)
        new = dataclasses.replace(new, **{k: getattr(old, k) for k in RESTART_KEYS})
        self.config = new
        self._set_error("config", None)
        self.captures.max_bytes = new.queue_max_bytes
        self.outbox.max_bytes = new.result_buffer_max_bytes
        self.outbox.commit_interval = new.result_commit_seconds
        self.quarantine.max_bytes = new.quarantine_max_bytes
        self.ring.resize(new.ring_size, new.ring_max_bytes)
        store_keys = ("upload_prefix", "s3_endpoint_url", "s3_region")
        if any(getattr(new, k) != getattr(old, k) for k in store_keys):
            self._store = self._store_factory(new)
            self.captures.wake()
        provider_keys = ("providers", "provider_check_iou", "provider_check_score_tolerance")
        if any(getattr(new, k) != getattr(old, k) for k in provider_keys):
            self._model_watch = (None, None)  # load the model again on the new provider list (verified, swapped)
        source_keys = ("source", "frame_interval_seconds", "folder_on_read", "folder_settle_seconds")
        if any(getattr(new, k) != getattr(old, k) for k in source_keys):
            self.pipeline.switch_source()
        log.info("configuration updated from %s", self._config_source.description)

    def validate_proposed_config(self, raw: dict[str, Any]) -> str | None:
        """Why a proposed configuration would be refused (schema, or its model fails verification); None if fine."""
        try:
            proposed = self._load_config(raw)
        except DeviceConfigError as exc:
            return str(exc)
        model_changes = proposed.model_dir != str(self.slot.current.directory) or proposed.providers != \
            self.config.providers
        if proposed.model_dir and model_changes:
            try:
                self._load_model(proposed.model_dir, proposed)
            except ModelRejected as exc:
                return f"model refused: {exc}"
        return None

    # ------------------------------------------------------------------- models
    def _load_model(self, directory: str, config: DeviceConfig | None = None):
        config = config or self.config
        return load_verified_model(directory, intra_op_threads=self._threads, concurrent_runs=self.workers,
                                   providers=config.providers, sessions=self._sessions,
                                   check=ProviderCheck(config.provider_check_iou, config.provider_check_score_tolerance))

    def _check_model(self) -> None:
        """Verify and swap in a changed model directory once it has stopped changing."""
        directory = self.config.model_dir
        signature = model_dir_signature(Path(directory))
        if (directory, signature) == self._model_watch:
            return
        time.sleep(_CONTROL_TICK)  # let a writer finish: verify only a directory that stays the same
        if model_dir_signature(Path(directory)) != signature:
            return
        self._model_watch = (directory, signature)
        try:
            model = self._load_model(directory)
        except ModelRejected as exc:
            self.metrics.count("model_rejections")
            log.error("new model refused, still serving %s: %s", self.slot.current.label, exc)
            self._set_error("model", f"model refused: {exc}")
            self.publish_health()
            return
        previous = self.slot.swap(model)
        self.metrics.count("model_swaps")
        self._set_error("model", None)
        log.info("model swapped: %s on %s -> %s on %s", previous.label, previous.provider, model.label, model.provider)
        self.publish_health()

    # ----------------------------------------------------------------- frames
    def _on_outcome(self, outcome: FrameOutcome) -> None:
        frame = outcome.frame
        if outcome.found is None:
            self._publish_frame_error(outcome, outcome.error_kind or "internal", outcome.error or "")
            return
        config, card, found = self.config, outcome.model.card, outcome.found
        # Sampling seeded by the image id: a frame processed again after a crash gets the same decision.
        rng = random.Random(f"{self._seed}:{frame.image_id}")
        reason = self.capture_policy(card)[0].decide(found.best_score, bool(found.detections), rng)
        if outcome.data is None:
            reason = None  # a camera frame that could not be encoded cannot be captured
        result = DetectionResult(
            device=config.device_id, image_id=frame.image_id, timestamp=frame.captured_at, model_id=card.model_id,
            model_version=card.model_version, dataset_version=card.dataset_version, detections=found.detections,
            best_score=found.best_score, latency_ms=outcome.latency_ms,
            verdict=verdict_for(found.detections, config.decision_threshold), image_width=found.image_width,
            image_height=found.image_height, source_name=frame.source_name, captured=reason,
            provider=outcome.model.provider, precision=outcome.model.precision)
        record = result.to_dict()
        payload = result_payload(record)  # strict JSON: raises before anything is queued
        entry = RingEntry(frame.image_id, frame.captured_at, outcome.data or b"", record)
        self.ring.add(entry)
        done = _Completion(2 if reason is not None else 1, frame.on_done)
        self.outbox.put(resolve_topic(config.topic, config.device_id), payload, on_safe=done.part_done)
        self._tell_listeners(record)
        if reason is not None:
            name, image, sidecar = build_sidecar(config.device_id, entry, [reason], None)
            self._disk_jobs.put(("capture", name, image, sidecar, done))
        self.metrics.frame_done(outcome.latency_ms, result.verdict == "defect", reason is not None)

    def _publish_frame_error(self, outcome: FrameOutcome, reason: str, detail: str) -> None:
        """Publish the error record of a frame without a result; keep its bytes in quarantine per policy."""
        frame, config, card = outcome.frame, self.config, outcome.model.card
        counter = {"corrupt": "frames_corrupt", "too-large": "frames_corrupt"}.get(reason, "frames_failed")
        self.metrics.count(counter)
        log.warning("frame %s (%s) has no result (%s): %s", frame.image_id, frame.source_name, reason, detail)
        keep = config.bad_frame_policy == "quarantine" and bool(outcome.data)
        record = FrameError(device=config.device_id, image_id=frame.image_id, timestamp=frame.captured_at,
                            source_name=frame.source_name, reason=reason, detail=detail, model_id=card.model_id,
                            model_version=card.model_version, kept="quarantine" if keep else None,
                            provider=outcome.model.provider, precision=outcome.model.precision).to_dict()
        done = _Completion(2 if keep else 1, frame.on_done)
        self.outbox.put(resolve_topic(config.topic, config.device_id), result_payload(record), on_safe=done.part_done)
        self._tell_listeners(record)
        if keep:
            self._disk_jobs.put(("quarantine", frame.image_id, outcome.data, record, done))

    def _tell_listeners(self, record: dict[str, Any]) -> None:
        for listener in self.record_listeners:
            try:
                listener(record)
            except Exception:  # a listener (the HTTP API) must never cost a frame its record
                log.exception("record listener %r failed on %s", listener, record.get("image_id"))

    def _on_internal_error(self, outcome: FrameOutcome, exc: Exception) -> None:
        """The sink failed on a frame (a bug): give the frame an error record before the sink restarts."""
        self._publish_frame_error(outcome, "internal", f"{type(exc).__name__}: {exc}")

    def _capture_writer_loop(self, supervisor: SupervisedThread) -> None:
        while True:
            try:
                job = self._disk_jobs.get(timeout=0.5)
            except queue.Empty:
                if self._writer_stop.is_set():
                    return
                supervisor.beat()
                continue
            kind, name, data, extra, done = job
            supervisor.item = f"{kind} {name}"
            try:
                if kind == "capture":
                    self.captures.put(name, data, extra, priority=PRIORITY_AUTOMATIC)
                else:
                    self.quarantine.put(name, data, extra)
            except BaseException:
                self._disk_jobs_retry(job)
                raise
            done.part_done()
            supervisor.item = None
            supervisor.beat()

    def _disk_jobs_retry(self, job: tuple) -> None:
        """Put a failed job back so the restarted writer tries it again (its input stays until then)."""
        try:
            self._disk_jobs.put_nowait(job)
        except queue.Full:
            log.error("capture writer: %s %s dropped (queue full); its input stays for a later run", job[0], job[1])

    # ------------------------------------------------------------------ health
    def _set_error(self, kind: str, message: str | None) -> None:
        if message is None:
            self._errors.pop(kind, None)
        else:
            self._errors[kind] = message

    def _band_for_health(self, card: ModelCard) -> dict[str, Any]:
        policy, origin = self.capture_policy(card)
        return {"low": round(policy.band[0], 6), "high": round(policy.band[1], 6), "origin": origin}

    def health(self, *, advance: bool = True) -> dict[str, Any]:
        """The health message; ``advance=False`` (a reader such as the HTTP API) leaves the fps window and the
        publishing schedule alone."""
        now = time.monotonic()
        frames = self.metrics.frames
        elapsed = now - self._last_health if self._last_health else now - self.metrics.started
        fps = (frames - self._frames_at_last_health) / elapsed if elapsed > 0 else 0.0
        if advance:
            self._last_health, self._frames_at_last_health = now, frames
        connected = self.publisher.is_connected()
        faults = self.faults.reasons()
        status = "error" if self._errors else (
            "degraded" if faults or not connected or self.uploader.last_error else "ok")
        current = self.slot.current
        card = current.card
        return health_message(
            device=self.config.device_id, status=status,
            error="; ".join([*self._errors.values(), *faults.values()]) or None,
            model={"model_id": card.model_id, "model_version": card.model_version,
                   "dataset_version": card.dataset_version, "directory": str(current.directory),
                   "provider": current.provider, "precision": current.precision,
                   "capture_band": self._band_for_health(card),
                   "providers_refused": [{"provider": name, "reason": why} for name, why in current.provider_refusals]},
            metrics=self.metrics, frames_per_second=fps,
            queues={"broker_connected": connected, "results_buffered": self.outbox.backlog(),
                    "results_published": self.outbox.published, "results_evicted": self.outbox.evicted,
                    "capture_queue_depth": self.captures.depth, "capture_queue_bytes": self.captures.bytes,
                    "captures_evicted": self.captures.evicted, "captures_uploaded": self.uploader.uploaded,
                    "upload_failures": self.uploader.failures, "upload_error": self.uploader.last_error,
                    "thread_restarts": self.faults.restarts, "quarantined": self.quarantine.kept,
                    "quarantine_bytes": self.quarantine.bytes})

    def capture_policy(self, card: ModelCard) -> tuple[CapturePolicy, str]:
        """The capture policy ``card``'s model is served with under the current configuration, and where its band
        comes from (``edge_runtime.capture.effective_band``); computed once per model and configuration."""
        config = self.config
        key = (card.onnx_sha256, card.model_version, config.capture_band, config.decision_threshold,
               config.capture_share, config.empty_sample_rate, config.random_sample_rate)
        cached = self._capture_policies.get(key)
        if cached is None:
            band, origin = effective_band(config.capture_band, card.extra, config.decision_threshold,
                                          config.capture_share)
            cached = (CapturePolicy(band, config.empty_sample_rate, config.random_sample_rate), origin)
            self._capture_policies = {key: cached}  # only the serving model's: replaced at a swap or config change
            log.info("%s: capture band [%.4f, %.4f) %s", card.model_id, band[0], band[1], origin)
        return cached

    def publish_health(self) -> None:
        """Publish health now (QoS 1, not buffered: a stale health report is worth nothing)."""
        if self.publisher.is_connected():
            topic = resolve_topic(self.config.health_topic, self.config.device_id)
            future = self.publisher.publish(topic, json.dumps(self.health(), separators=(",", ":")).encode(), qos=1)
            future.add_done_callback(lambda f: f.exception() and log.warning("health publish failed: %s",
                                                                             f.exception()))

    # --------------------------------------------------------------- lifecycle
    def request_stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Start everything, serve until stopped (or ``max_frames`` done), then shut down cleanly."""
        self.publisher.start()
        self.publisher.subscribe(resolve_topic(self.config.feedback_topic, self.config.device_id),
                                 self._on_feedback_message)
        self.outbox.start()
        self.capture_writer.start()
        self.uploader.start()
        self.pipeline.start()
        if self.http is not None:
            self.http.start()
        self.publisher.wait_connected(2.0)
        self.publish_health()
        try:
            while not self._stop.is_set() and not self.pipeline.finished.is_set():
                self._control_tick()
                self._stop.wait(_CONTROL_TICK)
        finally:
            self.shutdown()

    def _on_feedback_message(self, payload: bytes) -> None:
        try:
            self._feedback_inbox.put_nowait(payload)
        except queue.Full:
            log.error("feedback inbox full; dropping a feedback message")

    def _control_tick(self) -> None:
        if self._config_source.poll_changed():
            self._apply_config_change()
        self._check_model()
        while not self._feedback_inbox.empty():
            self.feedback.handle(self._feedback_inbox.get_nowait())
        if time.monotonic() - self._last_health >= self.config.health_interval_seconds:
            self.publish_health()

    def shutdown(self) -> None:
        if self.http is not None:
            self.http.stop()  # no new requests; those waiting get 503
        self.pipeline.stop()
        while not self._feedback_inbox.empty():
            self.feedback.handle(self._feedback_inbox.get_nowait())
        self._writer_stop.set()
        self.capture_writer.join()
        self.publish_health()
        self.outbox.stop(flush_timeout=self._flush_timeout)
        self.uploader.stop()
        self.publisher.close()
        self._config_source.close()
        log.info("stopped after %d frames", self.metrics.frames)

