"""The results collector: MQTT results from every device into Parquet parts in the store.

Guarantees (docs/monitoring.md, "Collector"):

- At least once into the store, exactly once per (device, image id) within the
  de-duplication window: the client subscribes with QoS 1 in a persistent session (fixed
  client id, MQTT 5 session expiry) and acknowledges a message only after the part holding
  its row is in the store (paho-mqtt's manual acknowledgement). A collector killed with
  SIGKILL loses nothing: the broker redelivers every unacknowledged message, and rows
  already written are recognised as duplicates (the window is rebuilt from the newest
  parts at start-up).
- Atomic, batched writes: one part per (day, device) per flush, a flush every
  ``batch_rows`` messages or ``batch_seconds`` after the first buffered one.
- Nothing dropped silently: a message that is not a valid result goes to a reject part with
  its reason; counters say how many of each.

One thread does everything (network loop, decoding, writing, acknowledging), so there is
no hand-over to supervise and an acknowledgement can never overtake its write.
"""

from __future__ import annotations

import io
import logging
import signal
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tagqa_assets.contracts.results import (
    CLOCK_AHEAD,
    CLOCK_WENT_BACK,
    FRAME_SCHEMA,
    FRAMES_PREFIX,
    REJECT_SCHEMA,
    FrameRow,
    RejectedResult,
    day_prefix,
    decode_result,
    frame_part_key,
    reject_part_key,
    reject_row,
)
from tagqa_assets.settings import DEFAULTS
from tagqa_assets.storage import ObjectStore

log = logging.getLogger(__name__)

RESULTS_TOPIC = "tagqa/+/detections"


@dataclass(frozen=True)
class CollectorSettings:
    """What the collector connects to and how it batches (defaults: docs/monitoring.md; the broker,
    client id and batching defaults are the settings', ``tagqa_assets/settings.py``)."""

    broker: str = DEFAULTS.mqtt_broker
    client_id: str = DEFAULTS.results_client_id
    topic: str = RESULTS_TOPIC
    batch_rows: int = DEFAULTS.results_batch_rows  # a part per this many messages at the latest ...
    batch_seconds: float = DEFAULTS.results_batch_seconds  # ... or this long after the first unwritten one
    session_expiry_seconds: int = 7 * 24 * 3600  # how long the broker queues for us while we are down
    dedup_window: int = 500_000  # (device, image id) pairs remembered (~100 MB at most)
    clock_tolerance_seconds: float = 300.0  # per device: how far a timestamp may go back (parallel workers reorder)
    retry_seconds: float = 5.0  # wait after a failed write before reconnecting
    restore_minutes: float = 30.0  # at start-up, parts written this long before the newest one are re-read

    def __post_init__(self) -> None:
        host, _, port = self.broker.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"TAGQA_MQTT_BROKER must be HOST:PORT, got {self.broker!r}")
        if self.batch_rows < 1 or self.batch_seconds <= 0 or self.dedup_window < 1:
            raise ValueError("batch_rows and dedup_window must be >= 1 and batch_seconds > 0")

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.broker.rpartition(":")
        return host, int(port)


class SeenFrames:
    """The last ``capacity`` (device, image id) pairs, oldest forgotten first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._keys: set[tuple[str, str]] = set()
        self._order: deque[tuple[str, str]] = deque()

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: tuple[str, str]) -> None:
        if key in self._keys:
            return
        self._keys.add(key)
        self._order.append(key)
        while len(self._order) > self.capacity:
            self._keys.discard(self._order.popleft())

    def discard(self, key: tuple[str, str]) -> None:
        self._keys.discard(key)  # the deque entry goes when it ages out; re-adding appends again


@dataclass
class CollectorStats:
    """Counters since start; ``received == written + duplicates + sum(rejected)`` after a flush while no write
    failed (a failed batch is received again)."""

    received: int = 0
    written: int = 0
    duplicates: int = 0
    rejected: Counter = field(default_factory=Counter)
    parts: int = 0
    flushes: int = 0
    write_failures: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"received": self.received, "written": self.written, "duplicates": self.duplicates,
                "rejected": dict(self.rejected), "parts": self.parts, "flushes": self.flushes,
                "write_failures": self.write_failures}


def parquet_bytes(rows: list[dict[str, Any]], schema: pa.Schema) -> bytes:
    """One Parquet file (zstd) holding ``rows`` with ``schema``."""
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), buffer, compression="zstd")
    return buffer.getvalue()


def write_frame_parts(store: ObjectStore, rows: list[dict[str, Any]], written_at: datetime) -> list[str]:
    """Write ``rows`` as one part per (UTC day of ``timestamp``, device); returns the part keys."""
    groups: dict[tuple[date, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["timestamp"].date(), row["device"]), []).append(row)
    keys = []
    for (day, device), group in sorted(groups.items()):
        key = frame_part_key(day, device, written_at)
        store.put_bytes(key, parquet_bytes(group, FRAME_SCHEMA))
        keys.append(key)
    return keys


def _written_at(key: str) -> datetime:
    """The write time in a part name (``part-<YYYYmmddTHHMMSSffffff>Z-...``); parts named otherwise count as new."""
    name = key.rsplit("/", 1)[-1]
    try:
        return datetime.strptime(name[5:26], "%Y%m%dT%H%M%S%f").replace(tzinfo=timezone.utc)
    except ValueError:
        return datetime.max.replace(tzinfo=timezone.utc)


class _Batch:
    """Rows and rejects received since the last flush, with the message ids to acknowledge."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.rejects: list[dict[str, Any]] = []
        self.acks: list[tuple[int, int]] = []  # (mid, qos) of the QoS 1 and 2 messages
        self.messages = 0
        self.started: float | None = None

    def __len__(self) -> int:
        return self.messages

    def note(self, mid: int, qos: int) -> None:
        if self.started is None:
            self.started = time.monotonic()
        self.messages += 1
        if qos > 0:
            self.acks.append((mid, qos))


