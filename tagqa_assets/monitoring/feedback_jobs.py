"""A labeling job for a drifted device-day: a sample of the images that device captured that day.

The device uploads its captures to ``raw/edge-feedback/<device>/<YYYY>/<MM>/<DD>/``. The sample
is deterministic (smallest sha256 of the key first), leaves out images some open job already
waits for, and a device-day gets one job at most: its record
``monitoring/drift_jobs/<YYYY-MM-DD>/<device>.json`` is written after the job opened.
"""

from __future__ import annotations

import hashlib
import io
from datetime import date, datetime, timezone

import pandas as pd
from PIL import Image

from tagqa_assets.contracts.keys import EDGE_FEEDBACK_SOURCE, raw_source_prefix
from tagqa_assets.labeling.backends.base import LabelingBackend
from tagqa_assets.labeling.jobs import JobBook
from tagqa_assets.labeling.unlabeled import open_jobs_for
from tagqa_assets.storage import ObjectNotFound, ObjectStore

DRIFT_JOBS_PREFIX = "monitoring/drift_jobs/"


def drift_job_key(day: date, device: str) -> str:
    return f"{DRIFT_JOBS_PREFIX}{day.isoformat()}/{device}.json"


def captured_images(store: ObjectStore, device: str, day: date) -> list[str]:
    """Raw keys of the images ``device`` captured on ``day``."""
    prefix = f"{raw_source_prefix(f'{EDGE_FEEDBACK_SOURCE}/{device}')}{day:%Y/%m/%d}/"
    return [info.key for info in store.list_objects(prefix)]


def open_drift_job(store: ObjectStore, backend: LabelingBackend, device: str, day: date, *, sample: int,
                   reasons: list[str]) -> dict:
    """Open (once) a labeling job for up to ``sample`` of the device-day's captures; returns its record.

    The record says ``job_id`` (empty when there was nothing to label) and why.
    """
    key = drift_job_key(day, device)
    try:
        return store.get_json(key)
    except ObjectNotFound:
        pass
    waiting = JobBook(store).images_in_open_jobs()
    candidates = sorted((k for k in captured_images(store, device, day) if k not in waiting),
                        key=lambda k: hashlib.sha256(k.encode()).hexdigest())[:sample]
    rows = []
    for image_key in candidates:
        data = store.get_bytes(image_key)
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
        rows.append({"key": image_key, "sha256": hashlib.sha256(data).hexdigest(), "width": width, "height": height})
    jobs = open_jobs_for(store, backend, pd.DataFrame(rows), max_images=sample) if rows else []
    record = {"device": device, "day": day.isoformat(), "reasons": reasons, "images": len(rows),
              "job_id": jobs[0].job_id if jobs else "", "backend": jobs[0].backend if jobs else "",
              "opened_at": datetime.now(timezone.utc).isoformat(),
              "note": "" if rows else "no captured image of this device-day waits for labels"}
    store.put_json(key, record)
    return record
