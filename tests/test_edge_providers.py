"""Execution providers (issue 18.1): an ordered list from the device configuration, a verified fallback.

OpenVINO runs for real, through the ``onnxruntime-ep-openvino`` plugin (the ``edge-openvino`` extra), on
an Intel CPU. The plugin takes Intel hardware only: on another CPU (CI machines are Intel or AMD) the
tests that need it to serve are skipped with that reason, and the others check its refusal and the
fallback it causes. A provider giving wrong output is a real ONNX Runtime session of an
altered model, built by an injected session factory; an unavailable provider is one this
ONNX Runtime build does not have (CUDA).
"""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from edge_fixtures import (MqttCollector, copy_model, mosquitto, openvino_device_here, sample_images,  # noqa: F401
                           tiny_models)
from edge_runtime.config_sources import FileConfigSource
from edge_runtime.device_config import KNOWN_PROVIDERS, DeviceConfig, DeviceConfigError, ProviderSpec, parse_providers
from edge_runtime.models import ModelRejected, load_verified_model
from edge_runtime.providers import (OPENVINO_CPU_FP32, OnnxRuntimeSessions, ProviderCheck, compare_outputs,
                                    default_workers, effective_options)
from edge_runtime.publishers import MqttPublisher
from edge_runtime.service import EdgeRuntime

OPENVINO, CPU, CUDA = "OpenVINOExecutionProvider", "CPUExecutionProvider", "CUDAExecutionProvider"
# fp32 inference: OpenVINO's CPU plugin runs bf16 on CPUs with AMX / AVX512-BF16 unless told otherwise.
OPENVINO_FP32 = OPENVINO_CPU_FP32
OPENVINO_HERE = openvino_device_here()
needs_openvino = pytest.mark.skipif(not OPENVINO_HERE, reason="the OpenVINO plugin offers no device on this CPU "
                                    "(Intel hardware only); test_openvino_without_a_device_is_refused_with_why covers it")
# What the provider walk ends on with [CUDA, OpenVINO, CPU] here, and what it refuses on the way.
SERVED, REFUSED = (OPENVINO, [CUDA]) if OPENVINO_HERE else (CPU, [CUDA, OPENVINO])


def providers(*entries) -> tuple[ProviderSpec, ...]:
    return parse_providers(list(entries), "test providers")


def _altered(model_dir: Path, *, score_shift: float = 0.0, box_scale: float = 1.0) -> bytes:
    """The model's ONNX with its output changed: class scores + ``score_shift``, boxes' size x ``box_scale``."""
    graph_model = onnx.load(str(model_dir / "model.onnx"))
    graph = graph_model.graph
    output = graph.output[0].name
    for node in graph.node:
        node.output[:] = ["raw" if o == output else o for o in node.output]
    rows = graph.output[0].type.tensor_type.shape.dim[1].dim_value
    scale = np.ones((1, rows, 1), np.float32)
    scale[0, 2:4] = box_scale
    shift = np.zeros((1, rows, 1), np.float32)
    shift[0, 4:] = score_shift
    graph.initializer.extend([numpy_helper.from_array(scale, "alter_scale"), numpy_helper.from_array(shift, "alter_shift")])
    graph.node.extend([helper.make_node("Mul", ["raw", "alter_scale"], ["scaled"]),
                       helper.make_node("Add", ["scaled", "alter_shift"], [output])])
    return graph_model.SerializeToString()


class WrongOnOpenVino(OnnxRuntimeSessions):
    """The real factory, except that OpenVINO sessions are built from an altered model (a provider whose
    kernels compute something else: the check must catch it)."""

    def __init__(self, altered: bytes) -> None:
        super().__init__()
        self.altered = altered

    def create(self, model, provider, options):
        return super().create(self.altered if provider.name == OPENVINO else model, provider, options)


@needs_openvino
def test_openvino_is_chosen_and_matches_cpu_on_a_real_model(tiny_models) -> None:
    model = load_verified_model(tiny_models["a"], providers=providers(OPENVINO_FP32, CPU))
    assert model.provider == OPENVINO and model.provider_refusals == ()
    assert model.session.get_providers()[0] == OPENVINO, "the session really runs on OpenVINO"
    cpu = load_verified_model(tiny_models["a"])
    assert cpu.provider == CPU
    frame = np.random.default_rng(0).random((1, 3, 128, 128), dtype=np.float32)
    assert compare_outputs(cpu.infer(frame), model.infer(frame), ProviderCheck()) is None


