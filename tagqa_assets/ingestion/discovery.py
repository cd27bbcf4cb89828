"""One tick of raw-image discovery: S3 events from the queue, the per-source listing as fallback.

Two modes (docs/ingestion.md):

- **listing** (no queue configured; the embedded local store always): every tick lists
  each source after its cursor position (``scan.scan_new_raw_keys``).
- **events** (a queue configured): every tick first deletes the messages the previous tick
  handled (the daemon stored that tick's cursor only after submitting its runs), then
  drains the queue, and lists every source only every ``fallback_every_ticks`` ticks or
  when the queue could not be reached, so keys written without an event are found too.

A key is handed out once per discovery path; a redelivered message whose key a run already
covers, or a listed key that an event run already requested, is recognised through
``requested_since`` (the keys of the sensor's runs created after a time).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from tagqa_assets.ingestion import events
from tagqa_assets.ingestion.events import RawEventQueue
from tagqa_assets.ingestion.scan import RawCursor, scan_new_raw_keys
from tagqa_assets.storage import ObjectStore, S3ObjectStore

# A redelivered message's first run was created after its first receive; allow for clock skew.
REDELIVERY_MARGIN_S = 300.0
# An object S3 created this long after a listing started may still have been listed (clock skew, slow listings).
LISTING_MARGIN_S = 120.0


@dataclass(frozen=True)
class EventOptions:
    """How the sensor drains the queue (``RawEventQueueResource`` holds the user's values)."""

    fallback_every_ticks: int = 120
    wait_seconds: int = 10
    visibility_timeout_s: int = 300
    max_messages: int = 2000


@dataclass
class Discovery:
    """What one tick found and what it cost."""

    new_keys: list[str]
    cursor: RawCursor
    mode: str  # "listing", "events" or "events+listing"
    list_calls: int = 0
    receive_calls: int = 0
    delete_calls: int = 0
    messages: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    listing_found: int = 0
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the tick's log and skip reason."""
        parts = [f"{len(self.new_keys)} new key(s) [{self.mode}]"]
        if self.mode != "listing":
            skipped = {k: v for k, v in sorted(self.outcomes.items()) if k != events.NEW and v}
            parts.append(f"{self.messages} message(s), {self.receive_calls} receive + {self.delete_calls} delete call(s)")
            if skipped:
                parts.append("skipped " + ", ".join(f"{k}={v}" for k, v in skipped.items()))
        if self.mode != "events":
            parts.append(f"{self.list_calls} list call(s), {self.listing_found} found by listing")
        if self.errors:
            parts.append(f"{len(self.errors)} error(s): {self.errors[0]}")
        return "; ".join(parts)


def _covered_since(message: events.ReceivedMessage, record: events.EventRecord, listed_at: float | None, now: float) -> float:
    """Since when a run may already have requested this event's key, or ``inf`` when none can.

    A redelivered message (received before: its first tick may have requested it), and an
    event for an object created before the last listing (the listing may have handed the
    key out, e.g. while the queue was unreachable) need a look at the sensor's runs; a
    first delivery of an event newer than the last listing does not.
    """
    if message.receive_count > 1:
        return message.first_received_s or now
    if listed_at is not None and (record.event_time_s is None or record.event_time_s <= listed_at + LISTING_MARGIN_S):
        return min(record.event_time_s or listed_at, listed_at)
    return math.inf


def discover_raw_keys(
    store: ObjectStore,
    cursor: RawCursor,
    *,
    queue: RawEventQueue | None,
    options: EventOptions,
    requested_since: Callable[[float], set[str]],
    now: float,
    max_keys: int = 5000,
) -> Discovery:
    """Find the raw keys to hand out this tick and the cursor to store with their run requests.

    Guarantees: every message received this tick is in the returned cursor's ``pending``
    (deleted next tick, after its run was submitted) or, when its deletion call failed,
    kept for retry; every message's records are counted in ``outcomes``; a key is in
    ``new_keys`` at most once.
    """
    if queue is None:
        scan = scan_new_raw_keys(store, cursor, max_keys=max_keys)
        counts = Counter(cursor.counts)
        counts["listing_found"] += len(scan.new_keys)
        return Discovery(
            # Receipts of an earlier event mode are dropped: those messages come back and expire.
            scan.new_keys, replace(scan.cursor, pending=[], counts=dict(counts)), "listing", list_calls=scan.list_calls, listing_found=len(scan.new_keys)
        )
    if not isinstance(store, S3ObjectStore):
        raise ValueError(f"a raw event queue ({queue.queue_url}) needs an S3 store; {store.uri} is a local folder")

    found = Discovery([], cursor, "events")
    deleted = queue.delete(cursor.pending) if cursor.pending else events.DeleteResult()
    found.delete_calls = deleted.calls
    if deleted.error:
        found.errors.append(deleted.error)
    queue_down = bool(deleted.retry)
    drain = events.DrainResult()
    if not queue_down:
        drain = queue.drain(max_messages=options.max_messages, wait_seconds=options.wait_seconds, visibility_timeout_s=options.visibility_timeout_s)
        found.receive_calls = drain.receive_calls
        if drain.error:
            found.errors.append(drain.error)
            queue_down = True
    found.messages = len(drain.messages)

    keys: dict[str, float] = {}  # key -> since when a run may already cover it (inf: none can)
    for message in drain.messages:
        for record in events.parse_event_message(message.body, bucket=store.bucket, store_prefix=store.prefix):
            if record.outcome != events.NEW or record.key is None:
                found.outcomes[record.outcome] += 1
            elif record.key in keys:
                found.outcomes[events.DUPLICATE] += 1
            else:
                keys[record.key] = _covered_since(message, record, cursor.listed_at, now)
    doubtful = [since for since in keys.values() if since != math.inf]
    if doubtful:
        done = requested_since(min(doubtful) - REDELIVERY_MARGIN_S)
        for key in [k for k, since in keys.items() if since != math.inf and k in done]:
            del keys[key]
            found.outcomes[events.ALREADY_REQUESTED] += 1
    found.outcomes[events.NEW] += len(keys)
    new_keys = sorted(keys)  # the same messages give the same batches, hence the same run keys

    next_cursor = replace(cursor, pending=deleted.retry + [m.receipt_handle for m in drain.messages], ticks_since_listing=cursor.ticks_since_listing + 1)
    # The first tick in event mode lists too: it catches up on what was written before the
    # queue existed and starts the clock that tells later listings what events covered.
    if queue_down or cursor.listed_at is None or next_cursor.ticks_since_listing >= options.fallback_every_ticks:
        found.mode = "events+listing"
        scan = scan_new_raw_keys(store, cursor, max_keys=max_keys)
        found.list_calls = scan.list_calls
        # Keys whose events were handled since the previous listing are already requested.
        seen = requested_since(cursor.listed_at - REDELIVERY_MARGIN_S) if cursor.listed_at and scan.new_keys else set()
        listed = [key for key in scan.new_keys if key not in keys and key not in seen]
        found.listing_found = len(listed)
        new_keys.extend(listed)
        next_cursor = replace(next_cursor, after=scan.cursor.after, ticks_since_listing=0, listed_at=now)

    counts = Counter(cursor.counts)
    counts["messages"] += found.messages
    counts.update({f"event_{outcome}": n for outcome, n in found.outcomes.items()})
    counts["listing_found"] += found.listing_found
    counts["queue_errors"] += len(found.errors)
    counts["delete_refused"] += deleted.refused
    found.new_keys = new_keys
    found.cursor = replace(next_cursor, counts=dict(counts))
    return found
