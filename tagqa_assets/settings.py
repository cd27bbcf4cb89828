"""tagqa's settings: every name, its default and a one-line doc, in one place.

Precedence, the same for ``tagqa`` and ``dagster``: the process environment (the shell),
then the settings file, then the defaults below. The settings file is ``tagqa.env`` in the
working folder, or the file ``TAGQA_SETTINGS_FILE`` names; it is not ``.env``, which
Dagster's CLI would load *over* the shell. An empty value counts as not set.

Read settings with ``load_settings()`` when a command runs or the code location loads
(``@dg.definitions``), never at import time; ``Settings.dagster_value`` gives the value to
wire into a resource (``dg.EnvVar`` for what the user set, the default otherwise). A new
setting is one line in ``Settings``.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import shlex
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import dagster as dg
from dotenv import dotenv_values

from tagqa_assets.contracts.labels import DEFAULT_CLASS_NAMES, parse_class_names

SETTINGS_FILE = "tagqa.env"
SETTINGS_FILE_VARIABLE = "TAGQA_SETTINGS_FILE"
# What load_settings exported from the file ({name: value} JSON), so a later load in this process
# or a child (a reload, a run worker) can tell file values from the shell's and forget removed lines.
EXPORTED_VARIABLE = "TAGQA_SETTINGS_EXPORTED"
DEFAULT_SOURCE = "default"
ENVIRONMENT_SOURCE = "environment"
# Names a settings file may hold that must be one of ours (a typo would silently do nothing).
OWN_PREFIXES = ("TAGQA_", "LABEL_STUDIO_")

log = logging.getLogger(__name__)


def _setting(name: str, default: str | int | float | bool, doc: str, *, group: str, secret: bool = False) -> Any:
    return field(default=default, metadata={"name": name, "doc": doc, "group": group, "secret": secret})


@dataclass(frozen=True)
class Settings:
    """Every tagqa setting with its default (the embedded, no-cloud configuration)."""

    store: str = _setting("TAGQA_STORE", ".tagqa/store", "Object store: a folder, or s3://bucket/prefix (S3 or any S3 API endpoint).", group="Object store")
    s3_endpoint_url: str = _setting("TAGQA_S3_ENDPOINT_URL", "", "S3 API endpoint (MinIO, moto, LocalStack); empty means AWS.", group="Object store")
    aws_region: str = _setting("TAGQA_AWS_REGION", "", "AWS region of every AWS backend; empty means boto3's own (AWS_REGION, AWS_DEFAULT_REGION, ~/.aws/config).", group="Object store")
    raw_event_queue_url: str = _setting("TAGQA_RAW_EVENT_QUEUE_URL", "", "New raw images (docs/ingestion.md): empty = listing mode (every tick lists each source); an SQS queue URL (stack output RawEventQueueUrl) = event mode.", group="Object store")
    raw_fallback_every_ticks: int = _setting("TAGQA_RAW_FALLBACK_EVERY_TICKS", 120, "In event mode, the per-source listing runs every this many ticks as a fallback for keys written without an event.", group="Object store")

    labeling_backend: str = _setting("TAGQA_LABELING_BACKEND", "inbox", "Who labels: inbox (label files dropped in the store) | labelstudio | groundtruth.", group="Labeling (docs/labeling.md)")
    label_store: str = _setting("TAGQA_LABEL_STORE", "local", "Where label records live: local (Parquet in the store) | featurestore (SageMaker Feature Store).", group="Labeling (docs/labeling.md)")
    defect_classes: str = _setting("TAGQA_DEFECT_CLASSES", "scratch", "Defect taxonomy: ordered, comma-separated class names (class id = position); add new classes at the end only. make demo/run use scratch,dent unless set.", group="Labeling (docs/labeling.md)")
    label_studio_url: str = _setting("LABEL_STUDIO_URL", "http://127.0.0.1:8080", "Label Studio the labelstudio backend talks to.", group="Labeling (docs/labeling.md)")
    label_studio_api_token: str = _setting("LABEL_STUDIO_API_TOKEN", "tagqa-local-labelstudio-token", "API token of the local Label Studio admin (make labelstudio creates it; 127.0.0.1 only).", group="Labeling (docs/labeling.md)", secret=True)
    label_studio_username: str = _setting("LABEL_STUDIO_USERNAME", "admin@tagqa.local", "Admin that make labelstudio creates on first start (an e-mail address).", group="Labeling (docs/labeling.md)")
    label_studio_password: str = _setting("LABEL_STUDIO_PASSWORD", "tagqa-local-admin", "That admin's password; change it before exposing Label Studio anywhere.", group="Labeling (docs/labeling.md)", secret=True)
    label_studio_port: int = _setting("LABEL_STUDIO_PORT", 8080, "Port make labelstudio listens on (127.0.0.1 only).", group="Labeling (docs/labeling.md)")
    groundtruth_role_arn: str = _setting("TAGQA_GROUNDTRUTH_ROLE_ARN", "", "Ground Truth execution role (TAGQA_LABELING_BACKEND=groundtruth).", group="Labeling (docs/labeling.md)")
    groundtruth_workteam_arn: str = _setting("TAGQA_GROUNDTRUTH_WORKTEAM_ARN", "", "Ground Truth private workteam (TAGQA_LABELING_BACKEND=groundtruth).", group="Labeling (docs/labeling.md)")
    feature_group: str = _setting("TAGQA_FEATURE_GROUP", "tagqa-labels", "Feature group of the label store (TAGQA_LABEL_STORE=featurestore); created when missing.", group="Labeling (docs/labeling.md)")
    feature_store_role_arn: str = _setting("TAGQA_FEATURE_STORE_ROLE_ARN", "", "Role that creates the feature group.", group="Labeling (docs/labeling.md)")
    feature_store_offline_uri: str = _setting("TAGQA_FEATURE_STORE_OFFLINE_URI", "", "s3:// location of the feature group's offline store.", group="Labeling (docs/labeling.md)")

    training_backend: str = _setting("TAGQA_TRAINING_BACKEND", "local", "Where training runs: local (this machine) | sagemaker.", group="Training and registry (docs/training.md)")
    registry_backend: str = _setting("TAGQA_REGISTRY_BACKEND", "local", "Where model versions are registered: local (records in the store) | sagemaker (Model Registry).", group="Training and registry (docs/training.md)")
    sagemaker_role_arn: str = _setting("TAGQA_SAGEMAKER_ROLE_ARN", "", "SageMaker training job execution role.", group="Training and registry (docs/training.md)")
    sagemaker_training_image: str = _setting("TAGQA_SAGEMAKER_TRAINING_IMAGE", "", "Training image with tagqa's trainer installed (deploy/, docs/training.md).", group="Training and registry (docs/training.md)")
    sagemaker_instance_type: str = _setting("TAGQA_SAGEMAKER_INSTANCE_TYPE", "ml.m5.xlarge", "SageMaker training instance type.", group="Training and registry (docs/training.md)")
    sagemaker_endpoint_url: str = _setting("TAGQA_SAGEMAKER_ENDPOINT_URL", "", "SageMaker API endpoint (an emulator); empty means AWS.", group="Training and registry (docs/training.md)")
    sagemaker_model_package_group: str = _setting("TAGQA_SAGEMAKER_MODEL_PACKAGE_GROUP", "tagqa-scratch-detector", "Model package group of the SageMaker registry.", group="Training and registry (docs/training.md)")
    gate_metric: str = _setting("TAGQA_GATE_METRIC", "map50_95", "Metric of the promotion gate (the reference's mAP50-95).", group="Training and registry (docs/training.md)")
    gate_split: str = _setting("TAGQA_GATE_SPLIT", "test", "Split the gate metric is read on.", group="Training and registry (docs/training.md)")
    gate_threshold: float = _setting("TAGQA_GATE_THRESHOLD", 0.40, "A model is registered only if the gate metric reaches this.", group="Training and registry (docs/training.md)")
    champion_margin: float = _setting("TAGQA_CHAMPION_MARGIN", 0.01, "Approved without a person only if it beats the champion by this much.", group="Training and registry (docs/training.md)")
    hard_example_margin: float = _setting("TAGQA_HARD_EXAMPLE_MARGIN", 0.05, "...and its mAP50 on the hard examples is at most this far below the champion's.", group="Training and registry (docs/training.md)")
    approve_without_champion: bool = _setting("TAGQA_APPROVE_WITHOUT_CHAMPION", False, "Approve the first model without a person (no champion to compare with).", group="Training and registry (docs/training.md)")
    max_int8_map_loss: float = _setting("TAGQA_MAX_INT8_MAP_LOSS", 0.01, "The model component ships the int8 variant when its test mAP50-95 is at most this much below fp32's (and it passes the gate); negative: always fp32. Decided at registration.", group="Training and registry (docs/training.md)")
    train_epochs: int = _setting("TAGQA_TRAIN_EPOCHS", 0, "Epochs of automated training runs (demo versions: TAGQA_DEMO_TRAIN_EPOCHS); 0 = the documented CPU configuration (55).", group="Training and registry (docs/training.md)")
    train_imgsz: int = _setting("TAGQA_TRAIN_IMGSZ", 0, "Image size of automated training runs; 0 = 480.", group="Training and registry (docs/training.md)")
    train_batch: int = _setting("TAGQA_TRAIN_BATCH", 0, "Batch size of automated training runs; 0 = 16.", group="Training and registry (docs/training.md)")
    retrain_warm_start: str = _setting("TAGQA_RETRAIN_WARM_START", "", "Automatic retraining of a new dataset version starts from: champion (fine-tune its weights, TAGQA_RETRAIN_WARM_EPOCHS epochs) | empty (from scratch). Default scratch: measured 0.08 mAP50-95 below scratch (docs/benchmarks.md, warm start). Backfills and UI runs train from scratch; another taxonomy or architecture than the champion's falls back to scratch.", group="Training and registry (docs/training.md)")
    retrain_warm_epochs: int = _setting("TAGQA_RETRAIN_WARM_EPOCHS", 10, "Epochs of a warm-started retraining (the fine-tuning schedule of tagqa_assets/training/start_weights.py).", group="Training and registry (docs/training.md)")
    demo_train_epochs: int = _setting("TAGQA_DEMO_TRAIN_EPOCHS", 25, "Epochs of automated runs on a demo dataset version (every label from `tagqa demo`; docs/training.md).", group="Training and registry (docs/training.md)")
    demo_train_imgsz: int = _setting("TAGQA_DEMO_TRAIN_IMGSZ", 256, "Image size of automated runs on a demo dataset version.", group="Training and registry (docs/training.md)")
    demo_train_batch: int = _setting("TAGQA_DEMO_TRAIN_BATCH", 8, "Batch size of automated runs on a demo dataset version (one optimizer step per batch).", group="Training and registry (docs/training.md)")
    retrain_every_days: int = _setting("TAGQA_RETRAIN_EVERY_DAYS", 7, "retraining_schedule cuts a version when labels changed and the newest is this many days old.", group="Training and registry (docs/training.md)")

    deploy_target: str = _setting("TAGQA_DEPLOY_TARGET", "local", "Where approved models go: local (device folders) | greengrass (IoT Greengrass v2).", group="Edge deployment (docs/deployment.md)")
    device_id: str = _setting("TAGQA_DEVICE_ID", "line-1", "Local devices, comma-separated ids.", group="Edge deployment (docs/deployment.md)")
    devices_root: str = _setting("TAGQA_DEVICES_ROOT", ".tagqa/devices", "Folder of the local devices.", group="Edge deployment (docs/deployment.md)")
    mqtt_broker: str = _setting("TAGQA_MQTT_BROKER", "127.0.0.1:1883", "MQTT broker (HOST:PORT) local devices publish to.", group="Edge deployment (docs/deployment.md)")
    greengrass_target_arn: str = _setting("TAGQA_GREENGRASS_TARGET_ARN", "", "Thing group (or thing) ARN of Greengrass deployments; needs an s3:// TAGQA_STORE.", group="Edge deployment (docs/deployment.md)")
    greengrass_root: str = _setting("TAGQA_GREENGRASS_ROOT", "/greengrass/v2", "Nucleus root on the core devices.", group="Edge deployment (docs/deployment.md)")
    component_prefix: str = _setting("TAGQA_COMPONENT_PREFIX", "com.tagqa.", "Component name prefix (deploy/aws's ComponentNamePrefix).", group="Edge deployment (docs/deployment.md)")
    deploy_timeout_seconds: int = _setting("TAGQA_DEPLOY_TIMEOUT_SECONDS", 600, "Seconds every device gets to confirm a release before it is rolled back.", group="Edge deployment (docs/deployment.md)")
    device_configuration: str = _setting("TAGQA_DEVICE_CONFIGURATION", "", 'JSON object merged into the devices\' runtime configuration, e.g. {"confThreshold": 0.3}.', group="Edge deployment (docs/deployment.md)")
    edge_wheels_dir: str = _setting("TAGQA_EDGE_WHEELS_DIR", ".tagqa/edge-wheels", "Wheels of the inference component (built when missing or stale).", group="Edge deployment (docs/deployment.md)")
    edge_wheel_platform: str = _setting("TAGQA_EDGE_WHEEL_PLATFORM", "", "Wheel platform of the devices, e.g. manylinux_2_28_aarch64; empty = this machine.", group="Edge deployment (docs/deployment.md)")
    edge_python_version: str = _setting("TAGQA_EDGE_PYTHON_VERSION", "", "Python version of the devices, e.g. 3.11; empty = this interpreter.", group="Edge deployment (docs/deployment.md)")
    edge_providers: str = _setting("TAGQA_EDGE_PROVIDERS", "", 'Execution providers the devices try in order (docs/edge_runtime.md): comma-separated names, e.g. OpenVINOExecutionProvider,CPUExecutionProvider, or a JSON list with options; empty = the recipe\'s (CPU).', group="Edge deployment (docs/deployment.md)")
    edge_precision: str = _setting("TAGQA_EDGE_PRECISION", "auto", "Which variant of a registry version that ships int8 a deployment sends: auto (fp32 when TAGQA_EDGE_PROVIDERS starts with CUDA or TensorRT, else int8) | registry (always int8) | fp32 (always fp32).", group="Edge deployment (docs/deployment.md)")
    demo_camera: bool = _setting("TAGQA_DEMO_CAMERA", True, "make run feeds the local device a loop of synthetic tag frames (tagqa edge demo-camera) so results flow once a model is deployed; false = none.", group="Edge deployment (docs/deployment.md)")
    demo_camera_fps: float = _setting("TAGQA_DEMO_CAMERA_FPS", 1.0, "Frames per second of the demo camera.", group="Edge deployment (docs/deployment.md)")
    edge_http: str = _setting("TAGQA_EDGE_HTTP", "127.0.0.1:8081", "Where `tagqa edge up` serves the device's HTTP API and operator page (docs/edge_runtime.md); off = none.", group="Edge deployment (docs/deployment.md)")

    results_client_id: str = _setting("TAGQA_RESULTS_CLIENT_ID", "tagqa-results-collector", "MQTT client id of the results collector, fixed so its persistent session survives restarts.", group="Line results and drift (docs/monitoring.md)")
    results_batch_rows: int = _setting("TAGQA_RESULTS_BATCH_ROWS", 2000, "The collector writes a part per this many results ...", group="Line results and drift (docs/monitoring.md)")
    results_batch_seconds: float = _setting("TAGQA_RESULTS_BATCH_SECONDS", 5.0, "... or this many seconds after the first unwritten one.", group="Line results and drift (docs/monitoring.md)")
    drift_psi: float = _setting("TAGQA_DRIFT_PSI", 0.25, "A device-day drifted when the PSI of its best scores against the serving model's test split passes this.", group="Line results and drift (docs/monitoring.md)")
    drift_defect_rate_delta: float = _setting("TAGQA_DRIFT_DEFECT_RATE_DELTA", 0.15, "... or its defect rate moved this far from the baseline's.", group="Line results and drift (docs/monitoring.md)")
    drift_capture_share_delta: float = _setting("TAGQA_DRIFT_CAPTURE_SHARE_DELTA", 0.15, "... or its share of frames in the capture band moved this far.", group="Line results and drift (docs/monitoring.md)")
    drift_min_frames: int = _setting("TAGQA_DRIFT_MIN_FRAMES", 50, "Days with fewer frames than this are not judged.", group="Line results and drift (docs/monitoring.md)")
    drift_labeling_sample: int = _setting("TAGQA_DRIFT_LABELING_SAMPLE", 25, "Captured images of a drifted device-day sent to labeling.", group="Line results and drift (docs/monitoring.md)")

    # Where each value came from: attribute -> "environment" | the settings file's path; unset = default.
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    settings_file: Path | None = field(default=None, compare=False)

    def source(self, attribute: str) -> str:
        """``environment``, the settings file's path, or ``default``."""
        return self.sources.get(attribute, DEFAULT_SOURCE)

    def dagster_value(self, attribute: str) -> Any:
        """What a resource field is wired to: ``dg.EnvVar`` when the user set it, else the default.

        Float and bool settings reach resources as text (``dg.EnvVar`` has no such forms);
        ``load_settings`` has already checked that they parse.
        """
        spec = _SPECS[attribute]
        if self.source(attribute) == DEFAULT_SOURCE:
            return _text(spec.default) if isinstance(spec.default, (bool, float)) else spec.default
        if isinstance(spec.default, int) and not isinstance(spec.default, bool):
            return dg.EnvVar.int(spec.name)
        return dg.EnvVar(spec.name)


