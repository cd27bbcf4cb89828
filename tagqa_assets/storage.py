"""The object store every stage reads and writes: a local folder or any S3 API endpoint.

``ObjectStore`` is the one interface; ``LocalObjectStore`` (the embedded default) and
``S3ObjectStore`` implement it with the same semantics: keys are ``/``-separated and
relative to the store root, listings come back in lexicographic (UTF-8) key order with S3's
``StartAfter`` meaning, and a reader never sees a half-written object (local writes go to a
temporary file that is renamed into place; an S3 PUT is atomic per object). Multi-object
artifacts write their commit record last (see docs/interfaces.md).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dagster as dg

from tagqa_assets.contracts.keys import check_key

_TMP_MARK = ".tagqa-tmp-"
# What this module names its temporary files: the mark, the target's name, a uuid4 hex.
_TMP_NAME = re.compile(r"^" + re.escape(_TMP_MARK) + r".+\.[0-9a-f]{32}$")
_SWEEP_MARKER = ".tagqa-swept"
STALE_TEMP_AFTER_S = 3600.0


class ObjectNotFound(KeyError):
    """Raised when a key does not exist in the store; the message names the key and store."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "object not found"


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object as a listing reports it."""

    key: str
    size: int
    last_modified: datetime


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one rename, durably: a reader (or a file watcher)
    sees the old content or the new, never a partial file. Creates missing folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{_TMP_MARK}{path.name}.{uuid.uuid4().hex}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class ObjectStore(ABC):
    """A flat key space of immutable-by-convention objects (see module docstring)."""

    uri: str

    def __init__(self) -> None:
        self.list_calls = 0

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically: readers see the old object or the new one."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """Return the object's bytes; raises ``ObjectNotFound`` naming the key."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object is stored under exactly ``key``."""

    @abstractmethod
    def list_objects(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix`` and sorts after ``start_after``, in key order."""

    @abstractmethod
    def list_prefixes(self, prefix: str) -> list[str]:
        """The 'folders' one level below ``prefix`` (which ends in ``/``), each ending in ``/``."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error."""

    @abstractmethod
    def uri_for(self, key: str) -> str:
        """A human- and tool-readable address of ``key`` (local path or ``s3://`` URI)."""

    def copy(self, src: str, dst: str) -> None:
        """Copy one object to another key (atomic at the destination)."""
        self.put_bytes(dst, self.get_bytes(src))

    def move(self, src: str, dst: str) -> None:
        """Copy then delete: a crash in between leaves both, never neither."""
        self.copy(src, dst)
        self.delete(src)

    def put_file(self, key: str, path: Path) -> None:
        """Upload a local file under ``key``."""
        self.put_bytes(key, Path(path).read_bytes())

    def download_file(self, key: str, path: Path) -> Path:
        """Write the object to a local file (atomically) and return its path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{_TMP_MARK}{path.name}.{uuid.uuid4().hex}")
        tmp.write_bytes(self.get_bytes(key))
        os.replace(tmp, path)
        return path

    def download_prefix(self, prefix: str, directory: Path) -> int:
        """Mirror every object under ``prefix`` into ``directory``; returns the object count."""
        count = 0
        for info in self.list_objects(prefix):
            self.download_file(info.key, Path(directory) / info.key[len(prefix) :])
            count += 1
        return count

    def put_json(self, key: str, value: Any) -> None:
        """Store ``value`` as indented UTF-8 JSON."""
        self.put_bytes(key, json.dumps(value, indent=2, sort_keys=True, default=str).encode())

    def get_json(self, key: str) -> Any:
        """Load a JSON object; raises ``ValueError`` naming the key when it is not valid JSON."""
        data = self.get_bytes(key)
        try:
            return json.loads(data)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{self.uri_for(key)} is not valid JSON: {exc}") from exc


class LocalObjectStore(ObjectStore):
    """Objects as files under a root folder; keys map 1:1 onto relative paths."""

    def __init__(self, root: str | Path, *, stale_temp_after_s: float = STALE_TEMP_AFTER_S) -> None:
        super().__init__()
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.uri = str(self.root)
        self.stale_temp_after_s = stale_temp_after_s
        self.removed_temp_files = self._sweep_stale_temp_files()

    def _sweep_stale_temp_files(self) -> list[str]:
        """Remove temporary files of killed writers; returns their paths relative to the root.

        Only files named the way this module names them (``.tagqa-tmp-<name>.<uuid hex>``)
        and not modified for ``stale_temp_after_s`` are removed: a live writer keeps its file
        fresh, and other writers' dotfiles (edge devices) are never touched. The walk runs at
        most every quarter of that bound per store folder (a marker file's mtime says when it
        last ran), so opening the store stays cheap.
        """
        marker = self.root / _SWEEP_MARKER
        now = time.time()
        try:
            if now - marker.stat().st_mtime < self.stale_temp_after_s / 4:
                return []
        except FileNotFoundError:
            pass
        marker.touch()
        removed: list[str] = []
        for folder, _, files in os.walk(self.root):
            for name in files:
                if not _TMP_NAME.match(name):
                    continue
                path = Path(folder) / name
                try:
                    if now - path.stat().st_mtime < self.stale_temp_after_s:
                        continue
                    path.unlink()
                except FileNotFoundError:
                    continue  # renamed into place or removed meanwhile
                removed.append(str(path.relative_to(self.root)))
                self._remove_empty_folders(path.parent)
        return removed

    def _remove_empty_folders(self, folder: Path) -> None:
        # Drop directories left empty, so list_prefixes matches S3's view.
        while folder != self.root:
            try:
                folder.rmdir()
            except OSError:
                break
            folder = folder.parent

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put_bytes(self, key: str, data: bytes) -> None:
        write_atomically(self._path(key), data)

    def put_file(self, key: str, path: Path) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{_TMP_MARK}{target.name}.{uuid.uuid4().hex}")
        shutil.copyfile(path, tmp)
        os.replace(tmp, target)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"no object {key!r} in store {self.uri}") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def copy(self, src: str, dst: str) -> None:
        source = self._path(src)
        if not source.is_file():
            raise ObjectNotFound(f"no object {src!r} in store {self.uri}")
        target = self._path(dst)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{_TMP_MARK}{target.name}.{uuid.uuid4().hex}")
        try:
            # Objects are never modified in place, so a hard link is a safe, free copy.
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        self._remove_empty_folders(path.parent)

    def uri_for(self, key: str) -> str:
        return str(self._path(key))

    def list_objects(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        self.list_calls += 1
        directory, _, _ = prefix.rpartition("/")
        base = self.root / directory if directory else self.root
        if directory:
            check_key(directory)
        if not base.is_dir():
            return
        yield from self._walk(base, directory + "/" if directory else "", prefix, start_after)

    def _walk(self, folder: Path, key_prefix: str, prefix: str, start_after: str | None) -> Iterator[ObjectInfo]:
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return
        # A folder sorts as "<name>/" so the walk yields keys in S3's lexicographic order.
        children = sorted(
            (entry.name + ("/" if entry.is_dir(follow_symlinks=False) else ""), entry) for entry in entries
        )
        for sort_name, entry in children:
            key = key_prefix + sort_name
            if entry.name.startswith("."):
                continue  # in-flight writes of any writer (ours, edge devices): never objects
            if not (key.startswith(prefix) or prefix.startswith(key)):
                continue
            if sort_name.endswith("/"):
                if start_after and key < start_after and not start_after.startswith(key):
                    continue  # every key below this folder sorts before start_after
                yield from self._walk(Path(entry.path), key, prefix, start_after)
            elif entry.is_file(follow_symlinks=False) and (not start_after or key > start_after):
                try:
                    stat = entry.stat()
                except FileNotFoundError:
                    continue  # deleted or moved since the folder was read
                yield ObjectInfo(key, stat.st_size, datetime.fromtimestamp(stat.st_mtime, timezone.utc))

    def list_prefixes(self, prefix: str) -> list[str]:
        self.list_calls += 1
        if prefix and not prefix.endswith("/"):
            raise ValueError(f"list_prefixes needs a prefix ending in '/', got {prefix!r}")
        folder = self._path(prefix.rstrip("/")) if prefix else self.root
        if not folder.is_dir():
            return []
        return sorted(
            f"{prefix}{entry.name}/"
            for entry in os.scandir(folder)
            if entry.is_dir(follow_symlinks=False) and not entry.name.startswith(".") and _holds_an_object(Path(entry.path))
        )


def _holds_an_object(folder: Path) -> bool:
    """Whether ``folder`` holds an object at any depth (temporary and other dotfiles are not objects).

    S3 has no folders, only key prefixes: a folder left with nothing but a killed writer's
    temporary file or empty subfolders is no prefix there, so it is none here either.
    """
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return False
    for entry in entries:
        if not entry.name.startswith(".") and entry.is_file(follow_symlinks=False):
            return True
    return any(
        _holds_an_object(Path(entry.path))
        for entry in entries
        if not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False)
    )


class S3ObjectStore(ObjectStore):
    """Objects in an S3 bucket (or any S3 API endpoint) under an optional key prefix."""

    def __init__(self, uri: str, *, endpoint_url: str | None = None, region: str | None = None, client: Any = None) -> None:
        super().__init__()
        if not uri.startswith("s3://"):
            raise ValueError(f"S3 store URI must start with s3://, got {uri!r}")
        bucket, _, prefix = uri[len("s3://") :].partition("/")
        if len(bucket) < 3:
            raise ValueError(f"invalid bucket name in {uri!r}")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        if client is None:
            import boto3

            client = boto3.client("s3", endpoint_url=endpoint_url or None, region_name=region or None)
        self.client = client

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _listed_key(self, key: str) -> str:
        # Reads and deletes accept any key a listing returned: in S3 '..' is only characters,
        # and ingestion must be able to move such a hostile key into quarantine.
        if not key or key.startswith("/"):
            raise ObjectNotFound(f"no object {key!r} in store {self.uri}")
        return self.prefix + key

    def put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def put_file(self, key: str, path: Path) -> None:
        self.client.upload_file(str(path), self.bucket, self._key(key))

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._listed_key(key))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            raise ObjectNotFound(f"no object {key!r} in store {self.uri}") from None

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def copy(self, src: str, dst: str) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.copy_object(
                Bucket=self.bucket, Key=self._key(dst), CopySource={"Bucket": self.bucket, "Key": self._key(src)}
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                raise ObjectNotFound(f"no object {src!r} in store {self.uri}") from None
            raise

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._listed_key(key))

    def uri_for(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def list_objects(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        request: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix + prefix}
        if start_after:
            request["StartAfter"] = self.prefix + start_after
        for page in self.client.get_paginator("list_objects_v2").paginate(**request):
            self.list_calls += 1
            for item in page.get("Contents", []):
                yield ObjectInfo(item["Key"][len(self.prefix) :], item["Size"], item["LastModified"])

    def list_prefixes(self, prefix: str) -> list[str]:
        if prefix and not prefix.endswith("/"):
            raise ValueError(f"list_prefixes needs a prefix ending in '/', got {prefix!r}")
        found: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix + prefix, Delimiter="/"):
            self.list_calls += 1
            found.extend(p["Prefix"][len(self.prefix) :] for p in page.get("CommonPrefixes", []))
        return sorted(found)


def open_store(root: str, *, endpoint_url: str | None = None, region: str | None = None) -> ObjectStore:
    """Open the store at ``root``: ``s3://bucket/prefix`` selects S3, anything else a local folder."""
    if root.startswith("s3://"):
        return S3ObjectStore(root, endpoint_url=endpoint_url, region=region)
    return LocalObjectStore(root)


class StoreResource(dg.ConfigurableResource):
    """Where tagqa keeps its artifacts: ``TAGQA_STORE`` (folder or ``s3://bucket/prefix``)."""

    root: str = ".tagqa/store"
    s3_endpoint_url: str = ""
    aws_region: str = ""

    def open(self) -> ObjectStore:
        """The configured store; S3 when ``root`` is an ``s3://`` URI."""
        return open_store(self.root, endpoint_url=self.s3_endpoint_url or None, region=self.aws_region or None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Log the store every run uses (a wrong TAGQA_STORE would otherwise show only as empty results)."""
        if context.run is not None:
            endpoint = f" via {self.s3_endpoint_url}" if self.s3_endpoint_url else ""
            context.log.info(f"tagqa store: {self.open().uri}{endpoint}")