def test_openvino_without_a_device_is_refused_with_why(tiny_models) -> None:
    """On a CPU the plugin does not take, OpenVINO is refused as unavailable, naming the plugin and the CPU."""
    model = load_verified_model(tiny_models["a"], providers=providers(OPENVINO_FP32, CPU))
    if OPENVINO_HERE:
        assert model.provider == OPENVINO and model.provider_refusals == ()
    else:
        assert model.provider == CPU
        (name, why), = model.provider_refusals
        assert name == OPENVINO and "not available" in why and "registered but offers no device" in why
        assert "Intel CPUs, GPUs and NPUs only" in why and "this CPU: " in why
        assert "install onnxruntime-openvino in place of onnxruntime" in why


def test_an_unavailable_provider_falls_back_in_order(tiny_models) -> None:
    model = load_verified_model(tiny_models["a"], providers=providers(CUDA, OPENVINO_FP32, CPU))
    assert model.provider == SERVED
    assert [name for name, _ in model.provider_refusals] == REFUSED
    assert "not available" in model.provider_refusals[0][1] and "onnxruntime-gpu" in model.provider_refusals[0][1]


@needs_openvino
@pytest.mark.parametrize("alteration, reason", [
    ({"score_shift": 0.05}, r"scores differ from CPU's by up to 0\.05"),
    ({"box_scale": 1.05}, r"overlaps CPU's with IoU 0\.9"),
])
def test_a_provider_with_wrong_output_is_refused_and_the_next_is_used(tiny_models, alteration, reason) -> None:
    sessions = WrongOnOpenVino(_altered(tiny_models["a"], **alteration))
    model = load_verified_model(tiny_models["a"], providers=providers(OPENVINO_FP32, CPU), sessions=sessions)
    assert model.provider == CPU and model.session.get_providers()[0] == CPU
    (name, why), = model.provider_refusals
    assert name == OPENVINO and "on a blank frame" in why
    assert re.search(reason, why), why
    with pytest.raises(ModelRejected, match=rf"no execution provider of \['{OPENVINO}'\] passed: {OPENVINO}: on"):
        load_verified_model(tiny_models["a"], providers=providers(OPENVINO_FP32), sessions=sessions)


class CudaWithoutItsLibraries(OnnxRuntimeSessions):
    """CUDA as onnxruntime-gpu lists it when CUDA's libraries do not load: available, yet the session ONNX Runtime
    builds runs on CPU (seen on the H200 with libcublasLt.so.13 off the loader's path; docs/benchmarks.md)."""

    def available(self, wanted):
        return super().available(wanted) | {CUDA}

    def create(self, model, provider, options):
        return super().create(model, ProviderSpec(CPU) if provider.name == CUDA else provider, options)


def test_a_provider_onnx_runtime_leaves_out_is_refused_with_what_to_check(tiny_models) -> None:
    model = load_verified_model(tiny_models["a"], providers=providers(CUDA, CPU), sessions=CudaWithoutItsLibraries())
    assert model.provider == CPU
    (name, why), = model.provider_refusals
    assert name == CUDA and "did not enable it (the session runs on ['CPUExecutionProvider'])" in why
    assert "onnxruntime-gpu[cuda,cudnn]" in why and "ONNX Runtime logged which one" in why


@pytest.mark.parametrize("entries, cpus, workers", [
    ([CPU], 16, 2), ([CPU], 1, 1), ([OPENVINO_FP32, CPU], 16, 2),
    ([CUDA, CPU], 16, 4), ([CUDA, CPU], 2, 2), ([{"name": "TensorrtExecutionProvider"}, CUDA, CPU], 8, 4),
    ([CPU, CUDA], 16, 2),
])
def test_default_workers_follow_the_first_provider(entries, cpus, workers) -> None:
    assert default_workers(providers(*entries), cpus) == workers


@needs_openvino
def test_the_check_tolerances_are_configurable(tiny_models) -> None:
    sessions = WrongOnOpenVino(_altered(tiny_models["a"], score_shift=0.05))
    loose = ProviderCheck(min_iou=0.99, score_tolerance=0.06)
    model = load_verified_model(tiny_models["a"], providers=providers(OPENVINO_FP32, CPU), sessions=sessions,
                                check=loose)
    assert model.provider == OPENVINO


