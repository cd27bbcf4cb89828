"""Execution providers: which ONNX Runtime sessions a device can build, and the check a provider must pass.

The device configuration names an ordered provider list (``providers``; edge_runtime.device_config).
``edge_runtime.models.load_verified_model`` walks it: a provider that is not available here,
whose session cannot be built, that ONNX Runtime did not actually enable, or whose output on the
check frames differs from a CPU inference of the same frames is refused with a logged reason and
the next one is tried (docs/edge_runtime.md, "Execution providers").

Sessions come from a ``SessionFactory`` (injectable: tests build real sessions of altered models
through it). ``OnnxRuntimeSessions`` is the production one: built-in providers (the CPU wheel,
``onnxruntime-gpu`` on a Jetson, ``onnxruntime-openvino``) are requested by name; a provider
that ships as a plugin library (``onnxruntime-ep-openvino``, the ``edge-openvino`` extra) is
registered with ONNX Runtime once per process and bound to its device, because ONNX Runtime
silently ignores a plugin provider requested by name.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Mapping, Protocol, Sequence

import numpy as np
import onnxruntime as ort

from edge_runtime.device_config import CPU_PROVIDER, NVIDIA_PROVIDERS, ProviderSpec

log = logging.getLogger(__name__)

# Providers that ship as ONNX Runtime plugin libraries: provider name -> Python package with get_library_path().
PLUGIN_PACKAGES = {"OpenVINOExecutionProvider": "onnxruntime_ep_openvino"}
# Which hardware a plugin takes: the OpenVINO plugin offers only devices whose vendor is Intel (its
# GetSupportedDevices skips the others), so on an AMD CPU it registers and offers nothing.
PLUGIN_DEVICE_NOTES = {"OpenVINOExecutionProvider": "it takes Intel CPUs, GPUs and NPUs only"}
# What runs the provider where its plugin offers no device (checked on an AMD EPYC: onnxruntime-openvino 1.24.1's
# built-in provider served and passed the CPU comparison there; docs/edge_runtime.md, "Intel hardware only").
PLUGIN_ELSEWHERE = {"OpenVINOExecutionProvider": "on other x86-64 CPUs, install onnxruntime-openvino in place of "
                                                 "onnxruntime and leave the plugin out (`tagqa-edge setup-openvino "
                                                 "--wheels DIR` does; the Greengrass component does at install)"}
# What to install for a provider that is not available (shown in the refusal).
INSTALL_HINTS = {
    "OpenVINOExecutionProvider": "pip install 'tagqa[edge,edge-openvino]' (the onnxruntime-ep-openvino plugin)",
    "CUDAExecutionProvider": "install onnxruntime-gpu (on a Jetson: the JetPack wheel) instead of onnxruntime",
    "TensorrtExecutionProvider": "install onnxruntime-gpu built with TensorRT (on a Jetson: the JetPack wheel)",
}
# OpenVINO on the CPU in fp32, as a ``providers`` entry: what the tests and the benchmark run (OpenVINO's own
# default is bf16 on CPUs with AMX / AVX512-BF16, which the CPU comparison refuses).
OPENVINO_CPU_FP32 = {"name": "OpenVINOExecutionProvider",
                     "options": {"load_config": {"CPU": {"INFERENCE_PRECISION_HINT": "f32"}}}}
# What the runtime asks of OpenVINO on a CPU when several frame workers share the session and the configuration
# says nothing else: one stream per concurrent caller with the throughput hint, the set-up bare OpenVINO users run
# (one infer request per core). OpenVINO's own default serves the callers through one stream (docs/benchmarks.md,
# issue 18: 0.77x bare OpenVINO by throughput with it, 0.88-0.96x by CPU per image with these).
OPENVINO_CPU_THROUGHPUT_KEYS = ("PERFORMANCE_HINT", "NUM_STREAMS")
# Said with a provider that ONNX Runtime left out of the session it built (its libraries did not load).
NOT_ENABLED_HINTS = {
    "CUDAExecutionProvider": "its libraries did not load: ONNX Runtime logged which one; CUDA and cuDNN of the "
                             "versions this onnxruntime-gpu was built for must be in NVIDIA's wheels beside it "
                             "(pip install 'onnxruntime-gpu[cuda,cudnn]') or on the loader's path (JetPack)",
    "TensorrtExecutionProvider": "its libraries did not load: ONNX Runtime logged which one; TensorRT (libnvinfer), "
                                 "CUDA and cuDNN must be on the loader's path (JetPack, or NVIDIA's tensorrt wheels)",
}
# Said with a refused provider whose output differed from CPU's.
CHECK_HINTS = {
    "OpenVINOExecutionProvider": "OpenVINO infers in bf16 on CPUs with AMX or AVX512-BF16 unless the options set "
                                 "load_config {\"CPU\": {\"INFERENCE_PRECISION_HINT\": \"f32\"}}",
    "TensorrtExecutionProvider": "with trt_fp16_enable, widen providerCheckIou/providerCheckScoreTolerance "
                                 "only after checking the model's accuracy in fp16",
}
def check_hint(spec: ProviderSpec, card_extra: Mapping[str, Any]) -> str | None:
    """What to look at when ``spec``'s output differed from CPU's on the model of a card with ``card_extra``.

    For OpenVINO: on an int8 model, that its int8 kernels round differently from ONNX Runtime's
    (measured: the benchmark's int8 yolov8n at 480 on this Xeon, candidate boxes at IoU 0.952
    with fp32 requested); otherwise the bf16 default, unless the options already ask for f32.
    """
    if spec.name == "OpenVINOExecutionProvider":
        if card_extra.get("precision") == "int8":
            return ("an int8 model: OpenVINO's int8 kernels round differently from ONNX Runtime's CPU kernels; "
                    "compare the model's accuracy on OpenVINO first, then lower providerCheckIou to what it showed")
        load_config = spec.options.get("load_config")
        if isinstance(load_config, str):
            try:
                load_config = json.loads(load_config)
            except json.JSONDecodeError:
                load_config = None
        cpu = load_config.get("CPU") if isinstance(load_config, dict) else None
        if isinstance(cpu, dict) and str(cpu.get("INFERENCE_PRECISION_HINT", "")).lower() == "f32":
            return None
    return CHECK_HINTS.get(spec.name)


# The highest-scoring candidate boxes compared per check frame (of each output: the union is compared).
CHECK_CANDIDATES = 100


class SessionFactory(Protocol):
    """Builds ONNX Runtime sessions on a named provider (the seam tests and other builds replace)."""

    def available(self, wanted: Collection[str]) -> frozenset[str]:
        """Provider names a session can be requested on in this process (``wanted``: the ones about to be tried)."""

    def create(self, model: bytes, provider: ProviderSpec, options: ort.SessionOptions) -> ort.InferenceSession:
        """A session of ``model`` on ``provider`` (CPU takes the nodes the provider leaves); raises on failure."""


def _cpu_vendor() -> str:
    """The CPU's vendor and model as /proc/cpuinfo names them ("unknown" where it cannot be read)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()[:30]
    except OSError:
        return "unknown"
    fields = {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in lines)}
    vendor, model = fields.get("vendor_id", ""), fields.get("model name", "")
    return f"{vendor}, {model}".strip(", ") or "unknown"


