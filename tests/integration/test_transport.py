"""The gateway's MQTT transports: the pure codec by tables, the fast client against real Mosquittos of our
own (reconnects, persistent sessions, back-pressure, TLS, keepalive), and the Gateway's choice of transport."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway import settings as settings_mod
from gateway.ingest.pipeline import Gateway
from gateway.mqtt.transport import ConnectionRefused, FastTransport, MqttError, PahoTransport
from gateway.settings import Settings
from gateway.storage import Storage
from simulators.wire import BatchPublisher
from tests.support.brokers import Mosquitto, free_port, wait_port
from twin import contract
from twin import mqtt_codec as codec

# -- the codec (pure) -------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "encoded"), [
    (0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16_383, b"\xff\x7f"), (16_384, b"\x80\x80\x01"),
    (2_097_151, b"\xff\xff\x7f"), (2_097_152, b"\x80\x80\x80\x01"), (268_435_455, b"\xff\xff\xff\x7f"),
])
def test_varint(n: int, encoded: bytes) -> None:
    assert codec.varint(n) == encoded
    # the decoder reads it back as a packet length: the packet is complete only with all n body bytes
    header = b"\xd0" + encoded
    body = min(n, 20_000)
    if n > body or n == 0:
        assert codec.decode(header + b"\x00" * body) == (([], 0) if n else ([codec.Packet(0xD0, 0, 0, "", b"")], 2))
    else:
        assert codec.decode(header + b"\x00" * (n - 1)) == ([], 0)
        (p,), used = codec.decode(header + b"\x00" * n)
        assert (len(p.payload), used) == (n, len(header) + n)


@pytest.mark.parametrize("n", [-1, 268_435_456])
def test_varint_out_of_range(n: int) -> None:
    with pytest.raises(ValueError, match="variable byte integer"):
        codec.varint(n)


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"topic": "a/b", "payload": b"hi"}, b"\x30\x07\x00\x03a/bhi"),
    ({"topic": "a/b", "payload": b"hi", "qos": 1, "packet_id": 258}, b"\x32\x09\x00\x03a/b\x01\x02hi"),
    ({"topic": "a/b", "payload": b"hi", "qos": 1, "packet_id": 1, "dup": True}, b"\x3a\x09\x00\x03a/b\x00\x01hi"),
    ({"topic": "a/b", "payload": b"", "qos": 1, "packet_id": 1, "mqtt5": True}, b"\x32\x08\x00\x03a/b\x00\x01\x00"),
    ({"topic": "t", "payload": b"x", "retain": True}, b"\x31\x04\x00\x01tx"),
])
def test_publish_packet(kwargs: dict[str, object], expected: bytes) -> None:
    assert codec.publish_packet(**kwargs) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [{"qos": 3, "packet_id": 1}, {"qos": 1, "packet_id": 0},
                                    {"qos": 2, "packet_id": 0}, {"qos": 1, "packet_id": 65_536}])
def test_publish_packet_refuses(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        codec.publish_packet("t", b"", **kwargs)


def test_connect_subscribe_and_ack_packets() -> None:
    assert codec.connect_packet("gw", keepalive=30, clean=False) == (
        b"\x10\x0e\x00\x04MQTT\x04\x00\x00\x1e\x00\x02gw")
    assert codec.connect_packet("gw", username="u", password="p", keepalive=60) == (
        b"\x10\x14\x00\x04MQTT\x04\xc2\x00\x3c\x00\x02gw\x00\x01u\x00\x01p")
    assert codec.connect_packet("gw", keepalive=60, mqtt5=True) == b"\x10\x0f\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x02gw"
    assert codec.subscribe_packet(7, [("a/+", 1), ("b/#", 0)]) == (
        b"\x82\x0e\x00\x07\x00\x03a/+\x01\x00\x03b/#\x00")
    assert codec.puback_packet(0x1234) == b"\x40\x02\x12\x34"
    assert codec.pubacks([1, 2, 65_535]) == b"\x40\x02\x00\x01\x40\x02\x00\x02\x40\x02\xff\xff"
    assert codec.pubacks([]) == b""
    with pytest.raises(ValueError):
        codec.subscribe_packet(1, [])


def test_will_and_qos2_packets() -> None:
    will = codec.Will("s", b"off", qos=1, retain=True)
    assert codec.connect_packet("gw", keepalive=30, will=will) == (
        b"\x10\x16\x00\x04MQTT\x04\x2e\x00\x1e\x00\x02gw\x00\x01s\x00\x03off")
    # MQTT 5: empty will properties in front of the will topic
    assert codec.connect_packet("gw", keepalive=30, will=will._replace(qos=2, retain=False), mqtt5=True) == (
        b"\x10\x18\x00\x04MQTT\x05\x16\x00\x1e\x00\x00\x02gw\x00\x00\x01s\x00\x03off")
    assert codec.publish_packet("t", b"x", qos=2, packet_id=5) == b"\x34\x06\x00\x01t\x00\x05x"
    acks = codec.pubrec_packet(5) + codec.pubrel_packet(6) + codec.pubcomp_packet(7) + b"\xb0\x02\x00\x08"
    assert acks == b"\x50\x02\x00\x05\x62\x02\x00\x06\x70\x02\x00\x07\xb0\x02\x00\x08"
    packets, used = codec.decode(codec.publish_packet("t", b"x", qos=2, packet_id=5) + acks)
    assert used == 6 + 2 + 16
    assert [(p.kind, p.packet_id, p.qos) for p in packets] == [
        (codec.PUBLISH, 5, 2), (codec.PUBREC, 5, 0), (codec.PUBREL, 6, 1), (codec.PUBCOMP, 7, 0),
        (codec.UNSUBACK, 8, 0)]


def test_connack_and_suback() -> None:
    assert codec.parse_connack(b"\x01\x00") == codec.Connack(True, 0, 65_535)
    refused = codec.parse_connack(b"\x00\x05")
    assert refused.return_code == 5 and refused.reason == "not authorized"
    # MQTT 5: properties (session expiry, assigned client id, receive maximum 20)
    props = b"\x11\x00\x00\x00\x3c" + b"\x12\x00\x03abc" + b"\x21\x00\x14"
    assert codec.parse_connack(b"\x00\x00" + codec.varint(len(props)) + props, mqtt5=True).receive_maximum == 20
    assert codec.suback_codes(b"\x00\x07\x01\x80") == [1, 0x80]
    assert codec.suback_codes(b"\x00\x07\x00\x01\x00", mqtt5=True) == [1, 0]
    with pytest.raises(codec.ProtocolError):
        codec.parse_connack(b"\x00")


def test_decode_many_packets_at_once_and_keeps_the_incomplete_tail() -> None:
    stream = (codec.publish_packet("a/b", b"one")
              + codec.publish_packet("a/c", b"two", qos=1, packet_id=9, dup=True)
              + b"\x40\x02\x00\x05"  # PUBACK 5
              + b"\x90\x03\x00\x01\x01"  # SUBACK 1: QoS 1 granted
              + b"\xd0\x00"  # PINGRESP
              + b"\x20\x02\x00\x00")  # CONNACK
    tail = codec.publish_packet("x", b"y" * 300, qos=1, packet_id=3)
    packets, used = codec.decode(stream + tail[:150])
    assert used == len(stream)
    assert [(p.kind, p.packet_id, p.topic, p.payload, p.qos, p.dup) for p in packets] == [
        (codec.PUBLISH, 0, "a/b", b"one", 0, False),
        (codec.PUBLISH, 9, "a/c", b"two", 1, True),
        (codec.PUBACK, 5, "", b"\x00\x05", 0, False),
        (codec.SUBACK, 1, "", b"\x00\x01\x01", 0, False),
        (codec.PINGRESP, 0, "", b"", 0, False),
        (codec.CONNACK, 0, "", b"\x00\x00", 0, False),
    ]
    again, used2 = codec.decode(bytearray(stream + tail), used)
    assert [(p.topic, p.payload, p.packet_id) for p in again] == [("x", b"y" * 300, 3)]
    assert used2 == len(stream) + len(tail)


def test_decode_at_every_split_point_gives_the_same_packets() -> None:
    msgs = [(f"r/v1/c/d{i}/telemetry", b"%d" % (i * 7919) * (i % 5 + 1), i % 2) for i in range(30)]
    stream = b"".join(codec.publish_packet(t, p, qos=q, packet_id=i + 1 if q else 0)
                      for i, (t, p, q) in enumerate(msgs))
    for cut in range(len(stream) + 1):
        first, used = codec.decode(stream[:cut])
        rest, used2 = codec.decode(stream[used:])
        got = [(p.topic, p.payload, p.qos) for p in first + rest]
        assert got == msgs and used + used2 == len(stream), cut


def test_decode_mqtt5_publish_skips_properties() -> None:
    body = codec.string("t") + b"\x00\x04" + b"\x03\x01\x01\x00" + b"data"  # props: payload format indicator
    packet = b"\x32" + codec.varint(len(body)) + body
    (p,), _ = codec.decode(packet, mqtt5=True)
    assert (p.topic, p.packet_id, p.payload) == ("t", 4, b"data")


@pytest.mark.parametrize(("data", "match"), [
    (b"\x30\xff\xff\xff\xff\x01", "longer than four bytes"),
    (b"\x30\x01\x00", "without a topic"),
    (b"\x32\x04\x00\x02ab", "without a packet id"),
    (b"\x30\x03\x00\x09a", "runs past"),
    (b"\x40\x01\x00", "without a packet id"),
    (b"\x30\x80\x80\x04", "exceeds"),  # 64 KiB packet, limit below
])
def test_decode_refuses_garbage(data: bytes, match: str) -> None:
    with pytest.raises(codec.ProtocolError, match=match):
        codec.decode(data, max_length=1000)


def test_invalid_utf8_topic_is_decoded_with_replacement() -> None:
    packet = b"\x30\x05\x00\x02\xff\xfeX"
    (p,), _ = codec.decode(packet)
    assert p.topic == "\ufffd\ufffd" and p.payload == b"X"


# -- the fast transport against real brokers --------------------------------------------------------

@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path / "broker")
    yield b
    if b.proc is not None and b.proc.poll() is None:
        os.kill(b.proc.pid, signal.SIGCONT)  # in case a test left it stopped
    b.stop()


class Inbox:
    """Collects what a transport delivers; thread-safe; optionally blocks the reader (back-pressure)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, int, int]] = []
        self.lock = threading.Lock()
        self.connects = 0
        self.disconnects: list[str] = []
        self.gate = threading.Event()
        self.gate.set()

    def on_message(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        self.gate.wait()
        with self.lock:
            self.messages.append((topic, payload, mid, qos))

    def on_connect(self) -> None:
        self.connects += 1

    def on_disconnect(self, reason: str) -> None:
        self.disconnects.append(reason)

    def count(self) -> int:
        with self.lock:
            return len(self.messages)

    def take(self) -> list[tuple[str, bytes, int, int]]:
        with self.lock:
            out, self.messages = self.messages, []
            return out


def _wait(pred: Callable[[], bool], timeout: float = 20.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def _transport(url: str, client_id: str, inbox: Inbox, filt: str = "t/#", **kw: object) -> FastTransport:
    return FastTransport(url, client_id=client_id, subscriptions=[(filt, 1)], on_message=inbox.on_message,
                         on_connect=inbox.on_connect, on_disconnect=inbox.on_disconnect, **kw)  # type: ignore[arg-type]


def _publish(url: str, msgs: list[tuple[str, bytes]], qos: int = 1) -> None:
    pub = BatchPublisher(url, client_id=f"pub-{time.monotonic_ns()}", qos=qos, mqtt5=False)
    for t, p in msgs:
        pub.publish(t, p)
    assert pub.flush(30)
    pub.close()


def _drain(tr: FastTransport, inbox: Inbox, n: int, timeout: float = 30.0) -> list[tuple[str, bytes, int, int]]:
    """Take ``n`` messages, acknowledging as they come (the broker's in-flight window waits for acks)."""
    got: list[tuple[str, bytes, int, int]] = []
    end = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < end:
        new = inbox.take()
        tr.ack_many([m for *_x, m, q in new if q])
        got += new
        time.sleep(0.01)
    assert len(got) == n, (len(got), n)
    return got


def _session(url: str, client_id: str, inbox: Inbox, **kw: object) -> FastTransport:
    """A started transport with its subscription confirmed."""
    tr = _transport(url, client_id, inbox, **kw)
    before = inbox.connects
    tr.start(5)
    assert _wait(lambda: inbox.connects > before, 5), "no SUBACK"
    return tr


@pytest.mark.integration
def test_receives_many_packets_per_read_in_order_and_acks_in_one_write(broker: Mosquitto) -> None:
    inbox = Inbox()
    tr = _session(broker.url, "gw-a", inbox)
    msgs = [(f"t/d{i % 7}", b'{"seq":%d}' % i) for i in range(20_000)]
    try:
        _publish(broker.url, msgs)
        got = _drain(tr, inbox, len(msgs))
        assert [(t, p) for t, p, _m, _q in got] == msgs  # one publisher: the broker keeps its order
        assert {q for *_x, q in got} == {1}
        time.sleep(0.3)
    finally:
        tr.stop()
    # acknowledged: the persistent session has nothing left to redeliver
    tr = _session(broker.url, "gw-a", inbox)
    time.sleep(0.5)
    tr.stop()
    assert inbox.count() == 0


@pytest.mark.integration
def test_unacknowledged_messages_are_redelivered_to_the_persistent_session(broker: Mosquitto) -> None:
    inbox = Inbox()
    tr = _session(broker.url, "gw-b", inbox)
    _publish(broker.url, [(f"t/{i}", b"%d" % i) for i in range(100)])
    assert _wait(lambda: inbox.count() == 100)
    got = inbox.take()
    tr.ack_many([m for t, _p, m, _q in got if int(t[2:]) % 2 == 0])  # the even ones are committed
    time.sleep(0.3)
    tr.stop()
    _publish(broker.url, [("t/offline", b"while away")])  # queued for the session while we are away
    tr = _session(broker.url, "gw-b", inbox)
    try:
        assert _wait(lambda: inbox.count() == 51)
        again = inbox.take()
        assert sorted(t for t, *_x in again) == sorted([f"t/{i}" for i in range(1, 100, 2)] + ["t/offline"])
        # acks from the earlier connection are dropped (their copies have new tokens), not sent as garbage
        tr.ack_many([m for *_x, m, _q in got])
        tr.ack_many([m for *_x, m, _q in again])
        time.sleep(0.3)
    finally:
        tr.stop()
    tr = _session(broker.url, "gw-b", inbox)
    time.sleep(0.5)
    tr.stop()
    assert inbox.count() == 0


@pytest.mark.integration
def test_large_payload_split_over_many_reads(broker: Mosquitto) -> None:
    inbox = Inbox()
    tr = _session(broker.url, "gw-c", inbox, recv_bytes=4096)
    big = bytes(range(256)) * 3072  # 768 KiB: under the broker's and the transport's 1 MiB limits
    try:
        _publish(broker.url, [("t/small", b"a"), ("t/big", big), ("t/small", b"b")])
        assert _wait(lambda: inbox.count() == 3)
        assert [(t, p) for t, p, _m, _q in inbox.take()] == [("t/small", b"a"), ("t/big", big), ("t/small", b"b")]
    finally:
        tr.stop()


@pytest.mark.integration
@pytest.mark.parametrize("recv_bytes", [1, 2, 7, 131])
def test_reads_split_anywhere_in_a_packet(broker: Mosquitto, recv_bytes: int) -> None:
    """Tiny reads end at every offset of a packet: after its first byte, inside its length, topic, payload."""
    inbox = Inbox()
    tr = _session(broker.url, f"gw-split-{recv_bytes}", inbox, recv_bytes=recv_bytes)
    msgs = [(f"t/{'x' * (i % 5)}", b"p" * (i * 37 % 300)) for i in range(400)]  # lengths of 1 and 2 bytes
    try:
        _publish(broker.url, msgs)
        assert [(t, p) for t, p, _m, _q in _drain(tr, inbox, len(msgs))] == msgs
    finally:
        tr.stop()


@pytest.mark.integration
def test_a_blocked_handler_stops_reading_and_the_session_stays_alive(broker: Mosquitto) -> None:
    """Back-pressure: while on_message blocks, nothing more is read (the broker holds the messages), pings
    keep the connection alive beyond the keepalive, and everything arrives once the handler continues."""
    inbox = Inbox()
    tr = _session(broker.url, "gw-d", inbox, keepalive=2)
    try:
        inbox.gate.clear()
        _publish(broker.url, [(f"t/{i}", b"x" * 200) for i in range(10_000)])
        time.sleep(5)  # > 1.5 x keepalive: without our pings the broker would drop us
        assert inbox.count() == 0 and not inbox.disconnects
        inbox.gate.set()
        _drain(tr, inbox, 10_000)
        assert not inbox.disconnects and tr.connected
    finally:
        tr.stop()


@pytest.mark.integration
def test_broker_restart_reconnects_resubscribes_and_drops_stale_acks(broker: Mosquitto) -> None:
    inbox = Inbox()
    tr = _session(broker.url, "gw-e", inbox, reconnect_min_s=0.1)
    try:
        _publish(broker.url, [("t/before", b"1")])
        assert _wait(lambda: inbox.count() == 1)
        (before,) = inbox.take()
        time.sleep(1.2)  # autosave_interval 1: the broker persists the session with its in-flight message
        broker.restart()
        assert _wait(lambda: inbox.connects == 2, 20), inbox.disconnects
        assert len(inbox.disconnects) == 1
        tr.ack_many([before[2]])  # a token of the old connection: dropped
        assert _wait(lambda: inbox.count() == 1)  # redelivered (the broker kept it), as a duplicate
        (again,) = inbox.take()
        assert again[:2] == before[:2] and again[2] != before[2]
        tr.ack_many([again[2]])
        _publish(broker.url, [("t/after", b"2")])
        assert _wait(lambda: inbox.count() == 1)
        assert inbox.take()[0][:2] == ("t/after", b"2")
    finally:
        tr.stop()


@pytest.mark.integration
def test_a_frozen_broker_is_detected_by_the_keepalive(broker: Mosquitto) -> None:
    inbox = Inbox()
    tr = _session(broker.url, "gw-f", inbox, keepalive=1, reconnect_min_s=0.1)
    assert broker.proc is not None
    try:
        os.kill(broker.proc.pid, signal.SIGSTOP)
        try:
            assert _wait(lambda: bool(inbox.disconnects), 10)
            assert "no answer" in inbox.disconnects[0] or "took nothing" in inbox.disconnects[0]
            assert not tr.connected
        finally:
            os.kill(broker.proc.pid, signal.SIGCONT)
        assert _wait(lambda: inbox.connects == 2, 20)
    finally:
        tr.stop()


@pytest.mark.integration
def test_publish_from_many_threads_qos0_and_qos1(broker: Mosquitto) -> None:
    listener, sink = Inbox(), Inbox()
    sub = _session(broker.url, "listener", listener, filt="out/#")
    tr = _session(broker.url, "gw-g", sink)

    def send(k: int) -> None:
        for i in range(500):
            tr.publish(f"out/{k}", b"%d" % i, qos=i % 2)

    try:
        threads = [threading.Thread(target=send, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert _wait(lambda: listener.count() == 2000), listener.count()
        per_topic: dict[str, list[int]] = {}
        for t, p, _m, _q in listener.take():
            per_topic.setdefault(t, []).append(int(p))
        assert all(sorted(v) == list(range(500)) for v in per_topic.values()) and len(per_topic) == 4
        assert _wait(lambda: not tr._pending)  # every QoS 1 message was acknowledged by the broker
    finally:
        tr.stop()
        sub.stop()


@pytest.mark.integration
def test_qos1_publishes_made_while_disconnected_are_sent_after_reconnect(broker: Mosquitto) -> None:
    listener, sink = Inbox(), Inbox()
    sub = _session(broker.url, "listener-h", listener, filt="out/#", reconnect_min_s=0.1)  # persistent session
    tr = _session(broker.url, "gw-h", sink, reconnect_min_s=0.1)
    try:
        broker.stop()
        assert _wait(lambda: not tr.connected, 10)
        tr.publish("out/x", b"kept", qos=1)
        tr.publish("out/x", b"dropped", qos=0)  # QoS 0 while disconnected: gone, as QoS 0 allows
        assert len(tr._pending) == 1
        broker.start()
        assert _wait(lambda: sink.connects == 2 and not tr._pending, 20)  # sent again and acknowledged
        tr.publish("out/x", b"after", qos=1)
        assert _wait(lambda: listener.count() == 2, 20)
        assert sorted(p for _t, p, _m, _q in listener.take()) == [b"after", b"kept"]
    finally:
        tr.stop()
        sub.stop()


@pytest.mark.integration
def test_refused_and_unreachable_raise_mqtt_error(tmp_path: Path) -> None:
    from gateway.ops import credentials
    rep = credentials.generate([("s", "d")], tmp_path / "creds")
    passwd, acl, _ = rep.files
    secured = Mosquitto(tmp_path / "broker", extra=f"allow_anonymous false\npassword_file {passwd}\nacl_file {acl}\n")
    try:
        inbox = Inbox()
        with pytest.raises(ConnectionRefused, match=r"not authorized|bad user name") as refused:
            _transport(f"mqtt://gateway:wrong@127.0.0.1:{secured.port}", "gw-i", inbox).start(5)
        assert isinstance(refused.value, MqttError)
        pw = credentials.read_secrets(tmp_path / "creds")["gateway"]
        tr = _session(f"mqtt://gateway:{pw}@127.0.0.1:{secured.port}", "gw-i", inbox, filt="gridtwin/v1/#")
        tr.stop()
    finally:
        secured.stop()
    with pytest.raises(MqttError, match="cannot connect"):
        _transport(f"mqtt://127.0.0.1:{free_port()}", "gw-j", Inbox()).start(2)


@pytest.mark.integration
def test_tls(tmp_path: Path) -> None:
    import ssl

    d = tmp_path / "pki"
    d.mkdir()

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=gridtwin test CA")
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "1", "-extfile", "ext.cnf")
    tls_port = free_port()
    broker = Mosquitto(tmp_path / "broker", extra=(
        f"allow_anonymous true\nlistener {tls_port} 127.0.0.1\ncafile {d / 'ca.crt'}\ncertfile {d / 'server.crt'}\n"
        f"keyfile {d / 'server.key'}\n"))
    try:
        wait_port(tls_port)
        ctx = ssl.create_default_context(cafile=str(d / "ca.crt"))
        inbox = Inbox()
        url = f"mqtts://127.0.0.1:{tls_port}"
        tr = _session(url, "gw-tls", inbox, tls_context=ctx)
        try:
            msgs = [(f"t/{i % 3}", b"%d" % i * 20) for i in range(5000)]
            _publish(broker.url, msgs)
            got = _drain(tr, inbox, len(msgs))
            assert [(t, p) for t, p, _m, _q in got] == msgs
            tr.publish("t/echo", b"over tls", qos=1)
            assert _wait(lambda: inbox.count() == 1)
        finally:
            tr.stop()
        with pytest.raises(MqttError, match="handshake"):  # the system CAs do not know our test CA
            _transport(url, "gw-tls2", Inbox()).start(5)
    finally:
        broker.stop()


# -- the gateway's choice of transport --------------------------------------------------------------


def _settings(settings: Settings, **mqtt: object) -> Settings:
    return settings_mod.load(env={}, mqtt={**settings.mqtt.model_dump(), **mqtt},
                             db={"url": settings.db.url, "schema": settings.db.schema_name},
                             gateway={"flush_interval_s": 0.05})


def test_transport_setting() -> None:
    assert settings_mod.load(env={}).mqtt.transport == "fast"
    assert settings_mod.load(env={"GRIDTWIN_MQTT_TRANSPORT": "paho"}).mqtt.transport == "paho"
    with pytest.raises(settings_mod.SettingsError, match="transport"):
        settings_mod.load(env={"GRIDTWIN_MQTT_TRANSPORT": "fastest"})


@pytest.mark.integration
@pytest.mark.parametrize(("transport", "protocol", "mqtt5", "kind"), [
    ("fast", "3.1.1", False, FastTransport),
    ("paho", "3.1.1", False, PahoTransport),
    ("fast", "5", True, PahoTransport),  # MQTT 5 needs paho
])
def test_gateway_picks_its_transport_and_stores_through_it(
    settings: Settings, transport: str, protocol: str, mqtt5: bool, kind: type,
) -> None:
    assert settings.mqtt.url and settings.db.url
    s = _settings(settings, transport=transport, protocol=protocol)
    st = Storage.connect(settings.db.url, schema=settings.db.schema_name)
    st.migrate()
    from gateway.cli_base import sample_community_path
    from twin import community as community_mod

    st.load_community(community_mod.parse(sample_community_path().read_text(encoding="utf-8")))
    gw = Gateway(s, settings.mqtt.url, settings.db.url, mqtt5=mqtt5)
    assert isinstance(gw._client, kind)
    gw.start()
    try:
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"dev-{settings.mqtt.topic_root}")
        c.connect("127.0.0.1", contract.BrokerAddress.parse(settings.mqtt.url).port)
        c.loop_start()
        t = contract.topic(settings.mqtt.topic_root, "sunshine", "B1-HYD", contract.Channel.TELEMETRY)
        now_ms = int(time.time() * 1000)
        first, second = (contract.telemetry_bytes(now_ms - 10 + seq, seq, {"pressure": 0.4}) for seq in (1, 2))
        for payload in (first, first, second):  # a retry of seq 1 is stored once
            c.publish(t, payload, qos=1).wait_for_publish(5)
        c.disconnect()
        c.loop_stop()
        assert _wait(lambda: gw.stats.received == 3) and gw.wait_idle()
        assert gw.stats.duplicates == 1
        row = st.conn.execute("SELECT count(*) FROM message_keys").fetchone()
        assert row is not None and row[0] == 2
    finally:
        gw.stop()
        st.close()
