"""Both transports behind the one Publisher interface.

MQTT runs against a real Mosquitto. The Greengrass nucleus cannot run here, so the IPC
path is checked against ``create_autospec`` of the SDK's real ``GreengrassCoreIPCClientV2``:
every call must match the real method signatures, and events are the SDK's own model types.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from unittest.mock import create_autospec

import pytest
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import (QOS, ConfigurationUpdateEvent, ConfigurationUpdateEvents,
                                            ConfigurationValidityStatus, GetConfigurationResponse, IoTCoreMessage,
                                            MQTTMessage, ValidateConfigurationUpdateEvent,
                                            ValidateConfigurationUpdateEvents)

from edge_fixtures import MqttCollector, copy_model, mosquitto, tiny_models  # noqa: F401
from edge_runtime.config_sources import GreengrassConfigSource
from edge_runtime.publishers import GreengrassIpcPublisher, MqttPublisher, PublishError
from polling import wait_until


def test_mqtt_publish_and_subscribe(mosquitto) -> None:
    collector = MqttCollector(mosquitto.port, ["tagqa/line-1/detections"])
    publisher = MqttPublisher("127.0.0.1", mosquitto.port, "edge-pub")
    received: list[bytes] = []
    publisher.subscribe("tagqa/line-1/feedback", received.append)
    publisher.start()
    assert publisher.wait_connected(10)
    publisher.publish("tagqa/line-1/detections", b'{"n": 1}').result(10)
    collector.wait_for("tagqa/line-1/detections", lambda m: m == [{"n": 1}])
    wait_until(lambda: publisher.is_connected(), "the publisher to be connected", 15, poll=0.02)
    time.sleep(0.2)  # the SUBACK of the feedback subscription
    collector.publish("tagqa/line-1/feedback", b"img-1")
    wait_until(lambda: received == [b"img-1"], "the feedback message img-1", 15, poll=0.02,
               diagnose=lambda: f"received {received}")
    publisher.close()
    collector.close()


def test_mqtt_handler_errors_do_not_end_the_subscription(mosquitto) -> None:
    publisher = MqttPublisher("127.0.0.1", mosquitto.port, "edge-pub")
    seen: list[bytes] = []

    def handler(payload: bytes) -> None:
        seen.append(payload)
        if payload == b"bad":
            raise ValueError("malformed")

    publisher.subscribe("tagqa/line-1/feedback", handler)
    publisher.start()
    assert publisher.wait_connected(10)
    time.sleep(0.2)
    collector = MqttCollector(mosquitto.port, [])
    collector.publish("tagqa/line-1/feedback", b"bad")
    collector.publish("tagqa/line-1/feedback", b"good")
    wait_until(lambda: seen == [b"bad", b"good"], "both feedback messages, the good after the bad", 15, poll=0.02,
               diagnose=lambda: f"seen {seen}")
    publisher.close()
    collector.close()


def test_mqtt_publish_fails_fast_while_the_broker_is_down(mosquitto) -> None:
    publisher = MqttPublisher("127.0.0.1", mosquitto.port, "edge-pub")
    publisher.start()
    assert publisher.wait_connected(10)
    mosquitto.stop()
    wait_until(lambda: not publisher.is_connected(), "the publisher to see the broker gone", 15, poll=0.02)
    with pytest.raises(PublishError):
        publisher.publish("tagqa/line-1/detections", b"{}").result(5)
    mosquitto.start()
    assert publisher.wait_connected(15), "reconnects by itself"
    publisher.publish("tagqa/line-1/detections", b"{}").result(10)
    publisher.close()


def test_feedback_subscription_survives_a_broker_restart(mosquitto) -> None:
    publisher = MqttPublisher("127.0.0.1", mosquitto.port, "edge-pub")
    received: list[bytes] = []
    publisher.subscribe("tagqa/line-1/feedback", received.append)
    publisher.start()
    assert publisher.wait_connected(10)
    mosquitto.stop()
    wait_until(lambda: not publisher.is_connected(), "the publisher to see the broker gone", 15, poll=0.02)
    mosquitto.start()
    assert publisher.wait_connected(15)
    time.sleep(0.3)
    collector = MqttCollector(mosquitto.port, [])
    collector.publish("tagqa/line-1/feedback", b"img-after-restart")
    wait_until(lambda: received == [b"img-after-restart"], "the feedback message sent after the restart", 15, poll=0.02,
               diagnose=lambda: f"received {received}")
    publisher.close()
    collector.close()


@pytest.fixture
def ipc():
    """The SDK's real client class, auto-specced: wrong method names or arguments fail the test."""
    client = create_autospec(GreengrassCoreIPCClientV2, instance=True)
    done: Future = Future()
    done.set_result(None)
    client.publish_to_iot_core_async.return_value = done
    client.subscribe_to_iot_core.return_value = (None, create_autospec(object))
    client.subscribe_to_configuration_update.return_value = (None, create_autospec(object))
    client.subscribe_to_validate_configuration_updates.return_value = (None, create_autospec(object))
    return client


