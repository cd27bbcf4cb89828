"""Line results in the store (version 1; prose: docs/monitoring.md, "Store layout").

One row per inspected frame, as Parquet parts written by the results collector (or by the
AWS IoT Core topic rule through Firehose, deploy/aws/tagqa.yaml):

- ``results/frames/<YYYY>/<MM>/<DD>/<device>/<part>.parquet``: accepted results, the UTC
  date of the frame's own ``timestamp``; part names start with the UTC write time, so
  they sort in write order within a device and day.
- ``results/rejects/<YYYY>/<MM>/<DD>/<part>.parquet``: messages that were not valid
  results, with the reason (``REJECT_REASONS``) and the payload as received; the UTC date
  of reception.

A (device, image id) pair is one frame: readers keep its first row (the collector drops
duplicates it has seen; the reader's de-duplication covers the rest, e.g. Firehose).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, Mapping

import pyarrow as pa

from edge_runtime.contracts import (
    FRAME_ERROR_SCHEMA,
    RESULT_SCHEMA,
    ContractError,
    validate_frame_error,
    validate_identifier,
    validate_result,
)

RESULTS_LAYOUT_VERSION = 1
FRAMES_PREFIX = "results/frames/"
REJECTS_PREFIX = "results/rejects/"
PART_SUFFIX = ".parquet"
MERGED_MARK = "-merged"

# Reject reasons (the ``reason`` column of a reject part).
NOT_JSON = "not_json"
TRUNCATED = "truncated"
NOT_AN_OBJECT = "not_an_object"
UNKNOWN_SCHEMA = "unknown_schema"
BAD_DEVICE_ID = "bad_device_id"
DEVICE_MISMATCH = "device_mismatch"
INVALID_RESULT = "invalid_result"
CLOCK_WENT_BACK = "clock_went_back"
CLOCK_AHEAD = "clock_ahead"
# A device's error record (tagqa.frame_error/1) for a frame it could not inspect: not a result
# row, but kept (payload and all) in the reject parts so every frame stays accounted for.
FRAME_ERROR = "frame_error"
REJECT_REASONS = (NOT_JSON, TRUNCATED, NOT_AN_OBJECT, UNKNOWN_SCHEMA, BAD_DEVICE_ID, DEVICE_MISMATCH,
                  INVALID_RESULT, CLOCK_WENT_BACK, CLOCK_AHEAD, FRAME_ERROR)

UTC_US = pa.timestamp("us", tz="UTC")
DETECTION_TYPE = pa.struct([("class", pa.string()), ("class_id", pa.int32()), ("score", pa.float64()),
                            ("box_xyxy", pa.list_(pa.float64()))])
FRAME_SCHEMA = pa.schema([
    ("device", pa.string()),
    ("image_id", pa.string()),
    ("timestamp", UTC_US),
    ("received_at", UTC_US),
    ("verdict", pa.string()),
    ("model_id", pa.string()),
    ("model_version", pa.string()),
    ("dataset_version", pa.string()),
    ("best_score", pa.float64()),
    ("detection_count", pa.int32()),
    ("detections", pa.list_(DETECTION_TYPE)),
    ("latency_ms", pa.float64()),
    ("image_width", pa.int32()),
    ("image_height", pa.int32()),
    ("source_name", pa.string()),
    ("captured", pa.string()),
    ("extra", pa.string()),
    # Added with execution providers (issue 18): parts written before it have no such column and read as null
    # (tagqa_assets.monitoring.daily.scan_frame_parts).
    ("provider", pa.string()),
    # Added with precision variants (issue 18): the variant the device ran (fp32, int8), which drift baseline to
    # compare with; null in parts written before it and in records of older runtimes.
    ("precision", pa.string()),
])
REJECT_SCHEMA = pa.schema([
    ("received_at", UTC_US),
    ("topic", pa.string()),
    ("reason", pa.string()),
    ("detail", pa.string()),
    ("payload", pa.binary()),
])
_KNOWN_KEYS = frozenset({"schema", "device", "image_id", "timestamp", "model_id", "model_version", "dataset_version",
                         "detections", "best_score", "latency_ms", "verdict", "image_width", "image_height",
                         "source_name", "captured", "provider", "precision"})
_TOPIC = re.compile(r"^tagqa/([^/]+)/detections$")


class RejectedResult(ValueError):
    """A message that is not a valid result: ``reason`` is one of ``REJECT_REASONS``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def day_prefix(prefix: str, day: date) -> str:
    """``<prefix><YYYY>/<MM>/<DD>/``."""
    return f"{prefix}{day:%Y/%m/%d}/"


def frame_part_key(day: date, device: str, written_at: datetime, *, merged: bool = False) -> str:
    """Key of a new frame part: ``results/frames/<YYYY>/<MM>/<DD>/<device>/part-<UTC stamp>-<id>[-merged].parquet``.

    ``merged`` marks a part compaction made from smaller ones.
    """
    validate_identifier(device, "device")
    mark = MERGED_MARK if merged else ""
    return (f"{day_prefix(FRAMES_PREFIX, day)}{device}/part-{written_at:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}"
            f"{mark}{PART_SUFFIX}")


def is_merged_part(key: str) -> bool:
    """Whether ``key`` is a part compaction wrote."""
    return key.endswith(MERGED_MARK + PART_SUFFIX)


