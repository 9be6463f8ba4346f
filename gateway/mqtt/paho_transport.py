"""paho-mqtt behind the gateway's transport surface: for MQTT 5, or as a fallback of the fast transport. Does I/O.

paho buffers every incoming packet whole and has no limit of its own. With MQTT 5 the CONNECT announces
``max_payload_bytes`` + headroom as Maximum Packet Size, so the broker never sends a bigger message (it drops
it for this client); with MQTT 3.1.1 nothing can tell the broker, and only its own ``max_packet_size`` (set
in every broker config gridtwin ships) bounds what arrives.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.mqtt.common import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    MqttError,
    OnConnect,
    OnDisconnect,
    OnMessage,
    StatusMessages,
    SubscriptionRefused,
)
from twin import contract
from twin import mqtt_codec as codec

log = logging.getLogger(__name__)


class PahoTransport:
    """paho-mqtt, for MQTT 5 (session expiry, receive maximum) or as a fallback of the fast transport."""

    def __init__(self, url: str, *, client_id: str, subscriptions: Sequence[tuple[str, int]],
                 on_message: OnMessage, on_connect: OnConnect | None = None,
                 on_disconnect: OnDisconnect | None = None, keepalive: int = 30, mqtt5: bool = False,
                 max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES, tls_context: ssl.SSLContext | None = None,
                 status: StatusMessages | None = None, reconnect_min_s: float = 0.25,
                 reconnect_max_s: float = 30.0) -> None:
        self.max_packet_size = max_payload_bytes + codec.PUBLISH_HEADROOM
        self.addr = contract.BrokerAddress.parse(url)
        self.subscriptions = [(f, int(q)) for f, q in subscriptions]
        self.keepalive = keepalive
        self.mqtt5 = mqtt5
        self.status = status
        self.sessions_lost = 0  # reconnects that found no session on the broker (queued messages lost)
        self.subscriptions_refused = 0
        self.subscribed = threading.Event()  # a SUBACK granted every subscription (set again after each reconnect)
        self._connected_once = False
        self._on_message = on_message
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        kwargs: dict[str, Any] = {}
        if not mqtt5:
            kwargs["clean_session"] = False  # persistent session: queued QoS1 messages survive our restart
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5 if mqtt5 else paho.MQTTv311,
            reconnect_on_failure=True,
            manual_ack=True,  # PUBACK only after the message is committed (or spooled): nothing lost on a crash
            **kwargs,
        )
        if self.addr.username:
            client.username_pw_set(self.addr.username, self.addr.password)
        if self.addr.tls:
            client.tls_set_context(tls_context or ssl.create_default_context())
        if status is not None:
            w = status.will
            client.will_set(w.topic, w.payload, qos=w.qos, retain=w.retain)
        client.reconnect_delay_set(max(1, round(reconnect_min_s)), max(1, round(reconnect_max_s)))
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(10_000)
        client.on_connect = self._paho_connect
        client.on_message = self._paho_message
        client.on_disconnect = self._paho_disconnect
        client.on_subscribe = self._paho_subscribe
        self._client = client

    def start(self, timeout_s: float = 10.0) -> None:
        del timeout_s  # paho connects the socket synchronously; the CONNACK arrives on its thread
        try:
            if self.mqtt5:
                props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                props.SessionExpiryInterval = 7 * 86400  # persistent session for a week of gateway downtime
                props.ReceiveMaximum = 1000
                props.MaximumPacketSize = self.max_packet_size  # the broker drops bigger messages for us
                self._client.connect(self.addr.host, self.addr.port, keepalive=self.keepalive,
                                     clean_start=False, properties=props)
            else:
                self._client.connect(self.addr.host, self.addr.port, keepalive=self.keepalive)
        except (OSError, ValueError) as exc:
            raise MqttError(str(exc) or type(exc).__name__) from exc
        self._client.loop_start()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            if self.status is not None and self._client.is_connected():
                f = self.status.farewell  # a clean DISCONNECT discards the will: say offline ourselves
                self._client.publish(f.topic, f.payload, qos=f.qos, retain=f.retain).wait_for_publish(2)
        with contextlib.suppress(Exception):
            self._client.disconnect()
        self._client.loop_stop()

    def ack_many(self, mids: Sequence[int]) -> None:
        for mid in mids:
            self._client.ack(mid, 1)

    def publish(self, topic: str, payload: bytes, qos: int) -> None:
        self._client.publish(topic, payload, qos=qos)

    def _paho_connect(self, client: paho.Client, _ud: Any, flags: Any, rc: ReasonCode, _props: Any) -> None:
        if rc.is_failure:
            log.error("broker refused the gateway: %s", rc)
            return
        if self._connected_once and not getattr(flags, "session_present", True):
            self.sessions_lost += 1
            log.warning("the broker has no session for us after a reconnect: what it queued for the gateway "
                        "while it was away is lost (%d times so far)", self.sessions_lost)
        self._connected_once = True
        client.subscribe(self.subscriptions)
        if self.status is not None:
            b = self.status.birth
            client.publish(b.topic, b.payload, qos=b.qos, retain=b.retain)
        if self._on_connect is not None:
            self._on_connect()

    def _paho_subscribe(self, _c: paho.Client, _ud: Any, _mid: int, codes: list[ReasonCode], _props: Any) -> None:
        refused = [(f, int(c.value)) for (f, _q), c in zip(self.subscriptions, codes, strict=False) if c.is_failure]
        if refused:
            self.subscriptions_refused += 1
            log.error("%s", SubscriptionRefused(refused))
        else:
            self.subscribed.set()

    def _paho_disconnect(self, _c: paho.Client, _ud: Any, _flags: Any, rc: ReasonCode, _props: Any) -> None:
        if self._on_disconnect is not None:
            self._on_disconnect(str(rc))

    def _paho_message(self, _c: paho.Client, _ud: Any, msg: paho.MQTTMessage) -> None:
        self._on_message(msg.topic, bytes(msg.payload), msg.mid, msg.qos)
