"""The model registry: numbered model versions with an approval status.

``ModelRegistry`` is the interface; ``LocalModelRegistry`` keeps one JSON record per version
under ``registry/models/`` in the object store (the embedded default) and an append-only
event per status change under ``registry/events/``; ``SageMakerModelRegistry``
(model_catalog/sagemaker.py) uses a SageMaker model package group. The champion is the newest
``Approved`` version.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import replace
from datetime import datetime, timezone

from tagqa_assets.contracts.keys import REGISTRY_PREFIX
from tagqa_assets.contracts.models import (
    APPROVED,
    LOCAL_REGISTRY_PREFIX,
    REGISTRY_STATUSES,
    ModelVersion,
    registry_key,
)
from tagqa_assets.storage import ObjectNotFound, ObjectStore

EVENTS_PREFIX = REGISTRY_PREFIX + "events/"
CLAIM_ATTEMPTS = 20


class UnknownModelVersion(LookupError):
    """No such version in the registry."""


def utc_now() -> str:
    """Current UTC time, ISO-8601 with a Z."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ModelRegistry(ABC):
    """Register model versions, list them, change their status."""

    name: str

    @abstractmethod
    def register(self, candidate: ModelVersion) -> ModelVersion:
        """Add ``candidate`` as the next version (its ``version`` field is ignored) and return it numbered."""

    @abstractmethod
    def list_versions(self) -> list[ModelVersion]:
        """All versions, oldest first."""

    @abstractmethod
    def get(self, version: int) -> ModelVersion:
        """One version; raises ``UnknownModelVersion`` naming it."""

    @abstractmethod
    def set_status(self, version: int, status: str, reason: str = "") -> ModelVersion:
        """Approve, reject or reset one version; returns it updated."""

    def champion(self) -> ModelVersion | None:
        """The newest ``Approved`` version, or ``None``."""
        approved = [entry for entry in self.list_versions() if entry.status == APPROVED]
        return approved[-1] if approved else None

    def find_model(self, model_id: str) -> ModelVersion | None:
        """The version registered for ``model_id``, if any (a model is registered at most once)."""
        return next((entry for entry in self.list_versions() if entry.model_id == model_id), None)


def check_status(status: str) -> str:
    """``status`` if it is a registry status, else ``ValueError`` listing the valid ones."""
    if status not in REGISTRY_STATUSES:
        raise ValueError(f"status {status!r} is not one of {REGISTRY_STATUSES}")
    return status


class LocalModelRegistry(ModelRegistry):
    """Versions as ``registry/models/<version:06d>.json`` in the object store."""

    name = "local"

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def _numbers(self) -> list[int]:
        numbers = []
        for info in self.store.list_objects(LOCAL_REGISTRY_PREFIX):
            stem = info.key[len(LOCAL_REGISTRY_PREFIX) :].removesuffix(".json")
            if stem.isdigit():
                numbers.append(int(stem))
        return sorted(numbers)

    def register(self, candidate: ModelVersion) -> ModelVersion:
        numbers = self._numbers()
        number = (numbers[-1] if numbers else 0) + 1
        now = utc_now()
        for _ in range(CLAIM_ATTEMPTS):
            key = registry_key(number)
            if not self.store.exists(key):
                entry = replace(candidate, version=number, created_at=candidate.created_at or now, updated_at=now)
                self.store.put_json(key, entry.to_dict())
                # Read back: a concurrent registration that claimed the same number wins; take the next one.
                if self.store.get_json(key).get("model_id") == entry.model_id:
                    self._event(entry, "registered")
                    return entry
            number += 1
        raise RuntimeError(f"could not claim a registry version after {CLAIM_ATTEMPTS} attempts in {self.store.uri}")

    def list_versions(self) -> list[ModelVersion]:
        return [self.get(number) for number in self._numbers()]

    def get(self, version: int) -> ModelVersion:
        key = registry_key(version)
        try:
            return ModelVersion.from_dict(self.store.get_json(key))
        except ObjectNotFound:
            raise UnknownModelVersion(f"no model version {version} in the registry ({self.store.uri_for(key)} does not exist)") from None

    def set_status(self, version: int, status: str, reason: str = "") -> ModelVersion:
        entry = replace(self.get(version), status=check_status(status), status_reason=reason, updated_at=utc_now())
        self.store.put_json(registry_key(version), entry.to_dict())
        self._event(entry, "status")
        return entry

    def _event(self, entry: ModelVersion, kind: str) -> None:
        stamp = entry.updated_at.replace(":", "").replace("-", "").replace(".", "")
        self.store.put_json(
            f"{EVENTS_PREFIX}{stamp}-v{entry.version:06d}-{entry.status}.json",
            {"event": kind, "version": entry.version, "model_id": entry.model_id, "status": entry.status,
             "reason": entry.status_reason, "at": entry.updated_at},
        )
