"""Service resolution against real processes: configured, local (the machine's Mosquitto and
PostgreSQL), and embedded (PostgreSQL from the wheel, mosquitto, amqtt) started, used and stopped."""

from __future__ import annotations

import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as paho
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from gateway import settings as settings_mod
from gateway.ops import services
from gateway.ops.services import ServiceError, check_db, check_mqtt, down, resolve, status, up
from gateway.settings import Settings

pytestmark = pytest.mark.integration

LOCAL_MQTT = "mqtt://127.0.0.1:1883"
LOCAL_DB = "postgresql://postgres@127.0.0.1:5432/postgres"


def _settings(data_dir: Path, **sections: Any) -> Settings:
    return settings_mod.load(env={}, data_dir=data_dir, **sections)


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A data directory whose embedded services are always stopped afterwards, even on failure."""
    d = tmp_path / "gt"
    yield d
    if (d / "services").exists():
        down(_settings(d))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mqtt_roundtrip(url: str, protocol: MQTTProtocolVersion) -> bytes:
    """Subscribe, publish with QoS 1, return what came back."""
    parts = urlsplit(url)
    topic = f"gt-test/{uuid.uuid4().hex[:8]}/ping"
    got: queue.Queue[bytes] = queue.Queue()
    connected, subscribed = threading.Event(), threading.Event()
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"gt-svc-{uuid.uuid4().hex[:8]}", protocol=protocol)
    c.on_connect = lambda *_a: connected.set()
    c.on_subscribe = lambda *_a: subscribed.set()
    c.on_message = lambda _c, _u, msg: got.put(bytes(msg.payload))
    c.connect(parts.hostname or "127.0.0.1", parts.port or 1883, keepalive=10)
    c.loop_start()
    try:
        assert connected.wait(5), "no CONNACK"
        c.subscribe(topic, qos=1)
        assert subscribed.wait(5), "no SUBACK"
        c.publish(topic, b"hello twin", qos=1).wait_for_publish(5)
        return got.get(timeout=5)
    finally:
        c.disconnect()
        c.loop_stop()


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


def test_configured_urls_win_and_nothing_is_started(data_dir: Path, mqtt_url: str, db_url: str) -> None:
    s = _settings(data_dir, mqtt={"url": mqtt_url}, db={"url": db_url})
    mqtt, db = resolve(s)
    assert (mqtt.source, mqtt.url, mqtt.pid) == ("configured", mqtt_url, None)
    assert (db.source, db.url, db.pid) == ("configured", db_url, None)
    assert "from settings" in mqtt.detail and "PostgreSQL" in db.detail
    assert up(s, timeout_s=10) == (mqtt, db)
    assert not (data_dir / "services").exists(), "a configured service must never start anything"
    rows = status(s)
    assert [(r["kind"], r["source"], r["reachable"]) for r in rows] == [("mqtt", "configured", True),
                                                                         ("db", "configured", True)]


def test_local_services_are_found_on_default_ports(data_dir: Path) -> None:
    if check_mqtt(LOCAL_MQTT, 2) is not None or check_db(LOCAL_DB, 2) is not None:
        pytest.skip("no Mosquitto on 127.0.0.1:1883 / PostgreSQL on 127.0.0.1:5432 on this machine")
    mqtt, db = resolve(_settings(data_dir))
    assert (mqtt.source, mqtt.url, mqtt.mqtt5) == ("local", LOCAL_MQTT, True)
    assert "already listening on 127.0.0.1:1883" in mqtt.detail
    assert "mosquitto" in mqtt.detail  # the version came from $SYS/broker/version
    assert db.source == "local" and db.url.endswith("@127.0.0.1:5432/postgres")
    assert db.detail.startswith("PostgreSQL ") and "already listening on 127.0.0.1:5432" in db.detail
    assert not (data_dir / "services").exists()


def test_check_mqtt_needs_a_real_mqtt_handshake() -> None:
    with socket.socket() as srv:  # accepts TCP (kernel backlog) but never speaks MQTT
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        reason = check_mqtt(f"mqtt://127.0.0.1:{srv.getsockname()[1]}", 0.5)
    assert reason is not None and "CONNACK" in reason
    port = _free_port()
    reason = check_mqtt(f"mqtt://127.0.0.1:{port}", 1)
    assert reason is not None and "refused" in reason and f"127.0.0.1:{port}" in reason


@pytest.mark.skipif(shutil.which("mosquitto", path=os.environ.get("PATH", "") + ":/usr/sbin") is None,
                    reason="no mosquitto binary")
def test_embedded_postgres_and_mosquitto_start_serve_and_stop(data_dir: Path) -> None:
    s = _settings(data_dir)
    mqtt, db = resolve(s, probe_local=False)
    assert (mqtt.source, mqtt.pid, db.source, db.pid) == ("embedded", None, "embedded", None)
    assert "not running" in mqtt.detail and "mosquitto" in mqtt.detail
    assert not (data_dir / "services").exists(), "resolve() must not write anything"

    mqtt, db = up(s, timeout_s=45, probe_local=False)
    assert mqtt.source == db.source == "embedded" and mqtt.mqtt5
    assert mqtt.pid and db.pid and "mosquitto" in mqtt.detail
    for pid in (mqtt.pid, db.pid):  # detached: its own session, so it outlives `services up`
        assert os.getsid(pid) != os.getsid(0)
    if os.geteuid() == 0:  # PostgreSQL refuses root: it must run as the service user
        import pwd

        assert _uid_of(db.pid) == pwd.getpwnam(services.SERVICE_USER).pw_uid

    with psycopg.connect(db.url, connect_timeout=5, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS t_probe (x int)")
        conn.execute("INSERT INTO t_probe VALUES (42)")
        row = conn.execute("SELECT sum(x) FROM t_probe").fetchone()
        assert row is not None and row[0] >= 42
    assert _mqtt_roundtrip(mqtt.url, MQTTProtocolVersion.MQTTv5) == b"hello twin"

    rows = status(s, probe_local=False)
    assert [(r["source"], r["reachable"], r["pid"]) for r in rows] == [("embedded", True, mqtt.pid),
                                                                       ("embedded", True, db.pid)]
    again = up(s, timeout_s=10, probe_local=False)  # idempotent: reuses the running ones
    assert (again[0].pid, again[1].pid) == (mqtt.pid, db.pid)

    lines = down(s)
    assert len(lines) == 2 and all("stopped" in line for line in lines), lines
    assert not services._alive(mqtt.pid) and not services._alive(db.pid)
    assert not (data_dir / "services" / "mqtt.pid").exists()
    assert [r["reachable"] for r in status(s, probe_local=False)] == [False, False]
    assert all("not running" in line for line in down(s))


def test_amqtt_fallback_speaks_mqtt_311_and_outlives_its_starter(data_dir: Path, db_url: str) -> None:
    s = _settings(data_dir, db={"url": db_url})  # only the broker is embedded here
    mqtt, db = resolve(s, probe_local=False, use_mosquitto=False)
    assert mqtt.source == "embedded" and "amqtt" in mqtt.detail and not mqtt.mqtt5
    assert db.source == "configured"

    # Started by another process that then exits, as `gridtwin services up` before `make demo` does.
    code = ("import sys; from gateway.ops import services; from gateway import settings as s; "
            "m, _ = services.up(s.load(env={}, data_dir=sys.argv[1], db={'url': sys.argv[2]}), timeout_s=30, "
            "probe_local=False, use_mosquitto=False); print(m.pid)")
    r = subprocess.run([sys.executable, "-c", code, str(data_dir), db_url], capture_output=True, text=True,
                       timeout=60, check=False, cwd=Path(__file__).resolve().parents[2])
    assert r.returncode == 0, r.stderr
    started_pid = int(r.stdout.split()[-1])

    mqtt, db = up(s, timeout_s=10, probe_local=False, use_mosquitto=False)  # finds the running one
    assert mqtt.pid == started_pid and mqtt.source == "embedded"
    assert "amqtt" in mqtt.detail and "3.1.1" in mqtt.detail and not mqtt.mqtt5
    assert db.source == "configured" and not (data_dir / "services" / "postgres").exists()
    assert _mqtt_roundtrip(mqtt.url, MQTTProtocolVersion.MQTTv311) == b"hello twin"

    lines = down(s)
    assert "amqtt" in lines[0] and "stopped" in lines[0], lines
    assert not services._alive(started_pid)


@pytest.mark.parametrize("kind", ["mqtt", "db"])
def test_unreachable_configured_service_is_one_clear_line(
    data_dir: Path, kind: str, mqtt_url: str, db_url: str
) -> None:
    port = _free_port()
    if kind == "mqtt":
        s = _settings(data_dir, mqtt={"url": f"mqtt://user:s3cret@127.0.0.1:{port}"}, db={"url": db_url})
    else:
        s = _settings(data_dir, mqtt={"url": mqtt_url}, db={"url": f"postgresql://u:s3cret@127.0.0.1:{port}/x"})
    with pytest.raises(ServiceError) as info:
        up(s, timeout_s=5)
    msg = str(info.value)
    assert f"127.0.0.1:{port}" in msg and "refused" in msg.lower()
    assert "s3cret" not in msg and "Traceback" not in msg and "\n" not in msg
    assert ("GRIDTWIN_MQTT_URL" if kind == "mqtt" else "GRIDTWIN_DB_URL") in msg
    assert not (data_dir / "services").exists()


def test_down_stops_only_what_it_started(data_dir: Path) -> None:
    assert down(_settings(data_dir))[0].startswith("nothing to stop")
    svc = data_dir / "services"
    svc.mkdir(parents=True)
    stranger = subprocess.Popen(["sleep", "30"])  # a live pid that is not our broker
    try:
        (svc / "mqtt.json").write_text(f'{{"impl": "mosquitto", "pid": {stranger.pid}, "port": 18830}}')
        lines = down(_settings(data_dir))
        assert lines == ["embedded MQTT broker: not running", "embedded PostgreSQL: not running"]
        assert stranger.poll() is None, "down() signalled a process it did not start"
    finally:
        stranger.kill()
        stranger.wait()
