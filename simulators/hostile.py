"""Hostile traffic: messages the gateway must reject (or flag), each with the outcome it should get. Pure.

:func:`generate` cycles through every :data:`CATEGORIES` entry against real devices of a community,
so a run of at least ``len(CATEGORIES) + 2`` messages covers each one. The expected outcome is the
gateway's reason code from the README's MQTT contract (``bad_json``, ``too_large``, ...), or
``accepted`` for the good message that sets up a ``duplicate`` (same seq and ts again) or a ``late``
reading (older than the newest one already seen from the device).

Timestamps are relative to ``now_ms`` (default: the wall clock when generating), so publish the
messages soon after generating them: the accepted ones are "now", the future ones a day ahead.
"""

from __future__ import annotations

import base64
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from twin import catalogue, contract
from twin.community import Community, Device


@dataclass(frozen=True, slots=True)
class HostileMessage:
    topic: str
    payload: bytes
    category: str
    expected: str  # a gateway reason code, or accepted / duplicate / late
    note: str = ""

    def manifest_line(self, index: int) -> bytes:
        return orjson.dumps({
            "i": index,
            "category": self.category,
            "expected": self.expected,
            "topic": self.topic,
            "payload_b64": base64.b64encode(self.payload).decode(),
            "payload_repr": repr(self.payload[:160]) + ("..." if len(self.payload) > 160 else ""),
            "bytes": len(self.payload),
            "note": self.note,
        })


@dataclass
class _Ctx:
    community: Community
    root: str
    rng: random.Random
    now_ms: int
    seq: int
    max_bytes: int
    max_fields: int
    numeric: list[Device]  # devices with at least one numeric field
    int_field: list[Device]  # devices with an INT field (e.g. elevator floor)
    with_events: list[Device]
    tick: int = 0

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def ts(self) -> int:
        """A fresh timestamp for a message meant to be accepted: increasing, two minutes back from now, so
        a duplicate's original is never older than an earlier accepted reading of the same device."""
        self.tick += 1
        return self.now_ms - 120_000 + self.tick

    def topic(self, device: Device | str, channel: str = "telemetry", community: str | None = None) -> str:
        dev = device if isinstance(device, str) else device.id
        return contract.topic(self.root, community or self.community.id, dev, channel)

    def device(self) -> Device:
        return self.rng.choice(self.numeric)

    def good(self, d: Device, *, ts: int | None = None, seq: int | None = None) -> bytes:
        return contract.telemetry_bytes(self.ts() if ts is None else ts, self.next_seq() if seq is None else seq,
                                        _normal_values(d))


def _numeric_field(d: Device) -> catalogue.TelemetryField:
    return next(f for f in catalogue.KINDS[d.kind].fields if f.type is not catalogue.FieldType.BOOL)


def _normal_values(d: Device) -> dict[str, bool | int | float]:
    out: dict[str, bool | int | float] = {}
    for f in catalogue.KINDS[d.kind].fields:
        if f.type is catalogue.FieldType.BOOL:
            out[f.name] = False
        else:
            lo, hi = f.normal or (max(f.valid[0], 0.0), min(f.valid[1], 1.0))
            v = (lo + hi) / 2
            out[f.name] = int(v) if f.type is catalogue.FieldType.INT else round(v, 3)
    return out


def _raw(ts: int, seq: int, body: str) -> bytes:
    return b'{"v":1,"ts":%d,"seq":%d,%s}' % (ts, seq, body.encode())


Case = Callable[[_Ctx], list[HostileMessage]]


def _malformed(c: _Ctx) -> list[HostileMessage]:
    d = c.device()
    return [HostileMessage(c.topic(d), b'{"v":1,"ts":%d,"seq":%d,"values":{' % (c.now_ms, c.next_seq()),
                           "malformed_json", "bad_json", "truncated JSON")]


def _nan(c: _Ctx) -> list[HostileMessage]:
    d = c.device()
    f = _numeric_field(d).name
    return [HostileMessage(c.topic(d), _raw(c.now_ms, c.next_seq(), f'"values":{{"{f}":NaN}}'), "nan", "bad_json",
                           "NaN literal")]


def _inf(c: _Ctx) -> list[HostileMessage]:
    d = c.device()
    f = _numeric_field(d).name
    return [HostileMessage(c.topic(d), _raw(c.now_ms, c.next_seq(), f'"values":{{"{f}":-Infinity}}'), "infinity",
                           "bad_json", "Infinity literal")]


def _non_utf8(c: _Ctx) -> list[HostileMessage]:
    d = c.device()
    f = _numeric_field(d).name
    payload = b'{"v":1,"ts":%d,"seq":%d,"values":{"%s\xff\xfe":1.0}}' % (c.now_ms, c.next_seq(), f.encode())
    return [HostileMessage(c.topic(d), payload, "non_utf8", "bad_json", "invalid UTF-8 in a key")]


