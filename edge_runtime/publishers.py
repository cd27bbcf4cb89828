"""One small publisher interface over two transports.

``MqttPublisher`` speaks MQTT 5 (awscrt) to a broker: Mosquitto on the line, or AWS IoT Core
directly with mutual TLS. ``GreengrassIpcPublisher`` goes through the Greengrass nucleus
(``PublishToIoTCore`` / ``SubscribeToIoTCore`` over IPC). Everything else in the runtime
only sees ``Publisher``.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from concurrent.futures import Future
from typing import Any, Callable

log = logging.getLogger(__name__)

MessageHandler = Callable[[bytes], None]


class PublishError(Exception):
    """The transport refused or failed a publish."""


class Publisher(ABC):
    """Publishes payloads to topics and delivers subscribed messages to handlers."""

    description: str = "publisher"

    @abstractmethod
    def start(self) -> None:
        """Begin connecting (returns at once; the connection comes up in the background)."""

    @abstractmethod
    def is_connected(self) -> bool:
        """Whether a publish can be attempted now."""

    @abstractmethod
    def wait_connected(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for a connection; True when connected."""

    @abstractmethod
    def publish(self, topic: str, payload: bytes, *, qos: int = 1) -> Future:
        """Send ``payload``; the future completes when the transport acknowledged it, or fails."""

    @abstractmethod
    def subscribe(self, topic: str, handler: MessageHandler) -> None:
        """Deliver messages on ``topic`` to ``handler`` (also after reconnects)."""

    @abstractmethod
    def close(self) -> None:
        """Disconnect and release the transport."""


def _call_handler(handler: MessageHandler, topic: str, payload: bytes) -> None:
    try:
        handler(payload)
    except Exception:  # one bad message must not end the subscription
        log.exception("handler for %s failed on a %d-byte message", topic, len(payload))


