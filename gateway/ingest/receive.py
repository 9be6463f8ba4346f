"""The gateway's receive side: MQTT in, validation, onto the writer's queue; acknowledgements and replies out.

Runs on the MQTT transport's reader thread (:mod:`gateway.mqtt.transport`: our fast MQTT 3.1.1 client,
or paho): :meth:`Receiver._on_message` validates each message (pure, :mod:`gateway.ingest.validate`)
and puts the result on the bounded queue; when the queue is full the reader thread blocks, so the
broker stops sending to us (back-pressure instead of memory growth). The writer calls back here to
acknowledge what it committed or spooled (:meth:`Receiver._ack`) and to tell devices why a message
was refused. Mixin of :class:`gateway.ingest.pipeline.Gateway`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from gateway.cluster import sessions
from gateway.ingest.items import Command, Item, Stats
from gateway.ingest.validate import Rejected, Validator
from gateway.mqtt.transport import FastTransport, PahoTransport, Transport, transport_options
from gateway.settings import Settings
from twin import contract

log = logging.getLogger(__name__)


class Receiver:
    """MQTT side of :class:`gateway.ingest.pipeline.Gateway` (see the module doc)."""

    settings: Settings
    mqtt_url: str
    mqtt5: bool
    cluster: bool
    node: str
    stats: Stats
    _queue: queue.Queue[Item | object]
    _validator: Validator
    _filters: list[str]
    _client: Transport
    _sessions: dict[str, Transport]
    _sessions_lock: threading.Lock
    _connected: threading.Event
    _stopping: threading.Event
    _idle: threading.Event

    def _subscription_filters(self) -> list[str]:
        mq = self.settings.mqtt
        if self.cluster:  # the node's own connection only publishes; communities come through their sessions
            return [f"{mq.topic_root}/v{contract.SCHEMA_VERSION}/_gateway/{self.node}/status"]
        return [*contract.subscription(mq.topic_root), contract.alarm_commands_topic(mq.topic_root, "+")]

    def _make_client(self, community: str | None = None) -> Transport:
        """Our fast MQTT 3.1.1 transport unless MQTT 5 or GRIDTWIN_MQTT_TRANSPORT=paho asks for paho.

        ``community`` (cluster mode): that community's own persistent session, the same client id on every
        gateway; else the gateway's connection (in cluster mode only for publishing)."""
        mq = self.settings.mqtt
        if community is None:
            client_id, filters = mq.client_id, self._filters
            on_message: Callable[[str, bytes, int, int], None] = self._on_message
            on_connect: Callable[[], None] = self._on_connect
        else:
            client_id, filters = sessions.client_id(mq.topic_root, community), sessions.filters(mq.topic_root,
                                                                                                 community)
            on_message = lambda t, p, m, q: self._on_message(t, p, m, q, community)  # noqa: E731
            on_connect = lambda: log.info("community %s: session %s subscribed", community, client_id)  # noqa: E731
        subscriptions = [(f, int(mq.qos)) for f in filters]
        if mq.transport == "fast" and not self.mqtt5:
            return FastTransport(self.mqtt_url, client_id=client_id, subscriptions=subscriptions,
                                 on_message=on_message, on_connect=on_connect,
                                 on_disconnect=self._on_disconnect, keepalive=mq.keepalive,
                                 clean_session=False,  # persistent session: queued QoS1 messages survive our restart
                                 **transport_options(mq, self.mqtt_url, status=community is None))
        if mq.transport == "fast":
            log.info("MQTT 5 needs the paho transport: using paho")
        return PahoTransport(self.mqtt_url, client_id=client_id, subscriptions=subscriptions,
                             on_message=on_message, on_connect=on_connect,
                             on_disconnect=self._on_disconnect, keepalive=mq.keepalive, mqtt5=self.mqtt5,
                             **transport_options(mq, self.mqtt_url, status=community is None))

    def _on_connect(self) -> None:
        log.info("connected to %s, subscribed to %s", contract.BrokerAddress.parse(self.mqtt_url).redacted(),
                 self._filters)
        self._connected.set()

    def _on_disconnect(self, reason: str) -> None:
        self._connected.clear()
        if not self._stopping.is_set():
            log.warning("disconnected from broker (%s); reconnecting", reason)

    def _on_message(self, topic: str, payload: bytes, mid: int, qos: int, src: str | None = None) -> None:
        # Never let one message break intake: the validator turns every problem into a Rejected.
        self.stats.received += 1
        community = contract.parse_alarm_commands_topic(self.settings.mqtt.topic_root, topic)
        if community is not None:
            self._idle.clear()
            self._queue.put(Item(Command(community, payload), mid, qos, time.monotonic(), src))
            return
        try:
            result = self._validator.check(topic, payload, datetime.now(UTC))
        except Exception as exc:  # a bug in our validator must not stop the reader thread
            log.exception("validator failed on %s", topic)
            result = Rejected(topic, None, "internal", f"{type(exc).__name__}", payload[:1024], None)
        self._idle.clear()
        self._queue.put(Item(result, mid, qos, time.monotonic(), src))  # blocks when full: back-pressure

    def _ack(self, items: list[Item]) -> None:
        if not self.cluster:
            self._client.ack_many([i.mid for i in items if i.qos > 0])
            return
        by_session: dict[str, list[int]] = {}
        for i in items:
            if i.qos > 0 and i.src is not None:
                by_session.setdefault(i.src, []).append(i.mid)
        with self._sessions_lock:
            clients = {c: self._sessions.get(c) for c in by_session}
        for c, mids in by_session.items():
            client = clients[c]
            if client is not None:  # a session already closed: the next owner gets these again (dropped as duplicates)
                client.ack_many(mids)

    def _tell_device(self, r: Rejected) -> None:
        assert r.device_topic is not None
        payload = contract.error_bytes(r.reason, r.detail, topic=r.topic, seq=r.seq, at=r.at or datetime.now(UTC))
        self._client.publish(r.device_topic, payload, qos=0)

    def _publish(self, topic: str, payload: bytes, qos: int) -> None:
        self._client.publish(topic, payload, qos=qos)