def _wrong_type_string(c: _Ctx) -> list[HostileMessage]:
    d = c.device()
    f = _numeric_field(d).name
    return [HostileMessage(c.topic(d), _raw(c.now_ms, c.next_seq(), f'"values":{{"{f}":"high"}}'),
                           "wrong_type_string", "bad_schema", "a string where a number belongs")]


def _wrong_type_bool(c: _Ctx) -> list[HostileMessage]:
    d = c.device()
    f = _numeric_field(d).name
    return [HostileMessage(c.topic(d), _raw(c.now_ms, c.next_seq(), f'"values":{{"{f}":true}}'), "wrong_type_bool",
                           "bad_type", "true/false where a number belongs")]


def _wrong_type_fraction(c: _Ctx) -> list[HostileMessage]:
    if not c.int_field:
        return _wrong_type_bool(c)
    d = c.rng.choice(c.int_field)
    f = next(f for f in catalogue.KINDS[d.kind].fields if f.type is catalogue.FieldType.INT)
    return [HostileMessage(c.topic(d), _raw(c.now_ms, c.next_seq(), f'"values":{{"{f.name}":2.5}}'),
                           "wrong_type_fraction", "bad_type", f"a fraction for whole-number field {f.name}")]


def _not_object(c: _Ctx) -> list[HostileMessage]:
    d = c.device()
    return [HostileMessage(c.topic(d), b"[1,2,3]", "not_object", "bad_schema", "a JSON array")]


def _missing(c: _Ctx) -> list[HostileMessage]:
    d = c.device()
    values = orjson.dumps(_normal_values(d)).decode()
    return [HostileMessage(c.topic(d), b'{"v":1,"ts":%d,"values":%s}' % (c.now_ms, values.encode()),
                           "missing_field", "bad_schema", "no seq")]


def _bad_version(c: _Ctx) -> list[HostileMessage]:
    d = c.device()
    payload = orjson.dumps({"v": 2, "ts": c.now_ms, "seq": c.next_seq(), "values": _normal_values(d)})
    return [HostileMessage(c.topic(d), payload, "bad_version", "bad_version", "schema version 2")]


def _unknown_field(c: _Ctx) -> list[HostileMessage]:
    d = c.device()
    return [HostileMessage(c.topic(d), contract.telemetry_bytes(c.now_ms, c.next_seq(), {"voltage": 3.3}),
                           "unknown_field", "unknown_field", "a field the kind does not have")]


def _other_device_topic(c: _Ctx) -> list[HostileMessage]:
    """Readings of one kind published on the topic of a device of another kind."""
    a = c.device()
    others = [d for d in c.numeric if not set(_normal_values(a)) <= {f.name for f in catalogue.KINDS[d.kind].fields}]
    b = c.rng.choice(others) if others else None
    if b is None:
        return _unknown_field(c)
    return [HostileMessage(c.topic(b), c.good(a), "other_device_topic", "unknown_field",
                           f"{a.kind} readings on the topic of {b.id} ({b.kind})")]


def _out_of_range(c: _Ctx) -> list[HostileMessage]:
    d = c.device()
    f = _numeric_field(d)
    values = _normal_values(d)
    values[f.name] = f.valid[1] + 10 if f.valid[1] != float("inf") else -1e12
    return [HostileMessage(c.topic(d), contract.telemetry_bytes(c.now_ms, c.next_seq(), values), "out_of_range",
                           "out_of_range", f"{f.name}={values[f.name]} beyond {f.valid}")]


def _too_large(c: _Ctx) -> list[HostileMessage]:
    d = c.rng.choice(c.with_events) if c.with_events else c.device()
    pad = "x" * (c.max_bytes + 1024)
    payload = orjson.dumps({"v": 1, "ts": c.now_ms, "seq": c.next_seq(), "code": "fault", "state": "active",
                            "detail": pad})
    channel = "event" if c.with_events else "telemetry"
    return [HostileMessage(c.topic(d, channel), payload, "too_large", "too_large",
                           f"{len(payload)} bytes, limit {c.max_bytes}")]


def _unknown_device(c: _Ctx) -> list[HostileMessage]:
    d = c.device()
    ghost = f"GHOST-{c.rng.randrange(10**6):06d}"
    return [HostileMessage(c.topic(ghost), c.good(d), "unknown_device", "unknown_device", f"{ghost} is not registered")]


def _other_community(c: _Ctx) -> list[HostileMessage]:
    d = c.device()
    other = f"{c.community.id}-other" if len(c.community.id) < 58 else "other-community"
    return [HostileMessage(c.topic(d, community=other), c.good(d), "other_community", "unknown_device",
                           f"{d.id} under community {other}")]


