"""The fast transport against MQTT as real brokers speak it: a second broker (NATS with MQTT enabled), QoS 2
deliveries, refused subscriptions, lost sessions, the gateway's last will and birth message, TLS with a client
certificate. Every broker here is our own, started on free ports by the test."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway import settings as settings_mod
from gateway.mqtt.transport import (
    FastTransport,
    MqttError,
    PahoTransport,
    StatusMessages,
    SubscriptionRefused,
    transport_options,
)
from tests.support.brokers import Mosquitto, free_port, wait_port, wait_until
from twin import mqtt_codec as codec

pytestmark = pytest.mark.integration

NATS = shutil.which("nats-server")


class Inbox:
    """What a transport delivers, with its connection events; thread-safe."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, int, int]] = []
        self.lock = threading.Lock()
        self.connects = 0
        self.disconnects: list[str] = []

    def on_message(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        with self.lock:
            self.messages.append((topic, payload, mid, qos))

    def on_connect(self) -> None:
        self.connects += 1

    def on_disconnect(self, reason: str) -> None:
        self.disconnects.append(reason)

    def take(self) -> list[tuple[str, bytes, int, int]]:
        with self.lock:
            out, self.messages = self.messages, []
            return out

    def count(self) -> int:
        with self.lock:
            return len(self.messages)


def _fast(url: str, client_id: str, inbox: Inbox, filters: list[tuple[str, int]], **kw: object) -> FastTransport:
    return FastTransport(url, client_id=client_id, subscriptions=filters, on_message=inbox.on_message,
                         on_connect=inbox.on_connect, on_disconnect=inbox.on_disconnect,
                         reconnect_min_s=0.05, reconnect_max_s=0.5, **kw)  # type: ignore[arg-type]


class Listener:
    """A paho client that records what arrives on its filter (QoS 1, clean session), confirmed by SUBACK."""

    def __init__(self, port: int, filt: str, client_id: str) -> None:
        self.got: list[tuple[str, bytes, bool]] = []
        self._subscribed = threading.Event()
        self.c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.c.on_message = lambda _c, _u, m: self.got.append((m.topic, bytes(m.payload), bool(m.retain)))
        self.c.on_subscribe = lambda *_a: self._subscribed.set()
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        self.c.subscribe(filt, qos=1)
        assert self._subscribed.wait(5), "no SUBACK for the listener"

    def states(self) -> list[str]:
        return [json.loads(p)["state"] + ("/" + json.loads(p).get("reason", "") if "reason" in json.loads(p) else "")
                for _t, p, _r in self.got]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def _paho_publish(port: int, topic: str, payload: bytes, qos: int) -> None:
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{time.monotonic_ns()}")
    c.connect("127.0.0.1", port)
    c.loop_start()
    c.publish(topic, payload, qos=qos).wait_for_publish(10)
    c.disconnect()
    c.loop_stop()


# -- a second broker: NATS with MQTT --------------------------------------------------------------


class Nats:
    """nats-server with JetStream (MQTT sessions live in it, on disk) and an MQTT listener, on free ports."""

    def __init__(self, workdir: Path) -> None:
        assert NATS is not None
        self.exe = NATS
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.conf = workdir / "nats.conf"
        self.conf.write_text(f'server_name: "gridtwin-test"\nlisten: "127.0.0.1:{free_port()}"\n'
                             f'jetstream {{ store_dir: "{workdir / "js"}" }}\n'
                             f'mqtt {{ host: "127.0.0.1", port: {self.port} }}\n')
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._log = (self.workdir / "nats.log").open("ab")
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=self._log, stderr=self._log)
        wait_port(self.port, 20)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=20)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[Nats]:
    if NATS is None:
        pytest.skip("nats-server is not installed (apt-get install nats-server): the second broker of this suite")
    n = Nats(tmp_path / "nats")
    yield n
    n.stop()


def test_nats_subscribe_receive_and_keep_the_session_over_a_restart(nats: Nats) -> None:
    inbox = Inbox()
    tr = _fast(nats.url, "gw-nats", inbox, [("t/+/telemetry", 1)])
    tr.start(10)
    try:
        assert inbox.connects == 1 and not tr.session_present  # a new session
        for i in range(2):
            _paho_publish(nats.port, f"t/d{i}/telemetry", b"%d" % i, 1)
        assert wait_until(lambda: inbox.count() == 2, 10)
        got = inbox.take()
        assert sorted(p for _t, p, _m, _q in got) == [b"0", b"1"] and {q for *_x, q in got} == {1}
        tr.ack_many([m for *_x, m, _q in got])
        time.sleep(0.3)  # let NATS store the acks before it stops
        nats.stop()
        assert wait_until(lambda: not tr.connected, 10)
        nats.start()
        assert wait_until(lambda: inbox.connects == 2, 30), inbox.disconnects
        assert tr.session_present and tr.sessions_lost == 0 and tr.reconnects == 1  # NATS kept the session
        _paho_publish(nats.port, "t/d9/telemetry", b"after", 1)  # the session's subscription is still there
        assert wait_until(lambda: inbox.count() == 1, 10)
        (after,) = inbox.take()
        assert after[:2] == ("t/d9/telemetry", b"after")
        tr.ack_many([after[2]])
    finally:
        tr.stop()


