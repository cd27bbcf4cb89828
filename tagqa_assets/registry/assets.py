"""``registered_model``: a gated, evaluated model becomes a numbered version in the registry."""

from dataclasses import replace

import dagster as dg

from tagqa_assets.contracts.models import (
    APPROVED,
    COMMIT_FILE,
    FP32,
    INT8,
    INT8_ONNX_FILE,
    METRICS_FILE,
    MODEL_CARD_FILE,
    ONNX_FILE,
    PENDING,
    WEIGHTS_FILE,
    ModelVersion,
    model_key,
)
from tagqa_assets.model_catalog.model_files import model_dir_uri, read_model_record
from tagqa_assets.model_catalog.resources import ModelRegistryResource
from tagqa_assets.partitions import dataset_versions
from tagqa_assets.previews import metadata_table
from tagqa_assets.registry.gates import choose_precision, compare_on_hard_examples, compare_with_champion, gate
from tagqa_assets.registry.policy import PromotionPolicyResource
from tagqa_assets.storage import ObjectStore, StoreResource
from tagqa_assets.training.lineage import MODEL_ID, since_parent_values

REGISTRY_CODE_VERSION = "register-v1"


def artifact_uris(store: ObjectStore, model_id: str, evaluation_key: str, variants: dict | None = None) -> dict[str, str]:
    """Addresses of a registered model's files (``onnx_int8`` when it has an int8 variant)."""
    return {
        "model_dir": model_dir_uri(store, model_id),
        "weights": store.uri_for(model_key(model_id, WEIGHTS_FILE)),
        "onnx": store.uri_for(model_key(model_id, ONNX_FILE)),
        **({"onnx_int8": store.uri_for(model_key(model_id, INT8_ONNX_FILE))} if INT8 in (variants or {}) else {}),
        "model_card": store.uri_for(model_key(model_id, MODEL_CARD_FILE)),
        "metrics": store.uri_for(model_key(model_id, METRICS_FILE)),
        "commit": store.uri_for(model_key(model_id, COMMIT_FILE)),
        "evaluation": store.uri_for(evaluation_key),
    }


