"""MQTT publishing for the web process: alarm commands to the gateway's alarm service, tickets to workers'
topics. Does I/O (paho)."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit


class MqttPublisher:
    """A small MQTT client that only publishes; call it as ``publish(topic, payload, qos)``."""

    def __init__(self, url: str, *, client_id: str, timeout_s: float = 5.0) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        u = urlsplit(url)
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311)
        if u.username:
            self._client.username_pw_set(unquote(u.username), unquote(u.password) if u.password else None)
        if u.scheme == "mqtts":
            self._client.tls_set()
        try:
            self._client.connect(u.hostname or "127.0.0.1", u.port or (8883 if u.scheme == "mqtts" else 1883),
                                 keepalive=30)
        except OSError as exc:
            raise ConnectionError(f"cannot reach the MQTT broker at {u.hostname}:{u.port}: {exc}") from None
        self._client.loop_start()

    def __call__(self, topic: str, payload: bytes, qos: int) -> None:
        self._client.publish(topic, payload, qos=qos)

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()
