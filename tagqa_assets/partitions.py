"""Partitions shared by several stages."""

import dagster as dg

# One partition per immutable dataset version (``v0003-1a2b3c4d``); training, export,
# evaluation and registration are partitioned the same way, so a backfill over a set of
# dataset versions retrains or re-evaluates exactly those.
dataset_versions = dg.DynamicPartitionsDefinition(name="dataset_versions")