@dg.asset(
    partitions_def=dataset_versions,
    group_name="registry",
    kinds={"python"},
    code_version=REGISTRY_CODE_VERSION,
    pool="tagqa_registry",
)
def registered_model(
    context: dg.AssetExecutionContext, store: StoreResource, model_registry: ModelRegistryResource,
    promotion_policy: PromotionPolicyResource, model_evaluation: str,
) -> dg.MaterializeResult:
    """The evaluated model as the next registry version: ``Approved`` or ``PendingManualApproval``.

    Runs only after the blocking ``onnx_parity`` and ``promotion_gate`` checks passed, and
    re-applies the gate itself, so nothing below the gate is ever registered. A challenger
    is approved automatically only if it beats the champion on its own test split by the
    policy's margin; otherwise a person approves it (``tagqa models approve VERSION``).
    """
    object_store = store.open()
    version = context.partition_key
    evaluation_key = model_evaluation  # handed off by this run's (or the latest) model_evaluation
    evaluation = object_store.get_json(evaluation_key)
    model_id = str(evaluation["model_id"])
    record = read_model_record(object_store, model_id)
    policy = promotion_policy.policy()
    result = gate(evaluation["metrics"], policy)
    if not result.passed:
        raise dg.Failure(f"{model_id} is not registered: {result.describe()}")
    registry = model_registry.open(object_store)
    entry = registry.find_model(model_id)
    if entry is not None:
        context.log.info(f"{model_id} is already registered as version {entry.version} ({entry.status})")
    else:
        champion = registry.champion()
        evaluated = evaluation.get("champion")
        champion_test = None
        if champion is not None and evaluated and evaluated["version"] == champion.version:
            champion_test = evaluated["metrics"]["test"]
        comparison = compare_with_champion(evaluation["metrics"]["test"], champion_test,
                                           champion.version if champion else None, policy)
        hard = evaluation.get("hard_examples") or {}
        hard_ok, hard_reason = compare_on_hard_examples(
            hard.get("challenger"), hard.get("champion") if champion is not None and hard.get("champion_version") == champion.version else None,
            champion.version if champion else None, policy)
        if comparison.approve and not hard_ok:
            comparison = replace(comparison, approve=False, reason=f"{comparison.reason}; but {hard_reason}")
        elif hard:
            comparison = replace(comparison, reason=f"{comparison.reason}; {hard_reason}")
        if champion is not None and champion_test is None:
            comparison = replace(comparison, approve=False, champion_version=champion.version, reason=(
                f"champion v{champion.version} was not evaluated on this test split (it changed after the "
                "evaluation): re-run model_evaluation, or approve by hand"))
        variants = {name: {"metrics": v["metrics"], "size_bytes": v["size_bytes"]}
                    for name, v in (evaluation.get("variants") or {}).items() if "error" not in v}
        choice = choose_precision(evaluation.get("variants") or {}, policy)
        entry = registry.register(ModelVersion(
            version=0, model_id=model_id, dataset_version=version, status=APPROVED if comparison.approve else PENDING,
            created_at="", metrics=evaluation["metrics"], training_config=record.training_config,
            config_sha256=record.config_sha256, code_version=record.git_sha,
            artifacts=artifact_uris(object_store, model_id, evaluation_key, variants), status_reason=comparison.reason,
            precision=choice.precision, precision_reason=choice.reason, variants=variants,
            since_parent=dict(evaluation.get("since_parent") or {}),
        ))
        context.log.info(f"registered {model_id} as version {entry.version}: {entry.status} ({entry.status_reason})")
    return dg.MaterializeResult(
        metadata={
            "model_version": entry.version,
            "status": entry.status,
            "status_reason": entry.status_reason,
            MODEL_ID: model_id,
            "dataset_version": version,
            "registry": registry.name,
            "gate": result.describe(),
            "code_version": entry.code_version,
            **labeling_metadata(entry, registry.list_versions()),
            **({"next_step": f"waits for a person: tagqa models approve {entry.version} (or tagqa models reject "
                             f"{entry.version}); model_approval_sensor deploys it once Approved"}
               if entry.status == PENDING else {}),
            "metrics": metadata_table([{"split": split, **values} for split, values in entry.metrics.items()]),
            **({"test_per_class": metadata_table([{"class": name, **values}
                                                  for name, values in evaluation["per_class"]["test"].items()])}
               if evaluation.get("per_class", {}).get("test") else {}),
            "artifacts": dg.MetadataValue.json(entry.artifacts),
            **precision_metadata(entry),
        }
    )


def precision_metadata(entry: ModelVersion) -> dict[str, object]:
    """What the UI shows about precision: the shipped variant, why, and each variant's test mAP and size."""
    rows = [{"precision": name, "ships": name == entry.precision,
             "test_map50": variant["metrics"].get("test", {}).get("map50"),
             "test_map50_95": variant["metrics"].get("test", {}).get("map50_95"),
             "size_mb": round(variant.get("size_bytes", 0) / 1e6, 2)}
            for name, variant in sorted(entry.variants.items())]
    tests = {row["precision"]: row["test_map50_95"] for row in rows}
    loss = ({"int8_map50_95_loss": round(tests[FP32] - tests[INT8], 4)}
            if None not in (tests.get(FP32), tests.get(INT8)) else {})
    return {"precision": entry.precision, "precision_reason": entry.precision_reason, **loss,
            "precision_variants": metadata_table(rows)}
def labeling_metadata(entry: ModelVersion, versions: list[ModelVersion]) -> dict[str, object]:
    """What each round of labeling bought: this version's labels spent and gains, and a table
    over every registered version that recorded them."""
    if not entry.since_parent:
        return {"parent_model": dg.MetadataValue.text("not recorded (evaluated before labels and gains were tracked)")}
    rows = []
    for version in versions:
        since = version.since_parent
        if since:
            hard = since.get("hard_gain") or {}
            rows.append({
                "version": version.version, "dataset_version": version.dataset_version, "status": version.status,
                "parent": f"v{since['parent_version']}" if since.get("parent_version") else (since.get("parent") or "none"),
                "labels_spent": since["labels_spent"], "test_map50_95_gain": since["test_gain"]["map50_95"],
                "test_map50_gain": since["test_gain"]["map50"], "hard_map50_95_gain": hard.get("map50_95"),
                "hard_map50_gain": hard.get("map50"),
            })
    return {**since_parent_values(entry.since_parent), "labeling_rounds": metadata_table(rows)}
