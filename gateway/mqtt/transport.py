"""How the gateway talks MQTT: a fast minimal MQTT 3.1.1 client, and paho behind the same surface. Does I/O.

The gateway needs little of MQTT - one persistent session, SUBSCRIBE, PUBLISH in at QoS 0/1 with
acknowledgements sent only after the database commit, a few PUBLISHes out (errors, alarm events) -
but needs it at tens of thousands of messages a second. paho spends most of its time on what we do
not need (one-byte header reads, per-packet objects, MQTT 5 property handling, one PUBACK per send
through its packet queue). :class:`FastTransport` reads large chunks, splits them into many packets at
once with the pure codec :mod:`twin.mqtt_codec`, and writes all PUBACKs of a committed batch with one
``sendall``. :class:`PahoTransport` keeps paho for MQTT 5 (and as a fallback, setting
``GRIDTWIN_MQTT_TRANSPORT=paho``).

Both call ``on_message(topic, payload, mid, qos)`` on their reader thread; a callback that blocks
(the gateway's bounded queue when full) stops reading from the socket, so the broker stops sending:
back-pressure. ``mid`` is an opaque acknowledgement token for :meth:`Transport.ack_many`.

Every socket, TLS and protocol failure is translated at this edge into :class:`MqttError`; the
reconnect loop is a loop around ``except MqttError``, with exponential, capped backoff and jitter (so a
fleet of gateways does not reconnect in lock-step after a broker restart).

What the fast transport does with the rest of MQTT 3.1.1:

- CONNACK ``session_present``: with ``clean_session=False`` a reconnect that finds no session on the broker
  means what it queued for the gateway is gone; that is logged as a warning and counted (``sessions_lost``).
- SUBACK: a refused filter (0x80) makes the connection fail with :class:`SubscriptionRefused` naming it:
  :meth:`FastTransport.start` raises it, later reconnects log it and back off.
- QoS 2 deliveries (a subscription at QoS 2): handed to ``on_message`` exactly once per packet id; the
  acknowledgement after the commit sends PUBREC, the broker's PUBREL is answered with PUBCOMP, and a
  redelivery (DUP) of a message still held or already acknowledged is not handed over again.
- status: with ``status`` (:class:`StatusMessages`) the CONNECT carries a retained "offline" last will,
  every (re)connection publishes a retained "online" birth message, and :meth:`FastTransport.stop` publishes
  "offline" before its DISCONNECT (which makes the broker discard the will).

Oversize messages: the fast transport never buffers a PUBLISH whose payload may exceed
``max_payload_bytes`` (the gateway's limit) by more than :data:`~twin.mqtt_codec.PUBLISH_HEADROOM`. It
reads such a packet's topic and packet id, keeps the first ``max_payload_bytes + 1`` payload bytes,
discards the rest as it streams in (memory stays bounded whatever the size), and hands the truncated
message to ``on_message`` like any other: the gateway's validator rejects it as ``too_large``, stores the
dead letter, and the acknowledgement that follows keeps the broker from redelivering it forever. paho
has no such limit: with MQTT 5 the gateway announces a Maximum Packet Size (the broker then drops bigger
messages for it); with MQTT 3.1.1 and paho only the broker's ``max_packet_size`` protects the gateway.
"""

from __future__ import annotations

import contextlib
import logging
import random
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from gateway.mqtt.common import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    ConnectionRefused,
    MqttError,
    OnConnect,
    OnDisconnect,
    OnMessage,
    StatusMessages,
    SubscriptionRefused,
    Transport,
    tls_context,
    transport_options,
)
from gateway.mqtt.paho_transport import PahoTransport
from twin import contract
from twin import mqtt_codec as codec

__all__ = ["DEFAULT_MAX_PAYLOAD_BYTES", "ConnectionRefused", "FastTransport", "MqttError", "OnConnect", "OnDisconnect",
           "OnMessage", "PahoTransport", "StatusMessages", "SubscriptionRefused", "Transport", "tls_context",
           "transport_options"]

log = logging.getLogger(__name__)


# -- the fast transport -----------------------------------------------------------------------------