class ResultsCollector:
    """Subscribes, validates, de-duplicates, writes parts, then acknowledges (see module docstring)."""

    def __init__(self, store: ObjectStore, settings: CollectorSettings, *, now=lambda: datetime.now(timezone.utc)) -> None:
        self.store = store
        self.settings = settings
        self.stats = CollectorStats()
        self._now = now
        self._seen = SeenFrames(settings.dedup_window)
        self._latest: dict[str, datetime] = {}  # newest timestamp per device
        self._batch = _Batch()
        self._stop = threading.Event()
        self.connected = threading.Event()
        self._client = self._make_client()

    # ------------------------------------------------------------------ start-up
    def restore_window(self, days: int = 2) -> int:
        """Remember the pairs of the parts written in the ``restore_minutes`` before the newest part, within the
        last ``days`` UTC days and up to the window's capacity; returns how many pairs.

        Redeliveries after a crash are messages of the last unacknowledged batch, whose rows (if
        any) are in the newest parts; older duplicates are removed by the daily read.
        """
        import polars as pl

        today = self._now().date()
        keys: list[str] = []
        for offset in range(days):
            keys.extend(info.key for info in self.store.list_objects(day_prefix(FRAMES_PREFIX, today - timedelta(days=offset))))
        stamped = sorted(((_written_at(key), key) for key in keys), reverse=True)  # newest write first
        chosen: list[pl.DataFrame] = []
        total = 0
        horizon = stamped[0][0] - timedelta(minutes=self.settings.restore_minutes) if stamped else None
        for written_at, key in stamped:
            if written_at < horizon or total >= self._seen.capacity:
                break
            frame = pl.read_parquet(io.BytesIO(self.store.get_bytes(key)), columns=["device", "image_id", "timestamp"])
            chosen.append(frame)
            total += frame.height
        if not chosen:
            return 0
        recent = pl.concat(chosen[::-1])  # oldest first, so the newest stay when the window is full
        for device, image_id in zip(recent["device"].to_list(), recent["image_id"].to_list()):
            self._seen.add((device, image_id))
        for device, newest in recent.group_by("device").agg(pl.col("timestamp").max()).iter_rows():
            self._latest[device] = newest
        return len(self._seen)

    # ------------------------------------------------------------------ MQTT
    def _make_client(self):
        import paho.mqtt.client as mqtt
        from paho.mqtt.properties import Properties
        from paho.mqtt.packettypes import PacketTypes

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.settings.client_id,
                             protocol=mqtt.MQTTv5, manual_ack=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.settings.session_expiry_seconds
        # The broker keeps at most this many unacknowledged messages in flight to us: it
        # bounds our memory and must exceed a batch, or batches would only ever fill by time.
        properties.ReceiveMaximum = min(65535, max(1000, 4 * self.settings.batch_rows))
        self._connect_properties = properties
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker %s refused the connection: %s", self.settings.broker, reason_code)
            return
        log.info("connected to %s as %s (session present: %s)", self.settings.broker, self.settings.client_id,
                 flags.session_present)
        client.subscribe(self.settings.topic, qos=1)
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        if not self._stop.is_set():
            log.warning("disconnected from %s: %s", self.settings.broker, reason_code)

    def _on_message(self, client, userdata, message) -> None:
        self.accept(message.topic, bytes(message.payload), message.mid, message.qos)

    # ------------------------------------------------------------------ messages
    def accept(self, topic: str, payload: bytes, mid: int = 0, qos: int = 0) -> None:
        """Decode one message into the current batch (a row, a duplicate or a reject)."""
        received_at = self._now()
        self.stats.received += 1
        self._batch.note(mid, qos)
        try:
            frame = decode_result(topic, payload, received_at)
            self._check_clock(frame, received_at)
        except RejectedResult as exc:
            self.stats.rejected[exc.reason] += 1
            self._batch.rejects.append(reject_row(topic, payload, received_at, exc.reason, exc.detail))
            return
        key = (frame.device, frame.image_id)
        if key in self._seen:
            self.stats.duplicates += 1
            return
        self._seen.add(key)
        self._latest[frame.device] = max(frame.timestamp, self._latest.get(frame.device, frame.timestamp))
        self._batch.rows.append(frame.row)

    def _check_clock(self, frame: FrameRow, received_at: datetime) -> None:
        tolerance = timedelta(seconds=self.settings.clock_tolerance_seconds)
        if (frame.device, frame.image_id) in self._seen:
            return  # a redelivery is a duplicate, whatever its age
        latest = self._latest.get(frame.device)
        if latest is not None and frame.timestamp < latest - tolerance:
            raise RejectedResult(CLOCK_WENT_BACK, f"{frame.device}: timestamp {frame.timestamp.isoformat()} is more "
                                                  f"than {tolerance} before the newest seen ({latest.isoformat()})")
        if frame.timestamp > received_at + tolerance:
            raise RejectedResult(CLOCK_AHEAD, f"{frame.device}: timestamp {frame.timestamp.isoformat()} is more than "
                                              f"{tolerance} after its reception ({received_at.isoformat()})")

    def due(self) -> bool:
        """Whether the current batch must be written now."""
        batch = self._batch
        return bool(len(batch)) and (len(batch) >= self.settings.batch_rows
                                     or time.monotonic() - batch.started >= self.settings.batch_seconds)

    def flush(self, *, acknowledge: bool = True) -> None:
        """Write the batch's parts, then acknowledge its messages (never the other way round)."""
        batch, self._batch = self._batch, _Batch()
        if batch.started is None:
            return
        written_at = self._now()
        try:
            keys = write_frame_parts(self.store, batch.rows, written_at) if batch.rows else []
            if batch.rejects:
                key = reject_part_key(written_at.date(), written_at)
                self.store.put_bytes(key, parquet_bytes(batch.rejects, REJECT_SCHEMA))
                keys.append(key)
        except Exception:
            # Unwritten rows must come back: forget them (the broker redelivers, unacknowledged).
            for row in batch.rows:
                self._seen.discard((row["device"], row["image_id"]))
            raise
        self.stats.written += len(batch.rows)
        self.stats.parts += len(keys)
        self.stats.flushes += 1
        if acknowledge:
            for mid, qos in batch.acks:
                self._client.ack(mid, qos)
        log.debug("flushed %d rows, %d rejects into %d part(s)", len(batch.rows), len(batch.rejects), len(keys))

    # ------------------------------------------------------------------ lifecycle
    def request_stop(self) -> None:
        self._stop.set()

    def run(self, *, stats_every: float = 60.0) -> None:
        """Connect (retrying), collect until ``request_stop``, then flush, acknowledge and disconnect."""
        import paho.mqtt.client as mqtt

        host, port = self.settings.host_port
        restored = self.restore_window()
        log.info("collector %s: %d recent frames remembered for de-duplication", self.settings.client_id, restored)
        self._connect(host, port)
        last_stats = time.monotonic()
        try:
            while not self._stop.is_set():
                rc = self._client.loop(timeout=0.05)
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    # The connection is gone: the acknowledgements of this batch are void; keep
                    # its rows (written now) and let the broker's redeliveries count as duplicates.
                    self._flush_or_recover(acknowledge=False)
                    self._stop.wait(0.5)
                    self._reconnect()
                    continue
                if self.due():
                    self._flush_or_recover(acknowledge=True)
                if time.monotonic() - last_stats >= stats_every:
                    log.info("collector stats: %s", self.stats.as_dict())
                    last_stats = time.monotonic()
            self.flush()
            self._client.loop(timeout=0.2)  # send the last acknowledgements
        finally:
            self._client.disconnect()
            log.info("collector stopped: %s", self.stats.as_dict())

    def _flush_or_recover(self, *, acknowledge: bool) -> None:
        """Flush; when the store refuses the write, reconnect so the broker redelivers the batch.

        MQTT redelivers unacknowledged messages only on a new connection, so a failed write
        without a reconnect would leave its messages with the broker until the next restart.
        """
        try:
            self.flush(acknowledge=acknowledge)
        except Exception:
            self.stats.write_failures += 1
            log.exception("writing results into %s failed; reconnecting in %.0f s so the broker redelivers them",
                          self.store.uri, self.settings.retry_seconds)
            self._client.disconnect()
            self._stop.wait(self.settings.retry_seconds)
            self._reconnect()

    def _connect(self, host: str, port: int) -> None:
        while not self._stop.is_set():
            try:
                self._client.connect(host, port, keepalive=30, clean_start=False, properties=self._connect_properties)
                return
            except OSError as exc:
                log.warning("cannot reach broker %s (%s); retrying", self.settings.broker, exc)
                self._stop.wait(1.0)

    def _reconnect(self) -> None:
        while not self._stop.is_set():
            try:
                self._client.reconnect()
                return
            except OSError as exc:
                log.warning("reconnect to %s failed (%s); retrying", self.settings.broker, exc)
                self._stop.wait(1.0)


def run_collector(store: ObjectStore, settings: CollectorSettings) -> CollectorStats:
    """Run a collector in this process until SIGINT or SIGTERM (which flush and acknowledge first)."""
    collector = ResultsCollector(store, settings)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: collector.request_stop())
    collector.run()
    return collector.stats
