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
from tests.brokers import Mosquitto

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
    got: list[str] = []
    gw, rc = _client(broker, "gateway", pw["gateway"])
    assert rc == 0
    gw.on_message = lambda _c, _u, m: got.append(m.topic)
    gw.subscribe("gridtwin/v1/#", qos=1)
    time.sleep(0.3)
    dev, rc = _client(broker, "sunshine/B1-HYD", pw["sunshine/B1-HYD"])
    assert rc == 0
    dev.publish(f"{ROOT_T}/B1-HYD/telemetry", b"{}", qos=1).wait_for_publish(5)
    dev.publish(f"{ROOT_T}/B2-HYD/telemetry", b"{}", qos=1).wait_for_publish(5)  # speaking for another device
    dev.publish("gridtwin/v1/other/B1-HYD/telemetry", b"{}", qos=1).wait_for_publish(5)  # same id, other community
    dev.publish(f"{ROOT_T}/B1-HYD/error", b"{}", qos=1).wait_for_publish(5)  # may not fake its own error topic
    time.sleep(0.5)
    assert got == [f"{ROOT_T}/B1-HYD/telemetry"]
    # the device reads its own error topic, not another's
    seen: list[str] = []
    dev.on_message = lambda _c, _u, m: seen.append(m.topic)
    dev.subscribe(f"{ROOT_T}/B1-HYD/error", qos=1)
    dev.subscribe(f"{ROOT_T}/B2-HYD/error", qos=1)
    time.sleep(0.3)
    gw.publish(f"{ROOT_T}/B1-HYD/error", b"{}", qos=1).wait_for_publish(5)
    gw.publish(f"{ROOT_T}/B2-HYD/error", b"{}", qos=1).wait_for_publish(5)
    time.sleep(0.5)
    assert seen == [f"{ROOT_T}/B1-HYD/error"]
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
