"""A minimal batching MQTT publisher for scale runs (MQTT 3.1.1 and 5). Does network I/O.

paho writes every message with its own ``send()`` and builds Python objects for every
acknowledgement; at tens of thousands of messages a second those per-message costs dominate. This
client does only what a scale run needs - CONNECT, PUBLISH at QoS 0 or 1, PUBACK counting, PINGREQ,
DISCONNECT - and writes many PUBLISH packets with one ``sendall``. Flow control for QoS 1 honours
the broker's Receive Maximum (MQTT 5) and never has more than ``window`` messages unacknowledged.

Everything else (per-device clients, last wills, scenario and hostile runs) uses paho
(:mod:`simulators.mqtt`). Packets are built and parsed by the pure codec :mod:`twin.mqtt_codec`, which
the gateway's receive transport shares.
"""

from __future__ import annotations

import select
import socket
import ssl
import time

from simulators.errors import BrokerUnreachable
from twin import contract
from twin import mqtt_codec as codec


class BatchPublisher:
    """One connection, many devices' messages, few syscalls."""

    def __init__(self, url: str, *, client_id: str, qos: int, mqtt5: bool = True, keepalive: int = 30,
                 window: int = 20_000, batch_bytes: int = 64 * 1024, connect_timeout_s: float = 10.0) -> None:
        if qos not in (0, 1):
            raise ValueError("scale runs publish at QoS 0 or 1")
        self.addr = contract.BrokerAddress.parse(url)
        self.qos = qos
        self.mqtt5 = mqtt5
        self.keepalive = keepalive
        self.batch_bytes = batch_bytes
        self.sent = 0  # handed to the socket
        self.acked = 0
        self.refused = 0  # MQTT 5 PUBACKs with a failure reason code (e.g. not authorized)
        self._buf: list[bytes] = []
        self._buf_len = 0
        self._queued = 0
        self._rx = bytearray()
        self._mid = 0
        self._last_tx = time.monotonic()
        try:
            raw = socket.create_connection((self.addr.host, self.addr.port), timeout=connect_timeout_s)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock: socket.socket = (ssl.create_default_context().wrap_socket(raw, server_hostname=self.addr.host)
                                        if self.addr.tls else raw)
            self.sock.sendall(self._connect_packet(client_id))
            self.limit = min(window, 65_000, self._read_connack())
        except OSError as exc:
            raise BrokerUnreachable(f"cannot reach the MQTT broker at {self.addr.redacted()}: {exc}") from None
        self.sock.setblocking(False)

    def _connect_packet(self, client_id: str) -> bytes:
        return codec.connect_packet(client_id, username=self.addr.username, password=self.addr.password,
                                    keepalive=self.keepalive, clean=True, mqtt5=self.mqtt5)

    def _read_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            data += chunk
        return data

    def _read_connack(self) -> int:
        header = self._read_exact(1)[0]
        length, shift = 0, 0
        while True:
            b = self._read_exact(1)[0]
            length += (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        body = self._read_exact(length)
        if header != codec.CONNACK or len(body) < 2:
            raise BrokerUnreachable(f"the MQTT broker at {self.addr.redacted()} did not answer CONNECT")
        connack = codec.parse_connack(body, mqtt5=self.mqtt5)
        if connack.return_code != 0:
            raise BrokerUnreachable(f"the MQTT broker at {self.addr.redacted()} refused the connection "
                                    f"(code {connack.return_code})")
        return connack.receive_maximum

    def publish(self, topic: str, payload: bytes) -> None:
        if self.qos:
            if self.sent + self._queued - self.acked >= self.limit:
                self._send()
                while self.sent - self.acked >= self.limit:
                    self.poll(0.01)
            self._mid = self._mid % 65_535 + 1
        packet = codec.publish_packet(topic, payload, qos=self.qos, packet_id=self._mid if self.qos else 0,
                                      mqtt5=self.mqtt5)
        self._buf.append(packet)
        self._buf_len += len(packet)
        self._queued += 1
        if self._buf_len >= self.batch_bytes:
            self._send()

    def _send(self) -> None:
        if not self._buf:
            return
        data = b"".join(self._buf)
        self._buf.clear()
        self._buf_len = 0
        view = memoryview(data)
        while view:
            try:
                n = self.sock.send(view)
            except (BlockingIOError, ssl.SSLWantWriteError):
                select.select([self.sock], [self.sock], [], 0.05)
                self._read()
                continue
            except OSError as exc:
                raise BrokerUnreachable(f"lost the MQTT broker at {self.addr.redacted()}: {exc}") from None
            view = view[n:]
        self.sent += self._queued
        self._queued = 0
        self._last_tx = time.monotonic()

    def _read(self) -> None:
        try:
            while True:
                chunk = self.sock.recv(65_536)
                if not chunk:
                    raise BrokerUnreachable(f"the MQTT broker at {self.addr.redacted()} closed the connection")
                self._rx += chunk
                if len(chunk) < 65_536:
                    break
        except (BlockingIOError, ssl.SSLWantReadError):
            pass
        except OSError as exc:
            raise BrokerUnreachable(f"lost the MQTT broker at {self.addr.redacted()}: {exc}") from None
        self._parse()

    def _parse(self) -> None:
        try:
            packets, used = codec.decode(self._rx, mqtt5=self.mqtt5)
        except codec.ProtocolError as exc:
            raise BrokerUnreachable(f"the MQTT broker at {self.addr.redacted()} sent garbage: {exc}") from None
        for p in packets:
            if p.kind == codec.PUBACK:
                self.acked += 1
                if len(p.payload) >= 3 and p.payload[2] >= 0x80:
                    self.refused += 1
            elif p.kind == codec.DISCONNECT_TYPE:
                raise BrokerUnreachable(f"the MQTT broker at {self.addr.redacted()} disconnected this client")
        del self._rx[:used]

    def poll(self, timeout: float) -> None:
        """Send what is buffered, read acknowledgements, ping when the line has been quiet."""
        self._send()
        readable, _, _ = select.select([self.sock], [], [], max(timeout, 0))
        if readable:
            self._read()
        if time.monotonic() - self._last_tx > self.keepalive / 2:
            self.sock.sendall(codec.PINGREQ)
            self._last_tx = time.monotonic()

    @property
    def pending(self) -> int:
        return self._queued + (self.sent - self.acked if self.qos else 0)

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Write everything buffered; for QoS 1 wait until the broker acknowledged every message."""
        end = time.monotonic() + timeout_s
        self._send()
        while self.qos and self.acked < self.sent:
            if time.monotonic() > end:
                return False
            self.poll(0.01)
        return True

    def close(self) -> None:
        try:
            self._send()
            self.sock.setblocking(True)
            self.sock.sendall(codec.DISCONNECT)
        except OSError:
            pass
        finally:
            self.sock.close()
