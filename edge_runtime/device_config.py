"""Device configuration: one schema whether it comes from Greengrass or a local JSON file.

Keys are camelCase (the Greengrass recipe convention); the snake_case spelling of any key is
accepted as an alias (``conf_threshold`` == ``confThreshold``), giving both is an error.
Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

# Keys Greengrass puts into a component's configuration that are not ours to interpret.
_GREENGRASS_KEYS = frozenset({"accessControl"})
# The Greengrass component's Install step reads this key (``pip install "tagqa[<installExtras>]"``) and
# ``openvinoBuild`` below, the runtime does not: they are validated here, wherever the configuration is, and
# otherwise left alone (INSTALL_KEYS).
INSTALL_EXTRAS_KEY = "installExtras"
DEFAULT_INSTALL_EXTRAS = "edge"
# The package extras a device may install: a name outside them would be a typo pip only warns about.
KNOWN_INSTALL_EXTRAS = ("edge", "edge-openvino")
# Providers that run only with an extra installed beside ``edge`` (the others come with ONNX Runtime's own wheel,
# or, for CUDA/TensorRT on a Jetson, with a wheel no extra can name: docs/edge_runtime.md).
PROVIDER_EXTRAS = {"OpenVINOExecutionProvider": "edge-openvino"}
# Which ONNX Runtime build serves OpenVINO on a device that installs ``edge-openvino``: the Install step hands it
# to ``tagqa-edge setup-openvino`` (edge_runtime.openvino_setup). "auto" keeps the plugin where it offers a device
# (Intel hardware) and puts onnxruntime-openvino in place of onnxruntime elsewhere; "plugin" and
# "onnxruntime-openvino" choose one whatever the hardware.
OPENVINO_BUILD_KEY = "openvinoBuild"
OPENVINO_BUILDS = ("auto", "plugin", "onnxruntime-openvino")
DEFAULT_OPENVINO_BUILD = "auto"
_DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


class DeviceConfigError(ValueError):
    """The configuration is invalid; the message names the source, the key and the reason."""


CPU_PROVIDER = "CPUExecutionProvider"
# Providers that run on an NVIDIA GPU: they need CUDA and cuDNN loaded first (edge_runtime.providers), get more
# frame workers by default, and get the fp32 variant from a deployment (tagqa_assets/deployment/precision.py).
NVIDIA_PROVIDERS = frozenset({"CUDAExecutionProvider", "TensorrtExecutionProvider"})
# ONNX Runtime's execution provider names (onnxruntime.get_all_providers() of 1.32, without Azure, which runs
# no local inference, plus ORT's other published EP names). A name outside this list is a typo.
KNOWN_PROVIDERS = (
    CPU_PROVIDER, "OpenVINOExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider",
    "NvTensorRTRTXExecutionProvider", "MIGraphXExecutionProvider", "ROCMExecutionProvider", "DnnlExecutionProvider",
    "VitisAIExecutionProvider", "QNNExecutionProvider", "NnapiExecutionProvider", "VSINPUExecutionProvider",
    "JsExecutionProvider", "CoreMLExecutionProvider", "DmlExecutionProvider", "RknpuExecutionProvider",
    "WebNNExecutionProvider", "WebGpuExecutionProvider", "XnnpackExecutionProvider", "CANNExecutionProvider",
    "ACLExecutionProvider", "ArmNNExecutionProvider", "SNPEExecutionProvider",
)


@dataclass(frozen=True)
class ProviderSpec:
    """One entry of the ordered provider list: an ONNX Runtime execution provider and its options.

    Option values are kept as given (text, numbers, booleans, or an object such as OpenVINO's
    ``load_config``); ``ort_options`` renders them as the strings ONNX Runtime takes.
    """

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def ort_options(self) -> dict[str, str]:
        """Options as ONNX Runtime provider options: objects and lists as JSON, booleans as True/False."""
        return {key: (json.dumps(value, separators=(",", ":")) if isinstance(value, (dict, list)) else str(value))
                for key, value in self.options.items()}

    def to_json(self) -> str | dict[str, Any]:
        """The entry as a configuration file holds it: the bare name when there are no options."""
        return {"name": self.name, "options": dict(self.options)} if self.options else self.name


def provider_list_text(text: str) -> Any:
    """A ``--providers`` value as configuration: a JSON list when it starts with '[' (json.JSONDecodeError if it
    is not one), else the comma-separated text as given (``parse_providers`` splits it)."""
    return json.loads(text) if text.lstrip().startswith("[") else text


def parse_providers(raw: Any, where: str) -> tuple[ProviderSpec, ...]:
    """An ordered provider list from configuration: names, or ``{"name": ..., "options": {...}}`` objects.

    Raises DeviceConfigError naming ``where`` for an empty list, an unknown or repeated name, or
    options that are not an object of text, numbers, booleans or objects.
    """
    if isinstance(raw, str):
        raw = [part.strip() for part in raw.split(",") if part.strip()]
    if not isinstance(raw, (list, tuple)) or not raw:
        raise DeviceConfigError(f"{where} must be a non-empty list of execution providers, got {raw!r}")
    specs: list[ProviderSpec] = []
    for i, entry in enumerate(raw):
        if isinstance(entry, ProviderSpec):
            spec = entry
        elif isinstance(entry, str):
            spec = ProviderSpec(entry)
        elif isinstance(entry, Mapping) and isinstance(entry.get("name"), str) and set(entry) <= {"name", "options"}:
            options = entry.get("options") or {}
            if not isinstance(options, Mapping) or not all(
                    isinstance(k, str) and isinstance(v, (str, int, float, bool, dict, list)) for k, v in options.items()):
                raise DeviceConfigError(f"{where}[{i}] 'options' must be an object of text, numbers, booleans or "
                                        f"objects, got {options!r}")
            spec = ProviderSpec(entry["name"], dict(options))
        else:
            raise DeviceConfigError(f"{where}[{i}] must be a provider name or {{\"name\": ..., \"options\": {{...}}}}, "
                                    f"got {entry!r}")
        if spec.name not in KNOWN_PROVIDERS:
            close = difflib.get_close_matches(spec.name, KNOWN_PROVIDERS, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(KNOWN_PROVIDERS)})"
            raise DeviceConfigError(f"{where}[{i}] names unknown execution provider {spec.name!r}{hint}")
        if any(s.name == spec.name for s in specs):
            raise DeviceConfigError(f"{where}[{i}] repeats {spec.name!r}")
        specs.append(spec)
    return tuple(specs)


def parse_install_extras(raw: Any, where: str) -> tuple[str, ...]:
    """``installExtras`` as a tuple of extras: comma-separated names of ``KNOWN_INSTALL_EXTRAS``, ``edge`` among them.

    Raises DeviceConfigError naming ``where`` otherwise (the value ends up in a shell command on the device).
    """
    if not isinstance(raw, str):
        raise DeviceConfigError(f"{where} must be a string of comma-separated extras, got {raw!r}")
    extras = tuple(part.strip() for part in raw.split(","))
    for extra in extras:
        if extra not in KNOWN_INSTALL_EXTRAS:
            raise DeviceConfigError(f"{where} names {extra!r}, which is not an extra a device installs "
                                    f"(known: {', '.join(KNOWN_INSTALL_EXTRAS)}; comma-separated, no spaces needed)")
    if len(set(extras)) != len(extras):
        raise DeviceConfigError(f"{where} repeats an extra: {raw!r}")
    if DEFAULT_INSTALL_EXTRAS not in extras:
        raise DeviceConfigError(f"{where} must include {DEFAULT_INSTALL_EXTRAS!r} (the runtime's own dependencies), "
                                f"got {raw!r}")
    return extras


def parse_openvino_build(raw: Any, where: str) -> str:
    """``openvinoBuild`` as one of ``OPENVINO_BUILDS``; DeviceConfigError naming ``where`` otherwise (the value
    ends up in a shell command on the device)."""
    if raw not in OPENVINO_BUILDS:
        raise DeviceConfigError(f"{where} must be one of {', '.join(map(repr, OPENVINO_BUILDS))}, got {raw!r}")
    return raw


# Keys only the Greengrass component's Install step reads, each with its validator.
INSTALL_KEYS = {INSTALL_EXTRAS_KEY: parse_install_extras, OPENVINO_BUILD_KEY: parse_openvino_build}


def install_extras_for(providers: tuple[ProviderSpec, ...]) -> tuple[str, ...]:
    """The extras a device with ``providers`` installs: ``edge`` and each one a listed provider needs, in order."""
    needed = [PROVIDER_EXTRAS[spec.name] for spec in providers if spec.name in PROVIDER_EXTRAS]
    return (DEFAULT_INSTALL_EXTRAS, *dict.fromkeys(needed))


@dataclass(frozen=True)
class DeviceConfig:
    """Validated runtime configuration (field names are the snake_case forms of the JSON keys)."""

    model_dir: str = ""
    device_id: str = ""
    source: str = ""
    frame_interval_seconds: float = 0.0
    folder_on_read: str = "keep"
    folder_settle_seconds: float = 0.2
    max_frame_pixels: int = 5_100_000  # 5 MP cameras (2592x1944, 2448x2048); docs/benchmarks.md: peak RSS
    bad_frame_policy: str = "quarantine"
    quarantine_max_bytes: int = 64 * 1024 * 1024
    result_commit_seconds: float = 0.05
    conf_threshold: float = 0.25
    iou_threshold: float = 0.7
    decision_threshold: float = 0.5
    max_detections: int = 300
    # "auto": the band follows the serving model's own test-split scores (edge_runtime.capture.rank_band),
    # capturing about ``capture_share`` of the frames; [lo, hi]: a fixed band of best scores.
    capture_band: tuple[float, float] | str = "auto"
    capture_share: float = 0.2
    empty_sample_rate: float = 0.05
    random_sample_rate: float = 0.01
    ring_size: int = 64
    ring_max_bytes: int = 8 * 1024 * 1024
    upload_prefix: str = ""
    s3_endpoint_url: str = ""
    s3_region: str = ""
    topic: str = "tagqa/{device}/detections"
    health_topic: str = "tagqa/{device}/health"
    feedback_topic: str = "tagqa/{device}/feedback"
    health_interval_seconds: float = 30.0
    queue_max_bytes: int = 512 * 1024 * 1024
    result_buffer_max_bytes: int = 64 * 1024 * 1024
    state_dir: str = "tagqa-edge-state"
    broker: str = "127.0.0.1:1883"
    broker_ca_file: str = ""
    broker_cert_file: str = ""
    broker_key_file: str = ""
    workers: int = 0
    inference_threads: int = 0
    # The line-side HTTP API and operator page (edge_runtime.http_api); "" = off.
    http: str = ""
    http_token: str = ""
    http_max_body_bytes: int = 20 * 1024 * 1024
    http_queue_size: int = 16
    http_timeout_seconds: float = 10.0
    http_max_connections: int = 32
    # Execution providers, tried in order at every model load (edge_runtime.providers); a provider is used only
    # when its output on the check frames matches a CPU inference within these tolerances.
    providers: tuple[ProviderSpec, ...] = (ProviderSpec(CPU_PROVIDER),)
    provider_check_iou: float = 0.99
    provider_check_score_tolerance: float = 0.01

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str, base: "DeviceConfig | None" = None
                     ) -> "DeviceConfig":
        """Validate ``data`` (JSON keys) on top of ``base`` (defaults when None)."""
        if not isinstance(data, Mapping):
            raise DeviceConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, raw in data.items():
            if key in _GREENGRASS_KEYS:
                continue
            if key in INSTALL_KEYS:
                INSTALL_KEYS[key](raw, f"{source}: {key!r}")
                continue
            name = _snake(key)
            if name not in fields:
                raise DeviceConfigError(f"{source}: unknown key {key!r} (known: {', '.join(sorted(json_keys()))})")
            if name in values:
                raise DeviceConfigError(f"{source}: key {key!r} given twice (camelCase and snake_case)")
            values[name] = _coerce(raw, fields[name].type, f"{source}: {key!r}")
        config = dataclasses.replace(base or cls(), **values)
        config.validate(source)
        return config

    def validate(self, source: str) -> None:
        """Raise DeviceConfigError naming the first inconsistent key."""
        def fail(key: str, why: str) -> None:
            raise DeviceConfigError(f"{source}: {key!r} {why}")

        for key in ("conf_threshold", "iou_threshold", "decision_threshold", "empty_sample_rate",
                    "random_sample_rate", "capture_share"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                fail(_camel(key), "must be between 0 and 1")
        if isinstance(self.capture_band, str):
            if self.capture_band != "auto":
                fail("captureBand", f"must be \"auto\" or [lo, hi], got {self.capture_band!r}")
        elif not 0.0 <= self.capture_band[0] <= self.capture_band[1] <= 1.0:
            fail("captureBand", f"must be [lo, hi] with 0 <= lo <= hi <= 1, got {list(self.capture_band)}")
        if self.bad_frame_policy not in ("quarantine", "drop"):
            fail("badFramePolicy", "must be 'quarantine' or 'drop'")
        if not 0.0 <= self.result_commit_seconds <= 5.0:
            fail("resultCommitSeconds", "must be between 0 and 5")
        if self.folder_on_read not in ("keep", "delete"):
            fail("folderOnRead", "must be 'keep' or 'delete'")
        if self.device_id and not _DEVICE_ID.match(self.device_id):
            fail("deviceId", "must be letters, digits, '_', '.', ':' or '-' (at most 128)")
        for key in ("frame_interval_seconds", "folder_settle_seconds"):
            if getattr(self, key) < 0:
                fail(_camel(key), "must not be negative")
        if self.health_interval_seconds <= 0:
            fail("healthIntervalSeconds", "must be positive")
        for key in ("max_detections", "ring_size", "ring_max_bytes", "queue_max_bytes", "result_buffer_max_bytes", "max_frame_pixels",
                    "quarantine_max_bytes"):
            if getattr(self, key) < 1:
                fail(_camel(key), "must be at least 1")
        for key in ("workers", "inference_threads"):
            if getattr(self, key) < 0:
                fail(_camel(key), "must be 0 (automatic) or positive")
        for key in ("topic", "health_topic", "feedback_topic"):
            topic = getattr(self, key)
            if not topic or any(c in topic for c in "#+"):
                fail(_camel(key), "must be a non-empty topic name without wildcards")
        if "://" in self.upload_prefix and not self.upload_prefix.startswith("s3://"):
            fail("uploadPrefix", "must be a local folder or s3://bucket/prefix")
        if self.upload_prefix.startswith("s3://") and not self.upload_prefix[5:].split("/")[0]:
            fail("uploadPrefix", "names no bucket")
        host, _, port = self.broker.rpartition(":")
        if not host or not port.isdigit():
            fail("broker", f"must be HOST:PORT, got {self.broker!r}")
        self._validate_http(fail)
        if not 0.0 < self.provider_check_iou <= 1.0:
            fail("providerCheckIou", "must be above 0 and at most 1")
        if not 0.0 <= self.provider_check_score_tolerance <= 1.0:
            fail("providerCheckScoreTolerance", "must be between 0 and 1")

    def _validate_http(self, fail) -> None:
        for key in ("http_max_body_bytes", "http_queue_size", "http_max_connections"):
            if getattr(self, key) < 1:
                fail(_camel(key), "must be at least 1")
        if self.http_timeout_seconds <= 0:
            fail("httpTimeoutSeconds", "must be positive")
        if self.http_token and (len(self.http_token) < 16 or not self.http_token.isprintable()
                                or " " in self.http_token):
            fail("httpToken", "must be at least 16 printable characters without spaces")
        if not self.http:
            return
        host, port = split_http_address(self.http)
        if host is None or not 0 <= port <= 65535:
            fail("http", f"must be HOST:PORT (e.g. 127.0.0.1:8081), got {self.http!r}")
        if not is_loopback(host) and not self.http_token:
            fail("httpToken", f"is required when 'http' binds a non-loopback address ({self.http!r})")

    def to_json_dict(self) -> dict[str, Any]:
        """The configuration with camelCase keys, as a config file would hold it."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "providers":
                value = [spec.to_json() for spec in value]
            out[_camel(f.name)] = list(value) if isinstance(value, tuple) else value
        return out


