"""Incremental listing of new raw images: the raw-image sensor's listing mode, and the
fallback of its event mode (``discovery.py``), plus the cursor both modes share.

Keys are ``raw/<source>/<YYYY>/<MM>/<DD>/<name>``: within one source they sort in time
order as long as writers name files in arrival order within a day (tagqa's own writers
prefix names with a UTC time). The cursor therefore keeps, per source, the last key
handed to ingestion, and a tick lists each source with ``StartAfter=<that key>``: one
delimiter listing finds the sources (plus one per nested ``edge-feedback/`` level) and one
listing per source returns only what is new. The cost of a tick depends on the number of
sources and new objects, not on how many objects the store already holds. Anything written
out of order is picked up by the daily full reconcile (``raw_images`` without a key list).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace

from tagqa_assets.contracts.keys import EDGE_FEEDBACK_SOURCE, RAW_PREFIX
from tagqa_assets.storage import ObjectStore

CURSOR_VERSION = 2


@dataclass
class RawCursor:
    """Everything the raw-image sensor carries from one tick to the next.

    - ``after``: per source, the last key the listing handed out (``{source_prefix: key}``);
    - ``pending``: SQS receipt handles of the messages the previous tick turned into run
      requests (or skipped); the daemon stores this cursor only after it has submitted
      those runs, so the next tick may delete them;
    - ``ticks_since_listing`` / ``listed_at``: when the fallback listing last ran (event mode);
    - ``counts``: running totals of what happened to every message and tick, for people.
    """

    after: dict[str, str] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)
    ticks_since_listing: int = 0
    listed_at: float | None = None
    counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None) -> RawCursor:
        """Parse a stored cursor (this version or version 1); ``None``/empty is the start.

        Raises ``ValueError`` on a foreign cursor.
        """
        if not text:
            return cls()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"raw_image_sensor cursor is not JSON: {text[:80]!r}") from exc
        if not isinstance(data, dict) or data.get("v") not in (1, CURSOR_VERSION) or not isinstance(data.get("after"), dict):
            raise ValueError(f"raw_image_sensor cursor has an unknown shape: {text[:80]!r}")
        return cls(
            after=dict(data["after"]),
            pending=list(data.get("pending", [])),
            ticks_since_listing=int(data.get("ticks_since_listing", 0)),
            listed_at=data.get("listed_at"),
            counts={str(k): int(v) for k, v in data.get("counts", {}).items()},
        )

    def serialize(self) -> str:
        return json.dumps(
            {
                "v": CURSOR_VERSION,
                "after": dict(sorted(self.after.items())),
                "pending": self.pending,
                "ticks_since_listing": self.ticks_since_listing,
                "listed_at": self.listed_at,
                "counts": dict(sorted(self.counts.items())),
            },
            separators=(",", ":"),
        )


@dataclass(frozen=True)
class RawScan:
    """What one tick found: new keys in key order per source, the advanced cursor, list calls made."""

    new_keys: list[str]
    cursor: RawCursor
    list_calls: int
    sources: list[str]


def source_prefixes(store: ObjectStore) -> list[str]:
    """Every source prefix under ``raw/`` (``raw/camera-1/``, ``raw/edge-feedback/line-1/``)."""
    prefixes: list[str] = []
    for prefix in store.list_prefixes(RAW_PREFIX):
        if prefix == f"{RAW_PREFIX}{EDGE_FEEDBACK_SOURCE}/":
            prefixes.extend(store.list_prefixes(prefix))
        else:
            prefixes.append(prefix)
    return prefixes


def scan_new_raw_keys(store: ObjectStore, cursor: RawCursor, *, max_keys: int = 5000) -> RawScan:
    """List keys written since ``cursor``, at most ``max_keys`` (the rest comes next tick).

    Guarantees: every returned key sorts after the cursor position of its source, so a key
    is handed out once; the returned cursor covers exactly the returned keys.
    """
    calls_before = store.list_calls
    after = dict(cursor.after)
    new_keys: list[str] = []
    prefixes = source_prefixes(store)
    for prefix in prefixes:
        budget = max_keys - len(new_keys)
        if budget <= 0:
            break
        for info in store.list_objects(prefix, start_after=after.get(prefix)):
            new_keys.append(info.key)
            after[prefix] = info.key
            budget -= 1
            if budget == 0:
                break
    return RawScan(new_keys=new_keys, cursor=replace(cursor, after=after), list_calls=store.list_calls - calls_before, sources=prefixes)


def batch_run_key(keys: list[str]) -> str:
    """Deterministic run key of a batch: the same batch, retried, maps to the same run."""
    digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]
    return f"raw-{len(keys)}-{digest}"
