"""Is a broker or a database really there? One-shot probes with a real handshake. Does I/O.

MQTT: a CONNECT/CONNACK handshake (MQTT 5, falling back to 3.1.1), optionally reading the broker's
retained ``$SYS/broker/version``; packets are built and parsed by the one codec, :mod:`twin.mqtt_codec`.
PostgreSQL: a login and ``SELECT 1``. Every failure is one human line, never an exception.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import ssl
import time
import uuid
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

import psycopg

from twin import mqtt_codec as codec

LOOPBACK = "127.0.0.1"
SYS_VERSION = "$SYS/broker/version"
AUTH_MARKERS = ("authentication", "password", "role", "pg_hba", "does not exist")  # login problems of PostgreSQL
_MAX_PROBE_PACKET = 65_536  # a CONNACK, SUBACK or the version message: anything longer is not our broker


class ProbeFail(Exception):
    def __init__(self, reason: str, *, try_v311: bool = False) -> None:
        super().__init__(reason)
        self.try_v311 = try_v311  # the broker may just not speak MQTT 5


@dataclass(frozen=True, slots=True)
class MqttProbe:
    error: str | None
    mqtt5: bool = True
    version: str | None = None  # e.g. "mosquitto version 2.0.11", from $SYS/broker/version


def check_mqtt(url: str, timeout_s: float) -> str | None:
    """None if an MQTT broker at ``url`` completes a CONNECT/CONNACK handshake, else the reason."""
    try:
        mqtt_session(url, timeout_s, level=4, want_version=False)
    except ProbeFail as exc:
        return str(exc)
    return None


def probe_mqtt(url: str, timeout_s: float) -> MqttProbe:
    """Handshake with MQTT 5, falling back to 3.1.1; read the broker version if it publishes one."""
    try:
        return MqttProbe(None, True, mqtt_session(url, timeout_s, level=5, want_version=True))
    except ProbeFail as exc:
        if not exc.try_v311:
            return MqttProbe(str(exc))
    try:
        return MqttProbe(None, False, mqtt_session(url, timeout_s, level=4, want_version=True))
    except ProbeFail as exc:
        return MqttProbe(str(exc), False)


def mqtt_session(url: str, timeout_s: float, *, level: Literal[4, 5], want_version: bool) -> str | None:
    """Connect, read CONNACK, optionally read $SYS/broker/version, disconnect. Raise ProbeFail."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or LOOPBACK
        tls = parts.scheme == "mqtts"
        port = parts.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise ProbeFail(f"bad MQTT URL ({exc})") from None
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    mqtt5 = level == 5
    deadline = time.monotonic() + timeout_s
    try:
        raw = socket.create_connection((host, port), timeout=timeout_s)
    except socket.gaierror:
        raise ProbeFail(f"cannot resolve host {host!r}") from None
    except ConnectionRefusedError:
        raise ProbeFail(f"connection refused (nothing listening on {host}:{port})") from None
    except TimeoutError:
        raise ProbeFail(f"no answer from {host}:{port} within {timeout_s:g}s") from None
    except OSError as exc:
        raise ProbeFail(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
    try:
        with raw, (ssl.create_default_context().wrap_socket(raw, server_hostname=host) if tls else raw) as sock:
            client_id = f"gridtwin-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            sock.sendall(codec.connect_packet(client_id, username=user, password=password, keepalive=10,
                                              mqtt5=mqtt5))
            reader = PacketReader(sock, mqtt5=mqtt5)
            first = reader.next(deadline, closed_hint=mqtt5)
            if first.kind != codec.CONNACK or len(first.payload) < 2:
                raise ProbeFail(f"{host}:{port} answered, but not with an MQTT CONNACK (is it an MQTT broker?)")
            connack = codec.parse_connack(first.payload, mqtt5=mqtt5)
            if connack.return_code:
                if connack.return_code in (1, 0x84):
                    raise ProbeFail("broker refused the connection: unsupported protocol version", try_v311=mqtt5)
                raise ProbeFail(f"broker refused the connection: {connack.reason}")
            version = None
            if want_version:
                version = _read_sys_version(sock, reader, mqtt5, min(deadline, time.monotonic() + 0.5))
            with contextlib.suppress(OSError):
                sock.sendall(codec.DISCONNECT)
            return version
    except codec.ProtocolError as exc:
        raise ProbeFail(f"{host}:{port} does not speak MQTT we understand ({exc})") from None
    except ssl.SSLError as exc:
        raise ProbeFail(f"TLS handshake with {host}:{port} failed: {exc.reason or exc}") from None
    except TimeoutError:
        raise ProbeFail(f"no MQTT CONNACK from {host}:{port} within {timeout_s:g}s") from None
    except OSError as exc:
        raise ProbeFail(f"connection to {host}:{port} failed: {exc.strerror or exc}", try_v311=mqtt5) from None


def _read_sys_version(sock: socket.socket, reader: PacketReader, mqtt5: bool, deadline: float) -> str | None:
    """Subscribe to $SYS/broker/version and return its retained value, or None (it is optional)."""
    try:
        sock.sendall(codec.subscribe_packet(1, [(SYS_VERSION, 0)], mqtt5=mqtt5))
        while True:
            p = reader.next(deadline)
            if p.kind == codec.PUBLISH and p.topic == SYS_VERSION:
                return p.payload.decode("utf-8", "replace").strip() or None
    except (ProbeFail, OSError, ValueError):  # ValueError includes codec.ProtocolError
        return None


class PacketReader:
    """Blocking reads of whole packets from a socket, until a deadline (for short probe sessions)."""

    def __init__(self, sock: socket.socket, *, mqtt5: bool) -> None:
        self._sock = sock
        self._mqtt5 = mqtt5
        self._buf = b""
        self._ready: list[codec.Packet] = []

    def next(self, deadline: float, *, closed_hint: bool = False) -> codec.Packet:
        """The next packet; TimeoutError after ``deadline``; ProbeFail when the peer closes or sends garbage."""
        while not self._ready:
            packets, used = codec.decode(self._buf, mqtt5=self._mqtt5, max_length=_MAX_PROBE_PACKET)
            self._buf = self._buf[used:]
            if packets:
                self._ready = packets
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self._sock.settimeout(remaining)
            chunk = self._sock.recv(65_536)
            if not chunk:
                raise ProbeFail("the server closed the connection without an MQTT CONNACK (is it an MQTT broker?)",
                                try_v311=closed_hint)
            self._buf += chunk
        return self._ready.pop(0)


# -- PostgreSQL ------------------------------------------------------------------------------------------


def check_db(url: str, timeout_s: float) -> str | None:
    """None if PostgreSQL at ``url`` accepts a login and answers ``SELECT 1``, else the reason."""
    err, _ = db_probe(url, timeout_s)
    return err


def db_probe(url: str, timeout_s: float) -> tuple[str | None, str | None]:
    """(error or None, server version) after a real login and a query."""
    try:
        with psycopg.connect(url, connect_timeout=max(2, math.ceil(timeout_s)), autocommit=True) as conn:
            conn.execute("SELECT 1")
            version = str(conn.info.parameter_status("server_version") or "").split(" ")[0] or None
    except psycopg.Error as exc:
        return one_line(str(exc)), None
    return None, version


def one_line(text: str) -> str:
    text = " ".join(text.split())
    text = text.removeprefix("connection failed: ")
    return text if len(text) <= 300 else text[:297] + "..."