@dataclass(frozen=True)
class SettingSpec:
    """One setting as declared in ``Settings``."""

    attribute: str
    name: str
    default: str | int | float | bool
    doc: str
    group: str
    secret: bool


def specs() -> Iterator[SettingSpec]:
    """Every setting in declaration order."""
    for f in fields(Settings):
        if "name" in f.metadata:
            yield SettingSpec(f.name, f.metadata["name"], f.default, f.metadata["doc"], f.metadata["group"], f.metadata["secret"])


_SPECS = {spec.attribute: spec for spec in specs()}
_BY_NAME = {spec.name: spec for spec in _SPECS.values()}
DEFAULTS = Settings()


def _text(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parse(spec: SettingSpec, text: str, where: str) -> str | int | float | bool:
    kind = type(spec.default)
    try:
        if kind is bool:
            lowered = text.strip().lower()
            if lowered in ("1", "true", "yes"):
                return True
            if lowered in ("0", "false", "no"):
                return False
            raise ValueError
        return kind(text)
    except ValueError:
        raise ValueError(f"{spec.name}={text!r} ({where}) is not a valid {kind.__name__}") from None


def settings_file_path(environ: MutableMapping[str, str], cwd: Path) -> Path | None:
    """``TAGQA_SETTINGS_FILE`` (must exist), else ``tagqa.env`` in ``cwd`` when present."""
    named = environ.get(SETTINGS_FILE_VARIABLE, "").strip()
    if named:
        path = (cwd / named).expanduser()
        if not path.is_file():
            raise ValueError(f"{SETTINGS_FILE_VARIABLE}={named!r}: no such file (from the environment)")
        return path
    path = cwd / SETTINGS_FILE
    return path if path.is_file() else None


def read_settings_file(path: Path) -> dict[str, str]:
    """The file's assignments; ``ValueError`` naming the file for a tagqa name that is no setting."""
    values = {key: value for key, value in dotenv_values(path).items() if value is not None}
    for key in values:
        if key.startswith(OWN_PREFIXES) and key not in _BY_NAME:
            close = difflib.get_close_matches(key, list(_BY_NAME), n=1)
            hint = f" (did you mean {close[0]}?)" if close else " (tagqa settings lists them)"
            raise ValueError(f"{path}: {key} is not a tagqa setting{hint}")
    return values


def load_settings(environ: MutableMapping[str, str] | None = None, cwd: Path | None = None) -> Settings:
    """The settings now: ``environ`` (default ``os.environ``), then the settings file, then defaults.

    Values from the settings file that ``environ`` lacks are written into ``environ`` (the
    shell's stay), so ``dg.EnvVar`` resolves them in this process and in the processes it
    starts (run workers, training subprocesses). Raises ``ValueError`` naming the setting
    and where it came from when a value does not parse, or the file for an unknown name.
    """
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    for key, value in json.loads(environ.pop(EXPORTED_VARIABLE, "") or "{}").items():
        if environ.get(key) == value:
            del environ[key]
    path = settings_file_path(environ, cwd)
    from_file = read_settings_file(path) if path else {}
    exported = {key: value for key, value in from_file.items() if value != "" and not environ.get(key)}
    environ.update(exported)
    if exported:
        environ[EXPORTED_VARIABLE] = json.dumps(exported)
    _warn_about_dotenv(cwd)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for spec in specs():
        text = environ.get(spec.name, "")
        if text == "":
            continue
        where = str(path) if spec.name in exported else ENVIRONMENT_SOURCE
        values[spec.attribute] = _parse(spec, text, where)
        sources[spec.attribute] = where
    return replace(DEFAULTS, **values, sources=sources, settings_file=path)


def _warn_about_dotenv(cwd: Path) -> None:
    dotenv = cwd / ".env"
    if not dotenv.is_file():
        return
    ours = sorted(key for key in dotenv_values(dotenv) if key in _BY_NAME)
    if ours:
        log.warning("%s sets %s: Dagster's CLI loads .env over the shell and tagqa does not read it; "
                    "run `tagqa settings init` to move them into %s", dotenv, ", ".join(ours), SETTINGS_FILE)


def template() -> str:
    """A commented settings file holding no values: each setting's doc and default."""
    lines = [
        "# tagqa settings. Precedence: the shell's environment, then this file, then the defaults",
        "# in tagqa_assets/settings.py. Uncomment a line and give it a value to set it; an empty",
        "# value means the default. `tagqa settings` shows the values in force and where each came",
        "# from. (This is not `.env` on purpose: Dagster's CLI loads `.env` over the shell.)",
    ]
    group = None
    for spec in specs():
        if spec.group != group:
            group = spec.group
            lines += ["", f"## {group}"]
        default = _text(spec.default) if _text(spec.default) != "" else "(empty)"
        lines += [f"# {spec.doc} Default: {default}", f"#{spec.name}="]
    return "\n".join(lines) + "\n"


def shell_exports(settings: Settings, names: list[str]) -> str:
    """``export NAME=value`` lines (shell-quoted) for ``names``; ``ValueError`` for an unknown name."""
    lines = []
    for name in names:
        if name not in _BY_NAME:
            raise ValueError(f"{name} is not a tagqa setting")
        lines.append(f"export {name}={shlex.quote(_text(getattr(settings, _BY_NAME[name].attribute)))}")
    return "\n".join(lines)


def _is_default(spec: SettingSpec, text: str) -> bool:
    """Whether ``text`` means the default (``0.40`` is the default ``0.4``); an unparsable value is not."""
    try:
        return _parse(spec, text, "") == spec.default
    except ValueError:
        return False


def migrate_dotenv(cwd: Path) -> list[str]:
    """Move tagqa's settings out of ``cwd/.env`` into ``cwd/tagqa.env``; returns what it did, line by line.

    Values equal to the default are dropped (``make setup`` used to copy every default into
    ``.env``); others are appended to ``tagqa.env`` unless it already sets them. The old file
    is kept as ``.env.tagqa-backup``; ``.env`` is removed when nothing else was in it.
    """
    dotenv, target = cwd / ".env", cwd / SETTINGS_FILE
    if not dotenv.is_file():
        return []
    values = {key: value for key, value in dotenv_values(dotenv).items() if value is not None}
    # What the old .env.example wrote besides tagqa's settings (the Makefile exports these now).
    old_template = {"YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": ".tagqa/ultralytics", "MPLCONFIGDIR": ".tagqa/matplotlib"}
    ours = {key: value for key, value in values.items() if key in _BY_NAME or old_template.get(key) == value}
    if not ours:
        return []
    present = read_settings_file(target) if target.is_file() else {}
    moved = {key: value for key, value in ours.items()
             if key in _BY_NAME and value != "" and not _is_default(_BY_NAME[key], value) and key not in present}
    if not target.is_file():
        target.write_text(template())
    if moved:
        with target.open("a") as out:
            out.write("\n## Moved from .env by `tagqa settings init`\n")
            out.writelines(f"{key}={shlex.quote(value)}\n" for key, value in moved.items())
    backup = cwd / ".env.tagqa-backup"
    backup.write_bytes(dotenv.read_bytes())
    rest = [line for line in dotenv.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#") and line.split("=", 1)[0].strip().removeprefix("export ") not in ours]
    if rest:
        dotenv.write_text("\n".join(rest) + "\n")
    else:
        dotenv.unlink()
    report = [f"moved {key} into {target}" for key in moved]
    report.append(f"dropped {len(ours) - len(moved)} default value(s); old file kept as {backup}")
    report.append(f"{dotenv} keeps {len(rest)} other line(s)" if rest else f"removed {dotenv}")
    return report


def defect_classes(settings: Settings | None = None) -> tuple[str, ...]:
    """The project's defect taxonomy: ``TAGQA_DEFECT_CLASSES`` (ordered, comma-separated; class
    id = position), default ``scratch``. Read when called (``load_settings`` when no settings are
    given), never at import time; raises ``ValueError`` naming the variable when it is malformed."""
    text = (load_settings() if settings is None else settings).defect_classes
    return parse_class_names(text) if text.strip() else DEFAULT_CLASS_NAMES
