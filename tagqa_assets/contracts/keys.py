"""Store key layout: where every artifact lives under the store root.

The store root is a local folder or ``s3://bucket/prefix``; every key below is relative to
it and uses ``/`` separators. This module is the single definition of the layout; the
prose version is ``docs/interfaces.md`` (layout version ``KEY_LAYOUT_VERSION``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

KEY_LAYOUT_VERSION = 1

RAW_PREFIX = "raw/"
QUARANTINE_PREFIX = "quarantine/"
CATALOG_PREFIX = "catalog/"
RAW_CATALOG_PREFIX = "catalog/raw_images/"
LABELS_PREFIX = "labels/"
LABELS_INBOX_PREFIX = "inbox/labels/"
DATASETS_PREFIX = "datasets/"
MODELS_PREFIX = "models/"
REGISTRY_PREFIX = "registry/"
EDGE_COMPONENTS_PREFIX = "edge/components/"
FEEDBACK_PREFIX = "feedback/"
HARD_EXAMPLES_PREFIX = "hard_examples/"

EDGE_FEEDBACK_SOURCE = "edge-feedback"
IMPORT_SOURCE = "import"

_SOURCE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_DATE_PARTS = re.compile(r"^\d{4}/\d{2}/\d{2}/")


class UnsafeKeyError(ValueError):
    """A key that could escape the store root or is not a plain relative key."""


def check_key(key: str) -> str:
    """Return ``key`` unchanged if it is a safe relative store key.

    Guarantees the key is non-empty, relative (no leading ``/``, no drive letter), uses
    ``/`` only, and has no empty, ``.`` or ``..`` component, so it can never address
    anything outside the store root. Raises ``UnsafeKeyError`` naming the key otherwise.
    """
    if not key:
        raise UnsafeKeyError("empty key")
    if key.startswith("/") or re.match(r"^[A-Za-z]:", key):
        raise UnsafeKeyError(f"absolute key {key!r}")
    if "\\" in key or "\x00" in key:
        raise UnsafeKeyError(f"key {key!r} contains a backslash or NUL byte")
    parts = key.split("/")
    # A trailing slash names a prefix, which is not an object key.
    if any(part in ("", ".", "..") for part in parts):
        raise UnsafeKeyError(f"key {key!r} has an empty, '.' or '..' component")
    return key


def check_source(source: str) -> str:
    """Return ``source`` if it is a valid raw-image source (``camera-1``, ``edge-feedback/line-1``)."""
    parts = source.split("/")
    if not parts or not all(_SOURCE_PART.match(part) for part in parts):
        raise ValueError(
            f"invalid source {source!r}: use letters, digits, '.', '_' and '-' per component"
        )
    if parts[0] == EDGE_FEEDBACK_SOURCE and len(parts) != 2:
        raise ValueError(f"invalid source {source!r}: expected 'edge-feedback/<device>'")
    if parts[0] != EDGE_FEEDBACK_SOURCE and len(parts) != 1:
        raise ValueError(f"invalid source {source!r}: only edge-feedback sources are nested")
    return source


def raw_key(source: str, name: str, when: datetime | None = None) -> str:
    """Key of a raw image: ``raw/<source>/<YYYY>/<MM>/<DD>/<name>`` (UTC date of ``when``)."""
    when = (when or datetime.now(timezone.utc)).astimezone(timezone.utc)
    if "/" in name or name in ("", ".", ".."):
        raise UnsafeKeyError(f"invalid image name {name!r}")
    return check_key(f"{RAW_PREFIX}{check_source(source)}/{when:%Y/%m/%d}/{name}")


def raw_source_prefix(source: str) -> str:
    """The prefix under which one source's images are stored, ending in ``/``."""
    return f"{RAW_PREFIX}{check_source(source)}/"


@dataclass(frozen=True)
class RawKey:
    """A parsed raw-image key."""

    key: str
    source: str
    date: str  # YYYY/MM/DD
    name: str


def parse_raw_key(key: str) -> RawKey:
    """Parse ``raw/<source>/<YYYY>/<MM>/<DD>/<name>``; raises ``ValueError`` naming the key."""
    check_key(key)
    if not key.startswith(RAW_PREFIX):
        raise ValueError(f"{key!r} is not under {RAW_PREFIX}")
    rest = key[len(RAW_PREFIX) :]
    depth = 2 if rest.startswith(EDGE_FEEDBACK_SOURCE + "/") else 1
    parts = rest.split("/")
    if len(parts) != depth + 4:
        raise ValueError(f"{key!r} does not follow raw/<source>/<YYYY>/<MM>/<DD>/<name>")
    source = "/".join(parts[:depth])
    date = "/".join(parts[depth : depth + 3])
    if not _DATE_PARTS.match(date + "/"):
        raise ValueError(f"{key!r} has no YYYY/MM/DD date part after the source")
    check_source(source)
    return RawKey(key=key, source=source, date=date, name=parts[-1])


def quarantine_keys(original_key: str, when: datetime | None = None) -> tuple[str, str]:
    """Keys for a rejected input: ``(object_key, reason_record_key)``.

    The object keeps its original key flattened into one name (``/`` becomes ``__``), so
    the reason record and the bytes sit side by side under ``quarantine/<YYYY>/<MM>/<DD>/``.
    Unsafe characters of hostile keys are replaced, so the result is always a safe key.
    """
    when = (when or datetime.now(timezone.utc)).astimezone(timezone.utc)
    flat = re.sub(r"[^A-Za-z0-9._-]", "_", original_key.replace("/", "__")).lstrip(".")
    flat = flat[-200:] or "unnamed"
    obj = check_key(f"{QUARANTINE_PREFIX}{when:%Y/%m/%d}/{flat}")
    return obj, obj + ".reason.json"


def feedback_sidecar_key(raw_image_key: str) -> str:
    """Key of the prediction sidecar of an edge-feedback image (``feedback/<device>/<date>/<name>.json``)."""
    parsed = parse_raw_key(raw_image_key)
    if not parsed.source.startswith(EDGE_FEEDBACK_SOURCE + "/"):
        raise ValueError(f"{raw_image_key!r} is not an edge-feedback image")
    device = parsed.source.split("/", 1)[1]
    return check_key(f"{FEEDBACK_PREFIX}{device}/{parsed.date}/{parsed.name}.json")


def dataset_prefix(version: str) -> str:
    """Prefix of one immutable dataset version: ``datasets/<version>/``."""
    return check_key(f"{DATASETS_PREFIX}{version}") + "/"


def model_prefix(model_id: str) -> str:
    """Prefix of one trained model's artifacts: ``models/<model_id>/``."""
    return check_key(f"{MODELS_PREFIX}{model_id}") + "/"


def edge_component_prefix(component_name: str, version: str) -> str:
    """Prefix of one Greengrass component version: ``edge/components/<name>/<semver>/``."""
    return check_key(f"{EDGE_COMPONENTS_PREFIX}{component_name}/{version}") + "/"
