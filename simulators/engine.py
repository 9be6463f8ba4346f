"""From a compiled scenario plan to the time-ordered messages its devices send. Pure, no I/O.

Each device contributes a lazy, time-ordered stream (generated an hour of simulated time at a time):
an ``online`` status when it connects at the start, a reading at the start, a reading at every
catalogue heartbeat and whenever its behaviour model or a scenario override changes something,
events from the model and the timeline, and presence changes (last will, clean disconnect, going
silent, coming back). :func:`plan_messages` merges the streams by simulated time. Same plan, seed and
start -> byte-identical output.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import orjson

from simulators import behaviour
from simulators.scenario import DeviceScript, FieldOverride, Flap, Plan, Ramp
from twin import catalogue, contract
from twin.community import Community, Device

Action = Literal["publish", "connect", "lastwill", "disconnect"]
Value = bool | int | float

WILL_PAYLOAD = orjson.dumps({"v": contract.SCHEMA_VERSION, "state": "offline", "reason": "last will"})
CHUNK_S = 3600.0


@dataclass(frozen=True, slots=True)
class SimMessage:
    """One thing a simulated device does at simulated time ``t`` (epoch seconds).

    ``publish``: send ``payload`` on ``topic``. ``connect``: connect (with the last will) and send the
    online status in ``payload``. ``lastwill``: drop the connection without DISCONNECT; ``payload`` is
    the will the broker then publishes. ``disconnect``: send the offline status, then DISCONNECT.
    """

    t: float
    device_id: str
    action: Action
    topic: str
    payload: bytes


def status_bytes(state: str, *, ts_ms: int | None = None, seq: int | None = None, reason: str | None = None) -> bytes:
    data: dict[str, object] = {"v": contract.SCHEMA_VERSION}
    if ts_ms is not None:
        data["ts"] = ts_ms
    if seq is not None:
        data["seq"] = seq
    data["state"] = state
    if reason is not None:
        data["reason"] = reason
    return orjson.dumps(data)


def event_bytes(ts_ms: int, seq: int, code: str, state: str, detail: str | None = None) -> bytes:
    data: dict[str, object] = {"v": contract.SCHEMA_VERSION, "ts": ts_ms, "seq": seq, "code": code, "state": state}
    if detail:
        data["detail"] = detail
    return orjson.dumps(data)


class Overridden:
    """A behaviour model with a scenario's field overrides applied on top. Pure."""

    def __init__(self, model: behaviour.Model, overrides: list[FieldOverride], start: float) -> None:
        self.model = model
        self.start = start
        self.by_field: dict[str, list[FieldOverride]] = {}
        for o in sorted(overrides, key=lambda o: o.start):  # stable: declaration order breaks ties
            self.by_field.setdefault(o.field, []).append(o)
        self._anchor: dict[tuple[str, int], Value] = {}
        self._toggles: dict[tuple[str, int], list[float]] = {}

    def values(self, t: float) -> dict[str, Value]:
        out = self.model.values(t)
        for name, overrides in self.by_field.items():
            out[name] = self._apply(name, overrides, len(overrides), t, out[name])
        return out

    def _value(self, name: str, upto: int, t: float) -> Value:
        overrides = self.by_field[name]
        return self._apply(name, overrides, upto, t, self.model.values(t)[name])

    def _apply(self, name: str, overrides: list[FieldOverride], upto: int, t: float, value: Value) -> Value:
        rel = t - self.start
        for i, o in enumerate(overrides[:upto]):
            if o.start <= rel < o.end:
                value = self._eval(name, i, o, rel, t)
        f = self.model.kind.field(name)
        if f is not None and f.type is catalogue.FieldType.INT and not isinstance(value, bool):
            value = round(value)
        return value

    def _anchor_value(self, name: str, i: int, o: FieldOverride) -> Value:
        key = (name, i)
        if key not in self._anchor:
            self._anchor[key] = self._value(name, i, self.start + o.start)
        return self._anchor[key]

    def _eval(self, name: str, i: int, o: FieldOverride, rel: float, t: float) -> Value:
        spec = o.spec
        if spec == "hold":
            return self._anchor_value(name, i, o)
        if isinstance(spec, Ramp):
            begin = spec.from_ if spec.from_ is not None else float(self._anchor_value(name, i, o))
            frac = min(1.0, (rel - o.start) / spec.over) if spec.over > 0 else 1.0
            return round(begin + (spec.ramp_to - begin) * frac, 3)
        if isinstance(spec, Flap):
            n = bisect.bisect_right(self._flap_times(name, i, o), t)
            return spec.flap[n % 2]
        assert isinstance(spec, bool | int | float)
        return spec

    def _flap_times(self, name: str, i: int, o: FieldOverride) -> list[float]:
        key = (name, i)
        if key not in self._toggles:
            assert isinstance(o.spec, Flap)
            every, jitter = o.spec.every, o.spec.jitter
            times: list[float] = []
            t, k = self.start + o.start, 0
            end = self.start + o.end
            while len(times) < 1_000_000:
                t += every * (1 + jitter * (2 * self.model.u(100 + i, k) - 1))
                if t >= end:
                    break
                times.append(t)
                k += 1
            self._toggles[key] = times
        return self._toggles[key]

    def changes(self, t0: float, t1: float) -> list[float]:
        """Instants in [t0, t1) where an override starts, ends, finishes a ramp or toggles."""
        out: list[float] = []
        for name, overrides in self.by_field.items():
            for i, o in enumerate(overrides):
                marks = [o.start, o.end]
                if isinstance(o.spec, Ramp):
                    marks.append(o.start + o.spec.over)
                out += [self.start + m for m in marks if t0 <= self.start + m < t1]
                if isinstance(o.spec, Flap):
                    times = self._flap_times(name, i, o)
                    out += times[bisect.bisect_left(times, t0): bisect.bisect_left(times, t1)]
        return out


