"""int8 as a deployment choice: the variant is built and evaluated, the registry records both variants, the
policy (max_int8_map_loss) picks what the model component ships, and the edge runtime verifies what it gets."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import boto3
import dagster as dg
import pytest

from deployment_fixtures import ThreadDevice, register_model, wheel_bundle  # noqa: F401
from edge_fixtures import mosquitto, sample_images, tiny_models  # noqa: F401
from edge_runtime.models import load_verified_model
from model_fixtures import Chain, materialization, materialize_chain, resources, trained_chain
from tagqa_assets.contracts.edge import DEPLOYED, Release, component_key
from tagqa_assets.contracts.keys import REGISTRY_PREFIX
from tagqa_assets.contracts.models import (APPROVED, COMMIT_FILE, FP32, INT8, INT8_MODEL_CARD_FILE, INT8_ONNX_FILE,
                                           METRICS_FILE, ONNX_FILE, ModelVersion, model_key)
from tagqa_assets.datasets.versions import DatasetVersionStore
from tagqa_assets.deployment.assets import edge_component
from tagqa_assets.deployment.components import build_inference_component, build_model_component
from tagqa_assets.deployment.deployer import deploy_release, roll_back
from tagqa_assets.deployment.local_target import LocalDeviceTarget
from tagqa_assets.deployment.precision import shipped_variant
from tagqa_assets.deployment.resources import INFERENCE_TEMPLATE, DeploymentResource
from tagqa_assets.model_catalog.model_files import stage_onnx
from tagqa_assets.model_catalog.registry import LocalModelRegistry, ModelRegistry
from tagqa_assets.model_catalog.resources import ModelRegistryResource
from tagqa_assets.model_catalog.sagemaker import SageMakerModelRegistry, to_properties
from tagqa_assets.partitions import dataset_versions
from tagqa_assets.registry.assets import registered_model
from tagqa_assets.registry.gates import PromotionPolicy, choose_precision
from tagqa_assets.resources import resolve_resources
from tagqa_assets.settings import load_settings
from tagqa_assets.storage import LocalObjectStore, ObjectStore, StoreResource
from tagqa_assets.training.evaluation_asset import model_evaluation
from tagqa_assets.training.quantization import QuantizationFailed, calibration_images, calibration_set, quantize_model_dir

MODEL = "com.tagqa.ScratchModel"


def variants(fp32: float, int8: float | None, *, error: str = "") -> dict:
    """An evaluation's ``variants`` with the given test mAP50-95 (val the same)."""
    def entry(value: float, size: int) -> dict:
        metrics = {"map50": 0.9, "map50_95": value, "precision": 0.8, "recall": 0.7}
        return {"metrics": {"test": metrics, "val": metrics}, "size_bytes": size}
    found = {FP32: entry(fp32, 12_200_000)}
    if error:
        found[INT8] = {"error": error}
    elif int8 is not None:
        found[INT8] = entry(int8, 3_400_000)
    return found


@pytest.mark.parametrize(
    "found, policy, expected, words",
    [
        # the study's loss (-0.002) is well within the default 0.01
        (variants(0.6299, 0.6278), PromotionPolicy(), INT8, "within max_int8_map_loss"),
        # a loss of exactly the limit ships int8 (rounded like the metrics, not 0.010000000000000009)
        (variants(0.5862, 0.5762), PromotionPolicy(), INT8, "loss +0.0100"),
        # one ten-thousandth more does not
        (variants(0.5862, 0.5761), PromotionPolicy(), FP32, "loses more than max_int8_map_loss"),
        # int8 better than fp32: a negative loss, int8
        (variants(0.50, 0.51), PromotionPolicy(), INT8, "loss -0.0100"),
        # a negative limit turns int8 off whatever the numbers
        (variants(0.50, 0.51), PromotionPolicy(max_int8_map_loss=-1.0), FP32, "int8 off"),
        # within the limit but int8 falls below the gate fp32 just clears: the shipped model must pass it
        (variants(0.405, 0.398), PromotionPolicy(gate_threshold=0.40), FP32, "fails the gate"),
        # no int8 variant (could not be built): fp32, saying why
        (variants(0.6, None, error="quantization failed (bad graph)"), PromotionPolicy(), FP32, "bad graph"),
        # an evaluation written before variants existed
        ({}, PromotionPolicy(), FP32, "the evaluation has no int8 variant"),
    ],
)
def test_the_policy_ships_int8_only_within_the_loss_limit(found, policy, expected, words):
    choice = choose_precision(found, policy)
    assert choice.precision == expected and words in choice.reason, choice.reason
    assert len(choice.reason) <= 256, "the reason fits SageMaker's metadata value"


