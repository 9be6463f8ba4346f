"""Gas interlocks end to end (GB 50028-2006 §10.8, docs/alarms.md): a gas alarm through the real broker, gateway
and database sends the valve and the fan of its place their commands; the simulated valve answers and is recorded,
the dead fan raises 联动未响应 / interlock not acknowledged, which its late answer clears. A care unit's resident
is set away through the alarm commands topic."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from gateway.ingest.pipeline import Gateway
from gateway.settings import Settings
from gateway.storage import Storage
from simulators import publisher
from simulators.interlock import CommandResponder
from tests.support.brokers import wait_until
from twin import community as community_mod
from twin import contract

pytestmark = pytest.mark.integration
GAS, VALVE, FAN = "B3-B1-GAS", "B3-B1-VALVE", "B3-B1-FAN"


def _wait(pred: Callable[[], object], timeout: float = 20.0) -> bool:
    return wait_until(pred, timeout, 0.05)


def test_gas_alarm_drives_the_valve_and_fan_and_a_silent_fan_raises_its_own_alarm(
        settings: Settings, storage: Storage, sample: community_mod.Community, tmp_path: Path) -> None:
    assert settings.mqtt.url and settings.db.url
    root = settings.mqtt.topic_root
    # a site rule file shortens the shipped 30 s acknowledgement window, as a site may: the same rule, a quicker test
    site = tmp_path / "site-rules.yaml"
    site.write_text("version: 1\nrules:\n  - id: gas_interlock\n    ack_within: 3s\n", encoding="utf-8")
    settings = settings.model_copy(update={"rules": settings.rules.model_copy(update={"files": [site]})})
    gw = Gateway(settings, settings.mqtt.url, settings.db.url)
    gw.start()
    valve_only = CommandResponder(settings.mqtt.url, root=root, community=sample, dead=frozenset({FAN}),
                                  client_id=f"resp-{root}")
    pub = publisher.Publisher(settings.mqtt.url, client_id=f"sim-{root}", qos=1)
    try:
        t = contract.topic(root, "sunshine", GAS, contract.Channel.TELEMETRY)
        pub.publish(publisher.Message(t, contract.telemetry_bytes(int(time.time() * 1000), 1, {"lel": 32.0})))
        pub.flush()
        # the valve got its command and answered; the answer is stored as the valve's event
        assert _wait(lambda: [(d, c) for d, c, _id in valve_only.answered] == [(VALVE, "close")])
        assert _wait(lambda: storage.conn.execute(
            "SELECT count(*) FROM device_events e JOIN devices d ON d.id = e.device_id WHERE d.code = %s "
            "AND e.code = 'valve_closed'", (VALVE,)).fetchone() == (1,)), "the valve's answer was not stored"

        def interlock_rows() -> list[tuple[str, str, str]]:
            return [(r["subject"], r["status"], r["severity"]) for r in storage.active_alarms("sunshine")
                    if r["rule"] == "gas_interlock"]

        # the fan stays silent: 3 s on the engine's clock later its interlock alarm is raised, not the valve's
        assert _wait(lambda: interlock_rows() == [(FAN, "active_unack", "critical")], 60), interlock_rows()
        state = gw.alarms["sunshine"].engine.snapshot()["rules"]["gas_interlock"]["state"]
        assert [(r[1], r[2], r[4]) for r in state["log"]] == [(VALVE, "close", "acknowledged"),
                                                              (FAN, "start", "not acknowledged")]
        # the fan comes back to life and answers late: its alarm clears
        valve_only.close()
        late = CommandResponder(settings.mqtt.url, root=root, community=sample, client_id=f"resp2-{root}")
        try:
            cmd = state["waiting"][0]
            ack = orjson.dumps({"v": 1, "ts": int(time.time() * 1000), "seq": 10**12, "code": "fan_started",
                                "state": "pulse", "detail": f"command {cmd[2]}"})
            pub.publish(publisher.Message(contract.topic(root, "sunshine", FAN, contract.Channel.EVENT), ack))
            pub.flush()
            assert _wait(lambda: interlock_rows() == [])
            rows = storage.conn.execute("SELECT kind FROM alarm_events WHERE key = %s ORDER BY id",
                                        (f"gas_interlock@{FAN}",)).fetchall()
            assert [r[0] for r in rows] == ["raised", "cleared"]
        finally:
            late.close()
    finally:
        pub.close()
        gw.stop()


def test_a_care_resident_set_away_through_the_alarm_commands_topic(settings: Settings, storage: Storage,
                                                                   sample: community_mod.Community) -> None:
    assert settings.mqtt.url and settings.db.url
    root = settings.mqtt.topic_root
    unit = sample.care_units[0].unit
    gw = Gateway(settings, settings.mqtt.url, settings.db.url)
    gw.start()
    pub = publisher.Publisher(settings.mqtt.url, client_id=f"op-{root}", qos=1)
    try:
        topic = contract.alarm_commands_topic(root, "sunshine")
        pub.publish(publisher.Message(topic, orjson.dumps({"v": 1, "action": "care_away", "unit": unit,
                                                           "by": "op-li", "comment": "住院"})))
        pub.publish(publisher.Message(topic, orjson.dumps({"v": 1, "action": "care_away", "unit": "nope",
                                                           "by": "op-li"})))
        pub.flush()
        assert _wait(lambda: unit in gw.alarms["sunshine"].engine.care_away)
        assert gw.alarms["sunshine"].engine.care_away[unit].reason == "住院"
    finally:
        pub.close()
        gw.stop()
    # the status is part of the saved rule state: a restarted gateway still knows the resident is away
    assert "care_away" in (storage.load_rule_state("sunshine") or {})
    assert unit in (storage.load_rule_state("sunshine") or {})["care_away"]
