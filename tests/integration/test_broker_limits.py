"""Broker limits (issue 11): oversize messages cannot blow up the gateway, and a gateway that is away for
10 minutes loses nothing.

- The pure codec helpers that let the fast transport skip a huge PUBLISH without buffering it.
- The fast transport against a Mosquitto started WITHOUT a packet size limit: a 20 MB message is passed
  on truncated (max_payload_bytes + 1 bytes, which the validator rejects as too_large) with bounded
  memory, acknowledged (never redelivered: no poison message), and what follows it still arrives.
- The whole gateway as a process: a 50 MB publish barely moves its peak RSS, lands in dead_letters as
  too_large, and a valid message after it is stored.
- Every broker config gridtwin ships or starts sets max_packet_size, max_queued_messages and
  max_queued_bytes explicitly, and the real embedded broker (`gridtwin services up`) keeps 10 minutes of
  a 100,000-device deployment for a gateway whose persistent session is away (docs/mqtt.md).
"""

from __future__ import annotations

import collections
import os
import re
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway import settings as settings_mod
from gateway.ingest.pipeline import Gateway
from gateway.mqtt.transport import DEFAULT_MAX_PAYLOAD_BYTES, FastTransport, _Oversize
from gateway.ops import services
from gateway.ops.procs import MAX_PAYLOAD_BYTES_CEILING, PRODUCT_LIMITS, TEST_LIMITS, BrokerLimits
from gateway.settings import GatewaySettings, Settings
from gateway.storage import Storage
from simulators import engine, scenario
from tests.support.brokers import Mosquitto, wait_until
from twin import catalogue, contract
from twin import mqtt_codec as codec
from twin.community import Community

ROOT = Path(__file__).resolve().parents[2]
NO_PACKET_LIMIT = BrokerLimits(max_queued_messages=100_000, max_queued_bytes=1 << 30, max_packet_size=0)

# docs/mqtt.md, "Broker settings that matter": the sample community's baseline (simulators, 1,261 devices)
# sends 2.45 msg/s, i.e. 0.00194 msg/s per device; a large deployment has 100,000 devices.
SAMPLE_DEVICES = 1261
PER_DEVICE_MSG_S = 2.45 / SAMPLE_DEVICES
LARGE_DEVICES = 100_000
DOWNTIME_S = 600
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# -- the codec: read just the head of a PUBLISH --------------------------------------------------------


def test_decode_stops_in_front_of_an_oversize_publish_and_its_head_can_be_read() -> None:
    small = codec.publish_packet("t/a", b"x" * 10, qos=1, packet_id=7)
    big = codec.publish_packet("t/big", b"y" * 5000, qos=1, packet_id=9)
    data = small + big + small
    packets, used = codec.decode(data, max_publish=1000)
    assert [p.topic for p in packets] == ["t/a"] and used == len(small)  # complete, but not decoded
    header = codec.fixed_header(data, used)
    assert header is not None and header.length == len(big) - header.size > 1000
    assert codec.publish_head(data[used:used + header.size + 3], header) is None  # topic not complete yet
    head = codec.publish_head(data[used:used + header.size + 9], header)
    assert head == codec.PublishHead("t/big", 9, header.size + 2 + 5 + 2)
    # without max_publish the same stream decodes whole; max_length still guards other packets
    assert [p.topic for p in codec.decode(data)[0]] == ["t/a", "t/big", "t/a"]
    with pytest.raises(codec.ProtocolError, match="exceeds"):
        codec.decode(b"\x90\x90\x03" + b"\x00" * 400, max_length=100, max_publish=1000)  # a 400-byte SUBACK
    assert codec.decode(big, max_length=100, max_publish=10_000)[0][0].payload == b"y" * 5000


