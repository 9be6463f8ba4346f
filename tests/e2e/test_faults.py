"""Fault tests with real processes: gateway kill -9, database outage, broker restart, duplicates."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from gateway import settings as settings_mod
from gateway.cli_base import sample_community_path
from gateway.ingest.pipeline import Gateway
from gateway.settings import Settings
from gateway.storage import Storage
from simulators import publisher
from tests.support.brokers import Mosquitto, Proxy, wait_until
from twin import community as community_mod
from twin import contract

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sample() -> community_mod.Community:
    return community_mod.parse(sample_community_path().read_text(encoding="utf-8"))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path / "broker")
    yield b
    b.stop()


@pytest.fixture
def registry(db_url: str, schema: str, sample: community_mod.Community) -> Iterator[Storage]:
    st = Storage.connect(db_url, schema=schema)
    st.migrate()
    st.load_community(sample)
    yield st
    st.close()


def _messages(sample: community_mod.Community, root: str, n: int) -> list[publisher.Message]:
    return list(publisher.telemetry_stream(sample, root, devices=50, start_s=time.time() - 3600, step_s=1.0,
                                           count=n))


def _wait(pred: Callable[[], object], timeout: float = 30.0) -> bool:
    return wait_until(pred, timeout, 0.1)


def _counts(st: Storage) -> tuple[int, int]:
    row = st.conn.execute("SELECT (SELECT count(*) FROM message_keys), (SELECT count(*) FROM telemetry)").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _expected_rows(msgs: list[publisher.Message]) -> int:
    import orjson

    return sum(len(orjson.loads(m.payload)["values"]) for m in msgs)


def test_duplicates_are_stored_once(settings: Settings, registry: Storage) -> None:
    assert settings.mqtt.url and settings.db.url
    gw = Gateway(settings, settings.mqtt.url, settings.db.url)
    gw.start()
    try:
        pub = publisher.Publisher(settings.mqtt.url, client_id=f"dup-{settings.mqtt.topic_root}", qos=1)
        t = contract.topic(settings.mqtt.topic_root, "sunshine", "B1-HYD", contract.Channel.TELEMETRY)
        raw = contract.telemetry_bytes(int(time.time() * 1000), 77, {"pressure": 0.5})
        for _ in range(3):  # a device retrying the same message
            pub.publish(publisher.Message(t, raw))
        pub.flush()
        pub.close()
        assert _wait(lambda: gw.stats.received == 3)
        assert gw.wait_idle()
        assert _counts(registry) == (1, 1)
        assert gw.stats.duplicates == 2
    finally:
        gw.stop()


def _gateway_proc(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GRIDTWIN_")}
    with log.open("ab") as f:
        return subprocess.Popen([sys.executable, "-m", "gateway.cli", "gateway", "--report-every", "1"],
                                env={**base, **env}, stdout=f, stderr=f, cwd=ROOT)


def test_kill_9_mid_stream_loses_nothing_and_stores_each_message_once(
    broker: Mosquitto, registry: Storage, db_url: str, schema: str, topic_root: str, tmp_path: Path,
    sample: community_mod.Community,
) -> None:
    env = {"GRIDTWIN_MQTT_URL": broker.url, "GRIDTWIN_DB_URL": db_url, "GRIDTWIN_DB_SCHEMA": schema,
           "GRIDTWIN_MQTT_TOPIC_ROOT": topic_root, "GRIDTWIN_MQTT_CLIENT_ID": f"gw-{topic_root}",
           "GRIDTWIN_DATA_DIR": str(tmp_path / "data"), "GRIDTWIN_GATEWAY_FLUSH_INTERVAL_S": "0.05",
           "GRIDTWIN_GATEWAY_BATCH_SIZE": "500"}
    log = tmp_path / "gateway.log"
    gw = _gateway_proc(env, log)
    assert _wait(lambda: "subscribed" in log.read_text(), 20), log.read_text()
    msgs = _messages(sample, topic_root, 20_000)
    pub = publisher.Publisher(broker.url, client_id=f"sim-{topic_root}", qos=1)
    done = threading.Event()
    sent = [0]

    def publish(m: publisher.Message) -> None:
        pub.publish(m)
        sent[0] += 1

    def send() -> None:
        publisher.run(iter(msgs), publish, rate=8000)
        done.set()

    threading.Thread(target=send, daemon=True).start()
    assert _wait(lambda: _counts(registry)[0] > 2000, 30)
    gw.send_signal(signal.SIGKILL)
    gw.wait()
    killed_at = _counts(registry)[0]
    # away for a while: the broker queues what is sent meanwhile for the dead gateway's persistent session
    sent_at_kill = sent[0]
    assert _wait(lambda: sent[0] >= sent_at_kill + 1000 or done.is_set(), 30)
    gw = _gateway_proc(env, log)
    try:
        assert done.wait(60)
        pub.flush(60)
        pub.close()
        assert _wait(lambda: _counts(registry)[0] == len(msgs), 60), (_counts(registry), killed_at)
        assert killed_at < len(msgs)  # the kill really was mid-stream
        assert _counts(registry) == (len(msgs), _expected_rows(msgs))  # nothing lost, nothing twice
    finally:
        gw.send_signal(signal.SIGTERM)
        gw.wait(timeout=30)


def test_database_outage_spools_and_replays_in_order(
    settings: Settings, registry: Storage, db_url: str, tmp_path: Path, sample: community_mod.Community,
    broker: Mosquitto,
) -> None:
    # our own broker: the system one drops QoS 1 messages beyond 1000 queued for a slow client
    settings = settings.model_copy(update={"mqtt": settings.mqtt.model_copy(update={"url": broker.url})})
    assert settings.mqtt.url
    info = psycopg.conninfo.conninfo_to_dict(db_url)
    proxy = Proxy(int(info.get("port") or 5432))
    proxied = f"postgresql://{info.get('user', 'postgres')}@127.0.0.1:{proxy.port}/{info['dbname']}"
    s = settings_mod.load(env={}, mqtt=settings.mqtt.model_dump(),
                          db={"url": proxied, "schema": settings.db.schema_name},
                          gateway={"flush_interval_s": 0.05, "batch_size": 200}, data_dir=str(tmp_path / "data"))
    gw = Gateway(s, settings.mqtt.url, proxied)
    gw.start()
    try:
        msgs = _messages(sample, settings.mqtt.topic_root, 6000)
        pub = publisher.Publisher(settings.mqtt.url, client_id=f"sim-{settings.mqtt.topic_root}", qos=1)
        publisher.run(iter(msgs[:2000]), pub.publish, rate=4000)
        assert _wait(lambda: _counts(registry)[0] >= 1000)
        proxy.cut()
        publisher.run(iter(msgs[2000:4000]), pub.publish, rate=4000)
        assert _wait(lambda: gw.stats.spooled > 0, 20), gw.stats.snapshot()
        proxy.heal()
        publisher.run(iter(msgs[4000:]), pub.publish, rate=4000)
        pub.flush()
        pub.close()
        assert _wait(lambda: _counts(registry)[0] == len(msgs), 60), (_counts(registry), gw.stats.snapshot())
        assert _counts(registry) == (len(msgs), _expected_rows(msgs))
        # per device, the readings' arrival order (ctid order within telemetry) follows their timestamps
        rows = registry.conn.execute(
            "SELECT device_id, ts FROM telemetry t WHERE metric_id = (SELECT min(metric_id) FROM telemetry x "
            "WHERE x.device_id = t.device_id) ORDER BY tableoid::regclass::text, ctid").fetchall()
        per_device: dict[int, list[object]] = {}
        for dev, ts in rows:
            per_device.setdefault(dev, []).append(ts)
        assert per_device and all(v == sorted(v) for v in per_device.values())
        assert not gw._spool.pending()
    finally:
        gw.stop()
        proxy.close()


def test_broker_restart_gateway_reconnects_and_resumes(
    broker: Mosquitto, registry: Storage, settings: Settings, sample: community_mod.Community, tmp_path: Path,
) -> None:
    assert settings.db.url
    s = settings_mod.load(env={}, mqtt={**settings.mqtt.model_dump(), "url": broker.url},
                          db={"url": settings.db.url, "schema": settings.db.schema_name},
                          gateway={"flush_interval_s": 0.05}, data_dir=str(tmp_path / "data"))
    gw = Gateway(s, broker.url, settings.db.url)
    gw.start()
    try:
        msgs = _messages(sample, settings.mqtt.topic_root, 400)
        pub = publisher.Publisher(broker.url, client_id="sim-a", qos=1)
        publisher.run(iter(msgs[:200]), pub.publish, rate=None)
        pub.flush()
        pub.close()
        assert _wait(lambda: _counts(registry)[0] == 200)
        broker.restart()
        assert _wait(gw._connected.is_set, 30), "gateway did not reconnect"
        pub = publisher.Publisher(broker.url, client_id="sim-b", qos=1)
        publisher.run(iter(msgs[200:]), pub.publish, rate=None)
        pub.flush()
        pub.close()
        assert _wait(lambda: _counts(registry)[0] == 400), _counts(registry)
    finally:
        gw.stop()


def test_metrics_endpoint(settings: Settings, registry: Storage) -> None:
    import urllib.request

    assert settings.mqtt.url and settings.db.url
    s = settings_mod.load(env={}, mqtt=settings.mqtt.model_dump(),
                          db={"url": settings.db.url, "schema": settings.db.schema_name},
                          gateway={"metrics_port": 0, "flush_interval_s": 0.05})
    gw = Gateway(s, settings.mqtt.url, settings.db.url)
    gw.start()
    try:
        pub = publisher.Publisher(settings.mqtt.url, client_id=f"m-{settings.mqtt.topic_root}", qos=1)
        t = contract.topic(settings.mqtt.topic_root, "sunshine", "B1-HYD", contract.Channel.TELEMETRY)
        pub.publish(publisher.Message(t, b"{bad"))
        pub.publish(publisher.Message(t, contract.telemetry_bytes(int(time.time() * 1000), 1, {"pressure": 0.4})))
        pub.flush()
        pub.close()
        assert _wait(lambda: gw.stats.received == 2) and gw.wait_idle()
        body = urllib.request.urlopen(f"http://127.0.0.1:{gw.metrics.port}/metrics", timeout=5).read().decode()
        assert "gridtwin_messages_received_total 2.0" in body
        assert 'gridtwin_messages_rejected_total{reason="bad_json"} 1.0' in body
        assert "gridtwin_db_write_seconds_bucket" in body and "gridtwin_spool_bytes" in body
        assert "gridtwin_mqtt_sessions_lost_total 0.0" in body
        gw._client.sessions_lost += 1  # what the transport counts when a reconnect finds no session on the broker
        body = urllib.request.urlopen(f"http://127.0.0.1:{gw.metrics.port}/metrics", timeout=5).read().decode()
        assert "gridtwin_mqtt_sessions_lost_total 1.0" in body
    finally:
        gw.stop()
