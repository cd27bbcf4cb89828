"""The real metal tags as labeling rounds: a store per experiment, a label oracle, one train-and-evaluate step.

Shared by ``warm_start.py`` and ``loop_learning.py``. Everything goes the platform's way:
the images are uploaded and ingested into a local store once; labels enter the label store
through the ``labels.csv`` importer only when an ``Oracle`` hands them out; each round's
labels become a dataset version (``build_dataset_version``, the content-hash split rule of
``tagqa_assets/datasets/split.py``); training is the local training backend (the trainer
subprocess the ``trained_model`` asset runs), optionally from a start checkpoint as
``warm_start=champion`` does; the model is exported to ONNX and evaluated by the
platform's evaluation (``tagqa_assets.training.evaluation``, predictions through the edge
runtime's pipeline) on the fixed test split.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import resource
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATASET = REPO.parent / "shared" / "data" / "metal-tags"
IMAGE_PREFIX = "2021-01-28-09-50-34/"
log = logging.getLogger("tag_rounds")


def ultralytics_environment(state: Path) -> None:
    """Offline Ultralytics with its settings inside ``state`` (before anything imports it)."""
    os.environ.update({"YOLO_CONFIG_DIR": str(state / "ultralytics"), "YOLO_OFFLINE": "1",
                       "MPLCONFIGDIR": str(state / "matplotlib")})


@dataclass(frozen=True)
class TagImage:
    """One labeled real image: its file, content hash and split under the project's rule."""

    path: Path
    sha256: str
    split: str


class Oracle:
    """The human labeler, simulated: hands out the real ``labels.csv`` rows of the images asked for.

    ``handed_out`` is every image (by sha256) whose label was read; a label is read only
    through ``label``, so a benchmark can prove that uncaptured images were never labeled.
    """

    def __init__(self, dataset: Path = DATASET) -> None:
        from tagqa_assets.labeling.imports.format_tagqa import parse_labels_csv

        parsed = parse_labels_csv((dataset / "labels.csv").read_bytes(), "labels.csv")
        if parsed.rejects:
            raise ValueError(f"{dataset / 'labels.csv'}: {len(parsed.rejects)} rows rejected: {parsed.rejects[:3]}")
        self._rows: dict[str, object] = {}
        for row in parsed.rows:
            relative = row.source_ref.split(IMAGE_PREFIX, 1)[-1]
            path = dataset / "images" / relative
            if not path.is_file():
                raise ValueError(f"labels.csv line {row.line}: {row.source_ref} has no file {path}")
            self._rows[_sha256(path)] = (path, row)
        self.handed_out: set[str] = set()

    def images(self) -> list[TagImage]:
        """Every image that has a label record, in content-hash order, with its split (labels not read)."""
        from tagqa_assets.datasets.split import split_for

        return [TagImage(path, sha, split_for(sha)) for sha, (path, _) in sorted(self._rows.items())]

    def label(self, shas: list[str]):
        """The ``ParsedFile`` of the labels of ``shas`` (each recorded in ``handed_out``)."""
        from tagqa_assets.labeling.imports.rows import ParsedFile

        unknown = [sha for sha in shas if sha not in self._rows]
        if unknown:
            raise KeyError(f"no label record for {len(unknown)} image(s), e.g. {unknown[0]}")
        self.handed_out.update(shas)
        return ParsedFile("labels-csv", rows=[self._rows[sha][1] for sha in shas])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Experiment:
    """One line of dataset versions in its own store (one arm of one seed)."""

    root: Path
    oracle: Oracle
    store: object = None
    versions: list[str] = field(default_factory=list)
    labeled: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        from tagqa_assets.ingestion.ingest import ingest_keys
        from tagqa_assets.ingestion.writers import upload_folder
        from tagqa_assets.storage import LocalObjectStore

        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        self.store = LocalObjectStore(self.root / "store")
        upload = upload_folder(self.store, DATASET / "images", source="import")
        ingest_keys(self.store, upload.keys, run_id="benchmark")

    def add_labels(self, shas: list[str]) -> str:
        """Import the oracle's labels of ``shas`` and cut the next dataset version; returns its name."""
        from tagqa_assets.contracts.datasets import dataset_version_name
        from tagqa_assets.datasets.build import build_dataset_version
        from tagqa_assets.labeling.imports.pipeline import import_parsed
        from tagqa_assets.labeling.label_store import LocalLabelStore

        new = [sha for sha in shas if sha not in self.labeled]
        labels = LocalLabelStore(self.store)
        if new:
            report = import_parsed(self.store, labels, self.oracle.label(new), source=f"oracle-{len(self.versions)}")
            if report.rejects or report.imported != len(new):
                raise RuntimeError(f"oracle labels: {report.imported} of {len(new)} imported, rejects {report.rejects[:3]}")
        self.labeled.update(new)
        snapshot = labels.snapshot()
        version = dataset_version_name(len(self.versions) + 1, snapshot.snapshot_id)
        build_dataset_version(self.store, snapshot, version)
        self.versions.append(version)
        return version


