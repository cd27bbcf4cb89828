"""Monitoring stage: line results collected from the devices, daily metrics and drift against the serving model."""
