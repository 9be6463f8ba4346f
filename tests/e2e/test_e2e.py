"""The first end-to-end path: simulator publishes through the real broker, gateway COPYs, rows come back."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import orjson
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.ingest.pipeline import Gateway
from gateway.settings import Settings
from gateway.storage import Storage
from simulators import publisher
from tests.support.brokers import subscribe_and_wait, wait_until
from twin import community as community_mod
from twin import contract

pytestmark = pytest.mark.integration





def _wait(pred: Callable[[], object], timeout: float = 10.0) -> bool:
    return wait_until(pred, timeout, 0.05)


def test_publish_to_row(settings: Settings, storage: Storage, gateway: Gateway,
                        sample: community_mod.Community) -> None:
    assert settings.mqtt.url
    pub = publisher.Publisher(settings.mqtt.url, client_id=f"sim-{settings.mqtt.topic_root}", qos=1)
    stream = publisher.telemetry_stream(sample, settings.mqtt.topic_root, devices=10, start_s=time.time() - 60,
                                        step_s=1.0, count=200)
    sent = list(stream)
    expected_rows = sum(len(orjson.loads(m.payload)["values"]) for m in sent)
    for m in sent:
        pub.publish(m)
    pub.flush()
    pub.close()
    assert _wait(lambda: storage.count_readings() == expected_rows), (storage.count_readings(), expected_rows)
    assert gateway.stats.accepted == 200
    assert not gateway.stats.rejected
    # the latest reading of one device equals the last value the simulator sent for it
    last = [orjson.loads(m.payload) for m in sent if m.topic.endswith("/B1-HYD/telemetry")][-1]
    latest = {r.metric: r.value for r in storage.latest("B1-HYD")}
    assert latest == pytest.approx(last["values"])


def test_bad_payloads_are_dead_lettered_and_device_is_told(settings: Settings, storage: Storage,
                                                           gateway: Gateway) -> None:
    assert settings.mqtt.url
    root = settings.mqtt.topic_root
    addr = contract.BrokerAddress.parse(settings.mqtt.url)
    errors: list[dict[str, object]] = []
    got = threading.Event()
    sub = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"dev-{root}")

    def on_message(_c: object, _u: object, msg: paho.MQTTMessage) -> None:
        errors.append(orjson.loads(msg.payload))
        if errors[-1]["seq"] == 999:
            got.set()

    sub.on_message = on_message
    sub.connect(addr.host, addr.port)
    sub.loop_start()
    subscribe_and_wait(sub, f"{root}/v1/sunshine/B1-HYD/error")
    now_ms = int(time.time() * 1000)
    t = f"{root}/v1/sunshine/B1-HYD/telemetry"
    cases = {
        b"{not json": "bad_json",
        b'{"v":1,"ts":%d,"seq":1,"values":{"pressure":NaN}}' % now_ms: "bad_json",
        b'{"v":1,"ts":%d,"seq":2,"values":{"pressure":"high"}}' % now_ms: "bad_schema",
        b'{"v":1,"ts":%d,"seq":3,"values":{"pressure":9.5}}' % now_ms: "out_of_range",
        b'{"v":1,"ts":%d,"seq":4,"values":{"voltage":1.0}}' % now_ms: "unknown_field",
        b'{"v":1,"ts":%d,"seq":5,"values":{"pressure":0.4}}' % (now_ms + 3_600_000): "future_ts",
    }
    for raw in cases:
        sub.publish(t, raw, qos=1)
    sub.publish(f"{root}/v1/sunshine/NO-SUCH-DEVICE/telemetry", b'{"v":1}', qos=1)
    sub.publish(t, b'{"v":1,"ts":%d,"seq":6,"values":{"pressure":0.4}}' % now_ms, qos=1)
    # a sentinel: the gateway answers in the order it took the messages in, so an answer it should not have
    # sent (the unknown device, the good message) would come before the one to this last bad message
    sub.publish(t, b'{"v":1,"ts":%d,"seq":999,"values":{"pressure":9.5}}' % now_ms, qos=1)
    assert got.wait(10), [(e["reason"], e["seq"]) for e in errors]
    sub.loop_stop()
    sub.disconnect()
    assert errors[-1]["reason"] == "out_of_range"
    assert sorted(e["reason"] for e in errors[:-1]) == sorted(cases.values())
    assert _wait(lambda: sum(storage.dead_letter_counts().values()) == 8)
    counts = storage.dead_letter_counts()
    assert counts["unknown_device"] == 1 and counts["bad_json"] == 2 and counts["out_of_range"] == 2
    # the one good message after all the bad ones still landed
    assert _wait(lambda: storage.count_readings() == 1)
    assert [r.value for r in storage.latest("B1-HYD")] == [0.4]


def test_late_reading_is_stored_and_flagged(settings: Settings, storage: Storage, gateway: Gateway) -> None:
    assert settings.mqtt.url
    pub = publisher.Publisher(settings.mqtt.url, client_id=f"sim-{settings.mqtt.topic_root}", qos=1)
    t = contract.topic(settings.mqtt.topic_root, "sunshine", "B2-HYD", contract.Channel.TELEMETRY)
    now = datetime.now(UTC)
    pub.publish(publisher.Message(t, contract.telemetry_bytes(int(now.timestamp() * 1000), 1, {"pressure": 0.5})))
    pub.flush()
    assert _wait(lambda: storage.count_readings() == 1)
    earlier = now - timedelta(minutes=5)
    pub.publish(publisher.Message(t, contract.telemetry_bytes(int(earlier.timestamp() * 1000), 2,
                                                              {"pressure": 0.45})))
    pub.flush()
    pub.close()
    assert _wait(lambda: storage.count_readings() == 2)
    flags = storage.conn.execute("SELECT value, flags FROM telemetry ORDER BY ts").fetchall()
    assert flags == [(0.45, 1), (0.5, 0)]


def test_live_state_follows_messages_and_survives_restart(settings: Settings, storage: Storage,
                                                          gateway: Gateway) -> None:
    from twin.state import Level

    assert settings.mqtt.url and settings.db.url
    root = settings.mqtt.topic_root
    pub = publisher.Publisher(settings.mqtt.url, client_id=f"sim-{root}", qos=1)
    ms = int(time.time() * 1000)
    pub.publish(publisher.Message(contract.topic(root, "sunshine", "B1-F9-SD1", contract.Channel.EVENT),
                                  b'{"v":1,"ts":%d,"seq":1,"code":"fire_alarm","state":"active"}' % ms))
    pub.publish(publisher.Message(contract.topic(root, "sunshine", "B3-HYD", contract.Channel.TELEMETRY),
                                  contract.telemetry_bytes(ms, 1, {"pressure": 0.05})))
    pub.flush()
    pub.close()
    assert _wait(lambda: gateway.live["sunshine"].rollup().buildings["B1"] is Level.CRITICAL)
    assert _wait(lambda: gateway.live["sunshine"].rollup().buildings["B3"] is Level.WARNING)
    before = gateway.live["sunshine"].rollup()
    gateway.stop()
    again = Gateway(settings, settings.mqtt.url, settings.db.url)
    try:
        after = again.live["sunshine"].rollup()
        assert after.buildings == before.buildings and after.floors[("B1", 9)] is Level.CRITICAL
    finally:
        again.stop()
