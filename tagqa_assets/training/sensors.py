"""``model_training_sensor``: train, export, evaluate and register each new dataset version,
and re-run the newest version's chain from the first asset whose code changed.

A new dataset version gets one run of the whole chain (``trained_model`` -> ``onnx_model``
-> ``model_evaluation`` -> ``registered_model``, with their blocking checks). After a code
change (a bumped ``code_version``) Dagster marks the affected partitions stale; the sensor
re-runs the chain, from the changed asset on, for the newest dataset version only: older
versions are history, and re-running them is an explicit backfill. Run keys carry the
code versions, so a change is acted on once. A version whose blocking
``dataset_version_sanity`` check failed is not trained (the check's description says why).
A demo dataset version trains with the demo profile (``profile_for``), any other with the
automated profile; the run's ``tagqa/training_profile`` tag says which.
Why this is a sensor and not declarative automation: docs/architecture.md.
"""

import hashlib
import json

import dagster as dg

from tagqa_assets.datasets.versions import DatasetVersionStore
from tagqa_assets.partitions import dataset_versions
from tagqa_assets.storage import StoreResource
from tagqa_assets.training.resources import TrainingProfileResource

# By key: registered_model lives in the registry stage, which imports this one.
CHAIN = tuple(dg.AssetKey(name) for name in ("trained_model", "onnx_model", "model_evaluation", "registered_model"))
DATASET_VERSION = dg.AssetKey("dataset_version")
SANITY_CHECK = dg.AssetCheckKey(DATASET_VERSION, "dataset_version_sanity")
SANITY_HISTORY = 200  # latest check evaluations read per tick (newest first); older versions are long handled
CODE_VERSION_TAG = "dagster/code_version"
PROFILE_TAG = "tagqa/training_profile"


def current_code_versions(context: dg.SensorEvaluationContext) -> dict[dg.AssetKey, str]:
    """The code version of each chain asset as the loaded code defines it."""
    graph = context.repository_def.asset_graph
    return {key: graph.get(key).code_version or "" for key in CHAIN}


def materialized_code_version(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str) -> str | None:
    """The code version the latest materialization of ``key`` for ``partition`` ran with (``None``: never)."""
    result = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1)
    if not result.records:
        return None
    return result.records[0].asset_materialization.tags.get(CODE_VERSION_TAG, "")


def first_changed(instance: dg.DagsterInstance, version: str, code: dict[dg.AssetKey, str]) -> int | None:
    """Index in ``CHAIN`` of the first asset whose last run used other code, or ``None``.

    A chain asset that never materialized for ``version`` (the gate held the model back, or
    a run failed) does not count as changed: the old run's outcome stands for that code.
    """
    for index, key in enumerate(CHAIN):
        ran_with = materialized_code_version(instance, key, version)
        if ran_with is None:
            return None
        if ran_with != code[key]:
            return index
    return None


def failed_sanity(instance: dg.DagsterInstance) -> set[str]:
    """Dataset versions whose latest ``dataset_version_sanity`` evaluation failed."""
    latest: dict[str, bool] = {}
    for record in instance.event_log_storage.get_asset_check_execution_history(SANITY_CHECK, limit=SANITY_HISTORY):
        evaluation = record.event.asset_check_evaluation if record.event else None
        if record.partition and evaluation is not None and record.partition not in latest:
            latest[record.partition] = evaluation.passed
    return {version for version, passed in latest.items() if not passed}


def profile_for(versions: DatasetVersionStore, version: str, profile: TrainingProfileResource) -> tuple[str, dict]:
    """``("demo" | "standard", run config)`` for an automated run on ``version``.

    A demo version (every label from ``tagqa demo``) trains with the demo profile, any other
    with the automated profile. A version the store cannot read trains with the automated
    profile; its own run then fails naming the missing version.
    """
    try:
        demo = versions.is_demo_version(version)
    except ValueError:
        demo = False
    return ("demo" if demo else "standard"), profile.run_config(demo=demo)


def _run_key(kind: str, version: str, code: dict[dg.AssetKey, str]) -> str:
    digest = hashlib.sha256(json.dumps(sorted((k.to_user_string(), v) for k, v in code.items())).encode()).hexdigest()[:10]
    return f"{kind}-{version}-{digest}"


@dg.sensor(
    name="model_training_sensor",
    target=dg.AssetSelection.assets(*CHAIN),
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Trains, exports, evaluates and registers each new dataset version; after a code change, re-runs the newest version's chain.",
)
def model_training_sensor(
    context: dg.SensorEvaluationContext, training_profile: TrainingProfileResource, store: StoreResource,
) -> dg.SensorResult | dg.SkipReason:
    """Read the cursor (versions already handled), find built versions not handled, check code versions."""
    handled = set(json.loads(context.cursor)) if context.cursor else None
    built = context.instance.get_materialized_partitions(DATASET_VERSION)
    blocked = failed_sanity(context.instance)
    versions = [v for v in context.instance.get_dynamic_partitions(dataset_versions.name) if v in built and v not in blocked]
    if not versions:
        return dg.SkipReason("no dataset version has been built yet")
    code = current_code_versions(context)
    requests: list[dg.RunRequest] = []
    if handled is None:
        # First tick on an instance with history: train the newest version only, rather than
        # storming through every version ever built (those are a backfill away).
        new = [versions[-1]] if materialized_code_version(context.instance, CHAIN[0], versions[-1]) is None else []
    else:
        new = [v for v in versions if v not in handled]
    dataset_store = DatasetVersionStore(store.open())
    for version in new:
        profile, config = profile_for(dataset_store, version, training_profile)
        requests.append(dg.RunRequest(
            run_key=_run_key("train", version, code), partition_key=version, run_config=config,
            tags={"tagqa/trigger": "new dataset version", "tagqa/resource": "cpu-heavy", PROFILE_TAG: profile},
        ))
    newest = versions[-1]
    changed = None if newest in new else first_changed(context.instance, newest, code)
    if changed is not None:
        selection = list(CHAIN[changed:])
        profile, config = profile_for(dataset_store, newest, training_profile)
        requests.append(dg.RunRequest(
            run_key=_run_key("code", newest, code), partition_key=newest, asset_selection=selection,
            run_config=config if changed == 0 else {},
            tags={"tagqa/trigger": f"code version of {CHAIN[changed].to_user_string()} changed", "tagqa/resource": "cpu-heavy",
                  PROFILE_TAG: profile},
        ))
    cursor = json.dumps(sorted(set(versions) | (handled or set())))
    if not requests:
        return dg.SensorResult(skip_reason=f"{len(versions)} dataset version(s), none new; newest {newest} is up to date", cursor=cursor)
    return dg.SensorResult(run_requests=requests, cursor=cursor)
