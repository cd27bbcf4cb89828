"""Asset checks of the registry stage on ``model_evaluation``: the promotion gate (blocking) and champion vs challenger.

Both read the evaluation document the run's ``model_evaluation`` handed off (its store key).
"""

import dagster as dg

from tagqa_assets.partitions import dataset_version_check
from tagqa_assets.registry.gates import compare_with_champion, gate
from tagqa_assets.registry.policy import PromotionPolicyResource
from tagqa_assets.storage import StoreResource
from tagqa_assets.training.evaluation_asset import model_evaluation
from tagqa_assets.training.lineage import MODEL_ID


def _evaluation(store: StoreResource, evaluation_key: str) -> tuple[str, dict]:
    document = store.open().get_json(evaluation_key)
    return str(document["model_id"]), document


@dataset_version_check(asset=model_evaluation, blocking=True)
def promotion_gate(
    context: dg.AssetCheckExecutionContext, store: StoreResource, promotion_policy: PromotionPolicyResource,
    model_evaluation: str,
) -> dg.AssetCheckResult:
    """The model reaches the configured metric on the configured split (default mAP50-95 >= 0.40 on test)."""
    model_id, document = _evaluation(store, model_evaluation)
    result = gate(document["metrics"], promotion_policy.policy())
    return dg.AssetCheckResult(
        passed=result.passed,
        metadata={MODEL_ID: model_id, "metric": result.metric, "split": result.split, "value": result.value,
                  "threshold": result.threshold},
        description=result.describe(),
    )


@dataset_version_check(asset=model_evaluation)
def beats_champion(
    context: dg.AssetCheckExecutionContext, store: StoreResource, promotion_policy: PromotionPolicyResource,
    model_evaluation: str,
) -> dg.AssetCheckResult:
    """Whether the challenger beats the champion on its own test split (decides auto-approval, never blocks)."""
    model_id, document = _evaluation(store, model_evaluation)
    champion = document.get("champion")
    comparison = compare_with_champion(
        document["metrics"]["test"], champion["metrics"]["test"] if champion else None,
        champion["version"] if champion else None, promotion_policy.policy(),
    )
    return dg.AssetCheckResult(
        passed=comparison.approve,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={MODEL_ID: model_id, "challenger": comparison.challenger,
                  "champion": comparison.champion if comparison.champion is not None else -1.0,
                  "margin": comparison.margin, "metric": comparison.metric},
        description=comparison.reason,
    )
