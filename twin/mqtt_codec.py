"""MQTT 3.1.1 / 5 packet codec for the few packets gridtwin's own clients speak. Pure: bytes in, bytes out.

No sockets here (``twin`` stays free of I/O): the wire-level clients - the scale publisher
(:mod:`simulators.wire`) and the gateway's receive transport (:mod:`gateway.mqtt.transport`) - do the I/O
and use these functions to build packets and to split a received byte stream into packets.

The decoder is built for throughput: :func:`decode` takes everything received so far and returns
every complete packet in it at once, so a client reads large chunks and pays Python overhead per
packet only for the few slicing operations a packet needs. Only what a client of ours receives is
decoded (PUBLISH at QoS 0/1/2, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK, PINGRESP, CONNACK,
DISCONNECT); other packets are returned undecoded for the caller to refuse.

A receiver that must not buffer huge messages passes ``max_publish`` to :func:`decode`, which then stops
in front of a longer PUBLISH; :func:`fixed_header` and :func:`publish_head` let the caller read just
that packet's topic and packet id and skip the rest as it streams in.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import NamedTuple

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK = 0x10, 0x20, 0x30, 0x40, 0x80, 0x90
PUBREC, PUBREL, PUBCOMP, UNSUBACK = 0x50, 0x60, 0x70, 0xB0
PINGREQ_TYPE, PINGRESP, DISCONNECT_TYPE = 0xC0, 0xD0, 0xE0
_WITH_PACKET_ID = frozenset((PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK))

PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"  # normal disconnection (3.1.1; in 5 a zero-length body means reason 0x00)

MAX_REMAINING_LENGTH = 268_435_455  # four varint bytes: the protocol's limit
PUBLISH_HEADROOM = 4096  # room for a PUBLISH's topic, packet id and headers around its payload

_U16 = struct.Struct("!H")
_PUBACK = struct.Struct("!HH")  # fixed header (0x40, length 2) + packet id

CONNACK_REASONS = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
    0x80: "unspecified error",
    0x84: "unsupported protocol version",
    0x85: "client identifier not valid",
    0x86: "bad user name or password",
    0x87: "not authorized",
    0x88: "server unavailable",
    0x89: "server busy",
    0x8A: "banned",
}

SUBACK_REASONS = {
    0x80: "refused",  # MQTT 3.1.1's only failure code; MQTT 5's "unspecified error"
    0x83: "implementation specific error",
    0x87: "not authorized",
    0x8F: "topic filter invalid",
    0x91: "packet identifier in use",
    0x97: "quota exceeded",
    0x9E: "shared subscriptions not supported",
    0xA1: "subscription identifiers not supported",
    0xA2: "wildcard subscriptions not supported",
}


class ProtocolError(ValueError):
    """The byte stream is not MQTT we understand (bad length, malformed packet)."""


class Packet(NamedTuple):
    """One decoded packet.

    ``kind`` is the packet type (high nibble of the first byte, e.g. ``PUBLISH``), ``flags`` the low
    nibble (PUBLISH: DUP 0x8, QoS 0x6, RETAIN 0x1). For PUBLISH, ``topic`` and ``payload`` are the
    message and ``packet_id`` is 0 at QoS 0; for every other type ``topic`` is empty, ``payload`` is
    the packet's body (variable header and payload) and ``packet_id`` is read where the type has one
    (PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK), else 0.
    """

    kind: int
    flags: int
    packet_id: int
    topic: str
    payload: bytes

    @property
    def qos(self) -> int:
        return (self.flags >> 1) & 0x03

    @property
    def dup(self) -> bool:
        return bool(self.flags & 0x08)


# -- encoding ---------------------------------------------------------------------------------------


def varint(n: int) -> bytes:
    """MQTT variable byte integer (the remaining length of a packet)."""
    if not 0 <= n <= MAX_REMAINING_LENGTH:
        raise ValueError(f"{n} does not fit an MQTT variable byte integer")
    if n < 128:
        return bytes((n,))
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def string(s: str | bytes) -> bytes:
    """UTF-8 string (or binary data) with its two-byte length prefix."""
    b = s.encode() if isinstance(s, str) else s
    if len(b) > 0xFFFF:
        raise ValueError("MQTT strings are at most 65535 bytes")
    return _U16.pack(len(b)) + b


class Will(NamedTuple):
    """The last will the broker publishes when the connection ends without a DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