def test_max_int8_map_loss_is_a_setting_wired_into_the_promotion_policy(monkeypatch: pytest.MonkeyPatch):
    assert resolve_resources().promotion_policy.policy().max_int8_map_loss == 0.01
    monkeypatch.setenv("TAGQA_MAX_INT8_MAP_LOSS", "0.025")
    assert resolve_resources(load_settings()).promotion_policy.policy().max_int8_map_loss == 0.025
    monkeypatch.setenv("TAGQA_MAX_INT8_MAP_LOSS", "a lot")
    with pytest.raises(ValueError, match="TAGQA_MAX_INT8_MAP_LOSS='a lot'"):
        load_settings()


def test_quantization_writes_a_smaller_model_the_edge_verifies(tiny_models, tmp_path: Path):
    images = calibration_images(Path(sample_images(tmp_path / "train", 10)[0]).parent, 4)
    assert [p.name for p in images] == ["tag-000.jpg", "tag-002.jpg", "tag-005.jpg", "tag-007.jpg"], "spread, stable"
    out = quantize_model_dir(tiny_models["a"], tmp_path / "int8", images, calibration_set("v0001-x", "train", images))
    card = json.loads((out / "model_card.json").read_text())
    source = json.loads((tiny_models["a"] / "model_card.json").read_text())
    assert card["precision"] == "int8" and card["quantization"].startswith("onnxruntime static QDQ")
    assert card["calibration"]["dataset_version"] == "v0001-x" and card["calibration"]["images"] == 4
    assert card["calibration"]["split"] == "train" and card["model_id"] == source["model_id"]
    assert (out / "model.onnx").stat().st_size < 0.5 * (tiny_models["a"] / "model.onnx").stat().st_size
    # The edge runtime verifies it like any model: digest, signature, blank frame and verification frames.
    model = load_verified_model(out)
    assert model.card.extra["verification_frames"] == source["verification_frames"]
    again = quantize_model_dir(tiny_models["a"], tmp_path / "again", images, calibration_set("v0001-x", "train", images))
    assert (again / "model.onnx").read_bytes() == (out / "model.onnx").read_bytes(), "the same images, the same file"