class OnnxRuntimeSessions:
    """The production factory. ``cache_dir`` holds provider caches on the device (TensorRT engines)."""

    _lock = threading.Lock()
    _plugins: dict[str, str] = {}  # provider -> why it is unavailable ("" once registered); per process
    _registered: set[str] = set()
    _nvidia_preloaded = False

    def __init__(self, cache_dir: Path | str | None = None) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir else None

    def available(self, wanted: Collection[str]) -> frozenset[str]:
        # Only plugins about to be tried are loaded: OpenVINO's libraries alone add about 40 MB of resident memory.
        for name in PLUGIN_PACKAGES:
            if name in wanted:
                self._register_plugin(name)
        built_in = frozenset(ort.get_available_providers()) - {"AzureExecutionProvider"}
        if built_in & NVIDIA_PROVIDERS & set(wanted):
            self._preload_nvidia_libraries()
        return built_in

    @classmethod
    def _preload_nvidia_libraries(cls) -> None:
        """Load CUDA and cuDNN for the GPU build of ONNX Runtime, once per process, before a session needs them.

        ``pip install onnxruntime-gpu[cuda,cudnn]`` puts them in NVIDIA's wheels beside ONNX Runtime, where
        the dynamic loader does not look: without this, a CUDA session fails with "libcublasLt.so.13: cannot
        open shared object file" although the provider is listed as available. ``directory=""`` searches
        those wheels, then the loader's usual paths (a Jetson's JetPack libraries). What it cannot load it
        prints; that goes to the log, and the session built next fails with the loader's own message.
        """
        with cls._lock:
            if cls._nvidia_preloaded or not hasattr(ort, "preload_dlls"):
                return
            cls._nvidia_preloaded = True
            said = io.StringIO()
            try:
                with contextlib.redirect_stdout(said):
                    ort.preload_dlls(directory="")
            except Exception as exc:  # a build without CUDA version info, a missing directory: the session says more
                log.warning("onnxruntime.preload_dlls failed (%s: %s)", type(exc).__name__, exc)
            for line in said.getvalue().splitlines():
                log.info("onnxruntime.preload_dlls: %s", line)

    def unavailable_reason(self, name: str) -> str:
        """Why ``name`` is not available (the plugin's import or registration error, or what to install)."""
        why = self._plugins.get(name) or INSTALL_HINTS.get(name, "")
        return f"not available in this ONNX Runtime ({why})" if why else "not available in this ONNX Runtime"

    @classmethod
    def _register_plugin(cls, name: str) -> None:
        with cls._lock:
            if name in cls._plugins or name in ort.get_available_providers():
                return
            try:
                package = importlib.import_module(PLUGIN_PACKAGES[name])
                ort.register_execution_provider_library(name, package.get_library_path())
            except Exception as exc:  # ImportError, a missing library, a plugin built for another ORT
                cls._plugins[name] = f"{PLUGIN_PACKAGES[name]}: {type(exc).__name__}: {exc}; " + INSTALL_HINTS.get(name, "")
                return
            if not any(d.ep_name == name for d in ort.get_ep_devices()):
                cls._plugins[name] = (f"{PLUGIN_PACKAGES[name]} is installed and registered but offers no device on this "
                                      f"machine: {PLUGIN_DEVICE_NOTES.get(name, 'it found no hardware it supports')} "
                                      f"(this CPU: {_cpu_vendor()})"
                                      + (f"; {PLUGIN_ELSEWHERE[name]}" if name in PLUGIN_ELSEWHERE else ""))
                return
            cls._plugins[name] = ""
            cls._registered.add(name)
            log.info("registered the %s plugin library %s", name, package.get_library_path())

    def create(self, model: bytes, provider: ProviderSpec, options: ort.SessionOptions) -> ort.InferenceSession:
        provider_options = effective_options(provider, self.cache_dir)
        if provider.name in self._registered:
            return self._plugin_session(model, provider.name, provider_options, options)
        providers = [(provider.name, provider_options)] if provider.name == CPU_PROVIDER else \
            [(provider.name, provider_options), CPU_PROVIDER]
        # ONNX Runtime's own fallback would catch a provider that cannot start (TensorRT without libnvinfer), print
        # the error and quietly build the session on CUDA or CPU: the refusal would then not say why.
        session = ort.InferenceSession(model, options, providers=providers, enable_fallback=0)
        session.enable_fallback()  # what a failing provider does at run time stays ONNX Runtime's default
        return session

    @staticmethod
    def _plugin_session(model: bytes, name: str, provider_options: dict[str, str],
                        options: ort.SessionOptions) -> ort.InferenceSession:
        # A plugin provider is bound to one of the devices it enumerates (OpenVINO: CPU, GPU, NPU); the
        # built-in provider's ``device_type`` option names that device here (default CPU).
        wanted = provider_options.pop("device_type", "CPU")
        devices = [d for d in ort.get_ep_devices() if d.ep_name == name and "ov_meta_device" not in d.ep_metadata
                   and d.ep_metadata.get("ov_device", wanted) == wanted]
        if not devices:
            found = sorted({d.ep_metadata.get("ov_device", "?") for d in ort.get_ep_devices() if d.ep_name == name})
            raise RuntimeError(f"{name} has no device {wanted!r} here (devices: {found})")
        options.add_provider_for_devices(devices[:1], provider_options)
        return ort.InferenceSession(model, options)


