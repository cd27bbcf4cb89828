"""Partitions shared by several stages, and the asset-check decorator that goes with them."""

import warnings
from collections.abc import Callable

import dagster as dg

# One partition per immutable dataset version (``v0003-1a2b3c4d``); training, export,
# evaluation and registration are partitioned the same way, so a backfill over a set of
# dataset versions retrains or re-evaluates exactly those.
dataset_versions = dg.DynamicPartitionsDefinition(name="dataset_versions")


def dataset_version_check(**kwargs: object) -> Callable:
    """``dg.asset_check`` per dataset version.

    Partitioned checks are a preview feature of Dagster 1.13 that warns at every import of
    the code location; the warning is silenced here, once, for these checks only.
    """

    def wrap(fn: Callable) -> dg.AssetChecksDefinition:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dg.PreviewWarning)
            return dg.asset_check(partitions_def=dataset_versions, **kwargs)(fn)

    return wrap