def test_quantization_names_what_it_cannot_use(tiny_models, tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(QuantizationFailed, match="empty: no calibration images"):
        calibration_images(tmp_path / "empty", 8)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(QuantizationFailed, match="broken.jpg: calibration image cannot be read"):
        quantize_model_dir(tiny_models["a"], tmp_path / "out", [tmp_path / "broken.jpg"])


# ------------------------------------------------------------------ registry backends, component (no training)
def _registry(kind: str, store: ObjectStore, request: pytest.FixtureRequest, name: str) -> ModelRegistry:
    if kind == "local":
        return LocalModelRegistry(store)
    client = boto3.client("sagemaker", endpoint_url=request.getfixturevalue("moto_endpoint"), region_name="us-east-1")
    return SageMakerModelRegistry(client, f"tagqa-int8-{name}")


@pytest.mark.parametrize("backend", ["local", "sagemaker"])
def test_both_registry_backends_record_both_variants(backend: str, tmp_path: Path, request: pytest.FixtureRequest):
    registry = _registry(backend, LocalObjectStore(tmp_path / "store"), request, tmp_path.name[-12:].replace("_", "-"))
    found = variants(0.6299, 0.6278)
    choice = choose_precision(found, PromotionPolicy())
    entry = registry.register(ModelVersion(
        version=0, model_id="v0001-aaaaaaaa-11111111", dataset_version="v0001-aaaaaaaa", status=APPROVED,
        created_at="", metrics={"test": found[FP32]["metrics"]["test"]}, training_config={"epochs": 60},
        config_sha256="ab" * 32, code_version="unknown", artifacts={"onnx_int8": "s3://b/models/x/int8/model.onnx"},
        precision=choice.precision, precision_reason=choice.reason, variants=found))
    for read in (entry, registry.get(entry.version), registry.set_status(entry.version, APPROVED, "again")):
        assert read.precision == INT8 and read.precision_reason == choice.reason
        assert read.variants == found and read.artifacts["onnx_int8"].endswith("int8/model.onnx")
    if backend == "sagemaker":
        props = registry.client.describe_model_package(ModelPackageName=entry.external_id)["CustomerMetadataProperties"]
        assert props["tagqa.precision"] == INT8 and json.loads(props["tagqa.variant.int8"]) == found[INT8]
        assert len(props) <= 50, "SageMaker keeps at most 50 metadata entries"


def test_models_list_says_what_each_version_ships(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture):
    from tagqa_assets.cli import main

    store = LocalObjectStore(tmp_path / "store")
    monkeypatch.setenv("TAGQA_STORE", str(store.root))
    monkeypatch.chdir(tmp_path)
    found = variants(0.6299, 0.6278)
    for number, precision in enumerate((FP32, INT8), start=1):
        LocalModelRegistry(store).register(ModelVersion(
            0, f"v000{number}-aaaaaaaa-1111111{number}", f"v000{number}-aaaaaaaa", APPROVED, "", {}, {}, "", "unknown",
            {}, precision=precision, variants=found))
    assert main(["models", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    column = lines[0].split().index("precision")
    assert [line.split()[column] for line in lines[1:]] == [FP32, INT8]


def test_a_version_cannot_ship_a_variant_it_does_not_record():
    with pytest.raises(ValueError, match="ships int8 but records no such variant"):
        ModelVersion(1, "m", "d", APPROVED, "", {}, {}, "", "", {}, precision=INT8)


def test_a_registration_with_a_real_training_config_fits_sagemaker_metadata():
    from tagqa_trainer.params import TrainingParams

    found = variants(0.629912, 0.627834)
    entry = ModelVersion(
        version=1, model_id="v0001-aaaaaaaa-11111111", dataset_version="v0001-aaaaaaaa", status=APPROVED,
        created_at="2026-12-03T00:00:00.000000Z", metrics={split: found[FP32]["metrics"][split] for split in ("test", "val")},
        training_config={**TrainingParams().to_dict(), "start_weights": "scratch"}, config_sha256="ab" * 32,
        code_version="c0ffee" * 6 + "abcd", status_reason="no champion yet", updated_at="2026-12-03T00:00:00.000000Z",
        artifacts={name: f"s3://bucket/tagqa/models/v0001-aaaaaaaa-11111111/{name}" for name in
                   ("model_dir", "weights", "onnx", "onnx_int8", "model_card", "metrics", "commit", "evaluation")},
        precision=INT8, precision_reason=choose_precision(found, PromotionPolicy()).reason, variants=found)
    assert len(to_properties(entry)) <= 50


def _store_int8(store: ObjectStore, model_id: str, work: Path) -> dict:
    """Add the int8 variant of ``source`` to ``models/<model_id>/`` as ``model_evaluation`` does; the
    commit record hashes it. Returns the evaluation's ``variants``."""
    images = sample_images(work / "train", 6)
    source = stage_onnx(store, model_id, work / "fp32")
    out = quantize_model_dir(source, work / "int8", images, calibration_set("ds1", "train", images))
    store.put_bytes(model_key(model_id, INT8_ONNX_FILE), (out / "model.onnx").read_bytes())
    store.put_json(model_key(model_id, INT8_MODEL_CARD_FILE), json.loads((out / "model_card.json").read_text()))
    record = store.get_json(model_key(model_id, COMMIT_FILE))
    record["files"][INT8_ONNX_FILE] = hashlib.sha256((out / "model.onnx").read_bytes()).hexdigest()
    store.put_json(model_key(model_id, COMMIT_FILE), record)
    found = variants(0.5, 0.497)
    found[INT8]["best_scores"] = {"test": [0.2 + 0.01 * i for i in range(21)]}  # each variant's own drift baseline
    store.put_json(model_key(model_id, METRICS_FILE), {"metrics": {"test": found[FP32]["metrics"]["test"]},
                                                       "best_scores": {"test": [0.5 + 0.02 * i for i in range(21)]},
                                                       "variants": found})
    return found


@pytest.mark.parametrize("limit, shipped", [(0.01, INT8), (0.001, FP32)])
def test_the_component_ships_the_chosen_variant_and_the_device_verifies_it(tiny_models, tmp_path: Path,
                                                                          limit: float, shipped: str):
    store = LocalObjectStore(tmp_path / "store")
    registry = LocalModelRegistry(store)
    bare = register_model(store, registry, tiny_models["a"], "ds1-aaaaaaaa")  # to get the model directory
    found = _store_int8(store, bare.model_id, tmp_path)
    choice = choose_precision(found, PromotionPolicy(max_int8_map_loss=limit))  # loss 0.003
    assert choice.precision == shipped
    entry = registry.register(ModelVersion.from_dict({
        **bare.to_dict(), "precision": choice.precision, "precision_reason": choice.reason, "variants": found}))
    built = build_model_component(store, entry, name=MODEL, author="tagqa")
    assert built.build["precision"] == shipped
    device = tmp_path / "device"  # Greengrass puts a component's artifacts side by side
    device.mkdir()
    for name, (key, _) in built.artifacts.items():
        (device / name).write_bytes(store.get_bytes(key))
    expected = store.get_bytes(model_key(entry.model_id, INT8_ONNX_FILE if shipped == INT8 else ONNX_FILE))
    assert (device / "model.onnx").read_bytes() == expected
    model = load_verified_model(device)  # digest, signature, blank frame and the verification frames
    card = model.card.extra
    assert card["precision"] == shipped and card["precision_reason"] == choice.reason
    assert card["evaluation"]["precision"] == shipped
    assert card["evaluation"]["metrics"]["map50_95"] == found[shipped]["metrics"]["test"]["map50_95"]
    # The device's automatic capture band follows the shipped variant's own test scores.
    assert card["evaluation"]["best_score_percentiles"] == pytest.approx(
        [0.2 + 0.01 * i for i in range(21)] if shipped == INT8 else [0.5 + 0.02 * i for i in range(21)])
    assert ("calibration" in card) is (shipped == INT8)
    if shipped == INT8:
        assert card["calibration"] == {**card["calibration"], "dataset_version": "ds1", "split": "train", "images": 6}
    assert model.card.model_version == str(entry.version) and model.card.model_id == entry.model_id


def _entry(precision: str) -> ModelVersion:
    found = variants(0.5, 0.497)
    return ModelVersion(3, "m", "d", APPROVED, "", {}, {}, "", "", {}, precision=precision,
                        precision_reason=choose_precision(found, PromotionPolicy()).reason, variants=found)


CUDA, TRT, OPENVINO, CPU = ("CUDAExecutionProvider", "TensorrtExecutionProvider", "OpenVINOExecutionProvider",
                            "CPUExecutionProvider")


@pytest.mark.parametrize("precision, providers, setting, shipped, registry_choice", [
    (INT8, (CUDA, CPU), "auto", FP32, False),
    (INT8, (TRT, CUDA, CPU), "auto", FP32, False),
    (INT8, (OPENVINO, CUDA, CPU), "auto", INT8, True),  # the first provider is the one the device means to use
    (INT8, (CPU,), "auto", INT8, True),
    (INT8, (), "auto", INT8, True),  # the recipe's default: CPU
    (INT8, (CUDA, CPU), "registry", INT8, True),
    (INT8, (CPU,), "fp32", FP32, False),
    (FP32, (CUDA, CPU), "auto", FP32, True),
    (FP32, (CPU,), "registry", FP32, True),
])
def test_the_deployment_ships_fp32_where_the_providers_want_it(precision: str, providers: tuple, setting: str,
                                                               shipped: str, registry_choice: bool):
    entry = _entry(precision)
    variant = shipped_variant(entry, providers, setting)
    assert (variant.precision, variant.registry_choice) == (shipped, registry_choice)
    if registry_choice:
        assert variant.reason == entry.precision_reason
    else:
        assert variant.reason.startswith("ships fp32, not the registry's int8: ")
        assert (providers[0] in variant.reason) is (setting == "auto")


def test_the_deployment_precision_follows_the_deployment_settings(monkeypatch: pytest.MonkeyPatch):
    entry = _entry(INT8)
    assert resolve_resources().deployment.shipped_variant(entry).precision == INT8  # defaults: auto, CPU
    monkeypatch.setenv("TAGQA_EDGE_PROVIDERS", f"{CUDA},{CPU}")
    assert resolve_resources(load_settings()).deployment.shipped_variant(entry).precision == FP32
    monkeypatch.setenv("TAGQA_EDGE_PRECISION", "registry")
    assert resolve_resources(load_settings()).deployment.shipped_variant(entry).precision == INT8
    monkeypatch.delenv("TAGQA_EDGE_PROVIDERS")
    monkeypatch.delenv("TAGQA_EDGE_PRECISION")
    by_configuration = DeploymentResource(device_configuration=json.dumps({"providers": [
        {"name": TRT, "options": {"trt_fp16_enable": True}}, CPU]}))
    assert by_configuration.shipped_variant(entry).precision == FP32
    with pytest.raises(ValueError, match="TAGQA_EDGE_PRECISION='half' is not one of auto, registry, fp32"):
        DeploymentResource(edge_precision="half").shipped_variant(entry)


def test_an_nvidia_deployment_gets_the_fp32_component_beside_the_int8_one(tiny_models, wheel_bundle,
                                                                          tmp_path: Path):
    store_root = tmp_path / "store"
    store = LocalObjectStore(store_root)
    registry = LocalModelRegistry(store)
    bare = register_model(store, registry, tiny_models["a"], "ds1-aaaaaaaa")
    found = _store_int8(store, bare.model_id, tmp_path)
    choice = choose_precision(found, PromotionPolicy())
    assert choice.precision == INT8
    entry = registry.register(ModelVersion.from_dict({
        **bare.to_dict(), "precision": choice.precision, "precision_reason": choice.reason, "variants": found}))

    def component(providers: str) -> dict:
        result = dg.materialize([edge_component], resources={
            "store": StoreResource(root=str(store_root)), "model_registry": ModelRegistryResource(),
            "deployment": DeploymentResource(edge_providers=providers, edge_wheels_dir=str(wheel_bundle.directory))},
            run_config={"ops": {"edge_component": {"config": {"model_version": entry.version}}}})
        return materialization(result, "edge_component")

    nvidia = component(f"{CUDA},{CPU}")
    assert nvidia["model_component"] == f"{MODEL}@{entry.version}.1.0"
    assert nvidia["precision"] == FP32 and CUDA in nvidia["precision_reason"]
    cpu = component(CPU)
    assert cpu["model_component"] == f"{MODEL}@{entry.version}.0.0"
    assert cpu["precision"] == INT8 and cpu["precision_reason"] == choice.reason
    assert component(f"{CUDA},{CPU}")["model_component"] == nvidia["model_component"]  # reused

    for version, precision, onnx in ((f"{entry.version}.1.0", FP32, ONNX_FILE),
                                     (f"{entry.version}.0.0", INT8, INT8_ONNX_FILE)):
        device = tmp_path / f"device-{version}"
        device.mkdir()
        build = store.get_json(component_key(MODEL, version, "build.json"))
        assert build["precision"] == precision and build.get("registry_precision", INT8) == INT8
        for name in build["artifacts"]:
            (device / name).write_bytes(store.get_bytes(component_key(MODEL, version, name)))
        assert (device / "model.onnx").read_bytes() == store.get_bytes(model_key(entry.model_id, onnx))
        model = load_verified_model(device)
        card = model.card.extra
        assert card["precision"] == precision and card["evaluation"]["precision"] == precision
        assert card["evaluation"]["metrics"]["map50_95"] == found[precision]["metrics"]["test"]["map50_95"]
        assert ("calibration" in card) is (precision == INT8)
        assert model.card.model_version == str(entry.version)


@pytest.mark.slow  # a device thread swapping models
def test_rolling_back_the_fp32_variant_returns_to_int8_and_leaves_the_version_approved(
        tiny_models, wheel_bundle, mosquitto, tmp_path: Path):  # noqa: F811
    store = LocalObjectStore(tmp_path / "store")
    registry = LocalModelRegistry(store)
    bare = register_model(store, registry, tiny_models["a"], "ds1-aaaaaaaa")
    found = _store_int8(store, bare.model_id, tmp_path)
    entry = registry.register(ModelVersion.from_dict({
        **bare.to_dict(), "precision": INT8, "precision_reason": "ships int8: test", "variants": found}))
    inference = build_inference_component(store, wheel_bundle, name="com.tagqa.EdgeInference", author="tagqa",
                                          template=INFERENCE_TEMPLATE).ref
    releases = {}
    for precision, providers in ((INT8, CPU), (FP32, f"{CUDA},{CPU}")):
        variant = DeploymentResource(edge_providers=providers).shipped_variant(entry)
        model = build_model_component(store, entry, name=MODEL, author="tagqa", variant=variant).ref
        releases[precision] = Release(entry.version, entry.model_id, entry.dataset_version, model, inference)
    root = tmp_path / "devices"
    device = ThreadDevice(root, "line-1", mosquitto.port, tmp_path / "camera")
    target = LocalDeviceTarget(store, devices_root=root, device_ids=["line-1"], broker=f"127.0.0.1:{mosquitto.port}",
                               timeout_seconds=30)
    try:  # the device here has no CUDA: it verifies both variants on CPU, which is what this test needs
        for precision in (INT8, FP32):
            assert deploy_release(target, store, registry, releases[precision], run_id=precision).record.status == DEPLOYED
            assert device.runtime.slot.current.precision == precision
        back = roll_back(target, store, registry, run_id="cli", reason="fp32 was slower than hoped")
        assert back.record.release == releases[INT8] and device.runtime.slot.current.precision == INT8
        assert back.marked is None and registry.get(entry.version).status == APPROVED
    finally:
        device.stop()
    assert device.error is None


def test_a_tampered_int8_file_is_refused(tiny_models, tmp_path: Path):
    store = LocalObjectStore(tmp_path / "store")
    registry = LocalModelRegistry(store)
    bare = register_model(store, registry, tiny_models["a"], "ds1-aaaaaaaa")
    found = _store_int8(store, bare.model_id, tmp_path)
    entry = registry.register(ModelVersion.from_dict({**bare.to_dict(), "precision": INT8, "variants": found}))
    store.put_bytes(model_key(entry.model_id, INT8_ONNX_FILE), (tiny_models["a"] / "model.onnx").read_bytes())
    with pytest.raises(ValueError, match="int8/model.onnx has sha256 .* but its model card says"):
        build_model_component(store, entry, name=MODEL, author="tagqa")


# ------------------------------------------------------------------ the real chain (trains: slow)
@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    return trained_chain(tmp_path_factory)


def test_evaluation_builds_stores_and_evaluates_the_int8_variant(chain: Chain):
    metadata = materialization(chain.result, "model_evaluation")
    document = chain.store.get_json(metadata["evaluation_key"])
    fp32, int8 = document["variants"][FP32], document["variants"][INT8]
    assert fp32["metrics"] == document["metrics"], "fp32 is the export the evaluation always measured"
    assert set(int8["metrics"]) == {"test", "val"} and int8["size_bytes"] < 0.5 * fp32["size_bytes"]
    card = chain.store.get_json(model_key(chain.model_id, INT8_MODEL_CARD_FILE))
    manifest = DatasetVersionStore(chain.store).manifest(chain.version)
    assert card["precision"] == "int8" and card["calibration"]["dataset_version"] == chain.version
    assert card["calibration"]["split"] == "train" and card["calibration"] == int8["calibration"]
    assert card["calibration"]["images"] == (manifest["split"] == "train").sum(), "every training image (< 64)"
    record = chain.store.get_json(model_key(chain.model_id, COMMIT_FILE))
    assert record["files"][INT8_ONNX_FILE] == card["onnx_sha256"] == int8["onnx_sha256"], "committed with the model"
    # Shown in the UI: both variants' numbers and sizes.
    assert metadata["int8_test_map50_95"] == int8["metrics"]["test"]["map50_95"]
    assert metadata["fp32_test_map50"] == fp32["metrics"]["test"]["map50"]
    rows = {row.data["precision"]: row.data for row in metadata["precision_variants"].records}
    assert set(rows) == {FP32, INT8} and rows[INT8]["size_mb"] < rows[FP32]["size_mb"]
    registered = materialization(chain.result, "registered_model")
    expected = choose_precision(document["variants"], PromotionPolicy(gate_threshold=0.0))
    assert registered["precision"] == expected.precision and registered["precision_reason"] == expected.reason
    entry = LocalModelRegistry(chain.store).find_model(chain.model_id)
    assert set(entry.variants) == {FP32, INT8} and entry.variants[INT8]["metrics"] == int8["metrics"]


@pytest.mark.parametrize("backend, limit, shipped", [("local", 1.0, INT8), ("sagemaker", -1.0, FP32)])
def test_the_policy_decides_what_the_trained_model_ships(chain: Chain, tmp_path: Path, request: pytest.FixtureRequest,
                                                         backend: str, limit: float, shipped: str):
    shutil.copytree(chain.root / "store", tmp_path / "store")
    store = LocalObjectStore(tmp_path / "store")
    for info in list(store.list_objects(REGISTRY_PREFIX)):
        store.delete(info.key)
    resources_ = resources(store.root, tmp_path / "work", gate_threshold=0.0, approve_without_champion="true",
                           max_int8_map_loss=limit)
    if backend == "sagemaker":
        resources_["model_registry"] = ModelRegistryResource(
            backend="sagemaker", sagemaker_endpoint_url=request.getfixturevalue("moto_endpoint"), aws_region="us-east-1",
            sagemaker_model_package_group=f"tagqa-int8-{tmp_path.name[-12:].replace('_', '-')}")
    result = materialize_chain(chain.instance, chain.version, resources_, selection=[registered_model])
    metadata = materialization(result, "registered_model")
    entry = resources_["model_registry"].open(store).find_model(chain.model_id)
    assert entry.status == APPROVED and entry.precision == shipped == metadata["precision"]
    assert set(entry.variants) == {FP32, INT8} and entry.variants[INT8]["size_bytes"] > 0
    assert "int8_map50_95_loss" in metadata and metadata["registry"] == backend
    built = build_model_component(store, entry, name=MODEL, author="tagqa")
    device = tmp_path / "device"
    device.mkdir()
    for name, (key, _) in built.artifacts.items():
        (device / name).write_bytes(store.get_bytes(key))
    model = load_verified_model(device)
    assert model.card.extra["precision"] == shipped
    stored = INT8_ONNX_FILE if shipped == INT8 else ONNX_FILE
    assert model.card.onnx_sha256 == hashlib.sha256(store.get_bytes(model_key(chain.model_id, stored))).hexdigest()
    assert ("calibration" in model.card.extra) is (shipped == INT8)


def test_a_model_committed_before_int8_variants_keeps_shipping_fp32(chain: Chain, tmp_path: Path):
    # Its directory is immutable once committed: re-evaluation records why there is no int8 variant,
    # and the registry ships fp32 saying so.
    shutil.copytree(chain.root / "store", tmp_path / "store")
    store = LocalObjectStore(tmp_path / "store")
    for info in list(store.list_objects(REGISTRY_PREFIX)) + list(store.list_objects(model_key(chain.model_id, "int8/"))):
        store.delete(info.key)
    # Its own instance, so the session chain's latest evaluation stays the one in the chain's store.
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(dataset_versions.name, [chain.version])
    instance.report_runless_asset_event(dg.AssetMaterialization(
        "onnx_model", partition=chain.version, metadata={"handoff": chain.model_id}))
    result = materialize_chain(instance, chain.version, resources(store.root, tmp_path / "work", gate_threshold=0.0),
                               selection=[model_evaluation, registered_model])
    evaluation = store.get_json(materialization(result, "model_evaluation")["evaluation_key"])
    assert "committed without an int8 variant" in evaluation["variants"][INT8]["error"]
    assert not store.exists(model_key(chain.model_id, INT8_ONNX_FILE)), "a committed model is not changed"
    entry = LocalModelRegistry(store).find_model(chain.model_id)
    assert entry.precision == FP32 and "committed without an int8 variant" in entry.precision_reason
    assert set(entry.variants) == {FP32}
