"""The message contract: topic grammar and payload validation, as parameter tables. Pure."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from twin import contract
from twin.contract import Channel, ContractError

NOW_MS = 1_764_000_000_000


def test_topic_round_trip() -> None:
    t = contract.topic("gridtwin", "sunshine", "B1-HYD", Channel.TELEMETRY)
    assert t == "gridtwin/v1/sunshine/B1-HYD/telemetry"
    parsed = contract.parse_topic("gridtwin", t)
    assert (parsed.community_id, parsed.device_id, parsed.channel) == ("sunshine", "B1-HYD", Channel.TELEMETRY)
    assert str(parsed) == t


@pytest.mark.parametrize(
    "topic",
    [
        "other/v1/c/d/telemetry",
        "gridtwin/v2/c/d/telemetry",
        "gridtwin/v1/c/d",
        "gridtwin/v1/c/d/telemetry/extra",
        "gridtwin/v1/c/d/bogus",
        "gridtwin/v1/c/-d/telemetry",
        "gridtwin/v1//d/telemetry",
    ],
)
def test_bad_topics_are_rejected(topic: str) -> None:
    with pytest.raises(ContractError) as e:
        contract.parse_topic("gridtwin", topic)
    assert e.value.reason == "bad_topic"


def test_topic_builder_rejects_ids_outside_grammar() -> None:
    with pytest.raises(ContractError, match="device id"):
        contract.topic("gridtwin", "c", "a/b", Channel.TELEMETRY)
    with pytest.raises(ContractError, match="device id"):
        contract.topic("gridtwin", "c", "+", Channel.TELEMETRY)


def test_subscription_covers_inbound_channels_only() -> None:
    subs = contract.subscription("root")
    assert sorted(subs) == sorted(f"root/v1/+/+/{c}" for c in ("telemetry", "event", "status", "batch"))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{oops", "bad_json"),
        (b"\xff\xfe\x00", "bad_json"),
        (b'{"v":1,"ts":%d,"seq":1,"values":{"p":NaN}}' % NOW_MS, "bad_json"),
        (b'{"v":1,"ts":%d,"seq":1,"values":{"p":Infinity}}' % NOW_MS, "bad_json"),
        (b'{"v":1,"ts":%d,"seq":1,"values":{"p":1e999}}' % NOW_MS, "bad_json"),
        (b"[1,2]", "bad_schema"),
        (b'{"ts":%d,"seq":1,"values":{"p":1}}' % NOW_MS, "bad_version"),
        (b'{"v":"1","ts":%d,"seq":1,"values":{"p":1}}' % NOW_MS, "bad_version"),
        (b'{"v":1,"ts":"yesterday","seq":1,"values":{"p":1}}', "bad_schema"),
        (b'{"v":1,"ts":"2026-01-01T00:00:00","seq":1,"values":{"p":1}}', "bad_schema"),
        (b'{"v":1,"ts":12,"seq":1,"values":{"p":1}}', "bad_schema"),
        (b'{"v":1,"ts":%d,"seq":-1,"values":{"p":1}}' % NOW_MS, "bad_schema"),
        (b'{"v":1,"ts":%d,"values":{"p":1}}' % NOW_MS, "bad_schema"),
        (b'{"v":1,"ts":%d,"seq":1,"values":{}}' % NOW_MS, "bad_schema"),
        (b'{"v":1,"ts":%d,"seq":1,"values":{"p":"1"}}' % NOW_MS, "bad_schema"),
        (b'{"v":1,"ts":%d,"seq":1,"values":{"p":[1]}}' % NOW_MS, "bad_schema"),
        (b'{"v":1,"ts":%d,"seq":1,"values":{"Bad Name":1}}' % NOW_MS, "bad_schema"),
        (b'{"v":1,"ts":%d,"seq":1,"values":{"p":1},"extra":2}' % NOW_MS, "bad_schema"),
        (b'{"v":1,"ts":%d,"seq":1,"values":{"p":1}}' % NOW_MS + b" " * 20_000, "too_large"),
    ],
)
def test_bad_telemetry_payloads(raw: bytes, reason: str) -> None:
    with pytest.raises(ContractError) as e:
        contract.decode(Channel.TELEMETRY, raw)
    assert e.value.reason == reason, e.value


def test_good_payloads_decode_to_typed_messages() -> None:
    t = contract.decode(Channel.TELEMETRY, b'{"v":1,"ts":%d,"seq":7,"values":{"p":0.3,"ok":true,"n":2}}' % NOW_MS)
    assert isinstance(t, contract.Telemetry)
    assert t.ts == datetime.fromtimestamp(NOW_MS / 1000, UTC) and t.seq == 7
    assert t.values == {"p": 0.3, "ok": True, "n": 2}
    iso = contract.decode(Channel.TELEMETRY, b'{"v":1,"ts":"2026-01-01T08:00:00+08:00","seq":1,"values":{"p":1}}')
    assert iso.ts == datetime(2026, 1, 1, tzinfo=UTC)  # type: ignore[union-attr]
    e = contract.decode(Channel.EVENT, b'{"v":1,"ts":%d,"seq":8,"code":"fire_alarm","state":"active"}' % NOW_MS)
    assert isinstance(e, contract.Event) and e.state is contract.EventState.ACTIVE
    s = contract.decode(Channel.STATUS, b'{"v":1,"state":"offline","reason":"last will"}')
    assert isinstance(s, contract.Status) and s.ts is None
    b = contract.decode(Channel.BATCH, b'{"v":1,"items":[{"ts":%d,"seq":1,"values":{"p":1}},'
                        b'{"ts":%d,"seq":2,"values":{"p":2}}]}' % (NOW_MS, NOW_MS + 1000))
    assert isinstance(b, contract.Batch) and [i.seq for i in b.items] == [1, 2]


def test_encode_round_trips() -> None:
    msg = contract.decode(Channel.TELEMETRY, contract.telemetry_bytes(NOW_MS, 3, {"p": 1.5}))
    assert contract.decode(Channel.TELEMETRY, contract.encode(msg)) == msg


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://localhost", ("localhost", 1883, None, None, False)),
        ("mqtt://u:p%40ss@broker:1884", ("broker", 1884, "u", "p@ss", False)),
        ("mqtts://broker", ("broker", 8883, None, None, True)),
    ],
)
def test_broker_address(url: str, expected: tuple[object, ...]) -> None:
    a = contract.BrokerAddress.parse(url)
    assert (a.host, a.port, a.username, a.password, a.tls) == expected
    assert "p@ss" not in a.redacted()


@pytest.mark.parametrize("url", ["http://x", "mqtt://", "mqtt://h:notaport"])
def test_bad_broker_urls(url: str) -> None:
    with pytest.raises(ContractError):
        contract.BrokerAddress.parse(url)


def test_alarm_command_takes_until_as_a_datetime_or_from_the_wire() -> None:
    """The dashboard builds shelve commands with an aware datetime; the wire form round-trips."""
    until = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
    cmd = contract.AlarmCommand(v=1, action="shelve", key="fire_alarm@B3-FACP", by="op", until=until)
    assert cmd.until == until
    wire = cmd.model_dump(mode="json", exclude_none=True)
    assert contract.AlarmCommand.model_validate(wire).until == until
    assert contract.AlarmCommand.model_validate({**wire, "until": int(until.timestamp() * 1000)}).until == until
    with pytest.raises(ValueError):
        contract.AlarmCommand(v=1, action="shelve", key="fire_alarm@B3-FACP", by="op", until=datetime(2026, 12, 2))
    for action in ("unshelve", "clear"):
        assert contract.AlarmCommand(v=1, action=action, key="fire_alarm@B3-FACP", by="op").action == action