def connect_packet(client_id: str, *, username: str | None = None, password: str | None = None,
                   keepalive: int = 60, clean: bool = True, mqtt5: bool = False, will: Will | None = None) -> bytes:
    """CONNECT, optionally with a last will; MQTT 5 with no properties (nor will properties)."""
    flags = 0x02 if clean else 0x00
    payload = string(client_id)
    if will is not None:
        if will.qos not in (0, 1, 2):
            raise ValueError(f"bad will QoS {will.qos}")
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
        payload += (b"\x00" if mqtt5 else b"") + string(will.topic) + string(will.payload)
    if username:
        flags |= 0x80
        payload += string(username)
        if password:
            flags |= 0x40
            payload += string(password)
    body = string("MQTT") + bytes((5 if mqtt5 else 4, flags)) + _U16.pack(keepalive)
    if mqtt5:
        body += b"\x00"  # no properties
    body += payload
    return bytes((CONNECT,)) + varint(len(body)) + body


def publish_packet(topic: str, payload: bytes, *, qos: int = 0, packet_id: int = 0, mqtt5: bool = False,
                   dup: bool = False, retain: bool = False) -> bytes:
    """PUBLISH at QoS 0, 1 or 2 (``packet_id`` 1..65535 for QoS 1 and 2)."""
    if qos not in (0, 1, 2):
        raise ValueError(f"bad QoS {qos}")
    body = string(topic)
    if qos:
        if not 0 < packet_id <= 0xFFFF:
            raise ValueError("a QoS 1 or 2 PUBLISH needs a packet id 1..65535")
        body += _U16.pack(packet_id)
    if mqtt5:
        body += b"\x00"
    header = PUBLISH | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    return bytes((header,)) + varint(len(body) + len(payload)) + body + payload


def puback_packet(packet_id: int) -> bytes:
    """PUBACK (success; in MQTT 5 a two-byte body means reason 0x00 without properties)."""
    return _PUBACK.pack(0x4002, packet_id)


def pubrec_packet(packet_id: int) -> bytes:
    """PUBREC: QoS 2, first answer of the receiver (it owns the message now)."""
    return _PUBACK.pack(0x5002, packet_id)


def pubrel_packet(packet_id: int) -> bytes:
    """PUBREL: QoS 2, the sender releases the packet id (fixed header flags 0010)."""
    return _PUBACK.pack(0x6202, packet_id)


def pubcomp_packet(packet_id: int) -> bytes:
    """PUBCOMP: QoS 2, the receiver's last word; the packet id is free again."""
    return _PUBACK.pack(0x7002, packet_id)


def pubacks(packet_ids: Iterable[int]) -> bytes:
    """Many PUBACKs as one byte string, for one write."""
    pack = _PUBACK.pack
    return b"".join([pack(0x4002, p) for p in packet_ids])


def subscribe_packet(packet_id: int, filters: Sequence[tuple[str, int]], *, mqtt5: bool = False) -> bytes:
    """SUBSCRIBE for ``(topic filter, max QoS)`` pairs."""
    if not filters:
        raise ValueError("SUBSCRIBE needs at least one topic filter")
    body = bytearray(_U16.pack(packet_id))
    if mqtt5:
        body += b"\x00"
    for f, qos in filters:
        if qos not in (0, 1, 2):
            raise ValueError(f"bad QoS {qos} for {f!r}")
        body += string(f) + bytes((qos,))
    return bytes((SUBSCRIBE | 0x02,)) + varint(len(body)) + bytes(body)


