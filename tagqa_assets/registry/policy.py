"""The ``promotion_policy`` resource: the gate and champion/challenger settings as a ``PromotionPolicy``."""

import dagster as dg

from tagqa_assets.registry.gates import PromotionPolicy


class PromotionPolicyResource(dg.ConfigurableResource):
    """The promotion gate and champion/challenger rule (defaults and reasons: docs/training.md).

    Numbers are text so each can come from an environment variable (``dg.EnvVar`` has no
    float form): TAGQA_GATE_METRIC, TAGQA_GATE_SPLIT, TAGQA_GATE_THRESHOLD,
    TAGQA_CHAMPION_MARGIN, TAGQA_HARD_EXAMPLE_MARGIN, TAGQA_APPROVE_WITHOUT_CHAMPION,
    TAGQA_MAX_INT8_MAP_LOSS.
    """

    gate_metric: str = "map50_95"
    gate_split: str = "test"
    gate_threshold: str = "0.40"
    champion_margin: str = "0.01"
    hard_example_margin: str = "0.05"
    approve_without_champion: str = "false"
    max_int8_map_loss: str = "0.01"

    def policy(self) -> PromotionPolicy:
        """The validated policy; raises ``ValueError`` naming a setting that is not a number / boolean."""
        return PromotionPolicy(
            self.gate_metric or "map50_95",
            self.gate_split or "test",
            _number("gate_threshold", self.gate_threshold, 0.40),
            _number("champion_margin", self.champion_margin, 0.01),
            _flag("approve_without_champion", self.approve_without_champion),
            _number("hard_example_margin", self.hard_example_margin, 0.05),
            max_int8_map_loss=_number("max_int8_map_loss", self.max_int8_map_loss, 0.01),
        )


def _number(name: str, text: str, default: float) -> float:
    if str(text).strip() == "":
        return default
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"promotion policy {name}={text!r} is not a number") from None


def _flag(name: str, text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise ValueError(f"promotion policy {name}={text!r} is not true/false")
