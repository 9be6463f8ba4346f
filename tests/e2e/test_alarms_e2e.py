"""Alarms end to end: readings through the real broker and gateway raise, persist, publish, get
acknowledged by an operator's command, clear, and survive a gateway restart."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway import settings as settings_mod
from gateway.ingest.pipeline import Gateway
from gateway.settings import Settings
from gateway.storage import Storage
from simulators import publisher
from tests.support.brokers import wait_until
from twin import contract
from twin.community import Community
from twin.state import Level

pytestmark = pytest.mark.integration



class Listener:
    """Collects what the gateway publishes on the community's alarm topic."""

    def __init__(self, url: str, topic: str) -> None:
        addr = contract.BrokerAddress.parse(url)
        self.events: list[dict[str, object]] = []
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"l-{time.monotonic_ns()}")
        self.client.on_message = lambda _c, _u, m: self.events.append(orjson.loads(m.payload))
        ready = threading.Event()
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.connect(addr.host, addr.port)
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        ready.wait(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _wait(pred: Callable[[], object], timeout: float = 10.0) -> bool:
    return wait_until(pred, timeout, 0.05)


def _gas(pub: publisher.Publisher, root: str, seq: int, lel: float) -> None:
    t = contract.topic(root, "sunshine", "B3-B1-GAS", contract.Channel.TELEMETRY)
    pub.publish(publisher.Message(t, contract.telemetry_bytes(int(time.time() * 1000), seq, {"lel": lel})))


def test_gas_alarm_lifecycle_through_the_gateway(settings: Settings, storage: Storage) -> None:
    assert settings.mqtt.url and settings.db.url
    root = settings.mqtt.topic_root
    listener = Listener(settings.mqtt.url, contract.alarms_topic(root, "sunshine"))
    gw = Gateway(settings, settings.mqtt.url, settings.db.url)
    gw.start()
    pub = publisher.Publisher(settings.mqtt.url, client_id=f"sim-{root}", qos=1)
    try:
        _gas(pub, root, 1, 5.0)
        _gas(pub, root, 2, 30.0)  # above level 1 (25 %LEL)
        pub.flush()
        assert _wait(lambda: any(e.get("rule") == "gas_level1" and e["kind"] == "raised" for e in listener.events))
        rows = storage.active_alarms("sunshine")
        assert [(r["rule"], r["subject"], r["status"], r["severity"]) for r in rows] == [
            ("gas_level1", "B3-B1-GAS", "active_unack", "major")]
        assert gw.live["sunshine"].rollup().buildings["B3"] >= Level.MAJOR
        # an operator acknowledges through the command topic
        pub.publish(publisher.Message(contract.alarm_commands_topic(root, "sunshine"), orjson.dumps(
            {"v": 1, "action": "acknowledge", "key": rows[0]["key"], "by": "op-zhang", "comment": "已通知燃气公司"})))
        pub.flush()
        assert _wait(lambda: storage.active_alarms("sunshine")[0]["status"] == "active_ack")
        ack = storage.active_alarms("sunshine")[0]
        assert ack["acked_by"] == "op-zhang" and ack["ack_comment"] == "已通知燃气公司"
        # a forged command for an alarm that does not exist is refused, nothing breaks
        pub.publish(publisher.Message(contract.alarm_commands_topic(root, "sunshine"), orjson.dumps(
            {"v": 1, "action": "acknowledge", "key": "nope@nothing", "by": "x"})))
        pub.publish(publisher.Message(contract.alarm_commands_topic(root, "sunshine"), b"{not json"))
        pub.flush()
        assert _wait(lambda: sum(1 for e in listener.events if e.get("kind") == "rejected") == 2)
        _gas(pub, root, 3, 2.0)  # back to normal: below the clear level
        pub.flush()
        assert _wait(lambda: storage.active_alarms("sunshine") == []), (listener.events, gw.stats.snapshot())
        kinds = [r[0] for r in storage.conn.execute(
            "SELECT kind FROM alarm_events WHERE key = %s ORDER BY id", (rows[0]["key"],)).fetchall()]
        assert kinds == ["raised", "acknowledged", "cleared"]
        assert _wait(lambda: gw.live["sunshine"].rollup().buildings["B3"] < Level.MAJOR)
    finally:
        pub.close()
        gw.stop()
        listener.close()


def test_alarm_state_survives_restart(settings: Settings, storage: Storage) -> None:
    assert settings.mqtt.url and settings.db.url
    root = settings.mqtt.topic_root
    gw = Gateway(settings, settings.mqtt.url, settings.db.url)
    gw.start()
    pub = publisher.Publisher(settings.mqtt.url, client_id=f"sim-{root}", qos=1)
    try:
        _gas(pub, root, 1, 60.0)  # level 2 (50 %LEL): critical
        pub.flush()
        assert _wait(lambda: len(storage.active_alarms("sunshine")) == 2)
    finally:
        gw.stop()
    gw2 = Gateway(settings, settings.mqtt.url, settings.db.url)
    gw2.start()
    try:
        assert gw2.live["sunshine"].rollup().buildings["B3"] is Level.CRITICAL  # painted from the restored book
        _gas(pub, root, 2, 1.0)
        pub.flush()
        assert _wait(lambda: storage.active_alarms("sunshine") == [])  # the restored engine clears them
    finally:
        pub.close()
        gw2.stop()


def _rewrite(path: Path, text: str) -> None:
    """Write ``text`` and move the file's mtime on by a second: the reload looks at mtimes, and two writes
    within one kernel clock tick (a few ms) would otherwise share one (no sleeping for the clock to move)."""
    before = path.stat().st_mtime_ns
    path.write_text(text)
    os.utime(path, ns=(before + 1_000_000_000, before + 1_000_000_000))


def test_bad_site_rules_file_keeps_the_previous_rules(settings: Settings, storage: Storage, tmp_path: Path) -> None:
    assert settings.mqtt.url and settings.db.url
    site = tmp_path / "site.yaml"
    site.write_text("version: 1\nrules:\n  - {id: gas_level1, raise: 20, clear: 15}\n")
    s = settings_mod.load(env={}, mqtt=settings.mqtt.model_dump(),
                          db={"url": settings.db.url, "schema": settings.db.schema_name},
                          rules={"files": [str(site)]}, gateway={"flush_interval_s": 0.05})
    gw = Gateway(s, settings.mqtt.url, settings.db.url)
    svc = gw.alarms["sunshine"]
    try:
        assert svc.ruleset.rule("gas_level1").raise_ == 20  # type: ignore[union-attr]
        _rewrite(site, "version: 1\nrules:\n  - {id: gas_level1, raise: 20, clear: 25}\n")  # clear above raise
        assert svc.maybe_reload() is False
        assert svc.reload_errors and "site.yaml:3" in svc.reload_errors[0]
        assert svc.ruleset.rule("gas_level1").raise_ == 20  # type: ignore[union-attr]
        _rewrite(site, "version: 1\nrules:\n  - {id: gas_level1, raise: 22, clear: 15}\n")
        assert svc.maybe_reload() is True and svc.ruleset.rule("gas_level1").raise_ == 22  # type: ignore[union-attr]
    finally:
        gw.stop()


def test_a_panel_fire_alarm_lands_at_the_component_through_the_gateway(settings: Settings, storage: Storage,
                                                                       sample: Community) -> None:
    assert settings.mqtt.url and settings.db.url
    root = settings.mqtt.topic_root
    panel = sample.device("B1-FACP")
    assert panel is not None and panel.components
    address, detector = next((a, d) for a, d in panel.components.items() if d.startswith("B1-F7-"))
    gw = Gateway(settings, settings.mqtt.url, settings.db.url)
    gw.start()
    pub = publisher.Publisher(settings.mqtt.url, client_id=f"sim-{root}", qos=1)
    try:
        t = contract.topic(root, "sunshine", "B1-FACP", contract.Channel.EVENT)
        pub.publish(publisher.Message(t, orjson.dumps({"v": 1, "ts": int(time.time() * 1000), "seq": 1,
                                                       "code": "fire_alarm", "state": "active",
                                                       "detail": f"component {address}: smoke"})))
        pub.flush()
        assert _wait(lambda: any(r["rule"] == "panel_fire_alarm" for r in storage.active_alarms("sunshine")))
        row = next(r for r in storage.active_alarms("sunshine") if r["rule"] == "panel_fire_alarm")
        assert (row["subject"], row["building"], row["floor"], row["device"]) == (detector, "B1", 7, detector)
    finally:
        pub.close()
        gw.stop()
