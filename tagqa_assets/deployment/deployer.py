"""Deploying a release to a target, with automatic rollback, and the manual rollback.

Order: check the target exists -> load and validate both components from the store ->
``publish`` (devices unchanged) -> ``apply`` (devices switch and report). A failure before
``apply`` changes no device; a failed or timed-out ``apply`` is followed at once by an
``apply`` of the release that was current before (or by removing tagqa's components when
there was none). Only a release every device confirmed is recorded as ``deployed``. When a
device itself refused the release, its model version is set to ``Rejected`` in the
registry with the devices' reason, so the approval sensor and the champion move past it.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from tagqa_assets.contracts.edge import AUTO_ROLLBACK, DEPLOY, DEPLOYED, FAILED, ROLLBACK, DeploymentRecord, Release
from tagqa_assets.contracts.models import APPROVED, REJECTED, ModelVersion
from tagqa_assets.deployment.components import StoredComponent, load_component
from tagqa_assets.deployment.history import DeploymentHistory
from tagqa_assets.deployment.targets import DeploymentTarget
from tagqa_assets.model_catalog.registry import ModelRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeploymentReport:
    """What a deployment did: its record, the rollback's record and the model marked, if any."""

    record: DeploymentRecord
    rollback: DeploymentRecord | None = None
    marked: ModelVersion | None = None
    already_deployed: bool = False


class DeploymentFailed(RuntimeError):
    """The release is not deployed; ``report`` says what happened instead."""

    def __init__(self, message: str, report: DeploymentReport) -> None:
        super().__init__(message)
        self.report = report


def load_release(store, release: Release) -> list[StoredComponent]:
    """Both components of ``release``, read back and validated (recipe, digests against build.json)."""
    return [load_component(store, release.model), load_component(store, release.inference)]


def deploy_release(target: DeploymentTarget, store, registry: ModelRegistry, release: Release, *, run_id: str,
                   kind: str = DEPLOY, logger: logging.Logger | logging.LoggerAdapter = log) -> DeploymentReport:
    """Deploy ``release`` to ``target``; returns the report or raises DeploymentFailed (after rolling back)."""
    history = DeploymentHistory(store)
    devices = target.check()
    components = load_release(store, release)
    current = history.current(target.target_id)
    if current is not None and current.release == release and kind == DEPLOY:
        logger.info(f"{release.model} + {release.inference} is already deployed on {target.target_id} "
                    f"(deployment {current.deployment_id}); nothing to do")
        return DeploymentReport(current, already_deployed=True)
    logger.info(f"deploying {release.model} + {release.inference} to {target.target_id} (devices {devices})")
    record = history.start(target=target.target_id, kind=kind, release=release, run_id=run_id,
                           replaces=current.deployment_id if current else "")
    try:
        target.publish(components)
        outcome = target.apply(release)
    except Exception as exc:  # recorded, then raised: targets raise before touching a device
        done = history.finish(record, FAILED, error=f"{type(exc).__name__}: {exc}")
        raise DeploymentFailed(f"deployment {record.deployment_id} of {release.model} to {target.target_id} "
                               f"failed before any device changed: {exc}", DeploymentReport(done)) from exc
    for device, result in outcome.devices.items():
        (logger.info if result.status == DEPLOYED else logger.error)(f"{device}: {result.status}: {result.detail}")
    done = history.finish(record, outcome.status, devices=outcome.device_dicts(), error=outcome.error,
                          target_deployment_id=outcome.target_deployment_id)
    if outcome.succeeded:
        logger.info(f"deployment {record.deployment_id}: {release.model} runs on every device of {target.target_id}")
        return DeploymentReport(done)
    previous = current.release if current else None
    rollback = _roll_back(target, store, history, previous, run_id=run_id, replaces=record.deployment_id,
                          logger=logger)
    marked, mark_error = None, ""
    if outcome.device_refused:
        try:
            marked = _mark_rejected(registry, release, f"refused on {target.target_id} in deployment "
                                    f"{record.deployment_id}: {outcome.error}")
        except Exception as exc:  # the rollback already happened; report the registry error with the failure
            mark_error = f"; marking model version {release.model_version} Rejected failed: {exc}"
    report = DeploymentReport(done, rollback, marked)
    back = (f"rolled back to {previous.model if previous else 'no tagqa components'} ({rollback.status})")
    mark = f"; model version {marked.version} marked {marked.status}" if marked else ""
    raise DeploymentFailed(f"deployment {record.deployment_id} of {release.model} to {target.target_id} "
                           f"{outcome.status}: {outcome.error}; {back}{mark}{mark_error}", report)


def _roll_back(target: DeploymentTarget, store, history: DeploymentHistory, previous: Release | None, *,
               run_id: str, replaces: str, logger) -> DeploymentRecord:
    logger.warning(f"rolling back {target.target_id} to {previous.model if previous else 'no tagqa components'}")
    record = history.start(target=target.target_id, kind=AUTO_ROLLBACK, release=previous, run_id=run_id,
                           replaces=replaces)
    try:
        if previous is not None:
            target.publish(load_release(store, previous))
        outcome = target.apply(previous)
    except Exception as exc:  # recorded and logged; the caller raises the deployment's own failure
        logger.error(f"rollback of {target.target_id} failed: {exc}")
        return history.finish(record, FAILED, error=f"{type(exc).__name__}: {exc}")
    (logger.info if outcome.succeeded else logger.error)(f"rollback of {target.target_id}: {outcome.status} "
                                                         f"{outcome.error}")
    return history.finish(record, outcome.status, devices=outcome.device_dicts(), error=outcome.error,
                          target_deployment_id=outcome.target_deployment_id)


def _mark_rejected(registry: ModelRegistry, release: Release, reason: str) -> ModelVersion | None:
    entry = registry.get(release.model_version)
    if entry.status != APPROVED:
        return None
    return registry.set_status(release.model_version, REJECTED, reason[:900])


def roll_back(target: DeploymentTarget, store, registry: ModelRegistry, *, run_id: str, reason: str,
              logger: logging.Logger | logging.LoggerAdapter = log) -> DeploymentReport:
    """Redeploy the target's previous good release and mark the rolled-back model version Rejected, unless the
    previous release runs the same model version (another precision variant of it, or another runtime): then
    the rollback undoes that change and says nothing about the model.

    Raises ValueError when the target has no earlier good release, DeploymentFailed when the
    rollback itself fails (the target then stays on, or returns to, its current release).
    """
    history = DeploymentHistory(store)
    current, previous = history.current(target.target_id), history.previous_good(target.target_id)
    if current is None or current.release is None:
        raise ValueError(f"nothing is deployed on target {target.target_id}")
    if previous is None or previous.release is None:
        raise ValueError(f"target {target.target_id} has no earlier good release than {current.release.model}")
    report = deploy_release(target, store, registry, previous.release, run_id=run_id, kind=ROLLBACK, logger=logger)
    marked = None if previous.release.model_version == current.release.model_version else \
        _mark_rejected(registry, current.release, f"rolled back on {target.target_id}: {reason}")
    return dataclasses.replace(report, marked=marked)
