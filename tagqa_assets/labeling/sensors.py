"""``labeling_job_sensor``: bring finished labels into the label store, open jobs for new images.

Each tick looks at three things and requests at most one run:
- label files waiting in ``inbox/labels/`` (they leave the inbox once imported);
- open labeling jobs: a job whose state changed, or which has more finished images than
  the cursor remembers, gets its results imported (Label Studio tasks come in one by one);
- new raw-image inventory parts (listed after the cursor): held label rows are retried
  and ``unlabeled_images`` opens jobs for the new images.
The run key hashes exactly what the run will do, so a tick that sees the same work again
never starts a second run, and the label store skips records it already has.
"""

import hashlib
import json
from dataclasses import dataclass, field

import dagster as dg

from tagqa_assets.contracts.keys import LABELS_INBOX_PREFIX, RAW_CATALOG_PREFIX
from tagqa_assets.labeling.assets import label_store, unlabeled_images
from tagqa_assets.labeling.backends.base import OPEN
from tagqa_assets.labeling.jobs import JobBook
from tagqa_assets.labeling.imports.pipeline import UNMATCHED_PREFIX
from tagqa_assets.labeling.resources import LabelingResource, LabelStoreResource
from tagqa_assets.storage import StoreResource

CURSOR_VERSION = 1


@dataclass
class LabelingCursor:
    """The newest raw-inventory part seen, per open job the finished count already imported, and
    the fingerprint of the last import work requested (so a tick during that run adds none)."""

    catalog: str = ""
    progress: dict[str, int] = field(default_factory=dict)
    requested: str = ""

    @classmethod
    def parse(cls, text: str | None) -> "LabelingCursor":
        if not text:
            return cls()
        data = json.loads(text)
        if data.get("v") != CURSOR_VERSION:
            raise ValueError(f"labeling_job_sensor cursor has an unknown shape: {text[:80]!r}")
        return cls(catalog=data.get("catalog", ""), progress=dict(data.get("progress", {})), requested=data.get("requested", ""))

    def serialize(self) -> str:
        data = {"v": CURSOR_VERSION, "catalog": self.catalog, "progress": dict(sorted(self.progress.items())), "requested": self.requested}
        return json.dumps(data, separators=(",", ":"))


def _fingerprint(work: object) -> str:
    return hashlib.sha256(json.dumps(work, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dg.sensor(
    name="labeling_job_sensor",
    target=[label_store, unlabeled_images],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Imports the labels inbox and finished labeling-job results; opens jobs for newly ingested images.",
)
def labeling_job_sensor(
    context: dg.SensorEvaluationContext, store: StoreResource, labels: LabelStoreResource, labeling: LabelingResource
) -> dg.SensorResult:
    """Read the cursor, look at the inbox, the open jobs and the inventory, request one run."""
    cursor = LabelingCursor.parse(context.cursor)
    object_store = store.open()
    inbox = list(object_store.list_objects(LABELS_INBOX_PREFIX))
    jobs = JobBook(object_store).open_jobs()
    progressed, polled, problems = [], {}, []
    if jobs:
        backend = labeling.open(object_store, labels.open(object_store))
        for job in jobs:
            try:
                status = backend.job_status(job)
            except Exception as exc:  # an unreachable backend must not stop inbox imports; logged and shown
                problems.append(f"{job.job_id}: {type(exc).__name__}: {exc}")
                context.log.error(f"could not poll labeling job {job.job_id}: {exc}")
                polled[job.job_id] = cursor.progress.get(job.job_id, 0)
                continue
            polled[job.job_id] = status.done
            if status.state != OPEN or status.done > cursor.progress.get(job.job_id, 0):
                progressed.append((job.job_id, status.state, status.done))
    new_parts = [i.key for i in object_store.list_objects(RAW_CATALOG_PREFIX, start_after=cursor.catalog or None) if i.key.endswith(".parquet")]
    retry = bool(new_parts) and next(iter(object_store.list_objects(UNMATCHED_PREFIX)), None) is not None
    closed = any(state != OPEN for _, state, _ in progressed)
    label_work = {"inbox": [(i.key, i.size, i.last_modified.isoformat()) for i in inbox], "jobs": progressed, "retry": new_parts if retry else []}
    label_fingerprint = _fingerprint(label_work) if (inbox or progressed or retry) else ""
    selection = []
    # The same files and jobs seen while their import run is still going are not requested twice.
    if label_fingerprint and label_fingerprint != cursor.requested:
        selection.append(label_store.key)
    # A closed job hands its unlabeled images back: recount them after its import, in the same run.
    if new_parts or (closed and label_store.key in selection):
        selection.append(unlabeled_images.key)
    next_cursor = LabelingCursor(
        catalog=new_parts[-1] if new_parts else cursor.catalog, progress=polled, requested=label_fingerprint or cursor.requested
    ).serialize()
    if not selection:
        note = f"; could not poll {len(problems)} job(s): {problems[0]}" if problems else ""
        waiting = f"{len(inbox)} inbox file(s) already requested" if inbox else "inbox empty"
        return dg.SensorResult(skip_reason=f"{waiting}, {len(jobs)} open job(s) without news, no new raw images{note}", cursor=next_cursor)
    run_config = {}
    if label_store.key in selection:
        config = {"inbox_keys": [i.key for i in inbox], "job_ids": [job_id for job_id, _, _ in progressed], "retry_unmatched": retry}
        run_config = {"ops": {"label_store": {"config": config}}}
    run_key = f"labeling-{_fingerprint({'labels': label_fingerprint if label_store.key in selection else '', 'catalog': new_parts, 'closed': closed})}"
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=run_key,
                asset_selection=selection,
                run_config=run_config,
                tags={"tagqa/trigger": "labeling_job_sensor", "tagqa/inbox_files": str(len(inbox)), "tagqa/jobs": str(len(progressed))},
            )
        ],
        cursor=next_cursor,
    )
