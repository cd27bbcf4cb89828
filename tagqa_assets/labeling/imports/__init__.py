"""Importing label files and labeling-job results into the label store.

The parts, by file: ``rows.py`` (what every parser yields), ``format_*.py`` (one parser per
label format), ``formats.py`` (detect a file's format, dispatch to its parser),
``matching.py`` (which raw image a row is about), ``box_checks.py`` (box sanity rules and the
reject reasons), ``pipeline.py`` (match, check, append, report, hold and retry unmatched
rows) and ``sources.py`` (local files and the labels inbox).
"""