def test_nats_refuses_a_filter_and_start_names_it(nats: Nats) -> None:
    """NATS maps topic levels to subject tokens and refuses a filter with '.' (SUBACK 0x80): a failed start
    naming the filter (a topic root like "site.a" cannot work on NATS). Mosquitto 2.0 grants every
    subscription and applies its ACL at delivery, so NATS is the broker that shows a refused SUBACK here."""
    tr = _fast(nats.url, "gw-nats-dot", Inbox(), [("t/#", 1), ("site.a/v1/+/+/telemetry", 1)])
    with pytest.raises(SubscriptionRefused, match=r"'site\.a/v1/\+/\+/telemetry' \(refused\)") as e:
        tr.start(10)
    assert e.value.refused == [("site.a/v1/+/+/telemetry", 0x80)]
    assert not tr.connected


# -- Mosquitto: QoS 2, refused subscriptions, lost sessions, will and birth, TLS ------------------


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path / "mosquitto")
    yield b
    b.stop()


def test_qos2_is_handed_over_once_and_completed(broker: Mosquitto) -> None:
    inbox = Inbox()
    tr = _fast(broker.url, "gw-q2", inbox, [("q/#", 2)])
    tr.start(10)
    try:
        _paho_publish(broker.port, "q/a", b"one", 2)
        assert wait_until(lambda: inbox.count() == 1, 10)
        (first,) = inbox.take()
        assert first[:2] == ("q/a", b"one") and first[3] == 2
        # not acknowledged yet (not committed): a new connection gets the broker's redelivery, not a 2nd hand-over
        conn = tr._conn
        assert conn is not None
        conn.abort()
        assert wait_until(lambda: inbox.connects == 2, 10)
        time.sleep(0.5)  # the redelivery (DUP) arrives right after CONNACK
        assert inbox.count() == 0 and tr._inbound2 == {first[2] & 0xFFFF: 1}
        tr.ack_many([first[2]])  # committed: PUBREC on the current connection, PUBREL, PUBCOMP
        assert wait_until(lambda: not tr._inbound2, 10)
        _paho_publish(broker.port, "q/a", b"two", 2)
        assert wait_until(lambda: inbox.count() == 1, 10)
        (second,) = inbox.take()
        tr.ack_many([second[2]])
        assert wait_until(lambda: not tr._inbound2, 10)
        assert inbox.connects == 2 and len(inbox.disconnects) == 1  # the abort only: no reconnect loop
    finally:
        tr.stop()
    again = Inbox()  # the session holds nothing more: both were delivered exactly once
    tr = _fast(broker.url, "gw-q2", again, [("q/#", 2)])
    tr.start(10)
    time.sleep(0.5)
    tr.stop()
    assert again.count() == 0


def test_a_lost_session_is_counted(broker: Mosquitto) -> None:
    inbox = Inbox()
    tr = _fast(broker.url, "gw-lost", inbox, [("l/#", 1)])
    tr.start(10)
    try:
        broker.restart()  # persistence keeps the session
        assert wait_until(lambda: inbox.connects == 2, 20)
        assert tr.session_present and tr.sessions_lost == 0
        broker.stop()
        for f in broker.workdir.glob("mosquitto.db*"):
            f.unlink()  # the broker forgets every session
        broker.start()
        assert wait_until(lambda: inbox.connects == 3, 20)
        assert not tr.session_present and tr.sessions_lost == 1 and tr.reconnects == 2
    finally:
        tr.stop()


