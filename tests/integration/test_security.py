"""Device security against a real Mosquitto using the generated passwd and ACL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.ops import credentials
from tests.support.brokers import Mosquitto, subscribe_and_wait, wait_until

pytestmark = pytest.mark.integration
ROOT_T = "gridtwin/v1/sunshine"


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[tuple[Mosquitto, dict[str, str]]]:
    devs = [("sunshine", "B1-HYD"), ("sunshine", "B2-HYD"), ("other", "B1-HYD")]
    rep = credentials.generate(devs, tmp_path / "creds")
    assert rep.devices == 3 and rep.added == 3
    passwd, acl, _ = rep.files
    broker = Mosquitto(tmp_path / "broker", extra=f"allow_anonymous false\npassword_file {passwd}\nacl_file {acl}\n")
    yield broker, credentials.read_secrets(tmp_path / "creds")
    broker.stop()


def _client(broker: Mosquitto, user: str | None, password: str | None) -> tuple[paho.Client, int]:
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{user}-{time.monotonic_ns()}")
    if user:
        c.username_pw_set(user, password)
    result: list[int] = []
    done = threading.Event()

    def on_connect(_c: object, _u: object, _f: object, rc: object, _p: object) -> None:
        result.append(int(rc.value))  # type: ignore[attr-defined]
        done.set()

    c.on_connect = on_connect
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    done.wait(5)
    return c, (result[0] if result else -1)


def test_anonymous_and_wrong_passwords_are_refused(secured: tuple[Mosquitto, dict[str, str]]) -> None:
    broker, _ = secured
    c, rc = _client(broker, None, None)
    c.loop_stop()
    assert rc != 0
    c, rc = _client(broker, "sunshine/B1-HYD", "wrong")
    c.loop_stop()
    assert rc != 0


def test_device_may_publish_only_its_own_topics(secured: tuple[Mosquitto, dict[str, str]]) -> None:
    broker, pw = secured
    got: list[tuple[str, bytes]] = []
    gw, rc = _client(broker, "gateway", pw["gateway"])
    assert rc == 0
    gw.on_message = lambda _c, _u, m: got.append((m.topic, bytes(m.payload)))
    subscribe_and_wait(gw, "gridtwin/v1/#")
    dev, rc = _client(broker, "sunshine/B1-HYD", pw["sunshine/B1-HYD"])
    assert rc == 0
    own = f"{ROOT_T}/B1-HYD/telemetry"
    dev.publish(own, b"{}", qos=1).wait_for_publish(5)
    dev.publish(f"{ROOT_T}/B2-HYD/telemetry", b"{}", qos=1).wait_for_publish(5)  # speaking for another device
    dev.publish("gridtwin/v1/other/B1-HYD/telemetry", b"{}", qos=1).wait_for_publish(5)  # same id, other community
    dev.publish(f"{ROOT_T}/B1-HYD/error", b"{}", qos=1).wait_for_publish(5)  # may not fake its own error topic
    # a sentinel after the refused ones, from the same client (per-client order): once it is in, any of the
    # refused publishes that got through would be in too (Mosquitto acknowledges a refused QoS 1 publish and
    # keeps the connection)
    assert dev.is_connected()
    dev.publish(own, b"sentinel", qos=1).wait_for_publish(5)
    assert wait_until(lambda: (own, b"sentinel") in got, 5), got
    assert got == [(own, b"{}"), (own, b"sentinel")]
    # the device reads its own error topic, not another's
    seen: list[tuple[str, bytes]] = []
    dev.on_message = lambda _c, _u, m: seen.append((m.topic, bytes(m.payload)))
    mine, other = f"{ROOT_T}/B1-HYD/error", f"{ROOT_T}/B2-HYD/error"
    subscribe_and_wait(dev, [mine, other])
    gw.publish(mine, b"{}", qos=1).wait_for_publish(5)
    gw.publish(other, b"{}", qos=1).wait_for_publish(5)
    gw.publish(mine, b"sentinel", qos=1).wait_for_publish(5)
    assert wait_until(lambda: (mine, b"sentinel") in seen, 5), seen
    assert seen == [(mine, b"{}"), (mine, b"sentinel")]
    for c in (gw, dev):
        c.disconnect()
        c.loop_stop()


def test_rerun_keeps_passwords_and_drops_retired(tmp_path: Path) -> None:
    out = tmp_path / "c"
    credentials.generate([("s", "a"), ("s", "b")], out)
    first = credentials.read_secrets(out)
    rep = credentials.generate([("s", "a"), ("s", "c")], out)
    second = credentials.read_secrets(out)
    assert (rep.added, rep.removed) == (1, 1)
    assert second["s/a"] == first["s/a"] and "s/b" not in second and "s/c" in second
    assert oct((out / "secrets.csv").stat().st_mode & 0o777) == "0o600"