def test_greengrass_publisher_publishes_to_iot_core(ipc) -> None:
    publisher = GreengrassIpcPublisher(ipc)
    publisher.start()
    assert publisher.is_connected() and publisher.wait_connected(0)
    publisher.publish("tagqa/line-1/detections", b"{}", qos=1).result(1)
    ipc.publish_to_iot_core_async.assert_called_once_with(
        topic_name="tagqa/line-1/detections", qos=QOS.AT_LEAST_ONCE, payload=b"{}")


def test_greengrass_publisher_delivers_subscribed_messages_and_survives_bad_ones(ipc) -> None:
    publisher = GreengrassIpcPublisher(ipc)
    seen: list[bytes] = []

    def handler(payload: bytes) -> None:
        seen.append(payload)
        if payload == b"bad":
            raise ValueError("malformed")

    publisher.subscribe("tagqa/line-1/feedback", handler)
    kwargs = ipc.subscribe_to_iot_core.call_args.kwargs
    assert kwargs["topic_name"] == "tagqa/line-1/feedback" and kwargs["qos"] == QOS.AT_LEAST_ONCE
    for payload in (b"bad", b"img-7"):
        kwargs["on_stream_event"](IoTCoreMessage(message=MQTTMessage(topic_name="tagqa/line-1/feedback",
                                                                     payload=payload)))
    assert seen == [b"bad", b"img-7"]
    assert kwargs["on_stream_error"](RuntimeError("stream hiccup")) is False  # keep the stream open


def test_greengrass_configuration_source_follows_updates(ipc) -> None:
    ipc.get_configuration.return_value = GetConfigurationResponse(
        component_name="com.tagqa.EdgeInference", value={"modelDir": "/models/v1", "confThreshold": 0.3})
    source = GreengrassConfigSource(ipc, defaults={"deviceId": "thing-7", "confThreshold": 0.5})
    assert source.read() == {"deviceId": "thing-7", "modelDir": "/models/v1", "confThreshold": 0.3}, \
        "the thing name is only a default: configured keys win"
    assert not source.poll_changed()
    on_event = ipc.subscribe_to_configuration_update.call_args.kwargs["on_stream_event"]
    updater = threading.Thread(target=on_event, args=(ConfigurationUpdateEvents(
        configuration_update_event=ConfigurationUpdateEvent(component_name="com.tagqa.EdgeInference",
                                                            key_path=["modelDir"])),))
    updater.start()
    updater.join()
    assert source.poll_changed() and not source.poll_changed()
    ipc.get_configuration.assert_called_with(key_path=[])


def test_greengrass_deployments_with_a_bad_model_are_rejected_before_they_apply(ipc, tiny_models, tmp_path) -> None:
    """SubscribeToValidateConfigurationUpdates: the nucleus asks before merging a deployment's configuration."""
    from edge_runtime.service import EdgeRuntime

    ipc.get_configuration.return_value = GetConfigurationResponse(value={
        "modelDir": str(tiny_models["a"]), "deviceId": "core-1", "source": str(tmp_path),
        "stateDir": str(tmp_path / "state"), "accessControl": {"aws.greengrass.ipc.mqttproxy": {}}})
    source = GreengrassConfigSource(ipc)
    runtime = EdgeRuntime(config_source=source, overrides={}, publisher_factory=lambda c: GreengrassIpcPublisher(ipc))
    validate = ipc.subscribe_to_validate_configuration_updates.call_args.kwargs["on_stream_event"]
    broken = copy_model(tiny_models["b"], tmp_path / "broken")
    (broken / "model.onnx").write_bytes(b"not a model")
    proposals = {
        "d-good": {"modelDir": str(tiny_models["b"]), "deviceId": "core-1"},
        "d-bad-model": {"modelDir": str(broken), "deviceId": "core-1"},
        "d-bad-key": {"modelDir": str(tiny_models["b"]), "confThreshhold": 0.3},
    }
    for deployment, configuration in proposals.items():
        validate(ValidateConfigurationUpdateEvents(validate_configuration_update_event=ValidateConfigurationUpdateEvent(
            configuration=configuration, deployment_id=deployment)))
    reports = {c.kwargs["configuration_validity_report"].deployment_id: c.kwargs["configuration_validity_report"]
               for c in ipc.send_configuration_validity_report.call_args_list}
    assert reports["d-good"].status == ConfigurationValidityStatus.ACCEPTED
    assert reports["d-bad-model"].status == ConfigurationValidityStatus.REJECTED
    assert "sha256" in reports["d-bad-model"].message and str(broken) in reports["d-bad-model"].message
    assert reports["d-bad-key"].status == ConfigurationValidityStatus.REJECTED
    assert "confThreshhold" in reports["d-bad-key"].message
    assert runtime.slot.current.card.model_version == "1", "validation never swaps the serving model"
