"""``edge_component`` and ``edge_deployment``: from an approved registry version to devices.

Both are unpartitioned. What a target runs is one release at a time, so the deployment is
a single current state (with its history in the store), not a partition per dataset
version: registry versions are numbered across dataset versions, get approved later and
outside Dagster (CLI, SageMaker console), and "backfilling" deployments would only replay
old models onto devices. The run's config names the registry version (0: the champion);
``model_approval_sensor`` requests one run per approval. Lineage runs
``registered_model`` -> ``edge_component`` -> ``edge_deployment``.
"""

from pathlib import Path

import dagster as dg

from tagqa_assets.contracts.edge import Release
from tagqa_assets.contracts.models import APPROVED, ModelVersion
from tagqa_assets.deployment.components import (
    ComponentBuildError,
    StoredComponent,
    build_inference_component,
    build_model_component,
)
from tagqa_assets.deployment.deployer import DeploymentFailed, deploy_release
from tagqa_assets.deployment.history import DeploymentHistory, history_table
from tagqa_assets.deployment.recipes import RecipeError, recipe_yaml
from tagqa_assets.deployment.resources import DeploymentResource
from tagqa_assets.deployment.targets import DeploymentError, TargetNotFound
from tagqa_assets.deployment.wheels import WheelBundleError
from tagqa_assets.model_catalog.registry import ModelRegistry, UnknownModelVersion
from tagqa_assets.model_catalog.resources import ModelRegistryResource
from tagqa_assets.previews import metadata_table
from tagqa_assets.storage import StoreResource

RELEASE = "release"


class EdgeReleaseConfig(dg.Config):
    """Which registry version to build components for."""

    model_version: int = 0  # 0: the champion (newest Approved version)


def approved_version(registry: ModelRegistry, version: int) -> ModelVersion:
    """Registry ``version`` (the champion for 0); dg.Failure unless it exists and is Approved."""
    try:
        entry = registry.get(version) if version else registry.champion()
    except UnknownModelVersion as exc:
        raise dg.Failure(str(exc)) from None
    if entry is None:
        raise dg.Failure(f"the {registry.name} registry has no Approved model version to deploy")
    if entry.status != APPROVED:
        raise dg.Failure(f"model version {entry.version} is {entry.status}; only Approved versions are deployed "
                         f"(tagqa models approve {entry.version})")
    return entry


def _artifact_rows(components: list[StoredComponent], store) -> list[dict[str, object]]:
    return [{"component": str(c.ref), "artifact": name, "sha256": sha[:16] + "...", "uri": store.uri_for(key),
             "reused": c.reused} for c in components for name, (key, sha) in c.artifacts.items()]


@dg.asset(
    deps=[dg.AssetKey("registered_model")],
    group_name="deployment",
    kinds={"python", "greengrass"},
    code_version="edge-component-v2",
)
def edge_component(context: dg.AssetExecutionContext, config: EdgeReleaseConfig, store: StoreResource,
                   model_registry: ModelRegistryResource, deployment: DeploymentResource) -> dg.MaterializeResult:
    """Greengrass components of an Approved model version, in ``edge/components/<name>/<semver>/``.

    The model component (``model.onnx`` + ``model_card.json`` with ``model_version`` set,
    version ``N.0.0`` for registry version N; ``N.1.0`` for the fp32 variant of an int8 entry that
    a deployment to CUDA/TensorRT gets, TAGQA_EDGE_PRECISION) and the inference component (the
    ``edge_runtime`` package and all its wheels, for an offline install). Recipes come from
    templates and are validated, digests included, before anything is stored; the recipe
    is written last. Unchanged components are reused, never rewritten.
    """
    object_store = store.open()
    entry = approved_version(model_registry.open(object_store), config.model_version)
    model_name, inference_name = deployment.component_names()
    try:
        variant = deployment.shipped_variant(entry)
        model = build_model_component(object_store, entry, name=model_name, author=deployment.component_author,
                                      variant=variant)
        inference = build_inference_component(object_store, deployment.wheel_bundle(), name=inference_name,
                                              author=deployment.component_author,
                                              template=Path(deployment.inference_recipe_template))
    except (ComponentBuildError, RecipeError, WheelBundleError, ValueError) as exc:
        raise dg.Failure(f"no components built for model version {entry.version}: {exc}") from None
    release = Release(entry.version, entry.model_id, entry.dataset_version, model.ref, inference.ref)
    context.log.info(f"release for model version {entry.version}: {model.ref} ({'reused' if model.reused else 'built'}, "
                     f"{variant.precision}) + {inference.ref} ({'reused' if inference.reused else 'built'})")
    return dg.MaterializeResult(metadata={
        RELEASE: dg.MetadataValue.json(release.to_dict()),
        "model_version": entry.version,
        "model_id": entry.model_id,
        "dataset_version": entry.dataset_version,
        "model_component": str(model.ref),
        "precision": variant.precision,
        "precision_reason": dg.MetadataValue.text(variant.reason or "registered before precision variants: fp32"),
        "inference_component": str(inference.ref),
        "artifacts": metadata_table(_artifact_rows([model, inference], object_store)),
        "model_recipe": dg.MetadataValue.md(f"```yaml\n{recipe_yaml(model.recipe).decode()}```"),
        "inference_wheels": dg.MetadataValue.md(", ".join(inference.build.get("wheels", []))),
    })


def latest_release(instance: dg.DagsterInstance) -> Release:
    """The release recorded by the latest ``edge_component`` materialization."""
    result = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=edge_component.key), limit=1)
    if not result.records:
        raise dg.Failure("edge_component has no materialization yet: materialize it first")
    value = result.records[0].asset_materialization.metadata.get(RELEASE)
    if value is None:
        raise dg.Failure("the latest edge_component materialization records no release")
    return Release.from_dict(value.value)


@dg.asset(
    deps=[edge_component],
    group_name="deployment",
    kinds={"python", "greengrass"},
    pool="tagqa_deployment",
)
def edge_deployment(context: dg.AssetExecutionContext, store: StoreResource, model_registry: ModelRegistryResource,
                    deployment: DeploymentResource) -> dg.MaterializeResult:
    """The latest built release, running on the configured target (local device folders or Greengrass).

    Materialized only when every device confirmed the release. A device that refuses it or
    does not answer in time gets the previous release back at once (recorded in the
    history), and a refused model version is marked Rejected in the registry.
    """
    object_store = store.open()
    release = latest_release(context.instance)
    history = DeploymentHistory(object_store)
    try:
        target = deployment.open_target(object_store)
        report = deploy_release(target, object_store, model_registry.open(object_store), release,
                                run_id=context.run.run_id, logger=context.log)
    except DeploymentFailed as exc:
        raise dg.Failure(str(exc), metadata={
            "history": history_table(history.records(exc.report.record.target)),
            "marked_rejected": exc.report.marked.version if exc.report.marked else "none"}) from None
    except (TargetNotFound, DeploymentError, ComponentBuildError, RecipeError, ValueError) as exc:
        raise dg.Failure(f"nothing deployed: {exc}") from None
    record = report.record
    return dg.MaterializeResult(metadata={
        "target": record.target,
        "status": "already deployed" if report.already_deployed else record.status,
        "deployment_id": record.deployment_id,
        "model_version": release.model_version,
        "components": f"{release.model} + {release.inference}",
        "devices": metadata_table([{"device": d, **state} for d, state in record.devices.items()]),
        "history": history_table(history.records(record.target)),
    })
