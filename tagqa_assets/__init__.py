"""tagqa: visual quality inspection MLOps as one Dagster asset graph (see README.md)."""