_RECV_BYTES = 256 * 1024
_MAX_CONTROL_PACKET = 65_536  # anything but PUBLISH from the broker is tiny (SUBACK, PUBACK, CONNACK...)
_POLL_S = 1.0  # how often an idle reader wakes to check for a dead connection or a stop
_QOS2 = 1 << 40  # tag of QoS 2 ack tokens (packet ids of the session, not of one connection)
_HELD, _RECEIVED = 1, 2  # inbound QoS 2: handed to on_message / acknowledged with PUBREC, waiting for PUBREL


class _Connection:
    """One open socket (plain or TLS), non-blocking after the handshake.

    The reader thread calls :meth:`recv`; any thread may call :meth:`send_all` under the transport's
    send lock. An SSL object must not run a read and a write at the same time, so each single
    non-blocking socket operation holds ``_io`` (never while waiting), which costs nothing for plain
    TCP and makes TLS safe.
    """

    def __init__(self, sock: socket.socket, generation: int, send_timeout_s: float) -> None:
        self.sock = sock
        self.generation = generation  # tags the mids of this connection: acks for another one are dropped
        self.leftover = b""  # bytes received right after CONNACK (a persistent session's queued messages)
        self._send_timeout_s = send_timeout_s
        self._ssl = sock if isinstance(sock, ssl.SSLSocket) else None
        self._io = threading.Lock()
        sock.setblocking(False)
        self._readable = selectors.DefaultSelector()
        self._readable.register(sock, selectors.EVENT_READ)
        self._writable = selectors.DefaultSelector()
        self._writable.register(sock, selectors.EVENT_WRITE)

    def recv(self, n: int, timeout_s: float) -> bytes | None:
        """Up to ``n`` bytes; None when nothing arrived within ``timeout_s``."""
        if self._ssl is not None:
            with self._io:
                buffered = self._ssl.pending()  # TLS may hold decrypted bytes that select cannot see
        else:
            buffered = 0
        if not buffered:
            try:
                if not self._readable.select(timeout_s):
                    return None
            except (OSError, ValueError) as exc:
                raise MqttError(f"connection lost: {exc}") from exc
        with self._io:
            try:
                data = self.sock.recv(n)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return None
            except (OSError, ValueError) as exc:  # ValueError: the socket was closed under us
                raise MqttError(f"connection lost: {exc}") from exc
        if not data:
            raise MqttError("the broker closed the connection")
        return data

    def send_all(self, data: bytes) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + self._send_timeout_s
        while view:
            with self._io:
                try:
                    sent = self.sock.send(view)
                except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    sent = 0
                except (OSError, ValueError) as exc:
                    raise MqttError(f"connection lost: {exc}") from exc
            view = view[sent:]
            if view and not sent:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise MqttError(f"the broker took nothing for {self._send_timeout_s:.0f}s")
                try:
                    self._writable.select(min(left, 0.5))
                except (OSError, ValueError) as exc:
                    raise MqttError(f"connection lost: {exc}") from exc

    def abort(self) -> None:
        """Break the connection so the reader wakes with an error (any thread)."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        for sel in (self._readable, self._writable):
            with contextlib.suppress(OSError, ValueError, KeyError):
                sel.close()
        with contextlib.suppress(OSError):
            self.sock.close()


class FastTransport:
    """Minimal MQTT 3.1.1 client for the gateway: one reader thread, one keepalive thread, batched acks.

    Subscriptions are made again on every connection; with ``clean_session=False`` the broker then
    redelivers the unacknowledged QoS 1 messages of the session (with DUP set) and the gateway's
    exactly-once keys drop what was already stored. Outgoing QoS 1 messages are kept until the broker
    acknowledges them and sent again after a reconnect (at most ``max_pending_publishes``).
    One-shot: :meth:`start` once, :meth:`stop` once. See the module doc for sessions, SUBACK, QoS 2 and status.
    """

    def __init__(self, url: str, *, client_id: str, subscriptions: Sequence[tuple[str, int]],
                 on_message: OnMessage, on_connect: OnConnect | None = None,
                 on_disconnect: OnDisconnect | None = None, keepalive: int = 30, clean_session: bool = False,
                 tls_context: ssl.SSLContext | None = None, connect_timeout_s: float = 10.0,
                 reconnect_min_s: float = 0.25, reconnect_max_s: float = 30.0, recv_bytes: int = _RECV_BYTES,
                 max_packet_bytes: int = _MAX_CONTROL_PACKET, max_pending_publishes: int = 10_000,
                 max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES, status: StatusMessages | None = None) -> None:
        if not subscriptions:
            raise ValueError("the gateway needs at least one subscription")
        if keepalive < 1:
            raise ValueError("keepalive must be at least 1 s")
        self.addr = contract.BrokerAddress.parse(url)
        self.client_id = client_id
        self.subscriptions = [(f, int(q)) for f, q in subscriptions]
        self.keepalive = keepalive
        self.clean_session = clean_session
        self._tls_context = tls_context
        self._connect_timeout_s = connect_timeout_s
        self._reconnect = (reconnect_min_s, max(reconnect_min_s, reconnect_max_s))
        self.status = status
        self._recv_bytes = recv_bytes
        self._max_packet = max_packet_bytes  # any packet but PUBLISH: longer ones are a protocol error
        self._max_payload = max_payload_bytes
        self._max_publish = max_payload_bytes + codec.PUBLISH_HEADROOM  # longer PUBLISHes are never buffered
        self._max_pending = max_pending_publishes
        self._on_message = on_message
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._conn: _Connection | None = None
        self._generation = 0
        self._send_lock = threading.Lock()  # one writer on the socket at a time: packets never interleave
        self._pub_lock = threading.Lock()  # outgoing packet ids and unacknowledged QoS 1 publishes (no I/O)
        self._pending: dict[int, bytes] = {}  # packet id -> PUBLISH sent at QoS 1, not yet acknowledged
        self._inbound2: dict[int, int] = {}  # packet id -> _HELD / _RECEIVED: QoS 2 deliveries of the session
        self._next_id = 0
        self._sub_id = 0
        self._stopping = threading.Event()
        self._last_tx = self._last_rx = self._last_ping = time.monotonic()
        self._reader: threading.Thread | None = None
        self._pinger: threading.Thread | None = None
        self._connected_once = False
        self._first = threading.Event()  # the first connection's SUBACK arrived, or the connection failed before
        self._first_error: MqttError | None = None
        self._backoff_reset = False  # a connection got its SUBACK: the next reconnect starts from the minimum delay
        self.dropped_publishes = 0  # QoS 1 publishes dropped because too many were unacknowledged
        self.oversize_messages = 0  # PUBLISHes too long to buffer, passed on truncated (see the module doc)
        self.session_present = False  # the broker's CONNACK flag of the current (last) connection
        self.sessions_lost = 0  # reconnects that found no session on the broker (what it queued is lost)
        self.reconnects = 0  # connections after the first

    # -- public surface --------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def start(self, timeout_s: float = 10.0) -> None:
        """First connection in the caller's thread, then the threads take over; returns once the broker has
        answered the subscription. Raises :class:`MqttError` (e.g. :class:`ConnectionRefused`,
        :class:`SubscriptionRefused`) when the first connection fails; the transport is stopped then."""
        deadline = time.monotonic() + timeout_s
        self._connect_timeout_s = min(self._connect_timeout_s, timeout_s)
        conn = self._open()
        self._reader = threading.Thread(target=self._run, args=(conn,), name="gridtwin-mqtt-reader", daemon=True)
        self._pinger = threading.Thread(target=self._keepalive, name="gridtwin-mqtt-keepalive", daemon=True)
        self._reader.start()
        self._pinger.start()
        if not self._first.wait(max(0.0, deadline - time.monotonic())):
            self._first_error = MqttError(f"no SUBACK from {self.addr.redacted()} within {timeout_s:g}s")
        if self._first_error is not None:
            self.stop()
            raise self._first_error

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        with self._send_lock:
            conn = self._conn
            if conn is not None:
                with contextlib.suppress(MqttError):
                    if self.status is not None:  # DISCONNECT discards the will: say "offline" ourselves first
                        f = self.status.farewell
                        conn.send_all(codec.publish_packet(f.topic, f.payload, qos=0, retain=f.retain))
                    conn.send_all(codec.DISCONNECT)  # normal disconnect: the broker keeps our session
                conn.abort()
        for t in (self._reader, self._pinger):
            if t is not None and t is not threading.current_thread():
                t.join(timeout_s)

    def ack(self, mid: int) -> None:
        self.ack_many((mid,))

    def ack_many(self, mids: Sequence[int]) -> None:
        """PUBACK every QoS 1 message in ``mids`` with one write. Acks of an earlier connection are dropped:
        the broker has redelivered those messages, and their new copies are acknowledged in turn. QoS 2
        messages get their PUBREC, on whichever connection is current (they are the session's)."""
        qos2 = [m & 0xFFFF for m in mids if m & _QOS2]
        recs = b""
        if qos2:
            with self._pub_lock:
                for pid in qos2:
                    if pid in self._inbound2:
                        self._inbound2[pid] = _RECEIVED
                        recs += codec.pubrec_packet(pid)
        with self._send_lock:
            conn = self._conn
            if conn is None:
                return  # QoS 2: PUBREC follows when the broker redelivers it to the session
            gen = conn.generation
            data = codec.pubacks([m & 0xFFFF for m in mids if m >> 16 == gen and not m & _QOS2]) + recs
            if data:
                self._send_locked(conn, data)

    def publish(self, topic: str, payload: bytes, qos: int = 0, *, retain: bool = False) -> None:
        if qos == 0:
            packet = codec.publish_packet(topic, payload, retain=retain)
        elif qos == 1:
            with self._pub_lock:
                if len(self._pending) >= self._max_pending:
                    self.dropped_publishes += 1
                    if self.dropped_publishes == 1 or self.dropped_publishes % 1000 == 0:
                        log.warning("%d QoS 1 messages wait for the broker; dropped %d (latest on %s)",
                                    len(self._pending), self.dropped_publishes, topic)
                    return
                pid = self._next_id
                for _ in range(0xFFFF):
                    pid = pid % 0xFFFF + 1
                    if pid not in self._pending:
                        break
                self._next_id = pid
                packet = codec.publish_packet(topic, payload, qos=1, packet_id=pid, retain=retain)
                self._pending[pid] = packet
        else:
            raise ValueError("the gateway publishes at QoS 0 or 1")
        with self._send_lock:
            if self._conn is not None:  # QoS 1 is sent again after a reconnect; QoS 0 is dropped while down
                self._send_locked(self._conn, packet)

    # -- connection ------------------------------------------------------------------------------

    def _open(self) -> _Connection:
        """TCP (and TLS), CONNECT, CONNACK. Blocking, bounded by the connect timeout."""
        host, port, timeout = self.addr.host, self.addr.port, self._connect_timeout_s
        try:
            raw = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise MqttError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from exc
        sock: socket.socket = raw
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.addr.tls:
                ctx = self._tls_context or ssl.create_default_context()
                sock = ctx.wrap_socket(raw, server_hostname=host)
            sock.sendall(codec.connect_packet(self.client_id, username=self.addr.username,
                                              password=self.addr.password, keepalive=self.keepalive,
                                              clean=self.clean_session,
                                              will=self.status.will if self.status is not None else None))
            buf = b""
            while not (size := _packet_size_at(buf)) or len(buf) < size:
                if size > 1024:
                    raise MqttError(f"expected CONNACK, got a {size}-byte packet")
                chunk = sock.recv(65_536)
                if not chunk:
                    raise MqttError("the broker closed the connection before CONNACK")
                buf += chunk
            (first,), _ = codec.decode(buf[:size])
            if first.kind != codec.CONNACK:
                raise MqttError(f"expected CONNACK, got packet type 0x{first.kind:02x}")
            connack = codec.parse_connack(first.payload)
            if connack.return_code:
                raise ConnectionRefused(connack.return_code, connack.reason)
            self._session(connack.session_present)
            with self._pub_lock:
                self._generation += 1
                gen = self._generation
            conn = _Connection(sock, gen, send_timeout_s=max(10.0, float(self.keepalive)))
            conn.leftover = buf[size:]  # the session's queued messages may follow CONNACK
            return conn
        except MqttError:
            sock.close()  # the TLS socket took over the descriptor of the plain one
            raw.close()
            raise
        except (OSError, ValueError) as exc:  # incl. ssl errors, a bad host name, codec.ProtocolError
            sock.close()
            raw.close()
            raise MqttError(f"handshake with {host}:{port} failed: {exc}") from exc

    def _session(self, present: bool) -> None:
        """Act on CONNACK's session present flag."""
        self.session_present = present
        if not present:
            with self._pub_lock:
                self._inbound2.clear()  # packet ids of a session the broker no longer has
            if not self.clean_session and self._connected_once:
                self.sessions_lost += 1
                log.warning("the broker %s has no session for %r after a reconnect: what it queued for the gateway "
                            "while it was away is lost (%d lost sessions so far)", self.addr.redacted(),
                            self.client_id, self.sessions_lost)
            elif not self.clean_session:
                log.info("no session on the broker for %r: a new one starts (first start, or the broker lost it)",
                         self.client_id)
        if self._connected_once:
            self.reconnects += 1
        self._connected_once = True

    def _backoff(self, attempt: int) -> float:
        """Seconds to wait before reconnect attempt ``attempt`` (0 = right after a drop): exponential from
        ``reconnect_min_s``, capped at ``reconnect_max_s``, with jitter (a random half to full delay)."""
        low, high = self._reconnect
        delay = min(high, low * (2 ** min(attempt, 30)))
        return random.uniform(delay / 2, delay)

    def _run(self, conn: _Connection | None) -> None:
        """The reader thread: serve a connection until it fails, reconnect with backoff, repeat."""
        attempt = 0
        while not self._stopping.is_set():
            if conn is None:
                if self._backoff_reset:
                    attempt, self._backoff_reset = 0, False
                delay = self._backoff(attempt)
                attempt += 1
                if self._stopping.wait(delay):
                    break
                try:
                    conn = self._open()
                except MqttError as exc:
                    log.warning("cannot reconnect to %s: %s; next try in about %.1fs", self.addr.redacted(), exc,
                                self._backoff(attempt))
                    continue
            reason = "stopped"
            try:
                self._serve(conn)
            except MqttError as exc:
                reason = str(exc)
                if not self._first.is_set():  # start() raises it
                    self._first_error = exc
                    self._first.set()
                elif isinstance(exc, SubscriptionRefused):
                    log.error("%s", exc)
            except Exception as exc:  # a bug of ours: drop the connection and start over, never end the thread
                log.exception("MQTT reader failed")
                reason = f"internal error: {type(exc).__name__}"
            finally:
                with self._send_lock:
                    self._conn = None
                conn.close()
            conn = None
            if not self._stopping.is_set() and self._on_disconnect is not None:
                _quietly(self._on_disconnect, reason)

    def _serve(self, conn: _Connection) -> None:
        now = time.monotonic()
        self._last_rx = self._last_tx = self._last_ping = now
        with self._send_lock:
            self._conn = conn
            self._sub_id = self._sub_id % 0xFFFF + 1
            self._send_locked(conn, codec.subscribe_packet(self._sub_id, self.subscriptions), raise_=True)
        with self._pub_lock:
            again = [bytes((p[0] | 0x08,)) + p[1:] for p in self._pending.values()]  # DUP: sent before
        if again:
            with self._send_lock:
                self._send_locked(conn, b"".join(again), raise_=True)
        if self.status is not None:  # after every (re)connect: the will of a dropped connection said "offline"
            b = self.status.birth
            self.publish(b.topic, b.payload, b.qos, retain=b.retain)
        dead_after = 1.5 * self.keepalive + _POLL_S
        # ``buf`` holds the start of a packet that is not complete yet; ``need`` is how many bytes it must
        # hold before decoding is worth trying again (the packet's size once its header is complete).
        # ``big`` is a PUBLISH too long to buffer, being skipped as its bytes arrive.
        buf = bytearray()
        need = 0
        big: _Oversize | None = None
        data: bytes | memoryview | None = conn.leftover
        while not self._stopping.is_set():
            while data:
                try:
                    if big is not None:
                        rest = big.feed(data)
                        if not big.done:
                            break
                        self._dispatch_oversize(big, conn)
                        big = None
                        data = bytes(rest)
                        continue
                    if isinstance(data, memoryview):
                        data = bytes(data)
                    packets, used = codec.decode(data, max_length=self._max_packet, max_publish=self._max_publish)
                    header = codec.fixed_header(data, used) if used < len(data) else None
                except codec.ProtocolError as exc:
                    raise MqttError(f"bad data from the broker: {exc}") from exc
                self._dispatch(packets, conn)
                if header is not None and header.length > self._max_publish:  # decode stopped in front of it
                    big = _Oversize(header, keep=self._max_payload + 1)
                    data = memoryview(data)[used:]
                    continue
                if used < len(data):
                    buf += memoryview(data)[used:]
                    need = _bytes_needed(buf)
                data = None
            chunk = conn.recv(self._recv_bytes, _POLL_S)
            now = time.monotonic()
            if chunk is None:
                if now - self._last_rx > dead_after:
                    raise MqttError(f"no answer from the broker for {now - self._last_rx:.0f}s")
                data = None
                continue
            self._last_rx = now
            if big is not None or not buf:
                data = chunk  # the common case: decode the received bytes as they are, no copy
                continue
            buf += chunk
            if len(buf) < need:
                data = None  # a large packet still arriving: keep reading before decoding
                continue
            data = bytes(buf)
            buf.clear()

    def _dispatch(self, packets: list[codec.Packet], conn: _Connection) -> None:
        on_message = self._on_message
        tag = conn.generation << 16
        for p in packets:
            if p.kind == codec.PUBLISH:
                qos = (p.flags >> 1) & 0x03
                try:
                    if qos == 1:
                        on_message(p.topic, p.payload, tag | p.packet_id, 1)
                    elif qos == 0:
                        on_message(p.topic, p.payload, 0, 0)
                    elif qos == 2:
                        self._qos2(p, conn)
                    else:
                        raise MqttError("the broker sent a PUBLISH with QoS 3 (malformed)")
                except MqttError:
                    raise
                except Exception:  # one bad message or handler must not stop intake
                    log.exception("message handler failed on %s", p.topic)
            elif p.kind == codec.PUBACK:
                with self._pub_lock:
                    self._pending.pop(p.packet_id, None)
            elif p.kind == codec.PUBREL:
                with self._pub_lock:
                    self._inbound2.pop(p.packet_id, None)
                with self._send_lock:  # always answered: the broker may release an id we already forgot
                    self._send_locked(conn, codec.pubcomp_packet(p.packet_id))
            elif p.kind == codec.SUBACK:
                self._subscribed(p)
            elif p.kind == codec.PINGRESP:
                pass
            elif p.kind == codec.DISCONNECT_TYPE:
                raise MqttError("the broker disconnected the gateway")
            else:
                raise MqttError(f"unexpected packet type 0x{p.kind:02x} from the broker")

    def _qos2(self, p: codec.Packet, conn: _Connection) -> None:
        """A QoS 2 PUBLISH: hand it over once per packet id; a redelivery waits for (or repeats) its PUBREC."""
        pid = p.packet_id
        with self._pub_lock:
            state = self._inbound2.get(pid)
            if state is None:
                self._inbound2[pid] = _HELD
        if state is None:
            self._on_message(p.topic, p.payload, _QOS2 | pid, 2)
        elif state == _RECEIVED:  # our PUBREC was lost with a connection: say it again
            with self._send_lock:
                self._send_locked(conn, codec.pubrec_packet(pid))
        # _HELD: the gateway still has it; its ack sends the PUBREC

    def _dispatch_oversize(self, big: _Oversize, conn: _Connection) -> None:
        """Hand a skipped PUBLISH to ``on_message`` with its payload cut to ``max_payload_bytes + 1`` bytes:
        the validator rejects it as too_large and the gateway acknowledges it like any rejection."""
        topic, pid, payload = big.message()
        self.oversize_messages += 1
        if self.oversize_messages == 1 or self.oversize_messages % 100 == 0:
            log.warning("a %d-byte message on %s exceeds the %d-byte limit: passed on truncated (%d so far)",
                        big.total, topic, self._max_payload, self.oversize_messages)
        packet = codec.Packet(codec.PUBLISH, big.header.first & 0x0F, pid, topic, payload)
        self._dispatch([packet], conn)

    def _subscribed(self, p: codec.Packet) -> None:
        if p.packet_id != self._sub_id:
            return  # an answer to a SUBSCRIBE of an earlier connection
        codes = codec.suback_codes(p.payload)
        if len(codes) != len(self.subscriptions):
            raise MqttError(f"SUBACK with {len(codes)} codes for {len(self.subscriptions)} filters")
        refused = [(f, c) for (f, _q), c in zip(self.subscriptions, codes, strict=True) if c >= 0x80]
        if refused:
            raise SubscriptionRefused(refused)
        self._backoff_reset = True
        if not self._first.is_set():
            self._first.set()
        if self._on_connect is not None:
            _quietly(self._on_connect)

    def _send_locked(self, conn: _Connection, data: bytes, *, raise_: bool = False) -> None:
        """Write under the send lock. A failure breaks the connection (the reader then reconnects)."""
        try:
            conn.send_all(data)
        except MqttError:
            conn.abort()
            if raise_:
                raise
            return
        self._last_tx = time.monotonic()

    def _keepalive(self) -> None:
        """PINGREQ when we have sent or received nothing for half the keepalive.

        Runs on its own thread so the session stays alive while the reader is blocked by back-pressure;
        the PINGRESPs keep the reader's dead-connection check quiet once it reads again.
        """
        half = self.keepalive / 2
        while not self._stopping.wait(min(1.0, half / 2)):
            now = time.monotonic()
            if now - self._last_ping < half:
                continue
            if now - self._last_tx >= half or now - self._last_rx >= half:
                with self._send_lock:
                    if self._conn is not None:
                        self._last_ping = now
                        self._send_locked(self._conn, codec.PINGREQ)


class _Oversize:
    """A PUBLISH too long to buffer: keeps its head (fixed and variable header) and the first ``keep``
    payload bytes, and only counts the rest away as it streams in. Memory: at most 5 + 2 + 65,535 + 2 +
    ``keep`` bytes, whatever the packet's size."""

    def __init__(self, header: codec.FixedHeader, *, keep: int) -> None:
        self.header = header
        self.total = header.size + header.length  # bytes of the whole packet
        self.seen = 0  # bytes of it consumed so far
        self.keep = keep
        self.head = bytearray()
        self._parsed: codec.PublishHead | None = None

    @property
    def done(self) -> bool:
        return self.seen >= self.total

    def _want(self) -> int:
        """How many of the packet's first bytes to keep, as far as is known yet."""
        if self._parsed is None:
            self._parsed = codec.publish_head(self.head, self.header)
        if self._parsed is None:  # topic length or topic not complete yet: take what is needed to learn it
            j = self.header.size
            if len(self.head) < j + 2:
                return j + 2
            tlen = (self.head[j] << 8) | self.head[j + 1]
            return j + 2 + tlen + (2 if self.header.first & 0x06 else 0)
        return min(self.total, self._parsed.size + self.keep)

    def feed(self, data: bytes | memoryview) -> memoryview:
        """Consume this packet's part of ``data``; return what follows it (empty while it goes on)."""
        view = memoryview(data)
        take = min(len(view), self.total - self.seen)
        used = 0
        while used < take and (room := self._want() - len(self.head)) > 0:
            n = min(room, take - used)
            self.head += view[used:used + n]
            used += n
        self.seen += take
        return view[take:]

    def message(self) -> tuple[str, int, bytes]:
        """(topic, packet id, first payload bytes) once :attr:`done`."""
        parsed = self._parsed or codec.publish_head(self.head, self.header)
        if parsed is None:  # cannot happen for a packet that is done: its head fit in it
            raise MqttError("a PUBLISH ended before its topic")
        return parsed.topic, parsed.packet_id, bytes(self.head[parsed.size:])


def _packet_size_at(buf: bytes | bytearray) -> int:
    """Total size of the packet at the start of ``buf`` if its fixed header is complete, else 0."""
    length, shift = 0, 0
    for k in range(1, min(len(buf), 5)):
        b = buf[k]
        length |= (b & 0x7F) << shift
        if not b & 0x80:
            return 1 + k + length
        shift += 7
    return 0


def _bytes_needed(buf: bytearray) -> int:
    """How many bytes the incomplete packet in ``buf`` needs: its size, or one more byte while its header
    is incomplete (never <= len(buf): decoding again without new bytes would find nothing new)."""
    return max(_packet_size_at(buf), len(buf) + 1)


def _quietly(fn: Callable[..., None], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:  # a hook's bug must not end the reader thread
        log.exception("MQTT connection hook %s failed", getattr(fn, "__name__", fn))