def _report_grid(script: DeviceScript, start: float, t0: float, t1: float) -> list[float]:
    out: list[float] = []
    for a, b, every in script.report_every:
        lo, hi = max(t0, start + a), min(t1, start + b)
        n = math.ceil((lo - start - a) / every)
        while (t := start + a + n * every) < hi:
            out.append(t)
            n += 1
    return out


# order of messages of one device at the same instant
_CONNECT, _REPORT, _EVENT, _PRESENCE = 0, 1, 2, 3


def device_messages(device: Device, community: Community, script: DeviceScript, *, root: str, start: float,
                    duration: float, seed: int) -> Iterator[SimMessage]:
    """Time-ordered messages of one device over [start, start + duration)."""
    end = start + duration
    quiet = [(start + a, start + b) for a, b in script.quiet]
    model = behaviour.model_for(device, seed=seed, community=community, origin=start, quiet=quiet,
                                leaks=tuple((start + t, rate) for t, rate in script.leaks))
    ov = Overridden(model, script.overrides, start)
    has_fields = bool(model.kind.fields)
    topics = {ch: contract.topic(root, community.id, device.id, ch) for ch in
              (contract.Channel.TELEMETRY, contract.Channel.EVENT, contract.Channel.STATUS)}
    presence = sorted(script.presence, key=lambda p: p[0])
    seq = 0
    online = True
    ts0 = round(start * 1000)
    yield SimMessage(start, device.id, "connect", topics[contract.Channel.STATUS], status_bytes("online", ts_ms=ts0))
    a = start
    while a < end:
        b = min(a + CHUNK_S, end)
        items: list[tuple[int, int, int, object]] = []  # (ts ms, order, tiebreak, what)
        reports = {round(x * 1000) for x in (behaviour.heartbeat_times(model, a, b) + model.changes(a, b)
                                             + ov.changes(a, b) + _report_grid(script, start, a, b))}
        if has_fields and a == start:
            reports.add(ts0)  # the state at connect
        elif not has_fields:
            reports.discard(ts0)  # the connect status already says it is there
        items += [(ms, _REPORT, 0, None) for ms in reports if a * 1000 <= ms < b * 1000]
        evs = model.events(a, b) + [(start + t, c, s, d) for t, c, s, d in script.events if a <= start + t < b]
        items += [(round(t * 1000), _EVENT, i, (c, s, d)) for i, (t, c, s, d) in enumerate(evs)]
        items += [(round((start + t) * 1000), _PRESENCE, i, p) for i, (t, p) in enumerate(presence)
                  if a <= start + t < b]
        items.sort(key=lambda x: x[:3])
        for ms, order, _tb, what in items:
            t = ms / 1000
            if order == _PRESENCE:
                assert isinstance(what, str)
                if what == "online" and not online:
                    online = True
                    yield SimMessage(t, device.id, "connect", topics[contract.Channel.STATUS],
                                     status_bytes("online", ts_ms=ms))
                elif what != "online" and online:
                    online = False
                    if what == "lastwill":
                        yield SimMessage(t, device.id, "lastwill", topics[contract.Channel.STATUS], WILL_PAYLOAD)
                    elif what == "disconnect":
                        yield SimMessage(t, device.id, "disconnect", topics[contract.Channel.STATUS],
                                         status_bytes("offline", ts_ms=ms, reason="shutdown"))
                continue
            if not online:
                continue
            seq += 1
            if order == _EVENT:
                assert isinstance(what, tuple)
                code, state, detail = what
                yield SimMessage(t, device.id, "publish", topics[contract.Channel.EVENT],
                                 event_bytes(ms, seq, code, state, detail))
            elif has_fields:
                # read half a millisecond in: a change at instant x is reported at round(x) ms, and must show
                yield SimMessage(t, device.id, "publish", topics[contract.Channel.TELEMETRY],
                                 contract.telemetry_bytes(ms, seq, ov.values((ms + 0.5) / 1000)))
            else:  # nothing to measure: the heartbeat is an online status with ts and seq
                yield SimMessage(t, device.id, "publish", topics[contract.Channel.STATUS],
                                 status_bytes("online", ts_ms=ms, seq=seq))
        a = b


def plan_messages(plan: Plan, community: Community, root: str, *, start: float, seed: int) -> Iterator[SimMessage]:
    """Every message of the plan, merged in simulated-time order (ties: device order in the community)."""
    empty = DeviceScript()

    def keyed(i: int, d: Device) -> Iterator[tuple[float, int, int, SimMessage]]:
        for n, m in enumerate(device_messages(d, community, plan.scripts.get(d.id, empty), root=root, start=start,
                                              duration=plan.duration, seed=seed)):
            yield (m.t, i, n, m)

    for _t, _i, _n, msg in heapq.merge(*(keyed(i, d) for i, d in enumerate(plan.devices))):
        yield msg