# -- decoding ---------------------------------------------------------------------------------------


def decode(data: bytes | bytearray, start: int = 0, *, mqtt5: bool = False,
           max_length: int = MAX_REMAINING_LENGTH, max_publish: int | None = None) -> tuple[list[Packet], int]:
    """Every complete packet in ``data[start:]`` and the offset just after the last one.

    The caller keeps ``data[offset:]`` (an incomplete packet) and appends the next bytes it receives.
    Raises :class:`ProtocolError` for a malformed stream, or a packet longer than ``max_length``
    (checked as soon as its length is known, so a hostile length cannot make the caller buffer it).
    With ``max_publish``, PUBLISH packets are held to that limit instead of ``max_length``, and one
    above it is neither decoded nor refused: decoding stops at its first byte (the offset returned),
    even if it is complete, and the caller recognises it with :func:`fixed_header`.
    """
    out: list[Packet] = []
    append = out.append
    n = len(data)
    i = start
    while i + 1 < n:
        first = data[i]
        # remaining length: one byte in the common case
        b = data[i + 1]
        if b < 0x80:
            length, j = b, i + 2
        else:
            length, shift, j = b & 0x7F, 7, i + 2
            while True:
                if j >= n:
                    return out, i  # the length itself is incomplete
                b = data[j]
                j += 1
                length |= (b & 0x7F) << shift
                if not b & 0x80:
                    break
                shift += 7
                if shift > 21:
                    raise ProtocolError("remaining length longer than four bytes")
        if max_publish is not None and first & 0xF0 == PUBLISH:
            if length > max_publish:
                return out, i
        elif length > max_length:
            raise ProtocolError(f"packet of {length} bytes exceeds the {max_length}-byte limit")
        end = j + length
        if end > n:
            break
        kind = first & 0xF0
        if kind == PUBLISH:
            if length < 2:
                raise ProtocolError("PUBLISH without a topic")
            tlen = (data[j] << 8) | data[j + 1]
            t_end = j + 2 + tlen
            topic = data[j + 2:t_end].decode("utf-8", "replace")
            if first & 0x06:
                if t_end + 2 > end:
                    raise ProtocolError("PUBLISH without a packet id")
                pid = (data[t_end] << 8) | data[t_end + 1]
                p = t_end + 2
            else:
                pid = 0
                p = t_end
            if p > end:
                raise ProtocolError("PUBLISH topic runs past the packet")
            if mqtt5:
                p = _skip_properties(data, p, end)
            append(Packet(PUBLISH, first & 0x0F, pid, topic, bytes(data[p:end])))
        elif kind in _WITH_PACKET_ID:
            if length < 2:
                raise ProtocolError("acknowledgement without a packet id")
            append(Packet(kind, first & 0x0F, (data[j] << 8) | data[j + 1], "", bytes(data[j:end])))
        else:
            append(Packet(kind, first & 0x0F, 0, "", bytes(data[j:end])))
        i = end
    return out, i


class FixedHeader(NamedTuple):
    first: int  # packet type and flags
    length: int  # remaining length
    size: int  # bytes of the fixed header itself (2-5)


def fixed_header(data: bytes | bytearray, start: int = 0) -> FixedHeader | None:
    """The fixed header of the packet at ``data[start:]``, or None while it is incomplete."""
    n = len(data)
    if start + 1 >= n:
        return None
    length, shift, j = 0, 0, start + 1
    while True:
        if j >= n:
            return None
        b = data[j]
        j += 1
        length |= (b & 0x7F) << shift
        if not b & 0x80:
            return FixedHeader(data[start], length, j - start)
        shift += 7
        if shift > 21:
            raise ProtocolError("remaining length longer than four bytes")


class PublishHead(NamedTuple):
    topic: str
    packet_id: int  # 0 at QoS 0
    size: int  # bytes from the packet's first byte to its payload (fixed + variable header)