def split_http_address(address: str) -> tuple[str | None, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as (host, port); (None, -1) when malformed."""
    host, _, port = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or not port.isdigit():
        return None, -1
    return host, int(port)


def is_loopback(host: str) -> bool:
    """True for localhost and loopback IP addresses (the HTTP API needs no token there)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def json_keys() -> list[str]:
    """All accepted camelCase keys."""
    return [_camel(f.name) for f in dataclasses.fields(DeviceConfig)]


def _snake(key: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key).lower()


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _coerce(raw: Any, annotation: str, where: str) -> Any:
    if annotation == "str":
        if not isinstance(raw, str):
            raise DeviceConfigError(f"{where} must be a string, got {raw!r}")
        return raw
    if annotation == "float":
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise DeviceConfigError(f"{where} must be a number, got {raw!r}")
        return float(raw)
    if annotation == "int":
        # Greengrass hands configuration numbers over as floats (30 arrives as 30.0).
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or int(raw) != raw:
            raise DeviceConfigError(f"{where} must be an integer, got {raw!r}")
        return int(raw)
    if annotation == "tuple[float, float] | str":
        if isinstance(raw, str):
            return raw  # validate() names what a string may be
        if (not isinstance(raw, (list, tuple)) or len(raw) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw)):
            raise DeviceConfigError(f'{where} must be "auto" or a list of two numbers, got {raw!r}')
        return (float(raw[0]), float(raw[1]))
    if annotation == "tuple[ProviderSpec, ...]":
        return parse_providers(raw, where)
    raise AssertionError(f"unhandled config type {annotation}")
