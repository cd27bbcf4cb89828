"""Which raw image a label is about: the matching rule for ``source_ref``s.

Labels arrive with references written by other systems (``s3://${bucket}/pipeline/assets/
images/2021-01-28-09-50-34/bad/x.jpg``), by tagqa itself (raw keys, store URIs) or as bare
file names. They are matched to the raw-image inventory in this order, first hit wins:

1. ``content_hash``: the record carries ``image_sha256``, or the referenced image file is
   readable (``--images-root``, a YOLO/COCO folder) and is hashed: the image with that
   content. A record whose own hash is unknown to the inventory is *not* matched by name.
2. ``raw_key``: the reference is a raw key of this store, or this store's URI for one.
3. ``relative_path`` / ``file_name``: the reference's path components are compared with the
   original relative name of each raw image, longest common suffix first. tagqa's uploads
   name objects ``<HHMMSSffffff>-<a>__<b>__<file>`` for ``a/b/file`` (characters outside
   ``[A-Za-z0-9._-]`` replaced by ``_``), so ``.../2021-01-28-09-50-34/bad/x.jpg`` matches an
   upload of the folder holding ``bad/`` (``bad__x.jpg``) and of its parent
   (``images__bad__x.jpg``). A suffix that fits several different images is ambiguous and
   matches none.

Duplicate raw keys (same bytes ingested twice) resolve to the image's first key, so labels
always name the canonical key. Unmatched references are reported, never guessed.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

import pandas as pd

from tagqa_assets.contracts.keys import parse_raw_key
from tagqa_assets.ingestion.catalog import RawImageCatalog
from tagqa_assets.labeling.imports.box_checks import AMBIGUOUS_IMAGE, IMAGE_NOT_FOUND
from tagqa_assets.storage import ObjectStore

CONTENT_HASH = "content_hash"
RAW_KEY = "raw_key"
RELATIVE_PATH = "relative_path"
FILE_NAME = "file_name"

_ARRIVAL_PREFIX = re.compile(r"^\d{12}-")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class RawImageRef:
    """The raw image a label was matched to."""

    key: str
    sha256: str
    width: int
    height: int
    format: str


@dataclass(frozen=True)
class Match:
    """Outcome of matching one reference: ``image`` and ``rule`` on success, else ``reason``."""

    image: RawImageRef | None
    rule: str = ""
    reason: str = ""
    detail: str = ""


def original_name(raw_name: str) -> str:
    """A raw object's name without tagqa's arrival-time prefix (``123456789012-bad__x.jpg`` -> ``bad__x.jpg``)."""
    return _ARRIVAL_PREFIX.sub("", raw_name, count=1)


def reference_parts(source_ref: str) -> list[str]:
    """Path components of a reference, sanitized like uploads sanitize names (scheme and host dropped)."""
    ref = source_ref.strip()
    if "://" in ref:
        ref = ref.split("://", 1)[1].split("/", 1)[1] if "/" in ref.split("://", 1)[1] else ""
    return [_UNSAFE.sub("_", part) for part in ref.replace("\\", "/").split("/") if part not in ("", ".", "..")]


def _stem(name: str) -> str:
    # Ultralytics' label name for an image: everything before the last dot.
    return name.rsplit(".", 1)[0] if "." in name else name


class RawImageIndex:
    """Lookup tables over the raw-image inventory for the matching rule (module docstring)."""

    def __init__(self, inventory: pd.DataFrame, *, store_uri: str = "") -> None:
        self.store_uri = store_uri.rstrip("/")
        self.by_sha: dict[str, RawImageRef] = {}
        self.by_key: dict[str, RawImageRef] = {}
        self.by_suffix: dict[str, set[str]] = defaultdict(set)
        self.by_stem: dict[str, set[str]] = defaultdict(set)
        accepted = inventory[inventory["duplicate_of"].isna()]
        for row in accepted.itertuples(index=False):
            image = RawImageRef(str(row.key), str(row.sha256), int(row.width), int(row.height), str(row.format))
            self.by_sha[image.sha256] = image
            self.by_key[image.key] = image
            self._index_names(image)
        for row in inventory[inventory["duplicate_of"].notna()].itertuples(index=False):
            canonical = self.by_key.get(str(row.duplicate_of))
            if canonical is not None:
                self.by_key[str(row.key)] = canonical

    @classmethod
    def load(cls, store: ObjectStore) -> RawImageIndex:
        """The index of ``store``'s current inventory."""
        return cls(RawImageCatalog(store).load(), store_uri=store.uri)

    def __len__(self) -> int:
        return len(self.by_sha)

    def _index_names(self, image: RawImageRef) -> None:
        try:
            name = parse_raw_key(image.key).name
        except ValueError:
            name = image.key.rsplit("/", 1)[-1]
        names = {name, original_name(name)}
        for flat in names:
            parts = flat.split("__")
            for start in range(len(parts)):
                suffix = "__".join(parts[start:])
                self.by_suffix[suffix].add(image.sha256)
                self.by_stem[_stem(suffix)].add(image.sha256)

    def match(self, source_ref: str, *, sha256: str | None = None, by_stem: bool = False) -> Match:
        """Match one reference by the rule in the module docstring."""
        if sha256:
            image = self.by_sha.get(sha256)
            if image is not None:
                return Match(image, CONTENT_HASH)
            return Match(None, reason=IMAGE_NOT_FOUND, detail=f"no raw image has content sha256 {sha256[:16]}...")
        key = self._store_key(source_ref)
        if key in self.by_key:
            return Match(self.by_key[key], RAW_KEY)
        parts = reference_parts(source_ref)
        table = self.by_stem if by_stem else self.by_suffix
        for length in range(len(parts), 0, -1):
            suffix = "__".join(parts[-length:])
            candidates = table.get(_stem(suffix) if by_stem else suffix)
            if not candidates:
                continue
            if len(candidates) > 1:
                keys = sorted(self.by_sha[sha].key for sha in candidates)
                return Match(None, reason=AMBIGUOUS_IMAGE, detail=f"{'/'.join(parts[-length:])!r} fits {len(keys)} images: {keys[:3]}")
            return Match(self.by_sha[next(iter(candidates))], FILE_NAME if length == 1 else RELATIVE_PATH)
        return Match(None, reason=IMAGE_NOT_FOUND, detail=f"no raw image matches {source_ref!r} by key, path or file name")

    def match_content(self, sha256: str) -> Match:
        """Match by the content hash of a readable image file."""
        image = self.by_sha.get(sha256)
        if image is None:
            return Match(None, reason=IMAGE_NOT_FOUND, detail=f"the referenced file (sha256 {sha256[:16]}...) was never ingested")
        return Match(image, CONTENT_HASH)

    def _store_key(self, source_ref: str) -> str:
        ref = source_ref.strip()
        if ref.startswith("file://"):
            ref = ref[len("file://") :]
        if self.store_uri and ref.startswith(self.store_uri + "/"):
            return ref[len(self.store_uri) + 1 :]
        return ref
