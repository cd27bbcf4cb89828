"""Store selection for command-line tools, from the same variables the code location uses."""

from __future__ import annotations

import os

from tagqa_assets.contracts.labels import DEFAULT_CLASS_NAMES, parse_class_names
from tagqa_assets.storage import ObjectStore, open_store


def store_from_environment() -> ObjectStore:
    """The store named by ``TAGQA_STORE`` (default ``.tagqa/store``) and ``TAGQA_S3_ENDPOINT_URL``.

    Read when a command runs, never at import time.
    """
    return open_store(
        os.environ.get("TAGQA_STORE") or ".tagqa/store",
        endpoint_url=os.environ.get("TAGQA_S3_ENDPOINT_URL") or None,
        region=os.environ.get("TAGQA_AWS_REGION") or None,
    )


def defect_classes() -> tuple[str, ...]:
    """The project's defect taxonomy: ``TAGQA_DEFECT_CLASSES`` (ordered, comma-separated; class
    id = position), default ``scratch``. Read when called, never at import time; raises
    ``ValueError`` naming the variable when it is malformed."""
    text = os.environ.get("TAGQA_DEFECT_CLASSES", "")
    return parse_class_names(text) if text.strip() else DEFAULT_CLASS_NAMES