@dataclass(frozen=True)
class Trained:
    """A trained, exported and evaluated model."""

    model_dir: Path  # model.onnx + model_card.json (what the edge runtime loads)
    weights: Path
    version: str
    wall_minutes: float
    cpu_minutes: float
    epochs: int
    test: dict[str, float]  # the platform's evaluation on the version's test split


def train_and_evaluate(experiment: Experiment, version: str, params, name: str, *, start: Path | None = None) -> Trained:
    """Train ``params`` on ``version`` (from ``start`` when given), export ONNX, evaluate on the test split.

    ``wall_minutes``/``cpu_minutes`` cover the training subprocess only (what the retraining
    costs); export and evaluation are the same for every contender and are not counted.
    """
    from edge_runtime.capture import score_percentiles
    from edge_runtime.contracts import MODEL_CARD_FILE
    from tagqa_assets.datasets.versions import DatasetVersionStore
    from tagqa_assets.training.backends import LocalTrainingBackend, TrainingJob
    from tagqa_assets.training.export import export_onnx, model_card

    record = DatasetVersionStore(experiment.store).read(version)
    backend = LocalTrainingBackend(experiment.root / "work")
    job = TrainingJob(name, version, params, record.class_names, str(start) if start else "")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    outcome = backend.train(job, experiment.store, on_epoch=lambda r: None, log=log)
    wall = (time.monotonic() - started) / 60
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / 60
    keep = experiment.root / "models" / name
    shutil.rmtree(keep, ignore_errors=True)
    keep.mkdir(parents=True)
    weights = Path(shutil.copyfile(outcome.weights, keep / "best.pt"))
    backend.cleanup(outcome)
    export = export_onnx(weights, params.imgsz, keep / "export", settings_dir=backend.settings_dir)
    card = model_card(name, version, record.class_names, params.imgsz, export)
    model_dir = keep / "model"
    model_dir.mkdir()
    shutil.copyfile(export.onnx_path, model_dir / "model.onnx")
    (model_dir / MODEL_CARD_FILE).write_text(json.dumps(card.to_dict(), indent=2))
    dataset_dir = DatasetVersionStore(experiment.store).stage_yolo(version, experiment.root / "staged" / version).parent
    metrics, scores = evaluate_model(model_dir, dataset_dir, with_scores=True)
    # What the registry's component builder adds to a shipped card: the device's "auto" capture band follows it.
    shipped = {**card.to_dict(), "evaluation": {"split": "test", "metrics": metrics,
                                                 "best_score_percentiles": score_percentiles(scores)}}
    (model_dir / MODEL_CARD_FILE).write_text(json.dumps(shipped, indent=2))
    return Trained(model_dir, weights, version, wall, cpu, int(outcome.summary["epochs_completed"]), metrics)


def evaluate_model(model_dir: Path, dataset_dir: Path, *, with_scores: bool = False):
    """The platform's evaluation of an exported model on the test split of a staged YOLO dataset (headline
    metrics; with ``with_scores`` also each test image's best score, the drift baseline)."""
    from tagqa_assets.training.detections import OnnxModel, load_split
    from tagqa_assets.training.evaluation import best_scores, evaluate

    test = load_split(dataset_dir, "test")
    predictions = OnnxModel(model_dir).predict_all(test)
    metrics = evaluate(test, predictions).headline()
    return (metrics, best_scores(predictions)) if with_scores else metrics


def reevaluate(state: Path) -> dict[str, dict[str, float]]:
    """Every model kept under ``state`` (``*/models/<name>/model``) evaluated again with the evaluation
    code now checked out, on the fixed test split (the same 26 images in every staged version)."""
    staged = sorted(state.glob("*/staged/*/data.yaml"))
    if not staged:
        raise FileNotFoundError(f"{state}: no staged dataset version to read the test split from")
    dataset_dir = staged[0].parent
    return {path.parent.name: evaluate_model(path, dataset_dir) for path in sorted(state.glob("*/models/*/model"))}


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 3 or sys.argv[1] != "reevaluate":
        sys.exit("usage: python benchmarks/tag_rounds.py reevaluate STATE_DIR")
    sys.path.insert(0, str(REPO))
    print(json.dumps(reevaluate(Path(sys.argv[2]).resolve()), indent=1))