def test_a_model_fault_is_a_model_fault_whatever_the_providers(tiny_models, tmp_path: Path) -> None:
    """The model is judged on CPU: a bad card is refused as before, not blamed on the providers."""
    model_dir = copy_model(tiny_models["a"], tmp_path / "m")
    card = json.loads((model_dir / "model_card.json").read_text())
    (model_dir / "model_card.json").write_text(json.dumps({**card, "imgsz": 160}))
    with pytest.raises(ModelRejected, match="input is 128x128 but the model card says imgsz 160"):
        load_verified_model(model_dir, providers=providers(OPENVINO_FP32, CPU))


def test_provider_lists_are_validated_with_the_key_named() -> None:
    config = DeviceConfig.from_mapping({"providers": [OPENVINO_FP32, "CPUExecutionProvider"],
                                        "providerCheckIou": 0.95}, source="device.json")
    assert [p.name for p in config.providers] == [OPENVINO, CPU] and config.provider_check_iou == 0.95
    assert config.to_json_dict()["providers"] == [OPENVINO_FP32, CPU]
    assert DeviceConfig.from_mapping(config.to_json_dict(), source="again") == config
    assert DeviceConfig().providers == (ProviderSpec(CPU),), "CPU only unless configured"
    for bad, message in [
        (["OpenVinoExecutionProvider"], r"device.json: 'providers'\[0\] names unknown execution provider "
                                        r"'OpenVinoExecutionProvider' \(did you mean 'OpenVINOExecutionProvider'\?\)"),
        ([], r"'providers' must be a non-empty list"),
        ([CPU, CPU], r"'providers'\[1\] repeats"),
        ([{"name": CUDA, "options": ["device_id"]}], r"'providers'\[0\] 'options' must be an object"),
        ([{"name": CUDA, "option": {}}], r"'providers'\[0\] must be a provider name or"),
    ]:
        with pytest.raises(DeviceConfigError, match=message):
            DeviceConfig.from_mapping({"providers": bad}, source="device.json")
    with pytest.raises(DeviceConfigError, match="'providerCheckIou' must be above 0"):
        DeviceConfig.from_mapping({"providerCheckIou": 0}, source="device.json")


def test_every_provider_onnxruntime_knows_is_a_known_name() -> None:
    import onnxruntime as ort

    assert set(ort.get_all_providers()) - {"AzureExecutionProvider"} <= set(KNOWN_PROVIDERS)


def test_tensorrt_keeps_its_engines_in_the_state_folder(tmp_path: Path) -> None:
    """The Jetson code path: engine and timing caches default to the device's state folder; fp16 is an option."""
    spec = ProviderSpec("TensorrtExecutionProvider", {"trt_fp16_enable": True, "device_id": 0})
    options = effective_options(spec, tmp_path / "provider-cache")
    assert options == {"trt_fp16_enable": "True", "device_id": "0", "trt_engine_cache_enable": "True",
                       "trt_engine_cache_path": str(tmp_path / "provider-cache" / "tensorrt"),
                       "trt_timing_cache_enable": "True",
                       "trt_timing_cache_path": str(tmp_path / "provider-cache" / "tensorrt")}
    assert (tmp_path / "provider-cache" / "tensorrt").is_dir()
    mine = effective_options(ProviderSpec("TensorrtExecutionProvider", {"trt_engine_cache_path": "/data/engines",
                                                                        "trt_engine_cache_enable": "True"}), tmp_path)
    assert mine["trt_engine_cache_path"] == "/data/engines", "the configuration wins"
    assert effective_options(ProviderSpec(CUDA, {"device_id": 1}), tmp_path) == {"device_id": "1"}


