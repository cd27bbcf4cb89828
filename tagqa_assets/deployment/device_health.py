"""Watching devices' health messages (``tagqa/<device>/health``, edge_runtime's ``tagqa.health/1``).

A local deployment subscribes before it changes any device configuration, so every health
message a device publishes in reaction (the one after a swap, or after a refused model) is
seen; ``wait`` then asks a decision function about each message until it has an answer.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from tagqa_assets.deployment.targets import DeploymentError


class HealthWatcher:
    """An MQTT 5 subscriber (awscrt) on the health topics of some devices; use as a context manager."""

    def __init__(self, broker: str, topics: dict[str, str], *, connect_timeout: float = 10.0) -> None:
        from awscrt import mqtt5

        host, _, port = broker.rpartition(":")
        if not host or not port.isdigit():
            raise DeploymentError(f"MQTT broker must be HOST:PORT, got {broker!r}")
        self.broker = broker
        self._mqtt5 = mqtt5
        self._topics = topics  # device -> topic
        self._devices = {topic: device for device, topic in topics.items()}
        self._messages: dict[str, list[dict[str, Any]]] = {device: [] for device in topics}
        self._cond = threading.Condition()
        self._ready = threading.Event()
        self._answered = threading.Event()  # connected and subscribed, or the connection failed
        self._failed: list[str] = []
        self._connect_timeout = connect_timeout
        self._client = mqtt5.Client(mqtt5.ClientOptions(
            host_name=host, port=int(port),
            connect_options=mqtt5.ConnectPacket(client_id=f"tagqa-deploy-{uuid.uuid4().hex[:10]}",
                                                keep_alive_interval_sec=30),
            min_reconnect_delay_ms=200, max_reconnect_delay_ms=1000, disable_metrics=True,
            on_publish_callback_fn=self._on_publish,
            on_lifecycle_event_connection_success_fn=self._on_connected,
            on_lifecycle_event_connection_failure_fn=self._on_failure))

    def __enter__(self) -> HealthWatcher:
        self._client.start()
        self._answered.wait(self._connect_timeout)
        if not self._ready.is_set():
            self._client.stop()
            reason = self._failed[-1] if self._failed else "no answer"
            raise DeploymentError(f"cannot watch device health: MQTT broker {self.broker} unreachable or refused "
                                  f"the subscription within {self._connect_timeout:.0f} s ({reason})")
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.stop()

    def _on_connected(self, data: Any) -> None:
        mqtt5 = self._mqtt5
        # Never block in an awscrt callback: the SUBACK marks the watcher ready.
        future = self._client.subscribe(mqtt5.SubscribePacket(subscriptions=[
            mqtt5.Subscription(topic_filter=topic, qos=mqtt5.QoS.AT_LEAST_ONCE) for topic in self._topics.values()]))
        future.add_done_callback(self._on_subscribed)

    def _on_subscribed(self, future: Any) -> None:
        if future.exception() is None:
            self._ready.set()
        else:
            self._failed.append(f"subscribe failed: {future.exception()}")
        self._answered.set()

    def _on_failure(self, data: Any) -> None:
        self._failed.append(str(data.exception))
        self._answered.set()

    def _on_publish(self, data: Any) -> None:
        packet = data.publish_packet
        try:
            message = json.loads(bytes(packet.payload or b""))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return  # not a health message; a device's health is judged only on what parses
        device = self._devices.get(packet.topic)
        if device is not None and isinstance(message, dict):
            with self._cond:
                self._messages[device].append(message)
                self._cond.notify_all()

    def wait(self, device: str, decide: Callable[[dict[str, Any]], Any], deadline: float,
             alive: Callable[[], str | None] = lambda: None) -> Any:
        """Apply ``decide`` to each health message of ``device`` in arrival order until it returns
        non-None, and return that; None at ``deadline`` (``time.monotonic`` time). ``alive`` is
        polled meanwhile: a string from it (the device process died) ends the wait early and is
        returned as is."""
        seen = 0
        with self._cond:
            while True:
                messages = self._messages[device]
                while seen < len(messages):
                    verdict = decide(messages[seen])
                    seen += 1
                    if verdict is not None:
                        return verdict
                gone = alive()
                if gone is not None:
                    return gone
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(min(remaining, 0.25))
