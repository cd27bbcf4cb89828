"""Where training runs: the backend interface and the local backend (a subprocess on this machine).

Both backends run the same entry point (``tagqa_trainer.entrypoint``) and hand back
the same ``TrainingOutcome``: a local folder with ``weights/best.pt``, ``epochs.jsonl`` and
``summary.json``. Nothing is written to the store here; the ``trained_model`` asset uploads
the outcome, so a failed or killed run leaves nothing a reader could mistake for a model.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tagqa_assets.datasets.versions import DatasetVersionStore
from tagqa_assets.storage import ObjectStore
from tagqa_trainer import entrypoint
from tagqa_trainer.params import TrainingParams

EpochCallback = Callable[[dict[str, Any]], None]
TAIL_LINES = 40


class TrainingFailed(RuntimeError):
    """Training did not produce a model; the message says why (diverged, killed, bad input, job failed)."""


@dataclass(frozen=True)
class TrainingJob:
    """One training run to perform."""

    model_id: str
    dataset_version: str
    params: TrainingParams
    class_names: tuple[str, ...]
    start_weights: str = ""  # store key or local path of a .pt; empty: train from the architecture


@dataclass(frozen=True)
class TrainingOutcome:
    """What a finished run left in ``output_dir`` (weights/best.pt, epochs.jsonl, summary.json)."""

    output_dir: Path
    epochs: list[dict[str, Any]]
    summary: dict[str, Any]
    log_file: Path | None = None
    training_job: str = ""
    job_artifact_uri: str = ""

    @property
    def weights(self) -> Path:
        """The best checkpoint."""
        return self.output_dir / entrypoint.BEST_WEIGHTS


def read_outcome(output_dir: Path, **extra: Any) -> TrainingOutcome:
    """Load a finished entry-point output folder; raises ``TrainingFailed`` naming what is missing."""
    for name in (entrypoint.BEST_WEIGHTS, entrypoint.SUMMARY_FILE, entrypoint.EPOCHS_FILE):
        if not (output_dir / name).is_file():
            raise TrainingFailed(f"{output_dir / name}: training finished without this output")
    lines = (output_dir / entrypoint.EPOCHS_FILE).read_text().splitlines()
    epochs = [json.loads(line) for line in lines if line.strip()]
    summary = json.loads((output_dir / entrypoint.SUMMARY_FILE).read_text())
    return TrainingOutcome(output_dir, epochs, summary, **extra)


class TrainingBackend(ABC):
    """Runs one ``TrainingJob`` and returns its outcome, or raises ``TrainingFailed``."""

    name: str

    @abstractmethod
    def train(self, job: TrainingJob, store: ObjectStore, *, on_epoch: EpochCallback, log: logging.Logger) -> TrainingOutcome:
        """Train; ``on_epoch`` receives each epoch record (as it happens where the backend allows)."""

    def cleanup(self, outcome: TrainingOutcome) -> None:
        """Remove the local scratch folder of a run whose outcome has been stored."""


def _die_with_parent() -> None:
    # Linux: the trainer gets SIGKILL when the Dagster process that started it dies, so a
    # killed run never leaves an orphan training on.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class LocalTrainingBackend(TrainingBackend):
    """The entry point as a subprocess; scratch folders under ``work_root`` (never ``./runs`` or ``~``)."""

    name = "local"

    def __init__(self, work_root: Path, *, python: str = sys.executable) -> None:
        self.work_root = Path(work_root).resolve()
        self.python = python

    @property
    def settings_dir(self) -> Path:
        """Ultralytics' settings folder (``YOLO_CONFIG_DIR``) for every local run."""
        return self.work_root / "ultralytics"

    def train(self, job: TrainingJob, store: ObjectStore, *, on_epoch: EpochCallback, log: logging.Logger) -> TrainingOutcome:
        work = self.work_root / "runs" / job.model_id
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        data_yaml = DatasetVersionStore(store).stage_yolo(job.dataset_version, work / "dataset")
        (work / "params.json").write_text(json.dumps(job.params.to_dict()))
        command = [
            self.python, "-m", "tagqa_trainer.entrypoint",
            "--data", str(data_yaml.parent), "--config", str(work / "params.json"), "--output", str(work / "output"),
            "--work", str(work / "ultralytics-run"), "--settings-dir", str(self.settings_dir),
        ]
        if job.start_weights:
            command += ["--weights", str(self._local_weights(job.start_weights, store, work))]
        log.info(f"training {job.model_id} locally in {work}")
        self._run(command, work, job.params.timeout_minutes, on_epoch)
        return read_outcome(work / "output", log_file=work / "train.log")

    def cleanup(self, outcome: TrainingOutcome) -> None:
        shutil.rmtree(outcome.output_dir.parent, ignore_errors=True)

    @staticmethod
    def _local_weights(start_weights: str, store: ObjectStore, work: Path) -> Path:
        path = Path(start_weights)
        if path.is_absolute():
            if not path.is_file():
                raise TrainingFailed(f"{path}: start weights not found")
            return path
        return store.download_file(start_weights, work / "start_weights.pt")

    def _run(self, command: list[str], work: Path, timeout_minutes: float, on_epoch: EpochCallback) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        error: dict[str, str] = {}
        timed_out = threading.Event()
        with open(work / "train.log", "w") as log_file:
            process = subprocess.Popen(
                command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                errors="replace", start_new_session=True, preexec_fn=_die_with_parent,
            )
            timer = None
            if timeout_minutes:
                timer = threading.Timer(timeout_minutes * 60, lambda: (timed_out.set(), _kill_group(process)))
                timer.start()
            try:
                for line in process.stdout:
                    log_file.write(line)
                    if line.startswith(entrypoint.EPOCH_MARK):
                        on_epoch(json.loads(line[len(entrypoint.EPOCH_MARK) :]))
                    elif line.startswith(entrypoint.ERROR_MARK):
                        error = json.loads(line[len(entrypoint.ERROR_MARK) :])
                    else:
                        tail.append(line.rstrip()[-300:])
                code = process.wait()
            finally:
                if timer:
                    timer.cancel()
                if process.poll() is None:  # interrupted (run terminated): take the trainer down too
                    _kill_group(process)
                    process.wait()
        if code == 0:
            return
        if timed_out.is_set():
            raise TrainingFailed(f"training killed after timeout_minutes={timeout_minutes}; log: {work / 'train.log'}")
        if code < 0:
            raise TrainingFailed(
                f"training process killed by {signal.Signals(-code).name}; log: {work / 'train.log'}"
            )
        if error:
            raise TrainingFailed(f"training failed ({error.get('kind')}): {error.get('message')}")
        raise TrainingFailed(f"training exited with code {code}; last output:\n" + "\n".join(tail))


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
