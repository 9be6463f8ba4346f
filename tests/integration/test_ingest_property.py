"""Property: whatever devices send, ingest goes on. Generated payloads of the right shape, with hostile
strings and numbers in every field, go through the real broker, gateway and database; after each
batch of them a valid sentinel message must be stored."""

from __future__ import annotations

import json
import time
from typing import Any

import paho.mqtt.client as paho
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from gateway.ingest.pipeline import Gateway
from gateway.settings import Settings
from gateway.storage import Storage
from tests.support.brokers import wait_until
from twin import contract

pytestmark = pytest.mark.integration
DEVICES = {"B3-B1-GAS": "lel", "B1-HYD": "pressure", "B1-F1-SD1": "obscuration", "B1-E1-M": "load"}
SENTINEL = "B2-HYD"

hostile_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(max_codepoint=0x9F), max_size=20),  # C0/C1 controls, NUL included
    st.sampled_from(["\x00", "a\x00b", "\ud800", "\udfff", "\ufffe", "'; DROP TABLE telemetry; --", "\\u0000",
                     "x" * 5000, "🔥" * 300, "\u202e", "%s%n", "${jndi:ldap://x}"]),
)
hostile_number = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -0.0, 1e308, -1e308, 5e-324, 2**63 - 1, 2**63, -(2**63), 2**64]),
)
anything = st.one_of(hostile_text, hostile_number, st.booleans(), st.none(), st.just([]), st.just({}))
ts_values = st.one_of(st.just("now"), hostile_number, hostile_text,
                      st.sampled_from(["2026-12-01T10:00:00+08:00", "2026-12-01T10:00:00", "9999-12-31T23:59:59Z"]))


@st.composite
def payload(draw: st.DrawFn) -> tuple[str, str, bytes]:
    device = draw(st.sampled_from(sorted(DEVICES)))
    channel = draw(st.sampled_from(["telemetry", "event", "status", "batch"]))
    field = DEVICES[device]
    body: dict[str, Any] = {"v": draw(st.one_of(st.just(1), anything))}
    if channel != "batch" and draw(st.booleans()):
        body["ts"] = draw(ts_values)
    if channel != "batch" and draw(st.booleans()):
        body["seq"] = draw(st.one_of(st.integers(min_value=0, max_value=2**63 - 1), hostile_number))
    if channel == "telemetry":
        names = st.one_of(st.just(field), hostile_text)
        body["values"] = draw(st.dictionaries(names, st.one_of(hostile_number, anything), max_size=4))
    elif channel == "event":
        body["code"] = draw(st.one_of(st.sampled_from(["fault", "fire_alarm", "entrapment"]), hostile_text))
        body["state"] = draw(st.one_of(st.sampled_from(["active", "cleared", "pulse"]), hostile_text))
        body["detail"] = draw(st.one_of(st.none(), hostile_text))
    elif channel == "status":
        body["state"] = draw(st.one_of(st.sampled_from(["online", "offline"]), hostile_text))
        body["reason"] = draw(st.one_of(st.none(), hostile_text))
    else:
        body["items"] = draw(st.lists(st.fixed_dictionaries({
            "ts": ts_values, "seq": st.integers(min_value=0, max_value=2**63 - 1),
            "values": st.dictionaries(st.one_of(st.just(field), hostile_text), hostile_number, max_size=3)}),
            max_size=3))
    if draw(st.booleans()):
        body[draw(hostile_text)] = draw(anything)  # an unknown key
    now_ms = int(time.time() * 1000)

    def fix(v: Any) -> Any:
        return now_ms if v == "now" else v

    body = {k: fix(v) for k, v in body.items()}
    for item in body.get("items", []) if isinstance(body.get("items"), list) else []:
        item["ts"] = fix(item["ts"])
    raw = json.dumps(body, allow_nan=True, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 9)) == 0:  # now and then, the bytes themselves are broken
        cut = draw(st.integers(0, len(raw)))
        raw = raw[:cut] + draw(st.sampled_from([b"\xff", b"\xc3", b"\x00", b"\xed\xa0\x80"])) + raw[cut:]
    return device, channel, raw


@pytest.fixture(scope="module")
def counter() -> list[int]:
    return [0]


@hsettings(max_examples=30, deadline=None, derandomize=True,
           suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                  HealthCheck.data_too_large])
@given(batch=st.lists(payload(), min_size=1, max_size=8))
def test_ingest_goes_on_whatever_devices_send(batch: list[tuple[str, str, bytes]], settings: Settings,
                                              storage: Storage, gateway: Gateway, counter: list[int]) -> None:
    root = settings.mqtt.topic_root
    assert settings.mqtt.url
    addr = contract.BrokerAddress.parse(settings.mqtt.url)
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"fuzz-{root}")
    c.connect(addr.host, addr.port)
    c.loop_start()
    counter[0] += 1
    seq = counter[0]
    try:
        infos = [c.publish(contract.topic(root, "sunshine", dev, ch), raw, qos=1) for dev, ch, raw in batch]
        sentinel = b'{"v":1,"ts":%d,"seq":%d,"values":{"pressure":0.4}}' % (int(time.time() * 1000), seq)
        infos.append(c.publish(contract.topic(root, "sunshine", SENTINEL, "telemetry"), sentinel, qos=1))
        for info in infos:
            info.wait_for_publish(10)
    finally:
        c.loop_stop()
        c.disconnect()

    def stored() -> bool:
        row = storage.conn.execute(
            "SELECT count(*) FROM message_keys k JOIN devices d ON d.id = k.device_id WHERE d.code = %s AND k.seq = %s",
            (SENTINEL, seq)).fetchone()
        return row == (1,)

    assert wait_until(stored, 20, 0.05), (gateway.stats.snapshot(), gateway.health(), batch)
    assert gateway.health()["threads"]["writer"] and not gateway.failed.is_set()