def test_will_on_an_abrupt_end_birth_on_every_connect_farewell_on_stop(broker: Mosquitto) -> None:
    topic = "gridtwin/v1/gateways/gw-will"
    listener = Listener(broker.port, topic, "status-listener")
    try:
        inbox = Inbox()
        tr = _fast(broker.url, "gw-will", inbox, [("w/#", 1)], status=StatusMessages(topic))
        tr.start(10)
        assert wait_until(lambda: listener.states() == ["online"], 10)
        conn = tr._conn
        assert conn is not None
        conn.abort()  # the socket dies without DISCONNECT: the broker publishes the will
        assert wait_until(lambda: listener.states()[:2] == ["online", "offline/last will"], 10), listener.states()
        assert wait_until(lambda: inbox.connects == 2 and listener.states()[-1] == "online", 10), listener.states()
        tr.stop()
        assert wait_until(lambda: listener.states()[-1] == "offline/stopped", 10), listener.states()
        assert listener.states().count("offline/last will") == 1  # a clean stop leaves no will behind
    finally:
        listener.close()
    late = Listener(broker.port, topic, "late-listener")  # retained: a newcomer learns the state at once
    try:
        assert wait_until(lambda: late.states() == ["offline/stopped"], 5) and late.got[0][2]
    finally:
        late.close()


def _pki(d: Path) -> None:
    d.mkdir()

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=gridtwin test CA")
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, cn in (("server", "127.0.0.1"), ("client", "gateway")):
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "1", "-extfile", f"{name}.ext")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command makes the test certificates")
def test_tls_with_a_ca_file_and_a_client_certificate(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    _pki(pki)
    tls_port = free_port()
    b = Mosquitto(tmp_path / "tls-broker", extra=(
        f"allow_anonymous true\nlistener {tls_port} 127.0.0.1\ncafile {pki / 'ca.crt'}\n"
        f"certfile {pki / 'server.crt'}\nkeyfile {pki / 'server.key'}\nrequire_certificate true\n"))
    try:
        wait_port(tls_port)
        url = f"mqtts://127.0.0.1:{tls_port}"
        s = settings_mod.load(env={"GRIDTWIN_MQTT_URL": url, "GRIDTWIN_MQTT_CA_FILE": str(pki / "ca.crt"),
                                   "GRIDTWIN_MQTT_CERT_FILE": str(pki / "client.crt"),
                                   "GRIDTWIN_MQTT_KEY_FILE": str(pki / "client.key"),
                                   "GRIDTWIN_MQTT_CLIENT_ID": "gw-tls"})
        opts = transport_options(s.mqtt, url, status=False)
        inbox = Inbox()
        tr = _fast(url, "gw-tls", inbox, [("t/#", 1)], **opts)
        tr.start(10)
        try:
            _paho_publish(b.port, "t/x", b"over tls", 1)
            assert wait_until(lambda: inbox.count() == 1, 10)
            tr.ack_many([m for *_x, m, _q in inbox.take()])
        finally:
            tr.stop()
        paho_inbox = Inbox()
        pt = PahoTransport(url, client_id="gw-tls-paho", subscriptions=[("t/#", 1)], on_message=paho_inbox.on_message,
                           on_connect=paho_inbox.on_connect, **opts)
        pt.start(10)
        try:
            assert wait_until(lambda: paho_inbox.connects == 1, 10)
        finally:
            pt.stop()
        # the broker requires a client certificate: only the CA file is not enough
        no_cert = transport_options(settings_mod.load(env={"GRIDTWIN_MQTT_CA_FILE": str(pki / "ca.crt"),
                                                           "GRIDTWIN_MQTT_CLIENT_ID": "x"}).mqtt, url)
        with pytest.raises(MqttError):
            _fast(url, "gw-tls-nocert", Inbox(), [("t/#", 1)], **{**no_cert, "status": None}).start(5)
    finally:
        b.stop()


def test_backoff_is_exponential_capped_and_jittered() -> None:
    tr = FastTransport("mqtt://127.0.0.1:1", client_id="x", subscriptions=[("t", 1)], on_message=lambda *_a: None,
                       reconnect_min_s=0.5, reconnect_max_s=8.0)
    for attempt, top in ((0, 0.5), (1, 1.0), (3, 4.0), (4, 8.0), (10, 8.0), (100, 8.0)):
        waits = {tr._backoff(attempt) for _ in range(50)}
        assert all(top / 2 <= w <= top for w in waits) and len(waits) > 40, (attempt, sorted(waits)[:3])


def test_codec_is_the_only_mqtt_packet_code_in_ops() -> None:
    """The services probe builds and parses packets with twin.mqtt_codec, not a copy of its own."""
    probes = (Path(__file__).resolve().parents[2] / "gateway" / "ops").glob("*.py")
    for f in probes:
        text = f.read_text()
        assert "def _varint" not in text and "def _connect_packet" not in text and "b\"\\x82\"" not in text, f
    assert codec.DISCONNECT == b"\xe0\x00"
