"""What both MQTT transports share: errors, callbacks, the Transport protocol, TLS and the gateway's status
messages. Reads certificate files; no network I/O."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from twin import contract
from twin import mqtt_codec as codec

if TYPE_CHECKING:
    from gateway.settings import MqttSettings

OnMessage = Callable[[str, bytes, int, int], None]  # topic, payload, mid (ack token), qos
OnConnect = Callable[[], None]  # subscribed (again): messages flow
OnDisconnect = Callable[[str], None]  # reason; the transport reconnects by itself

# The largest gateway.max_payload_bytes the settings allow; the gateway passes its own, smaller limit.
DEFAULT_MAX_PAYLOAD_BYTES = 1_048_576


class MqttError(Exception):
    """The MQTT connection failed: unreachable, refused, broken, or the broker spoke garbage."""


class ConnectionRefused(MqttError):
    """The broker answered CONNECT with a failure return code (credentials, client id, ...)."""

    def __init__(self, return_code: int, reason: str) -> None:
        super().__init__(f"the broker refused the connection: {reason}")
        self.return_code = return_code


class SubscriptionRefused(MqttError):
    """The broker answered SUBSCRIBE with a failure code (>= 0x80) for at least one filter (ACL, unsupported
    filter such as ``$share/...`` on a broker without shared subscriptions)."""

    def __init__(self, refused: Sequence[tuple[str, int]]) -> None:
        named = ", ".join(f"{f!r} ({codec.SUBACK_REASONS.get(c, f'code 0x{c:02x}')})" for f, c in refused)
        super().__init__(f"the broker refused the subscription to {named}: check the account's ACL and the filter")
        self.refused = list(refused)


class Transport(Protocol):
    """What the gateway needs from an MQTT client."""

    sessions_lost: int  # reconnects that found no session on the broker: what it had queued for us is lost

    def start(self, timeout_s: float) -> None:
        """Connect, subscribe and start receiving; raises :class:`MqttError` if the first connection fails
        (including a refused subscription)."""

    def stop(self) -> None:
        """Disconnect cleanly (the persistent session stays on the broker) and end the threads."""

    def ack_many(self, mids: Sequence[int]) -> None:
        """Acknowledge QoS 1/2 messages by their ``mid`` (after they are committed); never raises."""

    def publish(self, topic: str, payload: bytes, qos: int) -> None:
        """Publish at QoS 0 or 1 from any thread; never raises for a broken connection."""


def tls_context(ca_file: Path | str | None = None, cert_file: Path | str | None = None,
                key_file: Path | str | None = None) -> ssl.SSLContext:
    """A client TLS context: verifies the broker against ``ca_file`` (else the system CAs) and its host name,
    and presents ``cert_file`` / ``key_file`` when the broker asks for a client certificate.
    Raises :class:`MqttError` naming the file when one cannot be read or does not fit."""
    try:
        ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise MqttError(f"cannot use the CA file {ca_file}: {exc}") from exc
    if cert_file:
        try:
            ctx.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise MqttError(f"cannot use the client certificate {cert_file} (key {key_file or cert_file}): "
                            f"{exc}") from exc
    return ctx


class StatusMessages:
    """The gateway's retained status on its status topic, in the device status payload of the contract
    (``{"v":1,"state":"online"|"offline",...}``): ``birth`` after every (re)connect, ``will`` left with the
    broker for an abrupt end, ``farewell`` sent before a clean DISCONNECT (which discards the will)."""

    def __init__(self, topic: str) -> None:
        def message(state: str, reason: str | None = None) -> codec.Will:
            body: dict[str, object] = {"v": 1, "state": state}
            if reason:
                body["reason"] = reason
            return codec.Will(topic, json.dumps(body, separators=(",", ":")).encode(), qos=1, retain=True)

        self.topic = topic
        self.birth = message("online")
        self.will = message("offline", "last will")
        self.farewell = message("offline", "stopped")


def transport_options(mqtt: MqttSettings, url: str, *, status: bool = True) -> dict[str, Any]:
    """Keyword arguments for either transport from the settings: the TLS context for an ``mqtts://`` URL
    (``mqtt.ca_file``, ``cert_file``, ``key_file``) and, with ``status`` and ``mqtt.status``, the gateway's
    status messages on ``mqtt.gateway_status_topic()``."""
    opts: dict[str, Any] = {}
    if contract.BrokerAddress.parse(url).tls:
        opts["tls_context"] = tls_context(mqtt.ca_file, mqtt.cert_file, mqtt.key_file)
    if status and mqtt.status:
        opts["status"] = StatusMessages(mqtt.gateway_status_topic())
    return opts
