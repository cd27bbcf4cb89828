"""Turning frames into capture items, and operator feedback into priority captures."""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timezone
from typing import Any, Callable

from edge_runtime.capture import OPERATOR_FEEDBACK, FrameRing, RingEntry
from edge_runtime.capture_queue import PRIORITY_OPERATOR, CaptureQueue
from edge_runtime.contracts import (FEEDBACK_SIDECAR_SCHEMA, ContractError, capture_name, feedback_image_key,
                                    feedback_sidecar_key, iso_utc, parse_feedback)
from edge_runtime.imaging import image_format
from edge_runtime.metrics import RuntimeMetrics

log = logging.getLogger(__name__)


def build_sidecar(device: str, entry: RingEntry, reasons: list[str], operator_reason: str | None
                  ) -> tuple[str, bytes, dict[str, Any]]:
    """(capture name, image bytes, sidecar) for a frame; the sidecar names both store keys."""
    extension, mime = image_format(entry.data)
    name = capture_name(entry.captured_at, entry.image_id, extension)
    sidecar = {
        "schema": FEEDBACK_SIDECAR_SCHEMA,
        "device": device,
        "image_id": entry.image_id,
        "captured_at": iso_utc(entry.captured_at),
        "reason": reasons[-1],
        "reasons": reasons,
        "operator_reason": operator_reason,
        "image_key": feedback_image_key(device, entry.captured_at, name),
        "sidecar_key": feedback_sidecar_key(device, entry.captured_at, name),
        "image_sha256": hashlib.sha256(entry.data).hexdigest(),
        "content_type": mime,
        "queued_at": iso_utc(datetime.now(timezone.utc)),
        "result": entry.result,
    }
    return name, entry.data, sidecar


class FeedbackHandler:
    """Handles messages from ``tagqa/<device>/feedback``: the flagged frame is queued with priority."""

    def __init__(self, *, ring: FrameRing, captures: CaptureQueue, metrics: RuntimeMetrics,
                 device: Callable[[], str]) -> None:
        self._ring = ring
        self._captures = captures
        self._metrics = metrics
        self._device = device

    def handle(self, payload: bytes) -> bool:
        """Queue the flagged frame; False (counted, logged) when the message is invalid or the frame unknown."""
        self._metrics.count("feedback_received")
        try:
            request = parse_feedback(payload)
        except ContractError as exc:
            self._metrics.count("feedback_invalid")
            log.warning("ignored feedback message: %s", exc)
            return False
        entry = self._ring.get(request.image_id)
        if entry is None:
            self._metrics.count("feedback_unknown")
            log.warning("feedback for %s: not among the last %d frames; nothing to upload",
                        request.image_id, self._ring.size)
            return False
        earlier = entry.result.get("captured")
        reasons = ([earlier] if earlier else []) + [OPERATOR_FEEDBACK]
        name, data, sidecar = build_sidecar(self._device(), entry, reasons, request.reason)
        self._captures.put(name, data, sidecar, priority=PRIORITY_OPERATOR)
        log.info("feedback for %s (%s): queued with priority", request.image_id, request.reason)
        return True
