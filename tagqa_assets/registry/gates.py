"""Promotion rules as pure functions: the metric gate and the champion/challenger comparison.

The default gate is mAP50-95 >= 0.40 on the TEST split, measured on the exported ONNX
model: the reference pipeline's metric and threshold, on the split no training decision
has seen (validation picks the best epoch, so its numbers flatter the model). The
reference's own gate (``split="val"``) is one setting away; docs/training.md says why.
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import Any

from tagqa_assets.contracts.models import FP32, INT8, METRIC_NAMES

GATE_SPLITS = ("test", "val")


@dataclass(frozen=True)
class PromotionPolicy:
    """What a model must reach to be registered, and to be approved without a person."""

    gate_metric: str = "map50_95"
    gate_split: str = "test"
    gate_threshold: float = 0.40
    champion_margin: float = 0.01
    approve_without_champion: bool = False
    # How much worse than the champion a challenger may do on the hard examples (edge
    # feedback that came back labeled) and still be approved without a person.
    hard_example_margin: float = 0.05
    # The int8 variant ships when its mAP50-95 on the test split is at most this much below
    # the fp32 model's (and it still passes the gate); otherwise the component ships fp32.
    max_int8_map_loss: float = 0.01

    def __post_init__(self) -> None:
        if self.gate_metric not in METRIC_NAMES:
            raise ValueError(f"gate_metric {self.gate_metric!r} is not one of {METRIC_NAMES}")
        if self.gate_split not in GATE_SPLITS:
            raise ValueError(f"gate_split {self.gate_split!r} is not one of {GATE_SPLITS}")


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict with the numbers behind it."""

    passed: bool
    metric: str
    split: str
    value: float
    threshold: float

    def describe(self) -> str:
        """One line for logs and check descriptions."""
        verdict = "passes" if self.passed else "fails"
        return f"{self.metric} on {self.split} = {self.value:.4f} {verdict} the gate (>= {self.threshold:.4f})"


@dataclass(frozen=True)
class ChampionComparison:
    """Challenger vs champion on the challenger's test split."""

    approve: bool
    reason: str
    metric: str
    challenger: float
    champion: float | None
    champion_version: int | None
    margin: float


def gate(metrics: dict[str, dict[str, float]], policy: PromotionPolicy) -> GateResult:
    """Apply the gate to ``metrics`` (split -> metric -> value); a missing split fails it, naming it."""
    if policy.gate_split not in metrics or policy.gate_metric not in metrics[policy.gate_split]:
        raise ValueError(f"the evaluation has no {policy.gate_metric} for split {policy.gate_split!r}")
    value = float(metrics[policy.gate_split][policy.gate_metric])
    return GateResult(value >= policy.gate_threshold, policy.gate_metric, policy.gate_split, value, policy.gate_threshold)


def compare_with_champion(challenger_test: dict[str, float], champion_test: dict[str, float] | None,
                          champion_version: int | None, policy: PromotionPolicy) -> ChampionComparison:
    """Approve only when the challenger beats the champion by ``champion_margin`` on the same test split."""
    metric = policy.gate_metric
    value = float(challenger_test[metric])
    if champion_test is None:
        approve = policy.approve_without_champion
        reason = ("no champion yet; approve_without_champion is set" if approve
                  else "no champion yet: the first model waits for a person to approve it")
        return ChampionComparison(approve, reason, metric, value, None, None, policy.champion_margin)
    best = float(champion_test[metric])
    approve = value >= best + policy.champion_margin
    relation = "beats" if approve else "does not beat"
    reason = (f"challenger {metric} {value:.4f} {relation} champion v{champion_version} {best:.4f} "
              f"+ margin {policy.champion_margin:.4f} on the challenger's test split")
    return ChampionComparison(approve, reason, metric, value, best, champion_version, policy.champion_margin)


def compare_on_hard_examples(challenger: dict[str, float] | None, champion: dict[str, float] | None,
                             champion_version: int | None, policy: PromotionPolicy) -> tuple[bool, str]:
    """``(acceptable, reason)``: the challenger may not fall more than ``hard_example_margin``
    below the champion on the hard examples (compared on mAP50, which small sets resolve best).
    With no hard examples or no champion there is nothing to regress against."""
    if challenger is None or champion is None:
        return True, "no hard examples or no champion to compare with"
    ours, theirs = float(challenger["map50"]), float(champion["map50"])
    if ours >= theirs - policy.hard_example_margin:
        return True, (f"hard examples: challenger map50 {ours:.4f} vs champion v{champion_version} {theirs:.4f} "
                      f"(within margin {policy.hard_example_margin:.4f})")
    return False, (f"hard examples: challenger map50 {ours:.4f} regresses below champion v{champion_version} "
                   f"{theirs:.4f} - margin {policy.hard_example_margin:.4f}")


@dataclass(frozen=True)
class PrecisionChoice:
    """Which variant the model component ships, and why."""

    precision: str
    reason: str
    int8_map_loss: float | None  # fp32 minus int8 mAP50-95 on test (positive: int8 is worse); None without int8


def choose_precision(variants: dict[str, dict[str, Any]], policy: PromotionPolicy) -> PrecisionChoice:
    """int8 when its test mAP50-95 loss against fp32 is within ``max_int8_map_loss`` and it passes the gate;
    a negative limit means fp32 always.

    ``variants`` is the evaluation document's ``variants`` (precision -> ``{"metrics": {split:
    {...}}}`` or ``{"error": reason}``). The loss is rounded to 4 decimals like the metrics, so
    a loss of exactly the limit ships int8.
    """
    int8, fp32 = variants.get(INT8), variants.get(FP32)
    if not int8 or "error" in int8 or not fp32:
        why = (int8 or {}).get("error", "the evaluation has no int8 variant")
        return PrecisionChoice(FP32, f"ships fp32: no int8 variant ({why})"[:250], None)
    ours, theirs = float(int8["metrics"]["test"]["map50_95"]), float(fp32["metrics"]["test"]["map50_95"])
    loss = round(theirs - ours, 4)
    limit = policy.max_int8_map_loss
    sizes = f"{fp32.get('size_bytes', 0) / 1e6:.1f} MB -> {int8.get('size_bytes', 0) / 1e6:.1f} MB"
    compared = f"int8 mAP50-95 on test {ours:.4f} vs fp32 {theirs:.4f} (loss {loss:+.4f}, limit {limit:.4f}; {sizes})"
    if limit < 0:
        return PrecisionChoice(FP32, f"ships fp32: max_int8_map_loss is negative (int8 off); {compared}", loss)
    if loss > limit:
        return PrecisionChoice(FP32, f"ships fp32: {compared} loses more than max_int8_map_loss", loss)
    gated = gate(int8["metrics"], policy)
    if not gated.passed:
        return PrecisionChoice(FP32, f"ships fp32: {compared} is within the limit but int8 {gated.describe()}", loss)
    return PrecisionChoice(INT8, f"ships int8: {compared} is within max_int8_map_loss", loss)