def reject_part_key(day: date, written_at: datetime) -> str:
    """Key of a new reject part: ``results/rejects/<YYYY>/<MM>/<DD>/part-<UTC stamp>-<id>.parquet``."""
    return f"{day_prefix(REJECTS_PREFIX, day)}part-{written_at:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}{PART_SUFFIX}"


def parse_timestamp(value: Any) -> datetime:
    """An ISO-8601 time with a zone (``...Z``) as an aware UTC datetime; ``ValueError`` otherwise."""
    if not isinstance(value, str):
        raise ValueError(f"timestamp must be an ISO-8601 string, got {value!r}")
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no time zone")
    return moment.astimezone(timezone.utc)


@dataclass(frozen=True)
class FrameRow:
    """One accepted result, as the row it becomes (``FRAME_SCHEMA``)."""

    row: dict[str, Any]

    @property
    def device(self) -> str:
        return self.row["device"]

    @property
    def image_id(self) -> str:
        return self.row["image_id"]

    @property
    def timestamp(self) -> datetime:
        return self.row["timestamp"]


def decode_result(topic: str, payload: bytes, received_at: datetime) -> FrameRow:
    """Validate one message of ``tagqa/<device>/detections`` and build its row.

    Raises ``RejectedResult`` with the reason when the message is not a valid version-1
    result. Keys this version does not know are kept as JSON in the ``extra`` column.
    """
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RejectedResult(NOT_JSON, f"payload is not UTF-8 ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        # An error at the very end of the text is a message cut short, not a malformed one; so is one cut
        # inside a literal ('"provider":nul').
        tail = text[exc.pos:].rstrip()
        cut_short = (exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string")
                     or any(literal.startswith(tail) for literal in ("null", "true", "false")))
        reason = TRUNCATED if cut_short else NOT_JSON
        raise RejectedResult(reason, f"{exc.msg} at character {exc.pos} of {len(text)}") from None
    if not isinstance(data, dict):
        raise RejectedResult(NOT_AN_OBJECT, f"expected a JSON object, got {type(data).__name__}")
    if data.get("schema") == FRAME_ERROR_SCHEMA:
        try:
            error = validate_frame_error(data)
        except ContractError as exc:
            raise RejectedResult(INVALID_RESULT, str(exc)) from None
        raise RejectedResult(FRAME_ERROR, f"{error['device']}/{error['image_id']} ({error['source_name']}): "
                                          f"{error['reason']}: {error['detail']}")
    if data.get("schema") != RESULT_SCHEMA:
        raise RejectedResult(UNKNOWN_SCHEMA, f"schema {data.get('schema')!r} is not {RESULT_SCHEMA!r}")
    match = _TOPIC.match(topic)
    try:
        device = validate_identifier(data.get("device"), "device")
        if match is None:
            raise ContractError(f"topic {topic!r} is not tagqa/<device>/detections")
        validate_identifier(match[1], "topic device")
    except ContractError as exc:
        raise RejectedResult(BAD_DEVICE_ID, str(exc)) from None
    if match[1] != device:
        raise RejectedResult(DEVICE_MISMATCH, f"topic names device {match[1]!r}, the result {device!r}")
    try:
        return FrameRow(_row(validate_result(data), device, received_at))
    except (ContractError, ValueError, TypeError, KeyError) as exc:
        raise RejectedResult(INVALID_RESULT, str(exc)) from None


def _row(data: Mapping[str, Any], device: str, received_at: datetime) -> dict[str, Any]:
    detections = [
        {"class": str(d.get("class", "")), "class_id": int(d.get("class_id", 0)), "score": float(d["score"]),
         "box_xyxy": [float(v) for v in d["box_xyxy"]]}
        for d in data["detections"]
    ]
    best = data.get("best_score")
    best_score = float(best) if isinstance(best, (int, float)) else max((d["score"] for d in detections), default=0.0)
    extra = {k: v for k, v in data.items() if k not in _KNOWN_KEYS}
    return {
        "device": device,
        "image_id": validate_identifier(data["image_id"], "image_id"),
        "timestamp": parse_timestamp(data["timestamp"]),
        "received_at": received_at,
        "verdict": data["verdict"],
        "model_id": _optional_text(data.get("model_id")),
        "model_version": _optional_text(data.get("model_version")),
        "dataset_version": str(data["dataset_version"]),
        "best_score": best_score,
        "detection_count": len(detections),
        "detections": detections,
        "latency_ms": float(data["latency_ms"]),
        "image_width": int(data["image_width"]),
        "image_height": int(data["image_height"]),
        "source_name": _optional_text(data.get("source_name")),
        "captured": _optional_text(data.get("captured")),
        "extra": json.dumps(extra, separators=(",", ":"), sort_keys=True) if extra else None,
        "provider": _optional_text(data.get("provider")),  # absent from devices older than issue 18
        "precision": _optional_text(data.get("precision")),  # absent from devices older than precision in results
    }


def _optional_text(value: Any) -> str | None:
    return None if value is None else str(value)


def reject_row(topic: str, payload: bytes, received_at: datetime, reason: str, detail: str) -> dict[str, Any]:
    """The row a rejected message becomes (``REJECT_SCHEMA``)."""
    if reason not in REJECT_REASONS:
        raise ValueError(f"unknown reject reason {reason!r}")
    return {"received_at": received_at, "topic": topic, "reason": reason, "detail": detail[:2000], "payload": payload}