@needs_openvino
def test_the_agreement_benchmark_compares_a_provider_with_cpu_over_an_image_set(tiny_models, tmp_path: Path) -> None:
    """benchmarks/provider_agreement.py (run on a GPU machine for CUDA; docs/benchmarks.md) on OpenVINO here."""
    import subprocess
    import sys

    sample_images(tmp_path / "data" / "images" / "bad", 6)
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "provider_agreement.py"
    done = subprocess.run([sys.executable, str(script), "--model", str(tiny_models["a"]), "--data", str(tmp_path / "data"),
                           "--providers", json.dumps([CUDA, OPENVINO_FP32, CPU])],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = dict(field.split("=", 1) for field in done.stdout.strip().splitlines()[-1].split()[1:])
    assert result["chosen"] == OPENVINO and result["refused"] == CUDA and result["images"] == "6"
    assert result["images_failing_check"] == "0" and float(result["max_score_gap"]) <= 0.01
    assert float(result["min_candidate_iou"]) >= 0.99
    assert f"refused {CUDA}: not available" in done.stdout


def test_verify_model_command_takes_providers(tiny_models) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "edge_runtime", "verify-model", str(tiny_models["a"]),
                           "--providers", json.dumps([CUDA, OPENVINO_FP32, CPU])],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["provider"] == SERVED and [r["provider"] for r in out["providers_refused"]] == REFUSED
    typo = subprocess.run([sys.executable, "-m", "edge_runtime", "verify-model", str(tiny_models["a"]),
                           "--providers", "CPUExecutionProvidr"], capture_output=True, text=True, timeout=60)
    assert typo.returncode == 2 and "--providers[0] names unknown execution provider" in typo.stdout


@needs_openvino
@pytest.mark.slow  # seconds of waiting for a reload: in make test, not the quick tier
def test_the_runtime_reports_its_provider_in_health_and_every_result_and_switches_on_reconfiguration(
        mosquitto, tiny_models, tmp_path: Path) -> None:  # noqa: F811
    sample_images(tmp_path / "camera", 4)
    config_file = tmp_path / "device.json"
    settings = {"deviceId": "line-1", "modelDir": str(tiny_models["a"]), "source": f"loop:{tmp_path / 'camera'}",
                "stateDir": str(tmp_path / "state"), "frameIntervalSeconds": 0.03, "healthIntervalSeconds": 0.5,
                "providers": [CUDA, OPENVINO_FP32, CPU]}
    config_file.write_text(json.dumps(settings))
    collector = MqttCollector(mosquitto.port, ["tagqa/line-1/detections", "tagqa/line-1/health"])
    runtime = EdgeRuntime(config_source=FileConfigSource(config_file), overrides={}, seed=1,
                          publisher_factory=lambda c: MqttPublisher("127.0.0.1", mosquitto.port, "edge-line-1"))
    thread = threading.Thread(target=runtime.run, daemon=True)
    thread.start()
    try:
        first = collector.wait_for("tagqa/line-1/detections", lambda m: len(m) >= 5)
        assert {r["provider"] for r in first} == {OPENVINO}
        health = collector.wait_for("tagqa/line-1/health", lambda m: m and m[-1]["frames"] > 0)[-1]
        assert health["model"]["provider"] == OPENVINO and health["status"] == "ok"
        assert [r["provider"] for r in health["model"]["providers_refused"]] == [CUDA]
        tmp = config_file.with_suffix(".tmp")  # the device is told to run on CPU only: reload, verify, swap
        tmp.write_text(json.dumps({**settings, "providers": [CPU]}))
        tmp.replace(config_file)
        swapped = collector.wait_for("tagqa/line-1/health", lambda m: m[-1]["model"]["provider"] == CPU)[-1]
        assert swapped["model"]["providers_refused"] == [] and swapped["model_swaps"] == 1
        count = len(collector.json("tagqa/line-1/detections"))
        # Frames already read when the swap landed finish on the model they were bound to.
        later = collector.wait_for("tagqa/line-1/detections", lambda m: len(m) >= count + 10)[count + 5:]
        assert {r["provider"] for r in later} == {CPU}
    finally:
        runtime.request_stop()
        thread.join(30)
        collector.close()
    assert not thread.is_alive()


