"""Simulators against the real Mosquitto (and, for hostile traffic, the real gateway and PostgreSQL).

Every test has its own topic root (``gt-test-<uuid>``), so runs never see each other's messages.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

import orjson
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.cli_base import sample_community_path
from gateway.ingest.pipeline import Gateway
from gateway.settings import Settings
from gateway.storage import Storage
from simulators import engine, hostile, run, scale
from simulators.errors import BrokerUnreachable
from simulators.mqtt import DeviceFleet, SharedConnection
from tests.support.brokers import subscribe_and_wait, wait_until
from twin import community as community_mod
from twin import contract

pytestmark = pytest.mark.integration


@cache
def sample() -> community_mod.Community:
    return community_mod.parse(sample_community_path().read_text(encoding="utf-8"))


class Listener:
    """A plain paho subscriber collecting (topic, payload) from the broker."""

    def __init__(self, url: str, topic_filter: str, *, client_id: str) -> None:
        self.addr = contract.BrokerAddress.parse(url)
        self.got: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.on_message = self._on_message
        self.client.connect(self.addr.host, self.addr.port)
        self.client.loop_start()
        subscribe_and_wait(self.client, topic_filter)

    def _on_message(self, _c: object, _u: object, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.got.append((msg.topic, bytes(msg.payload)))

    def wait_for(self, pred: Callable[[list[tuple[str, bytes]]], bool], timeout: float = 10.0) -> bool:
        def check() -> bool:
            with self.lock:
                return pred(list(self.got))

        return wait_until(check, timeout, 0.02)

    def sentinel(self, topic: str) -> None:
        """Publish a sentinel on ``topic`` (one this listener receives) from a new connection and wait until it
        arrives. Used after a client's DISCONNECT or dropped socket: Mosquitto handles the end of that
        connection (and publishes its will, if any) in its event loop before it accepts and serves a
        connection opened afterwards, so a will published at all arrives before the sentinel."""
        body = b"sentinel-" + uuid.uuid4().hex.encode()
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"sentinel-{uuid.uuid4().hex[:10]}")
        c.connect(self.addr.host, self.addr.port)
        c.loop_start()
        try:
            c.publish(topic, body, qos=1).wait_for_publish(5)
        finally:
            c.disconnect()
            c.loop_stop()
        assert self.wait_for(lambda got: (topic, body) in got), f"sentinel on {topic} did not arrive"
        with self.lock:
            self.got.remove((topic, body))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def listen(mqtt_url: str, topic_root: str) -> Iterator[Listener]:
    sub = Listener(mqtt_url, f"{topic_root}/#", client_id=f"listen-{topic_root}")
    yield sub
    sub.close()


WILL = {"v": 1, "state": "offline", "reason": "last will"}


@pytest.mark.parametrize("mqtt5", [True, False], ids=["mqtt5", "mqtt311"])
def test_last_will_arrives_when_a_device_socket_dies(mqtt_url: str, topic_root: str, listen: Listener,
                                                      mqtt5: bool) -> None:
    fleet = DeviceFleet(mqtt_url, root=topic_root, community_id="sunshine", qos=1, mqtt5=mqtt5)
    status = contract.topic(topic_root, "sunshine", "B1-F1-TH", contract.Channel.STATUS)
    fleet.connect("B1-F1-TH", status, engine.status_bytes("online", ts_ms=int(time.time() * 1000)),
                  engine.WILL_PAYLOAD)
    fleet.publish("B1-F1-TH", contract.topic(topic_root, "sunshine", "B1-F1-TH", contract.Channel.TELEMETRY),
                  contract.telemetry_bytes(int(time.time() * 1000), 1, {"temperature": 21.5, "humidity": 50.0}))
    assert fleet.flush(5)
    assert listen.wait_for(lambda got: len(got) >= 2)
    assert orjson.loads(listen.got[0][1])["state"] == "online"
    fleet.drop("B1-F1-TH")  # no DISCONNECT: the broker must publish the will
    assert listen.wait_for(lambda got: any(orjson.loads(p) == WILL for _t, p in got))
    will = [t for t, p in listen.got if orjson.loads(p) == WILL]
    assert will == [status]
    fleet.close()


def test_clean_disconnect_sends_no_will(mqtt_url: str, topic_root: str, listen: Listener) -> None:
    fleet = DeviceFleet(mqtt_url, root=topic_root, community_id="sunshine", qos=1)
    status = contract.topic(topic_root, "sunshine", "B1-FACP", contract.Channel.STATUS)
    fleet.connect("B1-FACP", status, engine.status_bytes("online"), engine.WILL_PAYLOAD)
    fleet.disconnect("B1-FACP", status, engine.status_bytes("offline", reason="shutdown"))
    assert listen.wait_for(lambda got: len(got) >= 2)
    listen.sentinel(f"{topic_root}/sentinel")  # a will, if the broker sent one, would be in by now
    assert [orjson.loads(p)["state"] for _t, p in listen.got] == ["online", "offline"]
    assert orjson.loads(listen.got[1][1])["reason"] == "shutdown"
    fleet.close()


def _one_device_scenario(tmp_path: Path) -> Path:
    f = tmp_path / "drop.yaml"
    f.write_text("name: drop\ndescription: two devices; one loses power after 30 s\nduration: 2m\n"
                 "roles:\n  victim: {kind: temp_humidity}\n  witness: {kind: gas, same_building_as: victim}\n"
                 "timeline:\n  - {at: 10s, role: victim, report_every: 5s}\n"
                 "  - {at: 30s, role: victim, offline: lastwill}\n", encoding="utf-8")
    return f


@pytest.mark.parametrize("clients", ["per-device", "shared"])
def test_scenario_through_the_broker_ends_with_the_last_will(mqtt_url: str, topic_root: str, listen: Listener,
                                                             tmp_path: Path, clients: str) -> None:
    req = run.Request(community=sample(), root=topic_root, qos=1, scenario=str(_one_device_scenario(tmp_path)),
                      speed=60, clients=clients)  # type: ignore[arg-type]
    job = run.prepare(req)
    t0 = time.monotonic()
    summary = job.run_mqtt(mqtt_url, mqtt5=True)
    assert time.monotonic() - t0 < 5  # 2 simulated minutes at x60
    assert "1 last will" in summary
    victim = job.plan.role("victim")  # type: ignore[attr-defined]
    status = contract.topic(topic_root, "sunshine", victim, contract.Channel.STATUS)
    assert listen.wait_for(lambda got: (status, engine.WILL_PAYLOAD) in got)
    mine = [orjson.loads(p) for t, p in listen.got if f"/{victim}/" in t]
    assert mine[0]["state"] == "online" and mine[-1] == WILL
    telemetry = [m for m in mine if "values" in m]
    assert len(telemetry) >= 4 and [m["seq"] for m in telemetry] == sorted(m["seq"] for m in telemetry)
    witness = job.plan.role("witness")  # type: ignore[attr-defined]
    listen.sentinel(f"{topic_root}/sentinel")  # the run ended; the witness's will, if sent, would be in by now
    assert not [p for t, p in listen.got if f"/{witness}/" in t and orjson.loads(p) == WILL]


def test_unreachable_broker_is_a_clear_error(topic_root: str) -> None:
    with pytest.raises(BrokerUnreachable, match=r"127\.0\.0\.1:1"):
        SharedConnection("mqtt://127.0.0.1:1", client_id=topic_root, qos=0)
    with pytest.raises(BrokerUnreachable, match=r"127\.0\.0\.1:1"):
        DeviceFleet("mqtt://127.0.0.1:1", root=topic_root, community_id="x", qos=0).connect(
            "d", "t", b"{}", engine.WILL_PAYLOAD)


@pytest.mark.parametrize(("qos", "mqtt5"), [(0, True), (1, True), (1, False)], ids=["qos0", "qos1", "qos1-mqtt311"])
def test_scale_run_paces_and_every_message_arrives(mqtt_url: str, topic_root: str, listen: Listener,
                                                   qos: int, mqtt5: bool) -> None:
    r = scale.run_scale(mqtt_url, topic_root, "sunshine", 300, 4000, 1.0, qos, mqtt5, community=sample())
    assert 2800 <= r["sent"] <= 4001 and r["qos"] == qos  # paced: never ahead, at most a little behind
    assert r["unacknowledged"] == 0 and r["refused"] == 0
    assert r["rate"] <= 4400
    assert listen.wait_for(lambda got: len(got) >= r["sent"], timeout=15), (len(listen.got), r)
    topics = {t.split("/")[3] for t, _p in listen.got}
    assert len(topics) == 300 and "SIM-000001" not in topics  # the sample has enough real devices
    for _t, p in listen.got[:50]:
        body = orjson.loads(p)
        assert body["v"] == 1 and body["values"]


def test_scale_one_process_passes_20k_messages_per_second(mqtt_url: str, topic_root: str) -> None:
    """Flat out, QoS 0, one connection. Best of three short runs: the test machine is shared."""
    rates = []
    for _ in range(3):
        r = scale.run_scale(mqtt_url, topic_root, "scale", 2000, None, 1.0, 0, mqtt5=False)
        rates.append(r["rate"])
        if r["rate"] >= 20_000:
            break
    assert max(rates) >= 20_000, rates




def test_hostile_run_gets_exactly_the_rejections_its_manifest_predicts(settings: Settings, storage: Storage,
                                                                        gateway: Gateway, tmp_path: Path) -> None:
    assert settings.mqtt.url
    manifest = tmp_path / "hostile.jsonl"
    req = run.Request(community=sample(), root=settings.mqtt.topic_root, qos=1, hostile=True, count=50, rate=500,
                      seed=3, manifest=manifest)
    summary = run.prepare(req).run_mqtt(settings.mqtt.url, mqtt5=True)
    assert "50 messages" in summary
    lines = [orjson.loads(x) for x in manifest.read_bytes().splitlines()]
    assert {x["category"] for x in lines} == set(hostile.CATEGORIES)
    expected = Counter(x["expected"] for x in lines if x["expected"] not in ("accepted", "duplicate", "late"))
    wait_until(lambda: storage.dead_letter_counts() == expected, 15, 0.1)
    assert storage.dead_letter_counts() == expected
    assert gateway.wait_idle(10)
    accepted = sum(x["expected"] in ("accepted", "late") for x in lines)
    assert gateway.stats.accepted >= accepted
