"""Which split an image belongs to, decided by its content so it never changes.

An image's position on ``[0, 1)`` is the first 60 bits of its sha256, scaled; it is
``train`` below ``ratios["train"]``, ``val`` below ``train + val``, else ``test``. The
same bytes land in the same split in every version and on every machine, wherever the
image is stored and whatever else is in the dataset, so no test image of one version is a
training image of another. A split already assigned in the parent version is kept even
if the ratios were changed since (``assign_splits``), so changing ratios only affects
images that are new.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tagqa_assets.contracts.datasets import SPLITS

DEFAULT_RATIOS: dict[str, float] = {"train": 0.8, "val": 0.1, "test": 0.1}


def check_ratios(ratios: Mapping[str, float]) -> dict[str, float]:
    """Return ``ratios`` as a dict over ``SPLITS``; raises ``ValueError`` unless they are >= 0 and sum to 1."""
    unknown = set(ratios) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split names {sorted(unknown)}; splits are {SPLITS}")
    values = {split: float(ratios.get(split, 0.0)) for split in SPLITS}
    if any(v < 0 for v in values.values()) or abs(sum(values.values()) - 1.0) > 1e-6:
        raise ValueError(f"split ratios must be >= 0 and sum to 1, got {values}")
    if values["train"] <= 0:
        raise ValueError(f"the train ratio must be positive, got {values}")
    return values


def content_position(sha256: str) -> float:
    """Where an image sits on ``[0, 1)``: its first 15 hex digits (60 bits) as a fraction."""
    return int(sha256[:15], 16) / float(16**15)


def split_for(sha256: str, ratios: Mapping[str, float] = DEFAULT_RATIOS) -> str:
    """The split of an image with content hash ``sha256`` under ``ratios``."""
    position = content_position(sha256)
    if position < ratios["train"]:
        return "train"
    if position < ratios["train"] + ratios["val"]:
        return "val"
    return "test"


def assign_splits(shas: Iterable[str], ratios: Mapping[str, float], inherited: Mapping[str, str] | None = None) -> dict[str, str]:
    """Split per sha256: the parent's assignment where there is one, else ``split_for``."""
    ratios = check_ratios(ratios)
    inherited = inherited or {}
    return {sha: inherited.get(sha) or split_for(sha, ratios) for sha in shas}