def test_the_results_store_keeps_the_provider_and_reads_parts_from_before_it(tmp_path: Path) -> None:
    """A day holding parts written before the provider and precision columns and after them reads, counts and
    compacts."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from tagqa_assets.contracts.results import FRAME_SCHEMA, decode_result, frame_part_key
    from tagqa_assets.monitoring.daily import compact_day, frame_part_keys, local_paths, summarize, unique_frames
    from tagqa_assets.storage import LocalObjectStore

    now = datetime(2026, 12, 3, 12, tzinfo=timezone.utc)

    def record(image_id: str, provider: str | None) -> bytes:
        data = {"schema": "tagqa.detection/1", "device": "line-1", "image_id": image_id,
                "timestamp": "2026-12-03T11:00:00.000000Z", "model_id": "m", "model_version": "1",
                "dataset_version": "ds", "detections": [], "best_score": 0.1, "latency_ms": 5.0, "verdict": "ok",
                "image_width": 10, "image_height": 10, "source_name": f"{image_id}.jpg", "captured": None}
        return json.dumps(data if provider is None else {**data, "provider": provider, "precision": "int8"}).encode()

    old_row = decode_result("tagqa/line-1/detections", record("a", None), now).row
    new_row = decode_result("tagqa/line-1/detections", record("b", OPENVINO), now).row
    assert old_row["provider"] is None and new_row["provider"] == OPENVINO and new_row["extra"] is None
    assert old_row["precision"] is None and new_row["precision"] == "int8"
    store = LocalObjectStore(tmp_path / "store")
    old_schema = pa.schema([f for f in FRAME_SCHEMA if f.name not in ("provider", "precision")])  # as written before
    for row, schema in ((old_row, old_schema), (new_row, FRAME_SCHEMA)):
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pylist([{k: row[k] for k in schema.names}], schema=schema), buffer)
        store.put_bytes(frame_part_key(now.date(), "line-1", now), buffer.getvalue())
    with local_paths(store, frame_part_keys(store, now.date())) as paths:
        by_model = summarize(unique_frames(paths))["by_model"]
    assert sorted(by_model["provider"].to_list(), key=str) == [None, OPENVINO]
    assert sorted(by_model["precision"].to_list(), key=str) == [None, "int8"]
    assert compact_day(store, now.date(), now, day_is_over=True) == 2
    (merged,) = frame_part_keys(store, now.date())
    table = pq.read_table(io.BytesIO(store.get_bytes(merged)))
    assert table.schema == FRAME_SCHEMA and sorted(table["provider"].to_pylist(), key=str) == [None, OPENVINO]
    assert sorted(table["precision"].to_pylist(), key=str) == [None, "int8"]


def test_the_deployment_carries_and_validates_the_provider_list(tmp_path: Path) -> None:
    from tagqa_assets.deployment.recipes import RecipeError, validate_recipe
    from tagqa_assets.deployment.resources import INFERENCE_TEMPLATE, DeploymentResource
    from tagqa_assets.storage import LocalObjectStore

    chosen = DeploymentResource(edge_providers=f"{OPENVINO}, {CPU}", device_configuration='{"confThreshold": 0.3}')
    assert chosen.configuration_overrides() == {"confThreshold": 0.3, "providers": [OPENVINO, CPU],
                                                "installExtras": "edge,edge-openvino"}
    target = chosen.open_target(LocalObjectStore(tmp_path / "store"))
    assert target.device_configuration["providers"] == [OPENVINO, CPU], "what the local devices' config gets"
    with_options = DeploymentResource(edge_providers=json.dumps([OPENVINO_FP32, CPU]))
    assert with_options.configuration_overrides()["providers"] == [OPENVINO_FP32, CPU]
    for settings, message in [
        ({"edge_providers": "OpenVinoExecutionProvider"},
         r"TAGQA_EDGE_PROVIDERS\[0\] names unknown execution provider 'OpenVinoExecutionProvider' \(did you mean"),
        ({"edge_providers": "[oops"}, r"TAGQA_EDGE_PROVIDERS is not a valid JSON list"),
        ({"edge_providers": CPU, "device_configuration": json.dumps({"providers": [CPU]})},
         r"TAGQA_EDGE_PROVIDERS and TAGQA_DEVICE_CONFIGURATION's 'providers' both"),
        ({"device_configuration": json.dumps({"providers": ["TensorRTExecutionProvider"]})},
         r"TAGQA_DEVICE_CONFIGURATION: 'providers'\[0\] names unknown execution provider"),
    ]:
        with pytest.raises(ValueError, match=message):
            DeploymentResource(**settings).configuration_overrides()
    import yaml

    recipe = yaml.safe_load(INFERENCE_TEMPLATE.read_text().replace("{COMPONENT_NAME}", "com.tagqa.EdgeInference")
                            .replace("{COMPONENT_VERSION}", "1.0.0").replace("{COMPONENT_AUTHOR}", "tagqa"))
    defaults = recipe["ComponentConfiguration"]["DefaultConfiguration"]
    assert DeviceConfig.from_mapping(defaults, source="recipe").providers == (ProviderSpec(CPU),)
    defaults["providers"] = ["CPUExecutionProvider", "OpenVINOExecutionProviderr"]
    for artifact in recipe["Manifests"][0]["Artifacts"]:
        artifact.update(URI="s3://bucket/greengrass.zip", Digest="A" * 43 + "=", Algorithm="SHA-256")
    with pytest.raises(RecipeError, match=r"'providers'\[1\] names unknown execution provider"):
        validate_recipe(recipe, source="recipe.yaml")


@needs_openvino
def test_openvino_default_precision_is_judged_by_the_check(tiny_models) -> None:
    """OpenVINO's own default: bf16 on a CPU with AMX / AVX512-BF16 (refused, with the option to set), fp32 elsewhere."""
    flags = set(Path("/proc/cpuinfo").read_text().split())
    model = load_verified_model(tiny_models["b"], providers=providers(OPENVINO, CPU))
    if {"amx_bf16", "avx512_bf16"} & flags:
        assert model.provider == CPU
        (name, why), = model.provider_refusals
        assert name == OPENVINO and "INFERENCE_PRECISION_HINT" in why and "CPU's" in why
    else:
        assert model.provider == OPENVINO


