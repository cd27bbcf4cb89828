"""``model_approval_sensor``: a model version that becomes Approved is deployed.

Approval happens outside Dagster (``tagqa models approve``, the SageMaker console, or the
registration itself when a challenger beats the champion), so the sensor compares the set of
Approved versions with the one its cursor remembers. A newly approved version that is the
champion (the newest Approved) gets one run of ``edge_component`` + ``edge_deployment``;
an older version approved after a newer one is not deployed (the devices keep running the
champion). The run key counts approvals per version, so a version rejected by a failed
deployment and approved again after a fix is deployed again, while a tick that sees the same
approval twice never starts a second run.
"""

import json
from dataclasses import dataclass, field

import dagster as dg

from tagqa_assets.contracts.models import APPROVED, PENDING
from tagqa_assets.deployment.assets import edge_component, edge_deployment
from tagqa_assets.model_catalog.resources import ModelRegistryResource
from tagqa_assets.storage import StoreResource

CURSOR_VERSION = 1


@dataclass
class ApprovalCursor:
    """The Approved versions at the last tick and how often each version has become Approved."""

    approved: list[int] = field(default_factory=list)
    approvals: dict[str, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None) -> "ApprovalCursor":
        if not text:
            return cls()
        data = json.loads(text)
        if data.get("v") != CURSOR_VERSION:
            raise ValueError(f"model_approval_sensor cursor has an unknown shape: {text[:80]!r}")
        return cls(approved=[int(v) for v in data.get("approved", [])], approvals=dict(data.get("approvals", {})))

    def serialize(self) -> str:
        return json.dumps({"v": CURSOR_VERSION, "approved": sorted(self.approved),
                           "approvals": dict(sorted(self.approvals.items()))}, separators=(",", ":"))


def deployment_run_config(model_version: int) -> dict:
    """Run config that builds and deploys ``model_version``."""
    return {"ops": {edge_component.op.name: {"config": {"model_version": model_version}}}}


@dg.sensor(
    name="model_approval_sensor",
    target=[edge_component, edge_deployment],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Deploys a model version to the edge target when it becomes Approved in the registry.",
)
def model_approval_sensor(context: dg.SensorEvaluationContext, store: StoreResource,
                          model_registry: ModelRegistryResource) -> dg.SensorResult:
    """Read the cursor, list the registry, request a deployment of a newly approved champion."""
    cursor = ApprovalCursor.parse(context.cursor)
    entries = model_registry.open(store.open()).list_versions()
    approved = sorted(e.version for e in entries if e.status == APPROVED)
    newly = sorted(set(approved) - set(cursor.approved))
    approvals = dict(cursor.approvals)
    for version in newly:
        approvals[str(version)] = approvals.get(str(version), 0) + 1
    next_cursor = ApprovalCursor(approved, approvals).serialize()
    if not newly:
        pending = sorted(e.version for e in entries if e.status == PENDING)
        waiting = (f"; version {pending[-1]} waits for a person: tagqa models approve {pending[-1]} "
                   f"(or reject {pending[-1]})" if pending else "")
        return dg.SensorResult(skip_reason=f"no newly approved model version (Approved: {approved or 'none'}){waiting}",
                               cursor=next_cursor)
    champion = approved[-1]
    # On the first tick every Approved version is "new": deploying only the champion avoids a
    # run per historical version, each replacing the one before on the devices.
    if champion not in newly:
        return dg.SensorResult(skip_reason=f"version(s) {newly} approved, but version {champion} is newer and stays "
                                           "deployed", cursor=next_cursor)
    context.log.info(f"model version {champion} became Approved: requesting its deployment")
    request = dg.RunRequest(
        run_key=f"model-v{champion}-approval-{approvals[str(champion)]}",
        run_config=deployment_run_config(champion),
        tags={"tagqa/model_version": str(champion)},
    )
    return dg.SensorResult(run_requests=[request], cursor=next_cursor)