# Frame workers when the configuration says none: CPU-bound inference gains nothing from more workers than the
# two that keep two cores busy; on an NVIDIA GPU a worker's CPU side (decode, letterbox, copies, NMS) is the
# limit, and more concurrent runs keep the GPU fed (docs/benchmarks.md, "Issue 18 on an NVIDIA H200": yolov8n
# at 480 on CUDA made 420-446 img/s with 2 workers, 714-822 with 4, 960-997 with 8 at a higher p50 latency).
DEFAULT_WORKERS = 2
DEFAULT_WORKERS_NVIDIA = 4


def default_workers(providers: Sequence[ProviderSpec], cpus: int) -> int:
    """Frame workers for a device with ``cpus`` CPUs whose configuration sets ``workers`` to 0 (the default).

    ``DEFAULT_WORKERS_NVIDIA`` when the list's first provider is CUDA or TensorRT, else
    ``DEFAULT_WORKERS``; never more than ``cpus``. Decided from the list, before a provider is
    verified: a device that falls back to CPU keeps the count (each worker then gets fewer threads).
    """
    wanted = DEFAULT_WORKERS_NVIDIA if providers and providers[0].name in NVIDIA_PROVIDERS else DEFAULT_WORKERS
    return max(1, min(wanted, cpus))


def with_concurrency_defaults(provider: ProviderSpec, concurrent_runs: int) -> ProviderSpec:
    """``provider`` with the options that let ``concurrent_runs`` frame workers share one session on it.

    OpenVINO on a CPU (``device_type`` absent or ``CPU``) with more than one worker gets
    ``load_config {"CPU": {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": "<workers>"}}`` unless
    the configuration sets either key (its other ``load_config`` keys are kept).
    Every other provider, and OpenVINO with one worker (its latency default is right for one
    caller), is returned unchanged.
    """
    if provider.name != "OpenVINOExecutionProvider" or concurrent_runs < 2 \
            or str(provider.options.get("device_type", "CPU")).upper() != "CPU":
        return provider
    load_config = provider.options.get("load_config", {})
    if isinstance(load_config, str):
        try:
            load_config = json.loads(load_config)
        except json.JSONDecodeError:
            return provider  # ONNX Runtime reports the bad text when the session is built
    if not isinstance(load_config, dict) or not isinstance(load_config.get("CPU", {}), dict):
        return provider
    cpu = dict(load_config.get("CPU", {}))
    defaults = {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": str(concurrent_runs)}
    if any(key in cpu for key in OPENVINO_CPU_THROUGHPUT_KEYS):
        return provider  # the configuration chose how OpenVINO schedules; half a choice is not completed
    cpu = {**defaults, **cpu}
    return ProviderSpec(provider.name, {**provider.options, "load_config": {**load_config, "CPU": cpu}})


def effective_options(provider: ProviderSpec, cache_dir: Path | None) -> dict[str, str]:
    """The provider's options as ONNX Runtime takes them, with the device-side defaults filled in.

    TensorRT builds an engine per model and input shape, which takes minutes on a Jetson: unless
    the configuration says otherwise, engines and timing caches are kept under
    ``<cache_dir>/tensorrt`` so a restart (or the next swap back to a model) reuses them.
    """
    options = provider.ort_options()
    if provider.name == "TensorrtExecutionProvider" and cache_dir is not None:
        folder = str(Path(cache_dir) / "tensorrt")
        options.setdefault("trt_engine_cache_enable", "True")
        options.setdefault("trt_engine_cache_path", folder)
        options.setdefault("trt_timing_cache_enable", "True")
        options.setdefault("trt_timing_cache_path", folder)
        if options["trt_engine_cache_enable"] == "True":
            Path(options["trt_engine_cache_path"]).mkdir(parents=True, exist_ok=True)
    return options


@dataclass(frozen=True)
class ProviderCheck:
    """How close a provider's output must be to the CPU's on the same frame."""

    min_iou: float = 0.99
    score_tolerance: float = 0.01


@dataclass(frozen=True)
class OutputGap:
    """How far a provider's raw output is from CPU's on one frame, in the terms of ``compare_outputs``."""

    score_gap: float  # the largest class-score difference over every anchor
    anchors: np.ndarray  # the ``CHECK_CANDIDATES`` highest-scoring anchors of either output
    ious: np.ndarray  # IoU of those anchors' boxes with CPU's

    @property
    def worst_iou(self) -> float:
        return float(self.ious.min())


def output_gap(reference: np.ndarray, candidate: np.ndarray) -> OutputGap:
    """The score gap and top-candidate IoUs of ``candidate`` against ``reference`` (same 1 x (4 + classes) x
    anchors shape, finite)."""
    ref, cand = reference[0].astype(np.float64), candidate[0].astype(np.float64)
    k = min(CHECK_CANDIDATES, ref.shape[1])
    anchors = np.union1d(*(np.argpartition(-scores[4:].max(axis=0), k - 1)[:k] for scores in (ref, cand)))
    return OutputGap(float(np.abs(ref[4:] - cand[4:]).max()), anchors,
                     _iou_cxcywh(ref[:4, anchors], cand[:4, anchors]))


def compare_outputs(reference: np.ndarray, candidate: np.ndarray, check: ProviderCheck) -> str | None:
    """Why ``candidate`` (a provider's raw 1 x (4 + classes) x anchors output) is not ``reference`` (CPU's), or None.

    Every class score of every anchor must be within ``score_tolerance``; the boxes of the
    ``CHECK_CANDIDATES`` highest-scoring anchors of either output must overlap their CPU
    counterparts with IoU >= ``min_iou``. Comparing candidates before NMS, not detections, keeps
    the check meaningful on frames where nothing passes the confidence threshold, and a model
    whose candidates agree gives the same detections after the same NMS.
    """
    if candidate.shape != reference.shape:
        return f"output shape {candidate.shape} differs from CPU's {reference.shape}"
    if not np.isfinite(candidate).all():
        return "output has NaN or infinite values where CPU's has none"
    gap = output_gap(reference, candidate)
    if gap.score_gap > check.score_tolerance:
        return f"scores differ from CPU's by up to {gap.score_gap:.4g} (tolerance {check.score_tolerance:g})"
    worst = int(np.argmin(gap.ious))
    if gap.ious[worst] < check.min_iou:
        return (f"box of candidate {int(gap.anchors[worst])} overlaps CPU's with IoU {gap.ious[worst]:.4f} "
                f"(minimum {check.min_iou:g}; {int((gap.ious < check.min_iou).sum())} of {len(gap.anchors)} below)")
    return None


def _iou_cxcywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes given as 4 x N centre/size rows; two identical degenerate boxes count as IoU 1."""
    def corners(box: np.ndarray) -> tuple[np.ndarray, ...]:
        half_w, half_h = np.abs(box[2]) / 2, np.abs(box[3]) / 2
        return box[0] - half_w, box[1] - half_h, box[0] + half_w, box[1] + half_h

    ax0, ay0, ax1, ay1 = corners(a)
    bx0, by0, bx1, by1 = corners(b)
    inter = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None) * \
        np.clip(np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None)
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    same = np.abs(a - b).max(axis=0) <= 1e-3
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), np.where(same, 1.0, 0.0))
