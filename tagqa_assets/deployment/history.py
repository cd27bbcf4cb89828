"""Deployment history: which release is on which target, since when, put there by which run.

One record per deployment (``contracts.edge.DeploymentRecord``), written when the deployment
starts (``in_progress``) and rewritten once when it ends; records sort by start time. The
*current* release of a target is the newest ``deployed`` record; a record left
``in_progress`` belongs to a run that died mid-deployment and is shown as such.
"""

from __future__ import annotations

import dataclasses
import uuid

import dagster as dg

from tagqa_assets.contracts.edge import (
    DEPLOYED,
    IN_PROGRESS,
    DeploymentRecord,
    Release,
    deployments_prefix,
    utc_now,
)
from tagqa_assets.previews import metadata_table
from tagqa_assets.storage import ObjectStore

TABLE_COLUMNS = ("started_at", "kind", "model_version", "components", "status", "devices", "run_id", "error")


class DeploymentHistory:
    """Deployment records of every target in ``store``."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def start(self, *, target: str, kind: str, release: Release | None, run_id: str, replaces: str = "",
              deployment_id: str = "") -> DeploymentRecord:
        """Write and return a new ``in_progress`` record."""
        record = DeploymentRecord(
            deployment_id=deployment_id or uuid.uuid4().hex[:12], target=target, kind=kind, release=release,
            status=IN_PROGRESS, started_at=utc_now(), run_id=run_id, replaces=replaces)
        self.store.put_json(record.key, record.to_dict())
        return record

    def finish(self, record: DeploymentRecord, status: str, *, devices: dict[str, dict[str, str]] | None = None,
               error: str = "", target_deployment_id: str = "") -> DeploymentRecord:
        """Rewrite ``record`` with its outcome (same key) and return it."""
        done = dataclasses.replace(record, status=status, finished_at=utc_now(), devices=devices or record.devices,
                                   error=error, target_deployment_id=target_deployment_id)
        self.store.put_json(record.key, done.to_dict())
        return done

    def records(self, target: str) -> list[DeploymentRecord]:
        """All records of ``target``, oldest first."""
        return [DeploymentRecord.from_dict(self.store.get_json(info.key))
                for info in self.store.list_objects(deployments_prefix(target)) if info.key.endswith(".json")]

    def current(self, target: str) -> DeploymentRecord | None:
        """The newest successful deployment of ``target`` (what runs there now), or None."""
        deployed = [r for r in self.records(target) if r.status == DEPLOYED]
        return deployed[-1] if deployed else None

    def previous_good(self, target: str) -> DeploymentRecord | None:
        """The newest successful deployment before the current one with another release (model version, its
        precision variant or the runtime), or None."""
        deployed = [r for r in self.records(target) if r.status == DEPLOYED]
        if not deployed:
            return None
        current = deployed[-1].release
        for record in reversed(deployed[:-1]):
            if record.release is not None and record.release != current:
                return record
        return None


def history_rows(records: list[DeploymentRecord]) -> list[dict[str, object]]:
    """Records as table rows, newest first."""
    rows = []
    for record in reversed(records):
        release = record.release
        devices = ", ".join(f"{name}: {state['status']}" for name, state in record.devices.items())
        rows.append({
            "started_at": record.started_at[:19].replace("T", " "),
            "kind": record.kind,
            "model_version": release.model_version if release else "-",
            "components": f"{release.model} + {release.inference}" if release else "(removed)",
            "status": record.status,
            "devices": devices,
            "run_id": record.run_id[:8],
            "error": record.error[:120],
            "deployment_id": record.deployment_id,
        })
    return rows


def history_table(records: list[DeploymentRecord], limit: int = 20) -> dg.MetadataValue:
    """The newest ``limit`` records as markdown, for asset metadata."""
    return metadata_table(history_rows(records)[:limit], TABLE_COLUMNS)