@pytest.mark.parametrize("step", [1, 3, 64, 4099, 1 << 20])
def test_oversize_publish_is_skipped_in_any_split_keeping_only_its_head(step: int) -> None:
    payload = bytes(range(256)) * 40  # 10,240 bytes
    big = codec.publish_packet("gt/v1/c/d/telemetry", payload, qos=1, packet_id=513)
    after = codec.publish_packet("t/next", b"n", qos=0)
    stream = big + after
    header = codec.fixed_header(stream)
    assert header is not None
    skip = _Oversize(header, keep=101)
    rest = b""
    for i in range(0, len(stream), step):
        out = skip.feed(stream[i:i + step])
        if skip.done:
            rest += bytes(out)
            rest += stream[i + step:]
            break
        assert not out
    assert skip.done and rest == after
    assert skip.message() == ("gt/v1/c/d/telemetry", 513, payload[:101])
    assert len(skip.head) <= header.size + 2 + 19 + 2 + 101  # never more than the head and the kept prefix


# -- the fast transport against a broker without a packet limit ---------------------------------------------


@pytest.fixture
def open_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path / "open-broker", limits=NO_PACKET_LIMIT)
    yield b
    b.stop()


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, int, int]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()

    def on_message(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        with self.lock:
            self.messages.append((topic, payload, mid, qos))

    def take(self) -> list[tuple[str, bytes, int, int]]:
        with self.lock:
            out, self.messages = self.messages, []
            return out


def _transport(url: str, client_id: str, inbox: _Inbox, max_payload: int) -> FastTransport:
    tr = FastTransport(url, client_id=client_id, subscriptions=[("big/#", 1)], on_message=inbox.on_message,
                       on_connect=inbox.subscribed.set, max_payload_bytes=max_payload)
    tr.start(5)
    assert inbox.subscribed.wait(5)
    return tr


def _raw_publish(port: int, packets: list[bytes], acks: int) -> None:
    """Send ready-made packets on a plain socket and wait for ``acks`` PUBACKs (allocates nothing big)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(codec.connect_packet(f"pub-{uuid.uuid4().hex[:8]}", keepalive=60))
        assert s.recv(4)[:1] == b"\x20"
        for p in packets:
            s.sendall(p)
        got = b""
        while len(got) < 4 * acks:
            chunk = s.recv(4096)
            assert chunk, "broker closed the publisher's connection"
            got += chunk
        s.sendall(codec.DISCONNECT)


@pytest.mark.integration
@pytest.mark.parametrize("qos", [0, 1])
def test_fast_transport_passes_a_huge_message_on_truncated_with_bounded_memory(open_broker: Mosquitto,
                                                                               qos: int) -> None:
    limit = 16_384
    huge = bytes(range(256)) * (20 * 4096)  # 20 MiB
    packets = [codec.publish_packet("big/a", b"first", qos=1, packet_id=1),
               codec.publish_packet("big/huge", huge, qos=qos, packet_id=2 if qos else 0),
               codec.publish_packet("big/b", b"after", qos=1, packet_id=3)]
    inbox = _Inbox()
    tr = _transport(open_broker.url, f"gw-big-{qos}", inbox, limit)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        _raw_publish(open_broker.port, packets, acks=2 + qos)
        got: list[tuple[str, bytes, int, int]] = []

        def three() -> bool:
            got.extend(inbox.take())
            return len(got) >= 3

        assert wait_until(three, 60), got
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    try:
        assert [(t, q) for t, _p, _m, q in got] == [("big/a", 1), ("big/huge", qos), ("big/b", 1)]
        assert got[1][1] == huge[:limit + 1]  # max_bytes + 1: what the validator rejects as too_large
        assert peak < 4 * 1024 * 1024, f"receiving a 20 MiB message allocated {peak / 1e6:.1f} MB"
        assert tr.oversize_messages == 1
        tr.ack_many([m for _t, _p, m, q in got if q])
        # a QoS 0 message of our own comes back to us once the broker has read it, and with it the PUBACKs
        # we sent before it on the same connection
        tr.publish("big/acked", b"", qos=0)
        assert wait_until(lambda: any(t == "big/acked" for t, *_x in list(inbox.messages)), 10)
    finally:
        tr.stop()
    # acknowledged: the persistent session does not redeliver it (no poison message), and intake goes on
    inbox2 = _Inbox()
    tr2 = _transport(open_broker.url, f"gw-big-{qos}", inbox2, limit)
    try:
        # big/d is a sentinel: a redelivery would come before it (and before big/c)
        _raw_publish(open_broker.port, [codec.publish_packet("big/c", b"later", qos=1, packet_id=4),
                                        codec.publish_packet("big/d", b"sentinel", qos=1, packet_id=5)], acks=2)
        assert wait_until(lambda: any(t == "big/d" for t, *_x in list(inbox2.messages)), 10)
        assert [(t, p) for t, p, _m, _q in inbox2.take()] == [("big/c", b"later"), ("big/d", b"sentinel")]
    finally:
        tr2.stop()


def test_transport_default_limit_is_the_largest_gateway_setting() -> None:
    """Without the gateway's own limit the transport still buffers at most the largest allowed payload."""
    field = GatewaySettings.model_fields["max_payload_bytes"]
    le = next(m.le for m in field.metadata if hasattr(m, "le"))
    assert DEFAULT_MAX_PAYLOAD_BYTES == MAX_PAYLOAD_BYTES_CEILING == le
    assert PRODUCT_LIMITS.max_packet_size == le + codec.PUBLISH_HEADROOM


# -- the gateway process: RSS, dead letter, ingest goes on -------------------------------------------------


def _rss_kib(pid: int, key: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {key} for {pid}")


def _reset_peak(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM (Linux >= 4.0)
        return True
    except OSError:
        return False


def _normal(f: catalogue.TelemetryField) -> float | int | None:
    """A value in the middle of the field's normal (else valid) range; None for booleans."""
    if f.type is catalogue.FieldType.BOOL:
        return None
    lo, hi = f.normal or f.valid
    if lo == float("-inf") or hi == float("inf"):
        return None
    mid = lo + (hi - lo) / 2
    return round(mid) if f.type is catalogue.FieldType.INT else mid


def _numeric_devices(sample: Community) -> list[tuple[str, str, float | int]]:
    """(device id, field, normal value) for every device whose first field is a bounded number."""
    out = []
    for d in sample.devices:
        fields = catalogue.KINDS[d.kind].fields
        value = _normal(fields[0]) if fields else None
        if value is not None:
            out.append((d.id, fields[0].name, value))
    return out


def _one_device(sample: Community, kind: str = "hydrant_pressure") -> tuple[str, str, float | int]:
    return next(x for x in _numeric_devices(sample) if x[0] in {d.id for d in sample.devices if d.kind == kind})


@pytest.mark.integration
def test_gateway_process_survives_a_50_mb_publish(tmp_path: Path, settings: Settings, storage: Storage,
                                                   sample: Community, open_broker: Mosquitto) -> None:
    root, schema = settings.mqtt.topic_root, settings.db.schema_name
    device, field, value = _one_device(sample)
    topic = contract.topic(root, sample.id, device, "telemetry")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDTWIN_")}
    env.update({"GRIDTWIN_MQTT_URL": open_broker.url, "GRIDTWIN_DB_URL": str(settings.db.url),
                "GRIDTWIN_DB_SCHEMA": schema, "GRIDTWIN_MQTT_TOPIC_ROOT": root,
                "GRIDTWIN_MQTT_CLIENT_ID": f"gw-{root}", "GRIDTWIN_DATA_DIR": str(tmp_path / "data")})
    log = (tmp_path / "gateway.log").open("wb")
    gw = subprocess.Popen([sys.executable, "-m", "gateway.cli", "gateway"], cwd=ROOT, env=env, stdout=log,
                          stderr=subprocess.STDOUT)
    now_ms = int(time.time() * 1000)

    def stored(seq: int) -> bool:
        at = EPOCH + timedelta(milliseconds=now_ms + seq)
        row = storage.conn.execute(
            f"SELECT count(*) FROM {schema}.telemetry t JOIN {schema}.devices d ON d.id = t.device_id "
            f"WHERE d.code = %s AND t.ts = %s", (device, at)).fetchone()
        return bool(row and row[0])

    def subscribed() -> bool:
        return "subscribed to" in (tmp_path / "gateway.log").read_text(errors="replace")

    def send(seq: int) -> None:
        body = contract.telemetry_bytes(now_ms + seq, seq, {field: value})
        _raw_publish(open_broker.port, [codec.publish_packet(topic, body, qos=1, packet_id=1)], acks=1)

    try:
        assert wait_until(subscribed, 60), (tmp_path / "gateway.log").read_text()[-3000:]
        send(1)  # the gateway is up and storing
        assert wait_until(lambda: stored(1), 60), (tmp_path / "gateway.log").read_text()[-3000:]
        rss = [_rss_kib(gw.pid)]

        def settled() -> bool:  # the baseline: RSS no longer moving after the first batch (at most 3 s)
            rss.append(_rss_kib(gw.pid))
            return rss[-1] == rss[-2]

        wait_until(settled, 3, interval=0.2)
        before = _rss_kib(gw.pid)
        exact_peak = _reset_peak(gw.pid)
        peak = [before]
        stop = threading.Event()

        def sample_rss() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], _rss_kib(gw.pid))
                time.sleep(0.01)

        sampler = threading.Thread(target=sample_rss, daemon=True)
        sampler.start()
        huge = b'{"v":1,"ts":%d,"seq":2,"values":{"%s":%r,"pad":"' % (now_ms + 2, field.encode(), value)
        huge += b"x" * (50 * 1024 * 1024) + b'"}}'
        _raw_publish(open_broker.port, [codec.publish_packet(topic, huge, qos=1, packet_id=2)], acks=1)
        del huge
        send(3)  # ingest goes on after it
        assert wait_until(lambda: stored(3), 60), (tmp_path / "gateway.log").read_text()[-3000:]
        stop.set()
        sampler.join()
        growth_kib = max(peak[0], _rss_kib(gw.pid, "VmHWM") if exact_peak else 0) - before
        print(f"gateway RSS before {before} KiB, peak growth with a 50 MiB publish {growth_kib} KiB")
        assert growth_kib < 25 * 1024, f"a 50 MiB publish grew the gateway's RSS by {growth_kib / 1024:.0f} MiB"
        rows = storage.conn.execute(f"SELECT reason FROM {schema}.dead_letters WHERE topic = %s", (topic,)).fetchall()
        assert [r[0] for r in rows] == ["too_large"]
        assert not stored(2)
        assert gw.poll() is None, "the gateway died"
    finally:
        gw.terminate()
        gw.wait(20)
        log.close()


# -- queue limits: explicit everywhere, and 10 minutes of a large deployment survive ----------------------


def _directives(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) == 2:
            out.setdefault(words[0], words[1])
    return out


def _large_downtime_messages() -> int:
    return round(LARGE_DEVICES * PER_DEVICE_MSG_S * DOWNTIME_S)


def test_every_broker_config_sets_the_limits_explicitly(tmp_path: Path) -> None:
    need = _large_downtime_messages()
    shipped = _directives((ROOT / "deploy" / "mosquitto" / "mosquitto.conf").read_text())
    embedded_settings = settings_mod.load(env={}, data_dir=tmp_path / "gt")
    paths = services._Paths.of(embedded_settings)
    paths.root.mkdir(parents=True)
    embedded = _directives(services._write_mqtt_conf(paths, "mosquitto", 18830, None).read_text())
    test_broker = Mosquitto(tmp_path / "test-broker")
    try:
        ours = _directives(test_broker.conf.read_text())
    finally:
        test_broker.stop()
    for name, conf, limits in (("deploy/mosquitto/mosquitto.conf", shipped, PRODUCT_LIMITS),
                               ("embedded (gateway/ops/services.py)", embedded, PRODUCT_LIMITS),
                               ("tests/bench (gateway/ops/procs.py)", ours, TEST_LIMITS)):
        got = {k: int(conf.get(k, "-1")) for k in ("max_queued_messages", "max_queued_bytes",
                                                   "max_inflight_messages", "max_packet_size")}
        assert got == {"max_queued_messages": limits.max_queued_messages,
                       "max_queued_bytes": limits.max_queued_bytes,
                       "max_inflight_messages": limits.max_inflight_messages,
                       "max_packet_size": limits.max_packet_size}, name
        assert got["max_queued_messages"] >= 8 * need, name
        assert got["max_queued_bytes"] >= 8 * need * 200, name  # ~150 bytes of payload per message
        assert 0 < got["max_packet_size"] <= 2 * 1024 * 1024, name
        assert "message_size_limit" not in conf, name


def test_sample_community_rate_matches_the_documented_arithmetic(sample: Community) -> None:
    """docs/mqtt.md sizes the queues from the sample's sustained rate: the simulators' baseline (heartbeats
    per kind from the catalogue, plus readings on change), measured here over a simulated hour."""
    plan = scenario.compile_plan("baseline", sample, pins={}, duration=2 * 3600)
    start = 1_700_000_000.0
    n = sum(1 for m in engine.plan_messages(plan, sample, "gridtwin", start=start, seed=1) if m.t >= start + 3600)
    rate = n / 3600
    heartbeats = sum(1 / catalogue.KINDS[d.kind].heartbeat_s for d in sample.devices)
    doc = (ROOT / "docs" / "mqtt.md").read_text()
    documented = float(re.search(r"sends \*\*([\d.]+) msg/s\*\*", doc).group(1))  # type: ignore[union-attr]
    print(f"sample community: {rate:.2f} msg/s baseline, {heartbeats:.2f} msg/s heartbeats")
    assert len(sample.devices) == SAMPLE_DEVICES and documented == PER_DEVICE_MSG_S * SAMPLE_DEVICES
    assert abs(rate - documented) / documented < 0.1, f"docs/mqtt.md: {documented} msg/s, baseline: {rate:.2f}"
    assert heartbeats < rate
    assert f"{round(_large_downtime_messages(), -3):,} messages" in doc
    assert f"max_queued_messages {PRODUCT_LIMITS.max_queued_messages}" in doc


def _telemetry_load(sample: Community, root: str, n: int, start_ms: int) -> tuple[list[bytes], list[str]]:
    """``n`` valid QoS 1 telemetry PUBLISH packets spread over the sample's numeric devices, 5 ms apart per
    device from ``start_ms``, each with one reading."""
    devices = _numeric_devices(sample)
    per = collections.Counter[str]()
    packets = []
    for i in range(n):
        device, field, value = devices[i % len(devices)]
        seq = per[device]
        per[device] += 1
        body = contract.telemetry_bytes(start_ms + seq * 5, seq, {field: value})
        packets.append(codec.publish_packet(contract.topic(root, sample.id, device, "telemetry"), body, qos=1,
                                            packet_id=i % 0xFFFF + 1))
    return packets, sorted(per)


@pytest.fixture
def embedded_broker(tmp_path: Path, db_url: str) -> Iterator[str]:
    """The broker `gridtwin services up` starts when nothing else is there (mosquitto, our config)."""
    s = settings_mod.load(env={}, data_dir=tmp_path / "gt", db={"url": db_url})
    mqtt, _db = services.up(s, probe_local=False)
    try:
        assert mqtt.source == "embedded" and mqtt.durable and "mosquitto" in mqtt.detail
        yield mqtt.url
    finally:
        services.down(s)


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_embedded_broker_keeps_10_minutes_of_a_large_deployment_for_an_absent_gateway(
        embedded_broker: str, settings: Settings, storage: Storage, sample: Community) -> None:
    n = _large_downtime_messages()  # 117,000: 10 minutes of 100,000 devices
    s = settings_mod.load(env={}, mqtt={**settings.mqtt.model_dump(), "url": embedded_broker},
                          db={"url": settings.db.url, "schema": settings.db.schema_name},
                          gateway={"flush_interval_s": 0.05})
    gw = Gateway(s, embedded_broker, str(settings.db.url), mqtt5=False)
    gw.start()  # makes the persistent session and its subscriptions
    gw.stop()  # away: the broker queues for it
    start_ms = int(time.time() * 1000) - DOWNTIME_S * 1000
    packets, _devices = _telemetry_load(sample, settings.mqtt.topic_root, n, start_ms)
    port = int(embedded_broker.rsplit(":", 1)[1])
    t0 = time.monotonic()
    for i in range(0, n, 5000):
        _raw_publish(port, packets[i:i + 5000], acks=len(packets[i:i + 5000]))
    published_s = time.monotonic() - t0
    schema = settings.db.schema_name

    def count() -> int:
        row = storage.conn.execute(f"SELECT count(*) FROM {schema}.telemetry").fetchone()
        return int(row[0]) if row else 0

    gw2 = Gateway(s, embedded_broker, str(settings.db.url), mqtt5=False)
    gw2.start()
    try:
        t1 = time.monotonic()
        # a sentinel queued behind the backlog: once it is stored, nothing of the backlog is still to come
        device, field, value = _numeric_devices(sample)[0]
        sentinel = contract.telemetry_bytes(int(time.time() * 1000), 999_999, {field: value})
        _raw_publish(port, [codec.publish_packet(contract.topic(settings.mqtt.topic_root, sample.id, device,
                                                                "telemetry"), sentinel, qos=1, packet_id=1)], acks=1)
        wait_until(lambda: count() > n, 400, interval=1.0)
        assert gw2.wait_idle(60)
        got = count() - 1
        print(f"published {n} in {published_s:.1f}s while the gateway was away; {got} stored "
              f"{time.monotonic() - t1:.1f}s after it came back")
        assert got == n, f"lost {n - got} of {n} messages queued for the absent gateway"
    finally:
        gw2.stop()


@pytest.mark.integration
def test_a_smaller_queue_limit_loses_the_overflow(tmp_path: Path) -> None:
    """The control: the queue limit, not luck, decides what survives (Mosquitto's default is 1,000)."""
    broker = Mosquitto(tmp_path / "small", limits=BrokerLimits(max_queued_messages=1000,
                                                              max_queued_bytes=1 << 30, max_inflight_messages=20))
    try:
        inbox = _Inbox()
        tr = _transport(broker.url, "gw-small", inbox, 16_384)
        tr.stop()
        _raw_publish(broker.port, [codec.publish_packet(f"big/{i}", b"x", qos=1, packet_id=i % 0xFFFF + 1)
                                   for i in range(5000)], acks=5000)
        inbox2 = _Inbox()
        tr2 = _transport(broker.url, "gw-small", inbox2, 16_384)
        try:
            got: list[tuple[str, bytes, int, int]] = []

            def drain() -> list[tuple[str, bytes, int, int]]:
                new = inbox2.take()
                tr2.ack_many([m for *_x, m, _q in new])
                got.extend(new)
                return got

            assert wait_until(lambda: len(drain()) >= 1000, 10), len(got)
            # a sentinel, sent once the queue has room again: whatever the broker kept is delivered before it
            _raw_publish(broker.port, [codec.publish_packet("big/sentinel", b"s", qos=1, packet_id=1)], acks=1)
            assert wait_until(lambda: drain()[-1][0] == "big/sentinel", 10), len(got)
            assert 1000 <= len(got) - 1 <= 1020, len(got)
        finally:
            tr2.stop()
    finally:
        broker.stop()

