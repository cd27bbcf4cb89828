"""The trainer package stands apart: no Dagster, no platform code, its own image.

``tagqa_trainer`` is what a training subprocess and the SageMaker training container run.
These tests import it in a fresh interpreter, read its imports from the source, build the
wheel the SageMaker image's Dockerfile builds (from exactly the files it copies), and
compare the image's ENTRYPOINT/CMD with the command training jobs are created with. There
is no Docker daemon here, so the image itself is not built.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tagqa_assets.storage import S3ObjectStore
from tagqa_assets.training.backends import TrainingJob
from tagqa_assets.training.sagemaker import SageMakerTrainingBackend
from tagqa_trainer.params import TrainingParams

ROOT = Path(__file__).resolve().parents[1]
TRAINER = ROOT / "tagqa_trainer"
DOCKERFILE = ROOT / "deploy" / "sagemaker" / "Dockerfile"
FORBIDDEN = ("dagster", "tagqa_assets", "edge_runtime", "boto3", "pandas")


def test_importing_the_trainer_pulls_in_no_dagster_and_no_platform():
    modules = [f"tagqa_trainer.{path.stem}" for path in sorted(TRAINER.glob("*.py")) if path.stem != "__init__"]
    assert {"tagqa_trainer.entrypoint", "tagqa_trainer.ultralytics_tasks", "tagqa_trainer.offline",
            "tagqa_trainer.params"} <= set(modules)
    code = (f"import importlib, json, sys\nfor name in {modules!r}:\n    importlib.import_module(name)\n"
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout.splitlines()[-1]))
    assert "tagqa_trainer" in loaded
    assert not loaded & set(FORBIDDEN), f"importing the trainer loaded {sorted(loaded & set(FORBIDDEN))}"


def test_no_trainer_module_imports_the_platform_even_lazily():
    # Imports inside functions (ultralytics, torch are lazy on purpose) do not show in
    # sys.modules at import time: read them from the source as well.
    offending = []
    for path in sorted(TRAINER.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            offending += [f"{path.name}: {name}" for name in names if name.split(".")[0] in FORBIDDEN]
    assert not offending


def test_the_entry_point_runs_as_a_module():
    done = subprocess.run([sys.executable, "-m", "tagqa_trainer.entrypoint", "--help"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert "--sagemaker" in done.stdout


def dockerfile_instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of the Dockerfile, continuation lines joined, comments dropped."""
    lines, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        current += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            lines.append(current)
            current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def exec_form(instruction: str) -> list[str]:
    """The last ``instruction`` (ENTRYPOINT or CMD) in JSON exec form; fails on the shell form."""
    values = [args for name, args in dockerfile_instructions() if name == instruction]
    assert values, f"{DOCKERFILE} has no {instruction}"
    parsed = json.loads(values[-1])
    assert isinstance(parsed, list), f"{instruction} must use the exec form (a JSON list), got {values[-1]}"
    return parsed


def test_the_image_runs_the_command_training_jobs_are_created_with(tmp_path: Path):
    backend = SageMakerTrainingBackend(None, role_arn="arn:aws:iam::123456789012:role/t", image_uri="img:1",
                                       work_root=tmp_path)
    store = S3ObjectStore("s3://bucket/tagqa", region="us-east-1")
    request = backend.job_request(TrainingJob("v0001-00000000-aaaa", "v0001-00000000", TrainingParams(), ("scratch",)), store)
    algorithm = request["AlgorithmSpecification"]
    assert exec_form("ENTRYPOINT") == algorithm["ContainerEntrypoint"]
    assert exec_form("CMD") == algorithm["ContainerArguments"]
    assert algorithm["ContainerEntrypoint"][-1] == "tagqa_trainer.entrypoint"


def test_the_image_installs_exactly_the_trainer_package(tmp_path: Path):
    # Build the wheel pip builds in the image, from exactly the files the Dockerfile copies.
    copies = [args.split() for name, args in dockerfile_instructions() if name == "COPY"]
    assert copies, "the Dockerfile copies nothing"
    context = tmp_path / "context"
    for *sources, target in copies:
        for source in sources:
            origin = ROOT / source
            if origin.is_dir():  # Docker copies a folder's contents into the target folder
                shutil.copytree(origin, context / target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                assert target.endswith("/"), f"COPY {source} {target}: expected a folder target"
                (context / target).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(origin, context / target / origin.name)
    installs = [args for name, args in dockerfile_instructions() if name == "RUN" and "pip install" in args]
    assert len(installs) == 1 and '".[trainer]"' in installs[0] and "-c constraints.txt" in installs[0]
    out = tmp_path / "wheel"
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                           str(context)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packages = {name.split("/")[0] for name in archive.namelist() if not name.split("/")[0].endswith(".dist-info")}
        metadata = archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    assert packages == {"tagqa_trainer"}
    assert "Provides-Extra: trainer" in metadata
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:") and 'extra == "trainer"' in line]
    assert any("ultralytics" in line for line in requires) and not any("dagster" in line for line in requires)

