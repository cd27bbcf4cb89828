"""Store selection for command-line tools, from the same variables the code location uses."""

from __future__ import annotations

import os

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
