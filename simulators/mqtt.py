"""MQTT connections for simulated devices. Does network I/O.

Two ways to publish:

- :class:`SharedConnection`: one multiplexed connection publishing for many devices (scale runs,
  hostile runs, ``--clients shared``). :meth:`publish` applies back-pressure so at most ``window``
  messages are ever outstanding, and :meth:`flush` waits until every message was written (QoS 0) or
  acknowledged (QoS 1/2), counted through ``on_publish``.
- :class:`DeviceFleet`: each device its own client identity with a last will
  ``{"v":1,"state":"offline","reason":"last will"}`` on its status topic and an online status at
  connect, as real devices do. All clients are driven from the caller's thread through one
  ``selectors`` poll (no thread per device), so thousands of devices cost thousands of sockets, not
  thousands of threads. :meth:`DeviceFleet.drop` closes a device's socket without DISCONNECT, so the
  broker publishes its will.

Both work against MQTT 3.1.1-only brokers (``mqtt5=False``). paho and OS errors become
:class:`~simulators.errors.BrokerUnreachable`.
"""

from __future__ import annotations

import contextlib
import logging
import select
import selectors
import socket
import time
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from simulators.errors import BrokerUnreachable
from twin import accounts, contract

log = logging.getLogger(__name__)


def _new_client(addr: contract.BrokerAddress, client_id: str, mqtt5: bool,
                credentials: tuple[str, str | None] | None = None) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=paho.MQTTv5 if mqtt5 else paho.MQTTv311)
    user, password = credentials or (addr.username, addr.password)
    if user:
        client.username_pw_set(user, password)
    if addr.tls:
        client.tls_set()
    return client


def _refused(rc: Any) -> bool:
    return bool(getattr(rc, "is_failure", rc != 0))


