"""Alarm-path integrity: no message stops ingest, no alarm is lost between reading and ticket, each
message is stored once. Real broker, real gateway, real database (docs/alarm-path.md)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import paho.mqtt.client as paho
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway import cli
from gateway import settings as settings_mod
from gateway.alarms.service import AlarmService
from gateway.ingest.batch import WriteBatch, clean_text, dead_row
from gateway.ingest.pipeline import Gateway, GatewayFailed, Item
from gateway.ingest.validate import Accepted
from gateway.ops.procs import Mosquitto
from gateway.settings import Settings
from gateway.storage import Storage, StorageError
from gateway.tickets.dispatch import DispatchWorker
from tests.support.brokers import Proxy, subscribe_and_wait, wait_until
from twin import community as community_mod
from twin import contract

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
GAS = "B3-B1-GAS"  # a combustible-gas detector of the sample community


def _wait(pred: Callable[[], object], timeout: float = 20.0) -> bool:
    return wait_until(pred, timeout, 0.05)


def _client(url: str, name: str) -> paho.Client:
    addr = contract.BrokerAddress.parse(url)
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=name)
    c.connect(addr.host, addr.port)
    c.loop_start()
    return c


@contextmanager
def _connected(url: str, name: str) -> Iterator[paho.Client]:
    c = _client(url, name)
    try:
        yield c
    finally:
        c.loop_stop()
        c.disconnect()


def _now_ms(offset_s: float = 0.0) -> int:
    return int((time.time() + offset_s) * 1000)


def _topic(root: str, device: str, channel: str = "telemetry") -> str:
    return contract.topic(root, "sunshine", device, channel)


def _readings(st: Storage, device: str) -> list[tuple[datetime, float]]:
    return [(r[0], r[1]) for r in st.conn.execute(
        "SELECT t.ts, t.value FROM telemetry t JOIN devices d ON d.id = t.device_id WHERE d.code = %s ORDER BY 1",
        (device,)).fetchall()]


def _dead(st: Storage) -> dict[str, int]:
    return st.dead_letter_counts()


# -- ingest survives any message -----------------------------------------------------------------


@pytest.mark.parametrize("text", ["a\x00b", "\x07bell", "line\nbreak", "del\x7f", "c1\x85"])
def test_control_characters_are_refused_at_the_contract(text: str) -> None:
    ev = orjson.dumps({"v": 1, "ts": _now_ms(), "seq": 1, "code": "fault", "state": "active", "detail": text})
    with pytest.raises(contract.ContractError) as err:
        contract.decode(contract.Channel.EVENT, ev)
    assert err.value.reason == "bad_schema" and "detail" in err.value.detail and "U+" in err.value.detail
    st = orjson.dumps({"v": 1, "state": "offline", "reason": text})
    with pytest.raises(contract.ContractError):
        contract.decode(contract.Channel.STATUS, st)
    with pytest.raises(ValueError, match="control character"):
        contract.AlarmCommand.model_validate({"v": 1, "action": "acknowledge", "key": "gas_l2@X", "by": text})


def test_an_operator_comment_may_have_line_breaks_but_no_nul() -> None:
    ok = contract.AlarmCommand.model_validate({"v": 1, "action": "acknowledge", "key": "k@x", "by": "op",
                                               "comment": "two\nlines\ttab"})
    assert ok.comment == "two\nlines\ttab"
    with pytest.raises(ValueError, match="U\\+0000"):
        contract.AlarmCommand.model_validate({"v": 1, "action": "acknowledge", "key": "k@x", "by": "op",
                                              "comment": "nul\x00"})


def test_nul_in_event_detail_and_status_reason_does_not_stop_ingest(
        settings: Settings, storage: Storage, gateway: Gateway) -> None:
    root = settings.mqtt.topic_root
    assert settings.mqtt.url
    with _connected(settings.mqtt.url, f"dev-{root}") as c:
        c.publish(_topic(root, "B1-F1-SD1", "event"), b'{"v":1,"ts":%d,"seq":1,"code":"fault","state":"active",'
                  b'"detail":"loop\\u0000 2"}' % _now_ms(), qos=1)
        c.publish(_topic(root, "B1-HYD", "status"), b'{"v":1,"state":"offline","reason":"x\\u0000y"}', qos=1)
        c.publish(contract.alarm_commands_topic(root, "sunshine"),
                  b'{"v":1,"action":"acknowledge","key":"gas_level2@B3-B1-GAS","by":"op\\u0000"}', qos=1)
        c.publish(_topic(root, "B1-HYD"), b'{"v":1,"ts":%d,"seq":5,"values":{"pressure":0.41}}' % _now_ms(), qos=1)
        assert _wait(lambda: _readings(storage, "B1-HYD")), gateway.stats.snapshot()
    assert _wait(lambda: _dead(storage).get("bad_schema") == 2)
    assert gateway.health()["threads"]["writer"]
    gateway._save_rule_state()  # the rejected command left nothing in the engine that cannot be saved


def test_a_batch_the_database_refuses_is_written_device_by_device(
        settings: Settings, storage: Storage, gateway: Gateway) -> None:
    """Defence in depth behind the contract: a row PostgreSQL refuses (here NUL, put on the writer's
    queue through our own seam, bypassing validation) becomes a dead letter; the rest commits."""
    root = settings.mqtt.topic_root
    dev = next(d for d in storage.devices() if d.code == "B1-F1-SD1")
    now = datetime.now(UTC)
    poison = Accepted(_topic(root, dev.code, "event"), dev, [], [(now, dev.id, "fault", "active", "x\x00y", 9)],
                      [(dev.id, "online", None, now)], keys=[(dev.id, 9, now)])
    gateway._queue.put(Item(poison, 0, 0, time.monotonic()))
    assert settings.mqtt.url
    with _connected(settings.mqtt.url, f"dev-{root}") as c:
        c.publish(_topic(root, "B1-HYD"), b'{"v":1,"ts":%d,"seq":5,"values":{"pressure":0.41}}' % _now_ms(), qos=1)
        assert _wait(lambda: _readings(storage, "B1-HYD")), gateway.stats.snapshot()
    assert _wait(lambda: _dead(storage).get("storage_rejected") == 1)
    assert gateway.stats.poisoned_batches >= 1 and gateway.health()["status"] == "ok"


def test_storage_isolates_refused_units(storage: Storage) -> None:
    devs = {d.code: d.id for d in storage.devices()}
    mid = storage.metric_ids()["pressure"]
    now = datetime.now(UTC)
    batch = WriteBatch(
        keys=[(devs["B1-HYD"], 1, now), (devs["B1-F1-SD1"], 1, now)],
        readings=[(now, devs["B1-HYD"], mid, 0.4, 0, 1)],
        events=[(now, devs["B1-F1-SD1"], "fault", "active", "nul\x00", 1)], statuses=[],
        dead=[dead_row(now, "t/\x00/x" * 100, "bad_json", "d" * 5000, b"x" * 5000)])
    with pytest.raises(StorageError):
        storage.write_batch(batch)
    result = storage.write_batch(batch, isolate=True)
    assert [u.topic_hint() for u, _ in result.poisoned] == [f"(device {devs['B1-F1-SD1']})"]
    assert len(_readings(storage, "B1-HYD")) == 1
    rows = storage.conn.execute("SELECT reason, length(topic), length(detail), length(payload) FROM dead_letters "
                                "ORDER BY id").fetchall()
    assert rows[0][0] == "bad_json" and rows[0][1] <= 256 and rows[0][2] <= 512 and rows[0][3] <= 1024
    assert rows[1][0] == "storage_rejected"


def test_clean_text_keeps_tabs_and_newlines_escapes_the_rest() -> None:
    assert clean_text("a\tb\nc") == "a\tb\nc"
    assert clean_text("a\x00b\ud800") == "a\\x00b\\ud800"
    assert clean_text("x" * 10, 5) == "xxxx…"


# -- supervision ---------------------------------------------------------------------------------


def test_a_dead_writer_fails_health_and_stops_the_process(
        settings: Settings, storage: Storage, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL + 1, logger="gateway.ingest.pipeline")  # the death is the point of the test
    s = settings.model_copy(update={"gateway": settings.gateway.model_copy(update={"metrics_port": 0})})
    assert s.mqtt.url and s.db.url
    gw = Gateway(s, s.mqtt.url, s.db.url)

    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("simulated bug in the writer")

    gw._write = boom  # type: ignore[method-assign]
    import threading

    stop = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            gw.run_forever(stop, report_every_s=60)
        except GatewayFailed as exc:
            failure.append(exc)

    t = threading.Thread(target=run)
    t.start()
    try:
        assert _wait(lambda: gw.metrics.port is not None and gw._connected.is_set())
        port = gw.metrics.port
        body = orjson.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read())
        assert body["status"] == "ok" and body["threads"]["writer"] is True
        assert settings.mqtt.url
        c = _client(settings.mqtt.url, f"dev-{settings.mqtt.topic_root}")
        c.publish(_topic(settings.mqtt.topic_root, "B1-HYD"),
                  b'{"v":1,"ts":%d,"seq":5,"values":{"pressure":0.41}}' % _now_ms(), qos=1)
        assert _wait(gw.failed.is_set)
        c.loop_stop()
        c.disconnect()
        health = gw.health()
        assert health["status"] == "failing" and health["threads"]["writer"] is False
        assert "simulated bug" in (health["failure"] or "")
        t.join(10)
        assert failure and "writer thread died" in str(failure[0])
    finally:
        stop.set()
        t.join(10)


def test_cli_gateway_exits_non_zero_when_a_thread_dies(
        settings: Settings, storage: Storage, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.CRITICAL + 1, logger="gateway.ingest.pipeline")
    assert settings.mqtt.url and settings.db.url

    def boom(self: Gateway) -> None:
        raise RuntimeError("simulated death")

    monkeypatch.setattr(Gateway, "_write_loop", boom)
    for k, v in {"GRIDTWIN_MQTT_URL": settings.mqtt.url, "GRIDTWIN_DB_URL": settings.db.url,
                 "GRIDTWIN_DB_SCHEMA": settings.db.schema_name, "GRIDTWIN_MQTT_TOPIC_ROOT": settings.mqtt.topic_root,
                 "GRIDTWIN_MQTT_CLIENT_ID": settings.mqtt.client_id}.items():
        monkeypatch.setenv(k, v)
    code = cli.main(["gateway", "--duration", "20"])
    assert code == cli.EXIT_FAILED
    assert "writer thread died" in capsys.readouterr().err


def test_busy_metrics_port_is_one_line_before_touching_the_broker(
        settings: Settings, storage: Storage, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    assert settings.mqtt.url and settings.db.url
    holder = socket.socket()
    holder.bind(("0.0.0.0", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    for k, v in {"GRIDTWIN_MQTT_URL": settings.mqtt.url, "GRIDTWIN_DB_URL": settings.db.url,
                 "GRIDTWIN_DB_SCHEMA": settings.db.schema_name, "GRIDTWIN_MQTT_TOPIC_ROOT": settings.mqtt.topic_root,
                 "GRIDTWIN_MQTT_CLIENT_ID": settings.mqtt.client_id,
                 "GRIDTWIN_GATEWAY_METRICS_PORT": str(port)}.items():
        monkeypatch.setenv(k, v)
    connected: list[object] = []
    monkeypatch.setattr("gateway.mqtt.transport.FastTransport.start", lambda *a, **k: connected.append(a))
    try:
        code = cli.main(["gateway", "--duration", "5"])
    finally:
        holder.close()
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE and f"port {port}" in err and "Traceback" not in err
    assert not connected  # it never took over the broker session


# -- exactly once --------------------------------------------------------------------------------


def test_a_redelivered_old_message_is_stored_once_after_its_key_was_pruned(
        settings: Settings, storage: Storage, gateway: Gateway) -> None:
    root = settings.mqtt.topic_root
    assert settings.mqtt.url
    raw = b'{"v":1,"ts":%d,"seq":3,"values":{"pressure":0.33}}' % _now_ms(-5 * 86400)
    with _connected(settings.mqtt.url, f"dev-{root}") as c:
        c.publish(_topic(root, "B1-HYD"), raw, qos=1)
        assert _wait(lambda: len(_readings(storage, "B1-HYD")) == 1)
        assert storage.prune_message_keys() == 1  # 5 days old: beyond the key window
        c.publish(_topic(root, "B1-HYD"), raw, qos=1)
        assert _wait(lambda: gateway.stats.duplicates == 1), gateway.stats.snapshot()
    assert len(_readings(storage, "B1-HYD")) == 1


def test_duplicates_are_matched_by_seq_not_only_by_time(storage: Storage) -> None:
    dev = next(d.id for d in storage.devices() if d.code == "B1-HYD")
    mid = storage.metric_ids()["pressure"]
    ts = datetime.now(UTC).replace(microsecond=0)
    storage.write_batch(WriteBatch([(dev, 1, ts)], [(ts, dev, mid, 0.30, 0, 1)], [], [], []))
    # the original again (a redelivery) and another message of the same device at the same instant
    result = storage.write_batch(WriteBatch([(dev, 1, ts), (dev, 2, ts)],
                                            [(ts, dev, mid, 0.30, 0, 1), (ts, dev, mid, 0.31, 0, 2)], [], [], []))
    assert result.duplicates == 1
    assert sorted(v for _t, v in _readings(storage, "B1-HYD")) == [0.30, 0.31]


def test_a_retired_device_is_refused_after_a_registry_reload(
        settings: Settings, storage: Storage, gateway: Gateway, sample: community_mod.Community) -> None:
    root = settings.mqtt.topic_root
    assert settings.mqtt.url
    with _connected(settings.mqtt.url, f"dev-{root}") as c:
        c.publish(_topic(root, "B2-HYD"), b'{"v":1,"ts":%d,"seq":1,"values":{"pressure":0.4}}' % _now_ms(), qos=1)
        assert _wait(lambda: len(_readings(storage, "B2-HYD")) == 1)
        smaller = sample.model_copy(update={"devices": [d for d in sample.devices if d.id != "B2-HYD"]})
        storage.load_community(smaller)
        gateway.reload_registry()
        c.publish(_topic(root, "B2-HYD"), b'{"v":1,"ts":%d,"seq":2,"values":{"pressure":0.4}}' % _now_ms(), qos=1)
        assert _wait(lambda: _dead(storage).get("unknown_device") == 1), gateway.stats.snapshot()
    assert len(_readings(storage, "B2-HYD")) == 1


# -- what the gateway sends and keeps about rejects ---------------------------------------------


def test_unknown_devices_get_no_replies_and_known_ones_are_rate_limited(
        settings: Settings, storage: Storage, gateway: Gateway) -> None:
    root = settings.mqtt.topic_root
    assert settings.mqtt.url
    replies: list[str] = []
    c = _client(settings.mqtt.url, f"dev-{root}")
    c.on_message = lambda _c, _u, m: replies.append(m.topic)
    subscribe_and_wait(c, f"{root}/v1/+/+/error")
    sentinel = _topic(root, "B2-HYD", "error")
    try:
        for i in range(300):
            c.publish(f"{root}/v1/sunshine/NOPE-{i}/telemetry", b'{"v":1}', qos=1)
        for i in range(40):
            c.publish(_topic(root, "B1-HYD"), b"{bad %d" % i, qos=1)
        # a sentinel: the first bad message of another known device is answered; the gateway answers in the
        # order it took the messages in (after their batch is committed), so once this answer is in, every
        # answer to the messages above is in too
        c.publish(_topic(root, "B2-HYD"), b"{sentinel", qos=1)
        assert _wait(lambda: sentinel in replies), (replies, gateway.stats.snapshot())
        assert gateway.stats.received == 341
    finally:
        c.loop_stop()
        c.disconnect()
    assert not [t for t in replies if "/NOPE-" in t]
    assert replies.count(sentinel) == 1
    assert 10 <= len(replies) - 1 <= 12  # a burst of 10 for the one device, then one per 10 s
    assert gateway.stats.error_replies_suppressed >= 28
    counts = _dead(storage)
    assert counts["unknown_device"] == 300 and counts["bad_json"] == 41


def test_dead_letters_are_pruned_by_retention(storage: Storage) -> None:
    old = datetime.now(UTC) - timedelta(days=storage.retention_days + 1)
    storage.write_dead_letters([(old, "t", "bad_json", "old", b"x"), (datetime.now(UTC), "t", "bad_json", "new", b"y")])
    assert storage.prune_dead_letters() == 1
    assert storage.dead_letter_counts() == {"bad_json": 1}


# -- no alarm lost between reading and ticket ----------------------------------------------------


def _tickets(st: Storage) -> dict[int, set[str]]:
    """Each ticket and the alarms it holds (58 %LEL raises gas level 1 and 2: one incident, one ticket)."""
    out: dict[int, set[str]] = {}
    for tid, key in st.conn.execute(
            "SELECT t.id, a.alarm_key FROM tickets t LEFT JOIN ticket_alarms a ON a.ticket_id = t.id").fetchall():
        out.setdefault(int(tid), set()).add(str(key))
    return out


GAS_ALARMS = {f"gas_level1@{GAS}", f"gas_level2@{GAS}"}


def _gas(root: str, seq: int, lel: float) -> tuple[str, bytes]:
    return _topic(root, GAS), b'{"v":1,"ts":%d,"seq":%d,"values":{"lel":%s}}' % (_now_ms(), seq, str(lel).encode())


def _gateway_proc(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GRIDTWIN_")}
    with log.open("ab") as f:
        return subprocess.Popen([sys.executable, "-m", "gateway.cli", "gateway", "--report-every", "1"],
                                env={**base, **env}, stdout=f, stderr=f, cwd=ROOT)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path / "broker")
    yield b
    b.stop()


def test_kill_9_between_commit_and_dispatch_ends_with_exactly_one_ticket(
        broker: Mosquitto, storage: Storage, db_url: str, schema: str, topic_root: str, tmp_path: Path) -> None:
    env = {"GRIDTWIN_MQTT_URL": broker.url, "GRIDTWIN_DB_URL": db_url, "GRIDTWIN_DB_SCHEMA": schema,
           "GRIDTWIN_MQTT_TOPIC_ROOT": topic_root, "GRIDTWIN_MQTT_CLIENT_ID": f"gw-{topic_root}",
           "GRIDTWIN_DATA_DIR": str(tmp_path / "data")}
    log = tmp_path / "gateway.log"
    # first life: dispatch switched off, so the alarm is committed and nothing has acted on it yet
    gw = _gateway_proc({**env, "GRIDTWIN_TICKETS_ENABLED": "false"}, log)
    try:
        assert _wait(lambda: "subscribed" in log.read_text(), 30), log.read_text()
        c = _client(broker.url, f"dev-{topic_root}")
        c.publish(*_gas(topic_root, 1, 58.0), qos=1)
        assert _wait(lambda: storage.conn.execute(
            "SELECT count(*) FROM alarm_events WHERE dispatched_at IS NULL AND kind = 'raised' AND key = %s",
            (f"gas_level2@{GAS}",)).fetchone() == (1,), 30), log.read_text()
        c.loop_stop()
        c.disconnect()
    finally:
        gw.send_signal(signal.SIGKILL)
        gw.wait()
    assert _tickets(storage) == {}
    for life in range(2):  # second life opens the ticket; a third (after another kill -9) must not add one
        gw = _gateway_proc(env, log)
        try:
            assert _wait(lambda: list(_tickets(storage).values()) == [GAS_ALARMS], 30), log.read_text()
            if life:
                # a sentinel queued in the gateway's persistent session behind anything the broker still holds
                # for it (a redelivery): once it is stored, whatever came before it went through the rules,
                # and what they raised was committed with it
                with _connected(broker.url, f"dev-{topic_root}") as c:
                    c.publish(_topic(topic_root, "B1-HYD"),
                              b'{"v":1,"ts":%d,"seq":1,"values":{"pressure":0.4}}' % _now_ms(), qos=1
                              ).wait_for_publish(10)
                assert _wait(lambda: len(_readings(storage, "B1-HYD")) == 1, 30), log.read_text()
            assert _wait(lambda: storage.conn.execute(
                "SELECT count(*) FROM alarm_events WHERE dispatched_at IS NULL").fetchone() == (0,), 10)
        finally:
            gw.send_signal(signal.SIGKILL)
            gw.wait()
    assert list(_tickets(storage).values()) == [GAS_ALARMS]


def test_an_alarm_raised_while_the_database_is_down_gets_its_ticket(
        settings: Settings, storage: Storage, db_url: str, tmp_path: Path, broker: Mosquitto,
        caplog: pytest.LogCaptureFixture) -> None:
    info = psycopg.conninfo.conninfo_to_dict(db_url)
    proxy = Proxy(int(info.get("port") or 5432))
    proxied = f"postgresql://{info.get('user', 'postgres')}@127.0.0.1:{proxy.port}/{info['dbname']}"
    s = settings_mod.load(env={}, mqtt={**settings.mqtt.model_dump(), "url": broker.url},
                          db={"url": proxied, "schema": settings.db.schema_name},
                          gateway={"flush_interval_s": 0.05}, data_dir=str(tmp_path / "data"))
    gw = Gateway(s, broker.url, proxied)
    gw.start()
    root = s.mqtt.topic_root
    c = _client(broker.url, f"dev-{root}")
    try:
        c.publish(_topic(root, "B1-HYD"), b'{"v":1,"ts":%d,"seq":1,"values":{"pressure":0.4}}' % _now_ms(), qos=1)
        assert _wait(lambda: len(_readings(storage, "B1-HYD")) == 1)
        proxy.cut()
        c.publish(*_gas(root, 1, 58.0), qos=1)
        assert _wait(lambda: gw.stats.spooled > 0, 20), gw.stats.snapshot()
        assert gw.stats.alarm_events >= 1 and gw.health()["database"] == "down: spooling"
        # the dispatch worker lost its connection too (it polls every second) and must come back by itself
        assert _wait(lambda: any(r.name == "gateway.tickets.dispatch" and r.levelno == logging.WARNING
                                 for r in caplog.records), 10), gw.stats.snapshot()
        proxy.heal()
        assert _wait(lambda: list(_tickets(storage).values()) == [GAS_ALARMS], 30), _tickets(storage)
        assert storage.conn.execute("SELECT count(*) FROM alarm_events WHERE kind = 'raised'").fetchone() == (2,)
        # the alarm's reading was stored too, with it
        assert storage.conn.execute(
            "SELECT count(*) FROM latest_values l JOIN devices d ON d.id = l.device_id WHERE d.code = %s",
            (GAS,)).fetchone() == (1,)
    finally:
        c.loop_stop()
        c.disconnect()
        gw.stop()
        proxy.close()


def test_a_community_loaded_after_the_dispatch_worker_started_gets_its_tickets(
        settings: Settings, db_url: str, schema: str, sample: community_mod.Community) -> None:
    """The dispatch worker follows the registry: the alarm events of a community it did not know at start
    (loaded since, or unknown to a gateway that started from its cache) still become tickets."""
    st = Storage.connect(db_url, schema=schema)
    st.migrate()
    worker = DispatchWorker(settings, db_url, [], lambda *_a: None)
    worker.start()
    try:
        st.load_community(sample)
        svc = AlarmService(sample, None, root=settings.mqtt.topic_root, publish=lambda *_a: None, live=None)
        writes = svc.writes(svc.on_readings(GAS, [(datetime.now(UTC), {"lel": 58.0})]))
        assert writes is not None and len(writes.events) == 2
        st.write_alarms([writes])
        worker.wake()
        assert _wait(lambda: list(_tickets(st).values()) == [GAS_ALARMS], 15), _tickets(st)
        assert worker.alive() and worker.dispatched == 2 and worker.failed == 0
    finally:
        worker.stop()
        st.close()


def test_healthz_answers_over_http(settings: Settings, storage: Storage) -> None:
    s = settings.model_copy(update={"gateway": settings.gateway.model_copy(update={"metrics_port": 0})})
    assert s.mqtt.url and s.db.url
    gw = Gateway(s, s.mqtt.url, s.db.url)
    gw.start()
    try:
        body = orjson.loads(urllib.request.urlopen(f"http://127.0.0.1:{gw.metrics.port}/healthz", timeout=5).read())
        assert body["status"] == "ok" and body["threads"] == {"writer": True, "dispatch": True}
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{gw.metrics.port}/metrics", timeout=5).read().decode()
        assert 'gridtwin_thread_alive{thread="writer"} 1.0' in metrics
        assert "gridtwin_oldest_unwritten_seconds" in metrics
    finally:
        gw.stop()


def test_a_gateway_starts_while_the_database_is_down_spools_and_catches_up(
        settings: Settings, storage: Storage, db_url: str, tmp_path: Path, broker: Mosquitto) -> None:
    info = psycopg.conninfo.conninfo_to_dict(db_url)
    proxy = Proxy(int(info.get("port") or 5432))
    proxied = f"postgresql://{info.get('user', 'postgres')}@127.0.0.1:{proxy.port}/{info['dbname']}"
    s = settings_mod.load(env={}, mqtt={**settings.mqtt.model_dump(), "url": broker.url},
                          db={"url": proxied, "schema": settings.db.schema_name, "connect_timeout_s": 1},
                          gateway={"flush_interval_s": 0.05}, data_dir=str(tmp_path / "data"))
    try:
        proxy.cut()
        with pytest.raises(StorageError, match="no start-up cache"):  # a first start needs the database
            Gateway(s, broker.url, proxied)
        proxy.heal()
        Gateway(s, broker.url, proxied).stop()  # one good start leaves the cache behind
        proxy.cut()
        gw = Gateway(s, broker.url, proxied)
        gw.start()
        root = s.mqtt.topic_root
        c = _client(broker.url, f"dev-{root}")
        try:
            c.publish(_topic(root, "B1-HYD"), b'{"v":1,"ts":%d,"seq":1,"values":{"pressure":0.4}}' % _now_ms(),
                      qos=1)
            c.publish(*_gas(root, 1, 58.0), qos=1)
            assert _wait(lambda: gw.stats.spooled >= 1 and gw.stats.alarm_events >= 2, 20), gw.stats.snapshot()
            assert gw.health()["database"] == "down: spooling"
            proxy.heal()
            assert _wait(lambda: list(_tickets(storage).values()) == [GAS_ALARMS], 30), gw.stats.snapshot()
            assert len(_readings(storage, "B1-HYD")) == 1 and gw.health()["database"] == "up"
        finally:
            c.loop_stop()
            c.disconnect()
            gw.stop()
    finally:
        proxy.close()