class MqttPublisher(Publisher):
    """MQTT 5 client (awscrt) with automatic reconnect and a persistent session for subscriptions.

    Operations fail at once while disconnected (no unbounded in-memory queue): the caller's
    disk-backed outbox decides what to keep.
    """

    def __init__(self, host: str, port: int, client_id: str, *, ca_file: str = "", cert_file: str = "",
                 key_file: str = "", session_expiry_seconds: int = 3600) -> None:
        from awscrt import io, mqtt5

        self._mqtt5 = mqtt5
        self.description = f"mqtt://{host}:{port}"
        self._connected = threading.Event()
        self._stopped = threading.Event()
        self._handlers: dict[str, MessageHandler] = {}
        tls_ctx = None
        if cert_file or ca_file:
            tls_options = (io.TlsContextOptions.create_client_with_mtls_from_path(cert_file, key_file)
                           if cert_file else io.TlsContextOptions())
            if ca_file:
                tls_options.override_default_trust_store_from_path(None, ca_file)
            tls_ctx = io.ClientTlsContext(tls_options)
            self.description = f"mqtts://{host}:{port}"
        options = mqtt5.ClientOptions(
            host_name=host,
            port=port,
            tls_ctx=tls_ctx,
            connect_options=mqtt5.ConnectPacket(client_id=client_id, keep_alive_interval_sec=30,
                                                session_expiry_interval_sec=session_expiry_seconds),
            session_behavior=mqtt5.ClientSessionBehaviorType.REJOIN_POST_SUCCESS,
            offline_queue_behavior=mqtt5.ClientOperationQueueBehaviorType.FAIL_ALL_ON_DISCONNECT,
            min_reconnect_delay_ms=200,
            max_reconnect_delay_ms=5000,
            ack_timeout_sec=15,
            disable_metrics=True,
            on_publish_callback_fn=self._on_publish,
            on_lifecycle_event_connection_success_fn=self._on_connected,
            on_lifecycle_event_connection_failure_fn=lambda data: self._connected.clear(),
            on_lifecycle_event_disconnection_fn=self._on_disconnected,
            on_lifecycle_event_stopped_fn=lambda data: self._stopped.set(),
        )
        self._client = mqtt5.Client(options)

    def start(self) -> None:
        self._client.start()

    def is_connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def _on_connected(self, data: Any) -> None:
        log.info("connected to %s (session present: %s)", self.description, data.connack_packet.session_present)
        if not data.connack_packet.session_present:
            for topic in list(self._handlers):
                self._send_subscribe(topic)
        self._connected.set()

    def _on_disconnected(self, data: Any) -> None:
        if self._connected.is_set():
            log.warning("disconnected from %s: %s", self.description, data.exception)
        self._connected.clear()

    def _on_publish(self, data: Any) -> None:
        packet = data.publish_packet
        handler = self._handlers.get(packet.topic)
        if handler is not None:
            _call_handler(handler, packet.topic, bytes(packet.payload or b""))

    def _send_subscribe(self, topic: str) -> None:
        mqtt5 = self._mqtt5
        future = self._client.subscribe(mqtt5.SubscribePacket(
            subscriptions=[mqtt5.Subscription(topic_filter=topic, qos=mqtt5.QoS.AT_LEAST_ONCE)]))
        future.add_done_callback(lambda f: f.exception() and log.error("subscribe %s failed: %s", topic, f.exception()))

    def publish(self, topic: str, payload: bytes, *, qos: int = 1) -> Future:
        mqtt5 = self._mqtt5
        result: Future = Future()
        try:
            sent = self._client.publish(mqtt5.PublishPacket(topic=topic, payload=payload, qos=mqtt5.QoS(qos)))
        except Exception as exc:  # awscrt raises for operations it cannot even queue
            result.set_exception(PublishError(str(exc)))
            return result

        def settle(done: Future) -> None:
            error = done.exception()
            if error is not None:
                result.set_exception(PublishError(str(error)))
                return
            puback = done.result().puback
            if puback is not None and int(puback.reason_code) >= 0x80:
                result.set_exception(PublishError(f"broker refused publish to {topic}: {puback.reason_code!r}"))
            else:
                result.set_result(None)

        sent.add_done_callback(settle)
        return result

    def subscribe(self, topic: str, handler: MessageHandler) -> None:
        self._handlers[topic] = handler
        if self._connected.is_set():
            self._send_subscribe(topic)

    def close(self) -> None:
        self._client.stop()
        self._stopped.wait(5.0)
        self._connected.clear()


class GreengrassIpcPublisher(Publisher):
    """Publishes to AWS IoT Core through the Greengrass nucleus (IPC client V2, injected).

    The nucleus owns the cloud connection and spools while the core is offline, so from
    here the link counts as up once the IPC client exists.
    """

    def __init__(self, ipc_client: Any) -> None:
        from awsiot.greengrasscoreipc.model import QOS

        self._ipc = ipc_client
        self._qos = QOS
        self._operations: list[Any] = []
        self.description = "greengrass-ipc"

    def start(self) -> None:
        """Nothing to do: the IPC client connected when it was created."""

    def is_connected(self) -> bool:
        return True

    def wait_connected(self, timeout: float) -> bool:
        return True

    def publish(self, topic: str, payload: bytes, *, qos: int = 1) -> Future:
        level = self._qos.AT_LEAST_ONCE if qos else self._qos.AT_MOST_ONCE
        return self._ipc.publish_to_iot_core_async(topic_name=topic, qos=level, payload=payload)

    def subscribe(self, topic: str, handler: MessageHandler) -> None:
        def on_event(event: Any) -> None:
            _call_handler(handler, topic, bytes(event.message.payload or b""))

        def on_error(error: Exception) -> bool:
            log.error("IoT Core subscription %s: %s", topic, error)
            return False  # keep the stream open

        _, operation = self._ipc.subscribe_to_iot_core(
            topic_name=topic, qos=self._qos.AT_LEAST_ONCE, on_stream_event=on_event,
            on_stream_error=on_error, on_stream_closed=lambda: log.warning("IoT Core subscription %s closed", topic))
        self._operations.append(operation)

    def close(self) -> None:
        for operation in self._operations:
            operation.close()
        self._ipc.close()