def _bad_topic(c: _Ctx) -> list[HostileMessage]:
    d = c.device()
    # still matches the gateway's subscription {root}/v1/+/+/telemetry, but the device id is not an id
    topic = f"{c.root}/v1/{c.community.id}/-{d.id}!/telemetry"
    return [HostileMessage(topic, c.good(d), "bad_topic", "bad_topic", "device id outside the id grammar")]


def _unknown_event(c: _Ctx) -> list[HostileMessage]:
    d = c.rng.choice(c.with_events) if c.with_events else c.device()
    payload = orjson.dumps({"v": 1, "ts": c.now_ms, "seq": c.next_seq(), "code": "self_destruct", "state": "active"})
    return [HostileMessage(c.topic(d, "event"), payload, "unknown_event", "unknown_event",
                           f"{d.kind} has no event self_destruct")]


def _too_many_fields(c: _Ctx) -> list[HostileMessage]:
    d = c.device()
    values = {f"f{i}": float(i) for i in range(c.max_fields + 1)}
    return [HostileMessage(c.topic(d), contract.telemetry_bytes(c.now_ms, c.next_seq(), values), "too_many_fields",
                           "too_many_fields", f"{len(values)} fields, limit {c.max_fields}")]


def _future(c: _Ctx) -> list[HostileMessage]:
    d = c.device()
    return [HostileMessage(c.topic(d), c.good(d, ts=c.now_ms + 86_400_000), "future_ts", "future_ts",
                           "a day ahead of the gateway clock")]


def _too_old(c: _Ctx) -> list[HostileMessage]:
    d = c.device()
    return [HostileMessage(c.topic(d), c.good(d, ts=c.now_ms - 400 * 86_400_000), "too_old", "too_old",
                           "400 days old, beyond retention")]


def _duplicate(c: _Ctx) -> list[HostileMessage]:
    d = c.device()
    payload = c.good(d)
    return [HostileMessage(c.topic(d), payload, "duplicate", "accepted", "the original"),
            HostileMessage(c.topic(d), payload, "duplicate", "duplicate", "same seq and ts again")]


def _out_of_order(c: _Ctx) -> list[HostileMessage]:
    d = c.device()
    first = c.good(d)
    return [HostileMessage(c.topic(d), first, "out_of_order", "accepted", "the newer reading first"),
            HostileMessage(c.topic(d), c.good(d, ts=c.now_ms - 720_000), "out_of_order", "late",
                           "ten minutes older than the newest reading")]


CATEGORIES: dict[str, Case] = {
    "malformed_json": _malformed,
    "nan": _nan,
    "infinity": _inf,
    "non_utf8": _non_utf8,
    "wrong_type_string": _wrong_type_string,
    "wrong_type_bool": _wrong_type_bool,
    "wrong_type_fraction": _wrong_type_fraction,
    "not_object": _not_object,
    "missing_field": _missing,
    "bad_version": _bad_version,
    "unknown_field": _unknown_field,
    "other_device_topic": _other_device_topic,
    "out_of_range": _out_of_range,
    "too_large": _too_large,
    "unknown_device": _unknown_device,
    "other_community": _other_community,
    "bad_topic": _bad_topic,
    "unknown_event": _unknown_event,
    "too_many_fields": _too_many_fields,
    "future_ts": _future,
    "too_old": _too_old,
    "duplicate": _duplicate,
    "out_of_order": _out_of_order,
}


def generate(community: Community, root: str, count: int, seed: int, *, now_ms: int | None = None,
             max_bytes: int = 16_384, max_fields: int = 64) -> list[HostileMessage]:
    """``count`` hostile messages cycling through every category (pairs are never split)."""
    numeric = [d for d in community.devices
               if any(f.type is not catalogue.FieldType.BOOL for f in catalogue.KINDS[d.kind].fields)]
    if not numeric:
        raise ValueError(f"community {community.id} has no device with a numeric field to impersonate")
    ctx = _Ctx(
        community=community, root=root, rng=random.Random(seed),
        now_ms=round(time.time() * 1000) if now_ms is None else now_ms,
        seq=1_000_000_000 + random.Random(seed).randrange(10**6) * 1000, max_bytes=max_bytes,
        max_fields=max_fields, numeric=numeric,
        int_field=[d for d in numeric if any(f.type is catalogue.FieldType.INT
                                             for f in catalogue.KINDS[d.kind].fields)],
        with_events=[d for d in community.devices if catalogue.KINDS[d.kind].events],
    )
    cases = list(CATEGORIES.values())
    out: list[HostileMessage] = []
    i = 0
    while len(out) < count:
        batch = cases[i % len(cases)](ctx)
        i += 1
        if len(out) + len(batch) > count:
            batch = batch[: count - len(out)] if len(batch) == 1 else []
            if not batch:
                continue
        out += batch
        if i > 10 * count + len(cases):
            break
    return out
