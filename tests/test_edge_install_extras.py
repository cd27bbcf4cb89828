"""What the Greengrass component installs follows the provider list: ``installExtras`` in the recipe.

The recipe's Install step runs ``pip install --no-index ... "tagqa[{configuration:/installExtras}]"``
in a cleared venv, then ``tagqa-edge setup-openvino --build {configuration:/openvinoBuild}``;
Greengrass interpolates the component's configuration there (and runs Install again when a
deployment changes it). tagqa's deployment sets ``installExtras`` to ``edge,edge-openvino`` when
the providers name OpenVINO and bundles those wheels (with onnxruntime-openvino on linux x86-64);
the slow tests run the produced Install script in a fresh venv, and the installed runtime then
serves on OpenVINO: through the plugin on Intel hardware, through onnxruntime-openvino elsewhere
or when ``openvinoBuild`` asks for it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from deployment_fixtures import wheel_bundle  # noqa: F401
from edge_fixtures import REPO, openvino_device_here, tiny_models  # noqa: F401
from edge_runtime import __main__ as edge_cli
from edge_runtime.device_config import INSTALL_KEYS, DeviceConfig, DeviceConfigError, parse_providers
from edge_runtime.openvino_setup import bundles_built_in
from edge_runtime.providers import OPENVINO_CPU_FP32
from tagqa_assets.deployment.components import build_inference_component
from tagqa_assets.deployment.recipes import RecipeError, validate_recipe
from tagqa_assets.deployment.resources import INFERENCE_TEMPLATE, DeploymentResource
from tagqa_assets.deployment.wheels import _problems as bundle_problems

OPENVINO, CPU = "OpenVINOExecutionProvider", "CPUExecutionProvider"


def _template() -> dict:
    text = (INFERENCE_TEMPLATE.read_text().replace("{COMPONENT_NAME}", "com.tagqa.EdgeInference")
            .replace("{COMPONENT_VERSION}", "1.0.0").replace("{COMPONENT_AUTHOR}", "tagqa"))
    recipe = yaml.safe_load(text)
    for artifact in recipe["Manifests"][0]["Artifacts"]:
        artifact.update(URI="s3://bucket/greengrass.zip", Digest="A" * 43 + "=", Algorithm="SHA-256")
    return recipe


def interpolate(script: str, configuration: dict, *, work: Path, decompressed: Path) -> str:
    """A lifecycle script as the nucleus runs it: recipe variables replaced (only the ones this recipe uses)."""
    script = script.replace("{work:path}", str(work)).replace("{artifacts:decompressedPath}", str(decompressed))
    return re.sub(r"\{configuration:/([^}]+)\}", lambda m: str(configuration[m[1]]), script)


def test_the_install_step_installs_the_extras_the_configuration_names(tmp_path: Path) -> None:
    recipe = _template()
    defaults = recipe["ComponentConfiguration"]["DefaultConfiguration"]
    install = recipe["Manifests"][0]["Lifecycle"]["Install"]["Script"]
    assert '"tagqa[{configuration:/installExtras}]"' in install and defaults["installExtras"] == "edge"
    assert DeviceConfig.from_mapping(defaults, source="recipe").providers == parse_providers([CPU], "p")
    paths = {"work": tmp_path / "work", "decompressed": tmp_path / "artifacts"}
    assert '/greengrass/wheels "tagqa[edge]" &&' in interpolate(install, defaults, **paths)
    assert interpolate(install, defaults, **paths).endswith(
        f"-m edge_runtime setup-openvino --build auto --wheels {paths['decompressed']}/greengrass/wheels")
    # The deployment's merge follows the provider list: OpenVINO named -> its extra; CPU only -> edge.
    merge = DeploymentResource(edge_providers=json.dumps([OPENVINO_CPU_FP32, CPU])).configuration_overrides()
    assert merge["installExtras"] == "edge,edge-openvino"
    assert '/greengrass/wheels "tagqa[edge,edge-openvino]" &&' in interpolate(install, {**defaults, **merge}, **paths)
    DeviceConfig.from_mapping({**defaults, **merge}, source="merged")  # what the runtime's validator sees
    assert DeploymentResource(edge_providers=CPU).configuration_overrides()["installExtras"] == "edge"
    assert "installExtras" not in DeploymentResource().configuration_overrides(), "no providers: the recipe's"
    assert DeploymentResource(edge_providers=f"{OPENVINO},{CPU}").install_extras() == ("edge", "edge-openvino")
    assert DeploymentResource().install_extras() == ("edge",)
    # Set by hand, it is kept when it covers the providers, refused when it does not.
    covered = DeploymentResource(device_configuration=json.dumps(
        {"providers": [OPENVINO, CPU], "installExtras": "edge-openvino,edge"}))
    assert covered.configuration_overrides()["installExtras"] == "edge-openvino,edge"
    with pytest.raises(ValueError, match=r"'installExtras' 'edge' lacks \['edge-openvino'\], which the providers"):
        DeploymentResource(device_configuration=json.dumps(
            {"providers": [OPENVINO], "installExtras": "edge"})).configuration_overrides()


_NOT_A_BUILD = r"must be one of 'auto', 'plugin', 'onnxruntime-openvino', got"


@pytest.mark.parametrize("key, value, message", [
    ("installExtras", "edge-openvin", r"names 'edge-openvin', which is not an extra a device installs"),
    ("installExtras", 'edge]" && curl evil', r"is not an extra a device installs"),
    ("installExtras", "edge-openvino", r"must include 'edge'"),
    ("installExtras", "edge,edge", r"repeats an extra"),
    ("installExtras", ["edge"], r"must be a string"),
    ("openvinoBuild", "Auto", _NOT_A_BUILD),
    ("openvinoBuild", "openvino", _NOT_A_BUILD),
    ("openvinoBuild", "auto; rm -rf /", _NOT_A_BUILD),
    ("openvinoBuild", 1, _NOT_A_BUILD),
])
def test_install_keys_are_validated_wherever_the_configuration_is(key: str, value, message: str) -> None:
    """The keys only the Install step reads end up in its shell command: every place a configuration passes
    refuses a value outside the known ones, naming the key."""
    with pytest.raises(DeviceConfigError, match=message):
        INSTALL_KEYS[key](value, key)
    with pytest.raises(DeviceConfigError, match=f"'{key}'.*{message}"):  # the runtime's check of a merge
        DeviceConfig.from_mapping({key: value}, source="merge")
    with pytest.raises(ValueError, match=f"'{key}'.*{message}"):
        DeploymentResource(device_configuration=json.dumps({key: value})).configuration_overrides()
    recipe = _template()
    recipe["ComponentConfiguration"]["DefaultConfiguration"][key] = value
    with pytest.raises(RecipeError, match=f"DefaultConfiguration.*{key}.*{message}"):
        validate_recipe(recipe, source="recipe.yaml")


def test_openvino_build_set_by_hand_is_passed_to_the_devices() -> None:
    assert DeploymentResource(device_configuration=json.dumps({"openvinoBuild": "plugin"})
                              ).configuration_overrides() == {"openvinoBuild": "plugin"}


def test_onnxruntime_openvino_is_bundled_for_linux_x86_64_only(wheel_bundle, tmp_path: Path) -> None:
    """PyPI has onnxruntime-openvino for linux x86-64 only: an edge-openvino bundle for that platform lacking it is
    incomplete (the Install step could not swap it in off Intel hardware); an aarch64 bundle never needs it."""
    assert bundles_built_in("manylinux_2_28_x86_64") and bundles_built_in("linux_x86_64")
    assert not bundles_built_in("manylinux_2_28_aarch64") and not bundles_built_in("win_amd64")
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    for wheel in wheel_bundle.wheels:  # the edge bundle, plus a plugin wheel: what a bundle built before this had
        (bundle / wheel.name).symlink_to(wheel)
    (bundle / "onnxruntime_ep_openvino-1.8.1-py3-none-manylinux_2_28_x86_64.whl").write_bytes(b"")
    openvino = ("edge", "edge-openvino")
    assert bundle_problems(bundle, openvino, "manylinux_2_28_x86_64") == ["no wheel for onnxruntime-openvino"]
    assert bundle_problems(bundle, openvino, "manylinux_2_28_aarch64") == []
    assert bundle_problems(bundle, ("edge",), "manylinux_2_28_x86_64") == []
    (bundle / "onnxruntime_openvino-1.24.1-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"")
    assert bundle_problems(bundle, openvino, "manylinux_2_28_x86_64") == []


def test_providers_reports_what_this_device_can_run(capsys: pytest.CaptureFixture) -> None:
    assert edge_cli.main(["providers", CPU, "NoSuchExecutionProvider"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["available"] == [CPU] and list(report["unavailable"]) == ["NoSuchExecutionProvider"]
    assert report["unavailable"]["NoSuchExecutionProvider"].startswith("not available in this ONNX Runtime")


def test_setup_openvino_leaves_an_environment_without_openvino_alone(tmp_path: Path) -> None:
    """A device installed with ``edge`` only: setup-openvino finds no OpenVINO build and changes nothing."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PYTHONPATH": str(REPO)}
    before = sorted(p.name for p in (venv / "lib").rglob("*"))
    done = subprocess.run([str(venv / "bin" / "python"), "-m", "edge_runtime", "setup-openvino", "--wheels",
                           str(tmp_path / "no-wheels")], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "no OpenVINO build installed (installExtras without edge-openvino): nothing to do" in done.stdout
    assert sorted(p.name for p in (venv / "lib").rglob("*")) == before


def test_a_recipe_interpolating_an_undefined_key_is_refused() -> None:
    recipe = _template()
    del recipe["ComponentConfiguration"]["DefaultConfiguration"]["installExtras"]
    with pytest.raises(RecipeError, match=r"Lifecycle.Install interpolates \{configuration:/installExtras\}, which "
                                          r"DefaultConfiguration does not define"):
        validate_recipe(recipe, source="recipe.yaml")


@pytest.fixture(scope="module")
def openvino_bundle(tmp_path_factory: pytest.TempPathFactory):
    """The wheels of a deployment naming OpenVINO, built once from the index (about 150 MB with both builds)."""
    deployment = DeploymentResource(edge_providers=json.dumps([OPENVINO_CPU_FP32, CPU]),
                                    edge_wheels_dir=str(tmp_path_factory.mktemp("openvino") / "edge-wheels"))
    return deployment, deployment.wheel_bundle()


def _install_component(store, bundle, configuration: dict, tmp_path: Path) -> tuple[Path, str, dict[str, str]]:
    """Unpack ``bundle``'s component as the nucleus does and run its Install script with ``configuration`` merged,
    with no package index; (work folder, Install's output, the device's environment)."""
    component = build_inference_component(store, bundle, name="com.tagqa.EdgeInference", author="tagqa",
                                          template=INFERENCE_TEMPLATE)
    assert component.build["extras"] == ["edge", "edge-openvino"]
    decompressed = tmp_path / "artifacts-unarchived"
    if not decompressed.exists():
        key, _ = component.artifacts["greengrass.zip"]
        with zipfile.ZipFile(store.uri_for(key)) as archive:
            archive.extractall(decompressed / "greengrass")
    configuration = {**component.recipe["ComponentConfiguration"]["DefaultConfiguration"], **configuration}
    work = tmp_path / "work"
    install = interpolate(component.recipe["Manifests"][0]["Lifecycle"]["Install"]["Script"], configuration,
                          work=work, decompressed=decompressed)
    # The device's environment: no project on the path, no index to fall back on.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL")}
    env.update(PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}", PIP_NO_CACHE_DIR="1")
    done = subprocess.run(["bash", "-c", install], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return work, done.stdout, env


def _verify_and_list(work: Path, model: Path, env: dict[str, str], cwd: Path) -> tuple[dict, set[str]]:
    """The installed runtime's verify-model report with OpenVINO then CPU, and the venv's distributions."""
    python = str(work / "venv" / "bin" / "python")
    verify = subprocess.run([python, "-m", "edge_runtime", "verify-model", str(model), "--providers",
                             json.dumps([OPENVINO_CPU_FP32, CPU])], env=env, capture_output=True, text=True,
                            timeout=300, cwd=cwd)
    assert verify.returncode == 0, verify.stdout[-3000:] + verify.stderr[-3000:]
    listed = subprocess.run([python, "-m", "pip", "list", "--format=json"], env=env, capture_output=True, text=True,
                            timeout=120, check=True)
    return json.loads(verify.stdout.strip().splitlines()[-1]), {p["name"].lower() for p in json.loads(listed.stdout)}


@pytest.mark.slow  # downloads both OpenVINO builds (about 140 MB) and installs the bundle into a fresh venv
def test_the_openvino_component_installs_offline_and_serves_on_openvino(openvino_bundle, local_store, tiny_models,
                                                                         tmp_path: Path) -> None:
    """The component tagqa builds for a deployment naming OpenVINO: its Install script, run as the nucleus runs
    it (no package index, ``openvinoBuild`` "auto"), gives a venv whose runtime loads the model on OpenVINO:
    through the plugin on Intel hardware, through onnxruntime-openvino swapped in from the bundle elsewhere."""
    deployment, bundle = openvino_bundle
    assert bundle.extras == ("edge", "edge-openvino") and bundle.directory.name == "edge-wheels-edge+edge-openvino"
    names = {w.name.split("-", 1)[0] for w in bundle.wheels}
    assert {"onnxruntime_ep_openvino", "onnxruntime_openvino", "onnxruntime"} <= names
    work, said, env = _install_component(local_store, bundle, deployment.configuration_overrides(), tmp_path)
    report, packages = _verify_and_list(work, tiny_models["a"], env, tmp_path)
    assert report["provider"] == OPENVINO and report["providers_refused"] == [], report
    if openvino_device_here():
        assert "the onnxruntime-ep-openvino plugin serves OpenVINO here: kept" in said
        assert {"onnxruntime", "onnxruntime-ep-openvino"} <= packages and "onnxruntime-openvino" not in packages
    else:  # the plugin takes Intel hardware only (an AMD EPYC here)
        assert "in place of onnxruntime and the plugin: it serves OpenVINO here" in said, said
        assert "onnxruntime-openvino" in packages and not packages & {"onnxruntime", "onnxruntime-ep-openvino"}


@pytest.mark.slow  # installs the OpenVINO bundle into a fresh venv twice
def test_openvino_build_chooses_the_onnxruntime_build_whatever_the_hardware(openvino_bundle, local_store, tiny_models,
                                                                           tmp_path: Path) -> None:
    """``openvinoBuild`` "onnxruntime-openvino" swaps on any CPU, and OpenVINO serves and passes the CPU comparison
    through the built-in provider; a later deployment saying "plugin" reinstalls (Greengrass runs Install again
    on a configuration change) into a cleared venv: the plugin alone, serving where it offers a device and
    refused with its reason, CPU serving, where it does not."""
    deployment, bundle = openvino_bundle
    merge = deployment.configuration_overrides()
    work, said, env = _install_component(local_store, bundle, {**merge, "openvinoBuild": "onnxruntime-openvino"},
                                         tmp_path)
    assert "in place of onnxruntime and the plugin: it serves OpenVINO here" in said, said
    report, packages = _verify_and_list(work, tiny_models["a"], env, tmp_path)
    assert report["provider"] == OPENVINO and report["providers_refused"] == [], report
    assert "onnxruntime-openvino" in packages and not packages & {"onnxruntime", "onnxruntime-ep-openvino"}

    work, said, env = _install_component(local_store, bundle, {**merge, "openvinoBuild": "plugin"}, tmp_path)
    report, packages = _verify_and_list(work, tiny_models["a"], env, tmp_path)
    assert {"onnxruntime", "onnxruntime-ep-openvino"} <= packages and "onnxruntime-openvino" not in packages
    if openvino_device_here():
        assert report["provider"] == OPENVINO and "plugin serves OpenVINO here: kept" in said
    else:
        assert "openvinoBuild is 'plugin': kept the plugin, which does not serve OpenVINO here" in said, said
        [refused] = report["providers_refused"]
        assert report["provider"] == CPU and refused["provider"] == OPENVINO
        assert "onnxruntime_ep_openvino is installed and registered but offers no device" in refused["reason"]
