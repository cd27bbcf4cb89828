"""Ingest raw keys: validate each by decoding it, record it once, quarantine what is bad."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from tagqa_assets.contracts.keys import RAW_PREFIX, UnsafeKeyError, check_key, parse_raw_key, quarantine_keys
from tagqa_assets.ingestion import validation
from tagqa_assets.ingestion.catalog import RawImage, RawImageCatalog
from tagqa_assets.storage import ObjectNotFound, ObjectStore


@dataclass(frozen=True)
class QuarantineRecord:
    """Why an input was rejected and where its bytes went."""

    original_key: str
    quarantine_key: str
    reason: str
    detail: str
    bytes: int
    sha256: str | None
    quarantined_at: str
    run_id: str


@dataclass
class IngestReport:
    """Outcome of one ingestion pass. ``accepted + quarantined + duplicates == seen`` always."""

    requested: int = 0
    already_ingested: int = 0
    missing: int = 0
    accepted: list[RawImage] = field(default_factory=list)
    duplicates: list[RawImage] = field(default_factory=list)
    quarantined: list[QuarantineRecord] = field(default_factory=list)
    catalog_part: str | None = None

    @property
    def seen(self) -> int:
        return self.requested - self.already_ingested - self.missing

    def accounting_error(self) -> str | None:
        """``None`` when every input is accounted for, else a message naming the counts."""
        total = len(self.accepted) + len(self.quarantined) + len(self.duplicates)
        if total == self.seen:
            return None
        return (
            f"ingestion accounting broken: accepted {len(self.accepted)} + quarantined "
            f"{len(self.quarantined)} + duplicates {len(self.duplicates)} != seen {self.seen}"
        )


def quarantine(store: ObjectStore, key: str, reason: str, detail: str, data: bytes, run_id: str) -> QuarantineRecord:
    """Move the bytes of ``key`` to ``quarantine/`` beside a JSON reason record.

    Order matters for "nothing is lost": bytes first, then the reason record, then the
    original is deleted; a crash in between leaves the original to be seen again.
    """
    now = datetime.now(timezone.utc)
    object_key, reason_key = quarantine_keys(key, now)
    record = QuarantineRecord(
        original_key=key,
        quarantine_key=object_key,
        reason=reason,
        detail=detail,
        bytes=len(data),
        sha256=validation.sha256_hex(data) if data else None,
        quarantined_at=now.isoformat(),
        run_id=run_id,
    )
    store.put_bytes(object_key, data)
    store.put_json(reason_key, record.__dict__)
    try:
        store.delete(key)
    except UnsafeKeyError:
        pass  # the store refused to address the key, so there is nothing under it to remove
    return record


def ingest_keys(
    store: ObjectStore,
    keys: Iterable[str],
    *,
    run_id: str,
    max_pixels: int = validation.DEFAULT_MAX_PIXELS,
    catalog: RawImageCatalog | None = None,
) -> IngestReport:
    """Validate and record ``keys`` (raw keys); returns the report after appending one catalog part
    (none when ``report.accounting_error()`` says the counts do not add up).

    Keys already in the inventory are skipped (a retried run changes nothing); keys that
    vanished are counted as missing; content seen before is recorded as a duplicate of its
    first key; everything that is not a decodable image under a safe, well-formed raw key
    is moved to quarantine with its reason.
    """
    catalog = catalog or RawImageCatalog(store)
    inventory = catalog.load()
    known_keys = set(inventory["key"])
    first_key_by_sha = dict(zip(inventory.loc[inventory["duplicate_of"].isna(), "sha256"], inventory.loc[inventory["duplicate_of"].isna(), "key"]))
    report = IngestReport()
    for key in dict.fromkeys(keys):
        report.requested += 1
        if key in known_keys:
            report.already_ingested += 1
            continue
        try:
            data = store.get_bytes(key)
        except ObjectNotFound:
            report.missing += 1
            continue
        except UnsafeKeyError as exc:
            detail = f"{exc}; the store refused to read it"
            report.quarantined.append(quarantine(store, key, validation.UNSAFE_KEY, detail, b"", run_id))
            continue
        try:
            check_key(key)
            parsed = parse_raw_key(key)
        except UnsafeKeyError as exc:
            report.quarantined.append(quarantine(store, key, validation.UNSAFE_KEY, str(exc), data, run_id))
            continue
        except ValueError as exc:
            detail = f"{exc}; upload with `tagqa upload` or write to {RAW_PREFIX}<source>/<YYYY>/<MM>/<DD>/<name>"
            report.quarantined.append(quarantine(store, key, validation.KEY_LAYOUT, detail, data, run_id))
            continue
        try:
            info = validation.inspect_image(data, max_pixels=max_pixels)
        except validation.InvalidImage as exc:
            report.quarantined.append(quarantine(store, key, exc.reason, exc.detail, data, run_id))
            continue
        duplicate_of = first_key_by_sha.get(info.sha256)
        row = RawImage(
            key=key,
            sha256=info.sha256,
            bytes=info.bytes,
            width=info.width,
            height=info.height,
            format=info.format,
            channels=info.channels,
            source=parsed.source,
            ingested_at=datetime.now(timezone.utc).isoformat(),
            duplicate_of=duplicate_of,
            run_id=run_id,
            stored_width=info.stored_width,
            stored_height=info.stored_height,
            orientation=info.orientation,
        )
        if duplicate_of is None:
            first_key_by_sha[info.sha256] = key
            report.accepted.append(row)
        else:
            report.duplicates.append(row)
        known_keys.add(key)
    if report.accounting_error() is None:
        # A run whose counts do not add up commits nothing: its keys are examined again.
        report.catalog_part = catalog.append(report.accepted + report.duplicates)
    return report


def uningested_raw_keys(store: ObjectStore, catalog: RawImageCatalog | None = None) -> list[str]:
    """Every key under ``raw/`` not yet in the inventory (a full reconcile; cost grows with the store)."""
    known = set((catalog or RawImageCatalog(store)).load()["key"])
    return [info.key for info in store.list_objects(RAW_PREFIX) if info.key not in known]
