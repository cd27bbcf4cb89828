"""The Greengrass component template: recipe fields, least-privilege accessControl, offline install,
and a DefaultConfiguration the runtime itself accepts. (GDK is not on PyPI: checked by hand.)"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from edge_fixtures import REPO
from edge_runtime.device_config import DeviceConfig

COMPONENT = REPO / "deploy" / "greengrass"


@pytest.fixture(scope="module")
def recipe() -> dict:
    return yaml.safe_load((COMPONENT / "recipe.yaml").read_text())


def test_recipe_is_a_template_with_gdk_placeholders(recipe: dict) -> None:
    assert recipe["RecipeFormatVersion"] == "2020-01-25"
    assert recipe["ComponentName"] == "{COMPONENT_NAME}" and recipe["ComponentVersion"] == "{COMPONENT_VERSION}"
    assert recipe["ComponentDescription"] and recipe["ComponentPublisher"]
    [manifest] = recipe["Manifests"]
    assert manifest["Platform"]["os"] == "linux"
    [artifact] = manifest["Artifacts"]
    assert artifact["URI"] == "s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/greengrass.zip"
    assert artifact["Unarchive"] == "ZIP"


def test_install_is_offline_from_bundled_wheels(recipe: dict) -> None:
    lifecycle = recipe["Manifests"][0]["Lifecycle"]
    install = lifecycle["Install"]["Script"]
    assert "pip install --no-index" in install and "--find-links {artifacts:decompressedPath}/greengrass/wheels" in install
    assert not re.search(r"pip install(?! --no-index)", install), "no install may reach a package index"
    assert "ultralytics" not in install and "torch" not in install
    run = lifecycle["Run"]["Script"]
    assert "-m edge_runtime run --transport greengrass" in run and "{work:path}" in run


def test_access_control_allows_exactly_this_devices_topics(recipe: dict) -> None:
    config = recipe["ComponentConfiguration"]["DefaultConfiguration"]
    assert list(config["accessControl"]) == ["aws.greengrass.ipc.mqttproxy"]
    policies = config["accessControl"]["aws.greengrass.ipc.mqttproxy"].values()
    grants = {(op, resource) for p in policies for op in p["operations"] for resource in p["resources"]}
    thing = "{iot:thingName}"
    assert grants == {
        ("aws.greengrass#PublishToIoTCore", f"tagqa/{thing}/detections"),
        ("aws.greengrass#PublishToIoTCore", f"tagqa/{thing}/health"),
        ("aws.greengrass#SubscribeToIoTCore", f"tagqa/{thing}/feedback"),
    }
    # ...and they are the very topics the runtime uses with deviceId = thing name.
    for key, operation in (("topic", "Publish"), ("healthTopic", "Publish"), ("feedbackTopic", "Subscribe")):
        assert (f"aws.greengrass#{operation}ToIoTCore", config[key].replace("{device}", thing)) in grants


def test_default_configuration_is_valid_for_the_runtime(recipe: dict) -> None:
    defaults = recipe["ComponentConfiguration"]["DefaultConfiguration"]
    config = DeviceConfig.from_mapping(defaults, source="recipe.yaml DefaultConfiguration")
    assert config.capture_band == "auto" and config.capture_share == 0.2 and config.folder_on_read == "delete"
    assert config.model_dir == "", "the deployment sets modelDir; the template must not guess a path"


def test_token_exchange_service_is_a_dependency_for_s3_uploads(recipe: dict) -> None:
    dependency = recipe["ComponentDependencies"]["aws.greengrass.TokenExchangeService"]
    assert dependency["DependencyType"] == "HARD"


def test_gdk_config_builds_a_zip_and_names_the_component() -> None:
    gdk = json.loads((COMPONENT / "gdk-config.json").read_text())
    [(name, component)] = gdk["component"].items()
    assert re.fullmatch(r"[A-Za-z0-9.\-_]+", name)
    assert component["version"] == "NEXT_PATCH" and component["build"]["build_system"] == "zip"
    assert component["publish"]["bucket"] and component["publish"]["region"]
    assert "gdk_version" in gdk