def publish_head(head: bytes | bytearray, header: FixedHeader) -> PublishHead | None:
    """Topic and packet id of an MQTT 3.1.1 PUBLISH from its first bytes ``head`` (fixed header included),
    or None while ``head`` is too short to hold them. The payload need not be there."""
    j = header.size
    if len(head) < j + 2:
        return None
    tlen = (head[j] << 8) | head[j + 1]
    pid_len = 2 if header.first & 0x06 else 0
    if 2 + tlen + pid_len > header.length:
        raise ProtocolError("PUBLISH topic runs past the packet")
    end = j + 2 + tlen + pid_len
    if len(head) < end:
        return None
    topic = bytes(head[j + 2:j + 2 + tlen]).decode("utf-8", "replace")
    pid = (head[end - 2] << 8) | head[end - 1] if pid_len else 0
    return PublishHead(topic, pid, end)


def _skip_properties(data: bytes | bytearray, i: int, end: int) -> int:
    length, shift = 0, 0
    while True:
        if i >= end:
            raise ProtocolError("properties length runs past the packet")
        b = data[i]
        i += 1
        length |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
    if i + length > end:
        raise ProtocolError("properties run past the packet")
    return i + length


class Connack(NamedTuple):
    session_present: bool
    return_code: int  # 0: accepted (3.1.1 return code / 5 reason code)
    receive_maximum: int  # MQTT 5 Receive Maximum (65535 when absent or in 3.1.1)

    @property
    def reason(self) -> str:
        return CONNACK_REASONS.get(self.return_code, f"code {self.return_code}")


def parse_connack(body: bytes, *, mqtt5: bool = False) -> Connack:
    """The body of a CONNACK (what :func:`decode` returns as its payload)."""
    if len(body) < 2:
        raise ProtocolError("CONNACK shorter than two bytes")
    rm = 65_535
    if mqtt5 and len(body) > 2:
        i, plen, shift = 2, 0, 0
        while True:
            if i >= len(body):
                raise ProtocolError("CONNACK properties length runs past the packet")
            b = body[i]
            plen |= (b & 0x7F) << shift
            shift += 7
            i += 1
            if not b & 0x80:
                break
        rm = receive_maximum(body[i:i + plen])
    return Connack(bool(body[0] & 0x01), body[1], rm)


# CONNACK property id -> size in bytes (negative: -1 string/binary, -2 string pair, -4 varint)
_PROPERTY_SIZE = {0x11: 4, 0x12: -1, 0x13: 2, 0x15: -1, 0x16: -1, 0x1A: -1, 0x1C: -1, 0x1F: -1, 0x21: 2,
                  0x22: 2, 0x24: 1, 0x25: 1, 0x26: -2, 0x27: 4, 0x28: 1, 0x29: 1, 0x2A: 1, 0x0B: -4}


def receive_maximum(props: bytes) -> int:
    """The Receive Maximum in a CONNACK's properties (65535 when absent)."""
    i = 0
    while i < len(props):
        pid = props[i]
        i += 1
        size = _PROPERTY_SIZE.get(pid)
        if size is None:
            return 65_535  # unknown property: stop parsing, assume no limit beyond the default
        if pid == 0x21:
            return int(_U16.unpack_from(props, i)[0])
        if size > 0:
            i += size
        elif size == -1:
            i += 2 + _U16.unpack_from(props, i)[0]
        elif size == -2:
            for _ in range(2):
                i += 2 + _U16.unpack_from(props, i)[0]
        else:
            while props[i] & 0x80:
                i += 1
            i += 1
    return 65_535


def suback_codes(body: bytes, *, mqtt5: bool = False) -> list[int]:
    """Granted QoS (or a failure code >= 0x80) per filter, from a SUBACK body (the 3.1.1 failure code is 0x80;
    MQTT 5 has several, e.g. 0x87 not authorized, 0x8F topic filter invalid, 0x9E shared subscriptions not
    supported)."""
    return list(body[_skip_properties(body, 2, len(body)) if mqtt5 else 2:])