def test_run_takes_providers_as_names_or_json() -> None:
    from edge_runtime.__main__ import _overrides, _parser

    for flag, expected in [(f"{OPENVINO},{CPU}", providers(OPENVINO, CPU)),
                           (json.dumps([OPENVINO_FP32, CPU]), providers(OPENVINO_FP32, CPU))]:
        overrides = _overrides(_parser().parse_args(["run", "--providers", flag]))
        assert DeviceConfig.from_mapping(overrides, source="flags").providers == expected
    with pytest.raises(SystemExit):
        _parser().parse_args(["run", "--providers", "[not json"])


def test_openvino_on_cpu_gets_one_stream_per_worker_unless_configured() -> None:
    """Several frame workers share one session: OpenVINO on a CPU gets the throughput hint and a stream per
    worker; keys the configuration sets win, other devices, providers and a single worker are left alone."""
    from edge_runtime.providers import with_concurrency_defaults

    fp32 = ProviderSpec(OPENVINO, {"load_config": {"CPU": {"INFERENCE_PRECISION_HINT": "f32"}}})
    assert with_concurrency_defaults(fp32, 2).options["load_config"] == {"CPU": {
        "PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": "2", "INFERENCE_PRECISION_HINT": "f32"}}
    assert fp32.options["load_config"] == {"CPU": {"INFERENCE_PRECISION_HINT": "f32"}}, "the configuration is not changed"
    assert with_concurrency_defaults(ProviderSpec(OPENVINO), 3).ort_options() == {
        "load_config": '{"CPU":{"PERFORMANCE_HINT":"THROUGHPUT","NUM_STREAMS":"3"}}'}
    mine = ProviderSpec(OPENVINO, {"load_config": json.dumps({"CPU": {"PERFORMANCE_HINT": "LATENCY"}})})
    for unchanged in (mine, ProviderSpec(OPENVINO, {"device_type": "GPU"}), ProviderSpec(CUDA), ProviderSpec(CPU)):
        assert with_concurrency_defaults(unchanged, 2) == unchanged
    assert with_concurrency_defaults(fp32, 1) == fp32


def test_a_refusal_names_the_likely_cause_for_the_model_and_options() -> None:
    """bf16 is the likely cause only where the options do not already ask for f32; an int8 model's is OpenVINO's
    own int8 rounding."""
    from edge_runtime.providers import check_hint

    assert "INFERENCE_PRECISION_HINT" in check_hint(ProviderSpec(OPENVINO), {})
    assert check_hint(parse_providers([OPENVINO_FP32], "t")[0], {}) is None
    assert "int8 kernels" in check_hint(parse_providers([OPENVINO_FP32], "t")[0], {"precision": "int8"})
    assert "trt_fp16_enable" in check_hint(ProviderSpec("TensorrtExecutionProvider"), {})
    assert check_hint(ProviderSpec(CUDA), {}) is None