class SharedConnection:
    """One MQTT connection publishing on behalf of many devices, driven from the caller's thread.

    No network thread: :meth:`publish` writes straight to the socket (paho does so when no loop runs)
    and every ``service_every`` messages reads acknowledgements; :meth:`poll` does the same while idle.
    One thread and no GIL hand-offs is what lets one process pass 20,000 msg/s.
    """

    def __init__(self, url: str, *, client_id: str, qos: int, mqtt5: bool = True, window: int = 20_000,
                 inflight: int = 100, service_every: int = 64, connect_timeout_s: float = 10.0) -> None:
        self.addr = contract.BrokerAddress.parse(url)
        self.qos = qos
        self.window = min(window, 60_000)  # QoS 1 packet ids are 16-bit: never have more outstanding
        self.service_every = service_every
        self.sent = 0
        self.done = 0  # written (QoS 0) or acknowledged (QoS 1/2)
        self._refusal: str | None = None
        self._connected = False
        self._last_misc = time.monotonic()
        self.client = _new_client(self.addr, client_id, mqtt5)
        self.client.max_inflight_messages_set(inflight)  # ~100 measured fastest with paho 2.2
        self.client.max_queued_messages_set(0)  # bounded by ``window`` instead
        self.client.on_connect = self._on_connect
        if qos > 0:  # QoS 0 completion is "nothing left to write"; paho builds objects per on_publish call
            self.client.on_publish = self._on_publish
        try:
            self.client.connect(self.addr.host, self.addr.port, keepalive=30)
        except OSError as exc:
            raise BrokerUnreachable(f"cannot reach the MQTT broker at {self.addr.redacted()}: {exc}") from None
        end = time.monotonic() + connect_timeout_s
        while not self._connected and time.monotonic() < end and self.client.socket() is not None:
            self.poll(0.01)
        if not self._connected or self._refusal:
            self.close()
            raise BrokerUnreachable(f"the MQTT broker at {self.addr.redacted()} "
                                    f"{self._refusal or 'did not answer CONNECT'}")

    def _on_connect(self, _c: Any, _u: Any, _flags: Any, rc: Any, _props: Any = None) -> None:
        if _refused(rc):
            self._refusal = f"refused the connection: {rc}"
        self._connected = True

    def _on_publish(self, *_args: Any) -> None:
        self.done += 1

    @property
    def pending(self) -> int:
        """Messages not yet written (QoS 0: 0 or 1, paho queues only what the socket refused) or acked."""
        if self.qos == 0:
            return int(self.client.want_write())
        return self.sent - self.done

    def publish(self, topic: str, payload: bytes) -> None:
        if self.qos == 0:
            while self.client.want_write() and self.client.socket() is not None:  # the socket is full
                self.poll(0.001)
        elif self.sent - self.done >= self.window:
            while self.sent - self.done >= self.window // 2 and self.client.socket() is not None:
                self.poll(0.001)
        self.client.publish(topic, payload, qos=self.qos)
        self.sent += 1
        if self.sent % self.service_every == 0:
            self.poll(0)

    def poll(self, timeout: float) -> None:
        """Read acknowledgements, write what is pending, keep the session alive."""
        sock = self.client.socket()
        if sock is None:
            if timeout > 0:
                time.sleep(timeout)
            return
        want = self.client.want_write()
        readable, writable, _ = select.select([sock], [sock] if want else [], [], max(timeout, 0))
        if readable and self.client.loop_read(1000) != paho.MQTT_ERR_SUCCESS:
            log.warning("lost the connection to the MQTT broker at %s", self.addr.redacted())
        if writable:
            self.client.loop_write()
        now = time.monotonic()
        if now - self._last_misc >= 1.0:
            self._last_misc = now
            self.client.loop_misc()

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every message was written (QoS 0) or acknowledged; False on timeout."""
        end = time.monotonic() + timeout_s
        while self.pending > 0:
            if time.monotonic() > end or self.client.socket() is None:
                return False
            self.poll(0.005)
        return True

    def close(self) -> None:
        if self.client.socket() is not None:
            self.client.disconnect()


class DeviceFleet:
    """Per-device MQTT clients (own client id, last will, online status), driven by :meth:`poll`."""

    def __init__(self, url: str, *, root: str, community_id: str, qos: int, mqtt5: bool = True,
                 keepalive: int = 60, credentials: dict[str, str] | None = None,
                 connect_timeout_s: float = 10.0) -> None:
        self.addr = contract.BrokerAddress.parse(url)
        self.root = root
        self.community_id = community_id
        self.qos = qos
        self.mqtt5 = mqtt5
        self.keepalive = keepalive
        self.credentials = credentials or {}  # username (twin.accounts: {community}/{device}) -> password
        self.connect_timeout_s = connect_timeout_s
        self.clients: dict[str, paho.Client] = {}
        self._socks: dict[str, Any] = {}
        self._sent: dict[str, int] = {}
        self._done: dict[str, int] = {}
        self._acked: dict[str, bool] = {}
        self._refused: dict[str, str] = {}
        self._sel = selectors.DefaultSelector()
        self._last_misc = time.monotonic()

    def client_id(self, device_id: str) -> str:
        return f"{self.root}-{self.community_id}-{device_id}"

    def connect(self, device_id: str, status_topic: str, online: bytes, will: bytes) -> None:
        """Connect one device with its last will, wait for CONNACK, publish its online status."""
        user = accounts.device_username(self.community_id, device_id)
        creds = (user, self.credentials[user]) if user in self.credentials else None
        client = _new_client(self.addr, self.client_id(device_id), self.mqtt5, creds)
        client.will_set(status_topic, will, qos=1, retain=False)
        client.max_inflight_messages_set(100)

        def on_connect(_c: Any, _u: Any, _flags: Any, rc: Any, _props: Any = None) -> None:
            self._acked[device_id] = True
            if _refused(rc):
                self._refused[device_id] = str(rc)

        def on_publish(*_args: Any) -> None:
            self._done[device_id] = self._done.get(device_id, 0) + 1

        client.on_connect = on_connect
        client.on_publish = on_publish
        self._acked[device_id] = False
        try:
            client.connect(self.addr.host, self.addr.port, keepalive=self.keepalive)
        except OSError as exc:
            raise BrokerUnreachable(f"cannot reach the MQTT broker at {self.addr.redacted()}: {exc}") from None
        sock = client.socket()
        assert sock is not None
        self._sel.register(sock, selectors.EVENT_READ, device_id)
        self._socks[device_id] = sock
        self.clients[device_id] = client
        self._sent[device_id] = self._done[device_id] = 0
        end = time.monotonic() + self.connect_timeout_s
        while not self._acked[device_id] and device_id in self.clients:
            if time.monotonic() > end:
                raise BrokerUnreachable(f"the MQTT broker at {self.addr.redacted()} did not answer CONNECT "
                                        f"of device {device_id}")
            self.poll(0.01)
        if device_id in self._refused or device_id not in self.clients:
            why = self._refused.get(device_id, "connection closed")
            raise BrokerUnreachable(f"the MQTT broker at {self.addr.redacted()} refused device {device_id}: {why}")
        self.publish(device_id, status_topic, online)

    def publish(self, device_id: str, topic: str, payload: bytes) -> None:
        client = self.clients.get(device_id)
        if client is None:
            log.warning("device %s is not connected; message to %s dropped", device_id, topic)
            return
        self._sent[device_id] += 1
        client.publish(topic, payload, qos=self.qos)

    def _forget(self, device_id: str) -> paho.Client | None:
        """Stop driving a device's client (unregistered before paho or we close its socket)."""
        client = self.clients.pop(device_id, None)
        sock = self._socks.pop(device_id, None)
        if sock is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(sock)
        self._sent.pop(device_id, None)
        self._done.pop(device_id, None)
        return client

    def drop(self, device_id: str) -> None:
        """Lose the connection without DISCONNECT (power or network failure): the broker sends the will."""
        sock = self._socks.get(device_id)
        self._forget(device_id)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def disconnect(self, device_id: str, topic: str, payload: bytes) -> None:
        """Say goodbye: publish the offline status, wait for it to go out, then a clean DISCONNECT."""
        if device_id not in self.clients:
            return
        self.publish(device_id, topic, payload)
        end = time.monotonic() + 5
        while device_id in self.clients and self._done[device_id] < self._sent[device_id]:
            if time.monotonic() > end:
                break
            self.poll(0.01)
        client = self._forget(device_id)
        if client is not None:
            client.disconnect()

    def poll(self, timeout: float) -> None:
        """Read what arrived (CONNACK, PUBACK, PINGRESP), write what is pending, keep sessions alive."""
        for key, _mask in self._sel.select(timeout if timeout > 0 else 0):
            client = self.clients.get(key.data)
            if client is not None and client.loop_read(100) != paho.MQTT_ERR_SUCCESS:
                log.warning("device %s lost its connection to the broker", key.data)
                self._forget(key.data)
        for device_id, client in list(self.clients.items()):
            if client.want_write() and client.loop_write() != paho.MQTT_ERR_SUCCESS:
                log.warning("device %s lost its connection to the broker", device_id)
                self._forget(device_id)
        now = time.monotonic()
        if now - self._last_misc >= 1.0:
            self._last_misc = now
            for client in list(self.clients.values()):
                client.loop_misc()
        if timeout > 0 and not self.clients:
            time.sleep(timeout)

    def pending(self) -> int:
        """Messages not yet written (QoS 0) or acknowledged (QoS 1/2), over all connected devices."""
        return sum(self._sent[d] - self._done[d] for d in self.clients)

    def flush(self, timeout_s: float = 30.0) -> bool:
        end = time.monotonic() + timeout_s
        while self.pending() > 0:
            if time.monotonic() > end:
                return False
            self.poll(0.01)
        return True

    def close(self) -> None:
        """Disconnect every remaining device cleanly (no wills)."""
        self.flush(10)
        for device_id in list(self.clients):
            client = self._forget(device_id)
            if client is not None:
                client.disconnect()
        self._sel.close()
