"""Behaviour models: what each kind of device reads at a given simulated instant. Pure, no I/O.

Every model is a deterministic function of ``(seed, device, t)``: no hidden state advances as time
passes, so the same seed gives the same readings whichever order the times are asked in, and a
24-hour scenario can be generated in any chunking. Randomness comes from a counter-based hash
(:func:`unit`), never from ``random`` or Python's salted ``hash()``.

A model answers three questions:

- :meth:`Model.values` - the reading of every catalogue field at ``t``;
- :meth:`Model.changes` - instants in a window where the device would report on change (an elevator
  departs, a door opens, the jockey pump cuts in), on top of the catalogue heartbeat;
- :meth:`Model.events` - event-channel messages the device raises on its own (a care door cycle, a
  fire-pump test run).

Diurnal shapes use the community's local clock (UTC offset from the origin longitude, 15° an hour).
Baseline values stay inside each field's normal range (and so inside the valid range the gateway
enforces); scenarios push them out through overrides, not here.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from twin import catalogue, hydraulics
from twin.community import Community, Device

Value = bool | int | float
EventTuple = tuple[float, str, str, str | None]  # (t, code, state, detail)

_MASK = (1 << 64) - 1
DAY = 86_400.0
HOUR = 3_600.0


# --- deterministic randomness --------------------------------------------------------------------


def device_key(seed: int, device_id: str) -> int:
    """A 64-bit key per (seed, device): stable across processes and Python versions."""
    return int.from_bytes(hashlib.blake2b(f"{seed}:{device_id}".encode(), digest_size=8).digest(), "big")


def _mix(x: int) -> int:
    """splitmix64 finaliser: a cheap, well-distributed 64-bit hash."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def unit(key: int, salt: int, k: int) -> float:
    """Uniform in [0, 1) for the k-th draw of stream ``salt`` of a device: a pure function."""
    return _mix(key ^ _mix((salt * 0x100000001B3 + k) & _MASK)) / 18446744073709551616.0


def smooth(key: int, salt: int, t: float, period: float) -> float:
    """Smooth value noise in [-1, 1]: hashed knots every ``period`` seconds, smoothstep between."""
    x = t / period
    k = math.floor(x)
    f = x - k
    a, b = unit(key, salt, k), unit(key, salt, k + 1)
    s = f * f * (3 - 2 * f)
    return (a + (b - a) * s) * 2 - 1


def utc_offset_s(community: Community) -> int:
    """Local clock offset from the origin longitude (120.2°E -> UTC+8), whole hours."""
    return round(community.origin[1] / 15) * 3600


# --- the model base ------------------------------------------------------------------------------


@dataclass
class Model:
    """Base of every behaviour model. Subclasses override :meth:`_values` and may add changes/events."""

    device: Device
    kind: catalogue.DeviceKind
    key: int
    utc_offset: int = 28_800
    origin: float = 0.0  # simulation start: only models that accumulate (water meters) use it
    quiet: list[tuple[float, float]] = field(default_factory=list)  # no resident activity in these windows

    def hour(self, t: float) -> float:
        """Local hour of day in [0, 24)."""
        return ((t + self.utc_offset) % DAY) / HOUR

    def u(self, salt: int, k: int) -> float:
        return unit(self.key, salt, k)

    def is_quiet(self, t: float) -> bool:
        return any(a <= t < b for a, b in self.quiet)

    def values(self, t: float) -> dict[str, Value]:
        out = self._values(t)
        site = self.device.normal or {}
        for f in self.kind.fields:  # a quiet device stays in its (site or catalogue) normal range
            v = out[f.name]
            if f.type is not catalogue.FieldType.BOOL:
                lo, hi = site.get(f.name) or f.normal or f.valid
                v = min(max(v, lo), hi)
                out[f.name] = round(v) if f.type is catalogue.FieldType.INT else v
        return out

    def _values(self, t: float) -> dict[str, Value]:
        return {}

    def changes(self, t0: float, t1: float) -> list[float]:
        """Instants in [t0, t1) at which the device reports because something changed."""
        return []

    def events(self, t0: float, t1: float) -> list[EventTuple]:
        """Events the device raises by itself in [t0, t1)."""
        return []


def bump(hour: float, centre: float, width: float) -> float:
    """A Gaussian bump on the 24-hour circle (1 at ``centre``)."""
    d = min(abs(hour - centre), 24 - abs(hour - centre))
    return math.exp(-0.5 * (d / width) ** 2)


def diurnal(hour: float, peak_hour: float) -> float:
    """Cosine over the day, +1 at ``peak_hour`` and -1 twelve hours later."""
    return math.cos(2 * math.pi * (hour - peak_hour) / 24)


def _battery_sawtooth(m: Model, t: float, salt: int, *, life_years: tuple[float, float], low: float) -> float:
    """Battery percentage that decays linearly over its life and is replaced at ``low`` (pure of t)."""
    life = (life_years[0] + (life_years[1] - life_years[0]) * m.u(salt, 0)) * 365 * DAY
    phase = m.u(salt, 1) * life
    return round(100 - (100 - low) * (((t + phase) % life) / life), 1)


# --- fire -----------------------------------------------------------------------------------------


class FirePanel(Model):
    def _values(self, t: float) -> dict[str, Value]:
        return {"mains_ok": True, "battery_ok": True}


class SmokeDetector(Model):
    """Obscuration near zero with dust noise and a small cooking bump; a 3-5 year lithium battery."""

    def _values(self, t: float) -> dict[str, Value]:
        h = self.hour(t)
        cooking = bump(h, 11.8, 0.6) + bump(h, 18.5, 0.7)
        obs = 0.08 + 0.05 * smooth(self.key, 1, t, 900) + 0.12 * cooking * (0.5 + self.u(2, int(t // DAY)))
        return {"obscuration": round(max(obs, 0.0), 2),
                "battery": _battery_sawtooth(self, t, 3, life_years=(3, 5), low=22)}


class HeatDetector(Model):
    def _values(self, t: float) -> dict[str, Value]:
        base = 21.5 + 2.5 * self.u(1, 0) - (3 if (self.device.floor or 1) < 0 else 0)
        temp = base + 2.5 * diurnal(self.hour(t), 15) + 0.5 * smooth(self.key, 2, t, 1200)
        return {"temperature": round(temp, 1)}


class ManualCallPoint(Model):
    """No telemetry fields: it only heartbeats (as an online status) and raises events in scenarios."""


Leak = tuple[float, float]  # (from simulated time t, extra leak in MPa per minute; 0 ends it)
RISER_SYSTEMS = {"hydrant_pressure": "hydrant", "jockey_pump": "hydrant", "sprinkler_pressure": "sprinkler"}


class Riser:
    """The standby pressure at the top (most unfavourable point) of one building's fire-water system, held in a
    band by its pressure-holding (jockey) pump. Pure function of ``t``.

    At rest the network leaks down slowly (hours) from the cut-out pressure to the cut-in, then the pump restores it
    in under a minute: a sawtooth. Every sensor of the system reads this plus its static head
    (:mod:`twin.hydraulics`), and the pump runs on the sawtooth's rising edges. A scenario leak adds to the
    leakage from its start: while the pump restores faster than the water leaks, it starts again and again (short
    sawteeth); once the leak outruns it, the pump runs on and the pressure falls anyway. The band sits above the
    0.15 MPa GB 50974-2014 §5.3.3 asks at the most unfavourable point; the pump restores 0.1 MPa a minute.
    """

    PUMP_RATE = 0.1 / 60  # MPa/s the pump adds to a tight network

    def __init__(self, key: int, leaks: tuple[Leak, ...] = ()) -> None:
        def u(k: int) -> float:
            return unit(key, 1, k)

        self.cut_out = 0.30 + 0.04 * u(0)
        self.band = 0.06 + 0.02 * u(1)
        self.cut_in = self.cut_out - self.band
        self.leak_rate = self.band / ((4 + 6 * u(2)) * HOUR)  # MPa/s at rest: from cut-out to cut-in in 4-10 h
        self.restore = self.band / (self.PUMP_RATE - self.leak_rate)
        self.cycle = self.band / self.leak_rate + self.restore
        self.phase = u(4) * self.cycle
        self.leaks = tuple(sorted((t, r / 60) for t, r in leaks))
        self._starts: list[float] = []  # after the first leak: segments (start time, pressure, pump on, MPa/s)
        self._segments: list[tuple[float, float, bool, float]] = []
        self._settled = False  # the last segment lasts for ever

    # -- at rest: the periodic sawtooth ------------------------------------------------------------

    def _at_rest(self, t: float) -> tuple[float, bool]:
        s = (t + self.phase) % self.cycle
        down = self.cycle - self.restore
        if s < down:
            return self.cut_out - self.leak_rate * s, False
        return self.cut_in + (self.PUMP_RATE - self.leak_rate) * (s - down), True

    def _rest_switches(self, t0: float, t1: float) -> list[tuple[float, bool]]:
        down = self.cycle - self.restore
        out: list[tuple[float, bool]] = []
        n = math.floor((t0 + self.phase) / self.cycle)
        while (base := n * self.cycle - self.phase) < t1:
            out += [(x, on) for x, on in ((base + down, True), (base + self.cycle, False)) if t0 <= x < t1]
            n += 1
        return out

    # -- with a leak: integrated piece by piece ------------------------------------------------------

    def _extra(self, t: float) -> tuple[float, float]:
        """The scenario leak (MPa/s) in force at ``t`` and when it next changes."""
        i = bisect.bisect_right([x for x, _r in self.leaks], t)
        rate = self.leaks[i - 1][1] if i else 0.0
        return rate, self.leaks[i][0] if i < len(self.leaks) else math.inf

    def _extend(self, until: float) -> None:
        if self._settled:
            return
        if not self._segments:
            t = self.leaks[0][0]
            p, on = self._at_rest(t)
        else:
            t0, p0, on, rate = self._segments[-1]
            t = self._next_change(t0, p0, on, rate)
            p = max(0.0, p0 + rate * (t - t0))
            on = self._switch(p, on, t)
        while True:
            extra, _next = self._extra(t)
            rate = (self.PUMP_RATE if on else 0.0) - self.leak_rate - extra
            if p <= 0 and rate < 0:
                rate = 0.0
            self._starts.append(t)
            self._segments.append((t, p, on, rate))
            if t > until:
                return
            nt = self._next_change(t, p, on, rate)
            if math.isinf(nt):
                self._settled = True
                return
            p, t = max(0.0, p + rate * (nt - t)), nt
            on = self._switch(p, on, t)

    def _switch(self, p: float, on: bool, t: float) -> bool:
        """The pump's state after a segment ends at pressure ``p``."""
        if not on and p <= self.cut_in + 1e-12:
            return True
        if on and p >= self.cut_out - 1e-12:
            return False
        return on

    def _next_change(self, t: float, p: float, on: bool, rate: float) -> float:
        """When the segment starting at ``t`` ends: the pump switches, the leak changes, or the pipe is empty."""
        _extra, change = self._extra(t)
        end = change
        if not on and rate < 0:
            end = min(end, t + (p - self.cut_in) / -rate)
        elif on and rate > 0:
            end = min(end, t + (self.cut_out - p) / rate)
        elif on and rate < 0 and p > 0:
            end = min(end, t + p / -rate)
        return end if math.isinf(end) else max(end, t + 1e-6)

    def _segment(self, t: float) -> tuple[float, float, bool, float]:
        if not self._segments or self._starts[-1] <= t:
            self._extend(t)
        return self._segments[max(0, bisect.bisect_right(self._starts, t) - 1)]

    # -- what devices see --------------------------------------------------------------------------

    def state(self, t: float) -> tuple[float, bool]:
        """(pressure at the top in MPa, pump running) at ``t``."""
        if not self.leaks or t < self.leaks[0][0]:
            return self._at_rest(t)
        t0, p0, on, rate = self._segment(t)
        return max(0.0, p0 + rate * (t - t0)), on

    def switches(self, t0: float, t1: float) -> list[tuple[float, bool]]:
        """Instants in [t0, t1) at which the pump starts (True) or stops (False)."""
        first = self.leaks[0][0] if self.leaks else math.inf
        out = self._rest_switches(t0, min(t1, first))
        if t1 > first:
            self._segment(t1)
            segs = self._segments
            out += [(a, on) for (a, _p, on, _r), (_b, _q, was, _s) in zip(segs[1:], segs, strict=False)
                    if on != was and max(t0, first) <= a < t1]
        return out


@dataclass
class PipePressure(Model):
    """Hydrant or sprinkler pipe pressure: its system's :class:`Riser` at the top, plus the static head between
    the sensor and the top (0.0098 MPa a metre: a sensor at the bottom of a 33-storey riser reads ~0.9 MPa more).
    Reports when the pump starts and stops. Not held inside the normal range: a leak may take it anywhere."""

    riser: Riser | None = None
    head_mpa: float = 0.0

    def _riser(self) -> Riser:
        if self.riser is None:
            self.riser = Riser(self.key)
        return self.riser

    def values(self, t: float) -> dict[str, Value]:
        p, _on = self._riser().state(t)
        return {"pressure": round(max(0.0, p + self.head_mpa + 0.002 * smooth(self.key, 2, t, 300)), 3)}

    def changes(self, t0: float, t1: float) -> list[float]:
        return [x for x, _on in self._riser().switches(t0, t1)]


class HydrantPressure(PipePressure):
    pass


class SprinklerPressure(PipePressure):
    pass


@dataclass
class JockeyPump(Model):
    """The pressure-holding (稳压) pump of a building's hydrant system: runs on its riser's rising edges, reports
    each start and stop (``start`` active / cleared) and its running state."""

    riser: Riser | None = None

    def _riser(self) -> Riser:
        if self.riser is None:
            self.riser = Riser(self.key)
        return self.riser

    def _values(self, t: float) -> dict[str, Value]:
        return {"running": self._riser().state(t)[1]}

    def changes(self, t0: float, t1: float) -> list[float]:
        return [x for x, _on in self._riser().switches(t0, t1)]

    def events(self, t0: float, t1: float) -> list[EventTuple]:
        return [(x, "start", "active" if on else "cleared",
                 "pressure fell to the cut-in" if on else "pressure restored to the cut-out")
                for x, on in self._riser().switches(t0, t1)]


class FirePump(Model):
    """Idle main fire pump holding static pressure; a 10-minute test run once a week.

    The weekly no-flow (churn) run follows NFPA 25 practice; GB 25201-2010 also asks for regular start
    tests. The weekday and length are a site default.
    """

    WEEK = 7 * DAY

    def _test_window(self, week: int) -> tuple[float, float]:
        day = int(self.u(5, 0) * 5)  # a weekday
        start = week * self.WEEK + day * DAY + 10 * HOUR - self.utc_offset + 4 * DAY  # epoch 0 was a Thursday
        return start, start + 600

    def _running(self, t: float) -> bool:
        a, b = self._test_window(math.floor((t + self.utc_offset - 4 * DAY) / self.WEEK))
        return a <= t < b

    def _values(self, t: float) -> dict[str, Value]:
        running = self._running(t)
        static = 0.75 + 0.1 * self.u(1, 0)
        p = static + (0.42 if running else 0.0) + 0.004 * smooth(self.key, 2, t, 120)
        return {"running": running, "outlet_pressure": round(p, 3)}

    def _windows(self, t0: float, t1: float) -> list[tuple[float, float]]:
        first = math.floor((t0 + self.utc_offset - 4 * DAY) / self.WEEK) - 1
        last = math.floor((t1 + self.utc_offset - 4 * DAY) / self.WEEK) + 1
        return [self._test_window(w) for w in range(first, last + 1)]

    def changes(self, t0: float, t1: float) -> list[float]:
        return [x for a, b in self._windows(t0, t1) for x in (a, a + 5, b) if t0 <= x < t1]

    def events(self, t0: float, t1: float) -> list[EventTuple]:
        out: list[EventTuple] = []
        for a, b in self._windows(t0, t1):
            for t, code, state in ((a, "start", "active"), (a + 5, "feedback", "active"),
                                   (b, "start", "cleared"), (b, "feedback", "cleared")):
                if t0 <= t < t1:
                    out.append((t, code, state, "weekly test run"))
        return out


class EmergencyLight(Model):
    """Float-charged battery near full; a monthly 30-minute discharge self-test (site default for
    centrally monitored fittings), then a 12-hour recharge."""

    CYCLE = 30 * DAY

    def _params(self) -> tuple[float, float]:
        full = 96 + 4 * self.u(1, 0)
        phase = self.u(1, 1) * self.CYCLE
        return full, phase

    def _values(self, t: float) -> dict[str, Value]:
        full, phase = self._params()
        s = (t + phase) % self.CYCLE
        if s < 1800:
            b = full - 14 * s / 1800
        elif s < 1800 + 12 * HOUR:
            b = full - 14 * (1 - (s - 1800) / (12 * HOUR))
        else:
            b = full
        return {"battery": round(b, 1)}

    def changes(self, t0: float, t1: float) -> list[float]:
        _full, phase = self._params()
        out = []
        n = math.floor((t0 + phase) / self.CYCLE)
        while (base := n * self.CYCLE - phase) < t1:
            out += [x for x in (base, base + 1800) if t0 <= x < t1]
            n += 1
        return out


class Extinguisher(Model):
    def _values(self, t: float) -> dict[str, Value]:
        p = 1.44 - 0.06 * self.u(1, 0) + 0.01 * diurnal(self.hour(t), 15)  # gas pressure follows temperature
        return {"pressure": round(p, 3)}


class FireDoor(Model):
    """A normally-closed stair door: people pass through it a few times an hour by day."""

    SLOT = 600.0

    def _pass(self, k: int) -> tuple[float, float] | None:
        t = k * self.SLOT
        h = self.hour(t)
        p = 0.02 if h < 6 or h >= 23 else 0.35
        if self.u(1, k) >= p or self.is_quiet(t):
            return None
        a = t + self.u(2, k) * (self.SLOT - 30)
        return a, a + 4 + 8 * self.u(3, k)

    def _values(self, t: float) -> dict[str, Value]:
        w = self._pass(math.floor(t / self.SLOT))
        return {"closed": not (w is not None and w[0] <= t < w[1])}

    def changes(self, t0: float, t1: float) -> list[float]:
        out = []
        for k in range(math.floor(t0 / self.SLOT), math.floor(t1 / self.SLOT) + 1):
            w = self._pass(k)
            if w:
                out += [x for x in w if t0 <= x < t1]
        return out


# --- elevator -------------------------------------------------------------------------------------


@dataclass
class Elevator(Model):
    """Trips in fixed slots: dwell with a door cycle, travel at ~1.6 s a floor, door cycle on arrival.

    Time is cut into slots of ``slot`` seconds; in each slot the car either makes one trip or idles.
    Whether slot k is busy and where it goes depend only on k, so the floor at any instant is a pure
    function of t. Traffic: morning down-peak (calls from upper floors, loaded trips to the lobby),
    evening up-peak (loaded trips from the lobby), light inter-floor traffic by day, little at night.
    After ``HOME_AFTER`` idle slots the car returns to the lobby (homing).
    """

    floors: list[int] = field(default_factory=list)
    lobby: int = field(init=False, default=0)
    slot: float = field(init=False, default=60.0)
    _idx_cache: dict[int, int] = field(init=False, default_factory=dict, repr=False)
    SECONDS_PER_FLOOR = 1.6  # ~1.75 m/s at 2.9 m floors; residential traction lifts 1.0-2.5 m/s
    START_STOP = 2.0
    DOOR = 8.0  # open 1 s after stopping, close at 7 s
    HOME_AFTER = 20

    def __post_init__(self) -> None:
        if not self.floors:
            self.floors = list(range(1, 11))
        self.lobby = self.floors.index(1) if 1 in self.floors else 0
        self.slot = 5.0 * math.ceil((self.DOOR * 2 + self.START_STOP + self.SECONDS_PER_FLOOR * (len(self.floors) - 1)
                                     + 4) / 5)

    def _period(self, h: float) -> str:
        if 6.5 <= h < 9.5:
            return "morning"
        if 17 <= h < 20.5:
            return "evening"
        if 9.5 <= h < 22:
            return "day"
        return "night"

    _BUSY: ClassVar[dict[str, float]] = {"morning": 0.8, "evening": 0.75, "day": 0.3, "night": 0.04}

    def active(self, k: int) -> bool:
        t = k * self.slot
        return self.u(1, k) < self._BUSY[self._period(self.hour(t))] and not self.is_quiet(t)

    def _target(self, k: int) -> int:
        """Floor index slot k's trip goes to (only for busy slots)."""
        period = self._period(self.hour(k * self.slot))
        upper = [i for i in range(len(self.floors)) if i > self.lobby]
        low = [i for i in range(len(self.floors)) if i < self.lobby]  # basements: parking
        ground = low[0] if low and self.u(2, k) < 0.25 else self.lobby
        r = self.u(3, k)
        if not upper:
            return int(r * len(self.floors))
        if period in ("morning", "evening"):
            to_ground = (k % 2 == 1) if period == "morning" else (k % 2 == 0)
            return ground if to_ground else upper[int(r * len(upper))]
        return int(r * len(self.floors))

    def pos(self, k: int) -> int:
        """Floor index where slot k ends."""
        hit = self._idx_cache.get(k)
        if hit is not None:
            return hit
        if self.active(k):
            p = self._target(k)
        else:
            p = self.lobby
            for back in range(1, self.HOME_AFTER):
                if self.active(k - back):
                    p = self._target(k - back)
                    break
        if len(self._idx_cache) > 4096:
            self._idx_cache.clear()
        self._idx_cache[k] = p
        return p

    def _load(self, k: int) -> float:
        if not self.active(k):
            return 0.0
        o, d = self.pos(k - 1), self.pos(k)
        period = self._period(self.hour(k * self.slot))
        r = self.u(4, k)
        if period == "morning":
            return 25 + 55 * r if d < o else 8 * r
        if period == "evening":
            return 30 + 55 * r if d > o else 8 * r
        return (5 + 40 * r) if period == "day" else (5 + 15 * r)

    def _plan(self, k: int) -> tuple[int, int, float, float, float, bool]:
        """(origin idx, dest idx, boarding end, arrival, door end, busy) of slot k, offsets in the slot."""
        o, d = self.pos(k - 1), self.pos(k)
        busy = self.active(k)
        board = self.DOOR if busy and not self.active(k - 1) else 0.0
        travel = 0.0 if o == d else self.START_STOP + self.SECONDS_PER_FLOOR * abs(d - o)
        arrive = board + travel
        return o, d, board, arrive, arrive + (self.DOOR if busy else 0.0), busy

    def _values(self, t: float) -> dict[str, Value]:
        k = math.floor(t / self.slot)
        s = t - k * self.slot
        o, d, board, arrive, door_end, busy = self._plan(k)
        load_k = self._load(k)
        load_next = self._load(k + 1)
        floor, direction, running, door, load = self.floors[d], 0, False, False, load_next
        if s < board:  # passengers board at the origin first
            floor, door = self.floors[o], 1 <= s < 7
            load = load_k if s >= 4 else 0.0
        elif s < arrive:
            step = 1 if d > o else -1
            passed = min(abs(d - o), max(0, math.floor((s - board - 1) / self.SECONDS_PER_FLOOR)))
            floor, direction, running, load = self.floors[o + step * passed], step, True, load_k
        elif s < door_end:
            door = 1 <= s - arrive < 7
            load = load_k if s - arrive < 4 else load_next
        elif not busy:
            load = 0.0
        noise = 0.0 if load == 0 else 1.5 * smooth(self.key, 5, t, 20)
        return {"floor": floor, "direction": direction, "door_open": door, "running": running,
                "load": round(max(load + noise, 0.0), 1), "in_service": True}

    def changes(self, t0: float, t1: float) -> list[float]:
        out: list[float] = []
        for k in range(math.floor(t0 / self.slot), math.floor(t1 / self.slot) + 1):
            o, d, board, arrive, _door_end, busy = self._plan(k)
            base = k * self.slot
            marks: list[float] = []
            if board:
                marks += [1, 7]
            if o != d:
                marks += [board, arrive]
            if busy:
                marks += [arrive + 1, arrive + 7]
            out += [base + m for m in marks if t0 <= base + m < t1]
        return out


# --- environment and water -----------------------------------------------------------------------


class Gas(Model):
    def _values(self, t: float) -> dict[str, Value]:
        lel = 0.5 + 0.4 * smooth(self.key, 1, t, 1200) + 0.6 * bump(self.hour(t), 18.5, 1.0) * self.u(2, 0)
        return {"lel": round(max(lel, 0.0), 1)}


class CO(Model):
    """Parking-garage CO follows car traffic: morning and evening rush (GBZ 2.1 PC-TWA 20 mg/m³ ~ 17 ppm)."""

    def _values(self, t: float) -> dict[str, Value]:
        h = self.hour(t)
        traffic = bump(h, 7.8, 0.9) + 0.9 * bump(h, 18.3, 1.2)
        co = 2.5 + 11 * traffic + 1.2 * smooth(self.key, 1, t, 600)
        return {"co": round(max(co, 0.0), 1)}


class WaterLeak(Model):
    def _values(self, t: float) -> dict[str, Value]:
        return {"leak": False}


class GasValve(Model):
    """A gas emergency shut-off valve: open in normal service; it closes on a command (simulators.interlock)."""

    def _values(self, t: float) -> dict[str, Value]:
        return {"closed": False}


class ExhaustFan(Model):
    """An exhaust fan interlocked with a gas detector: off in normal service, started by a command."""

    def _values(self, t: float) -> dict[str, Value]:
        return {"running": False}


class TempHumidity(Model):
    """Indoor corridor air: +-3 °C a day peaking mid-afternoon, humidity moving the opposite way."""

    def _values(self, t: float) -> dict[str, Value]:
        basement = (self.device.floor or 1) < 0
        d = diurnal(self.hour(t), 15)
        temp = 22 + 2 * self.u(1, 0) - (3 if basement else 0) + 3 * d + 0.6 * smooth(self.key, 2, t, 1800)
        rh = 58 + (12 if basement else 0) - 9 * d + 3 * smooth(self.key, 3, t, 2400)
        return {"temperature": round(temp, 1), "humidity": round(rh, 1)}


class WaterTank(Model):
    """Roof/basement domestic tank: drawn down at the morning and evening peaks, refilled between."""

    def _values(self, t: float) -> dict[str, Value]:
        h = self.hour(t)
        level = 3.7 - 0.7 * bump(h, 7.8, 1.2) - 0.8 * bump(h, 19.8, 1.5) - 0.2 * bump(h, 12.5, 1.5)
        return {"level": round(level + 0.03 * smooth(self.key, 1, t, 900), 2)}


class Noise(Model):
    """Residential area noise (GB 3096-2008 class 1: 55 dB(A) by day, 45 at night)."""

    def _values(self, t: float) -> dict[str, Value]:
        h = self.hour(t)
        day = 1 / (1 + math.exp(-(h - 6.5) * 3)) - 1 / (1 + math.exp(-(h - 22.5) * 3))
        laeq = 37 + 10 * day + 2.5 * smooth(self.key, 1, t, 300) + 2 * bump(h, 18, 1.5)
        return {"laeq": round(laeq, 1)}


# --- care (activity of elderly residents) ---------------------------------------------------------


def _care_busy(h: float, profile: tuple[tuple[float, float, float], ...]) -> float:
    return next((p for a, b, p in profile if a <= h < b), 0.0)


class CareDoor(Model):
    """Front-door contact: goings and comings by day, none at night (activity signal only)."""

    SLOT = 900.0
    PROFILE = ((6.0, 8.0, 0.30), (8.0, 11.0, 0.25), (11.0, 13.0, 0.30), (13.0, 16.0, 0.15),
               (16.0, 19.0, 0.30), (19.0, 22.0, 0.10), (22.0, 23.0, 0.02))

    def _cycle(self, k: int) -> tuple[float, float] | None:
        t = k * self.SLOT
        if self.u(1, k) >= _care_busy(self.hour(t), self.PROFILE):
            return None
        a = t + self.u(2, k) * (self.SLOT - 60)
        if self.is_quiet(a):
            return None
        return a, a + 5 + 20 * self.u(3, k)

    def _values(self, t: float) -> dict[str, Value]:
        w = self._cycle(math.floor(t / self.SLOT))
        return {"opened": w is not None and w[0] <= t < w[1]}

    def _cycles(self, t0: float, t1: float) -> list[tuple[float, float]]:
        ks = range(math.floor(t0 / self.SLOT) - 1, math.floor(t1 / self.SLOT) + 1)
        return [w for k in ks if (w := self._cycle(k)) is not None]

    def changes(self, t0: float, t1: float) -> list[float]:
        return [x for w in self._cycles(t0, t1) for x in w if t0 <= x < t1]

    def events(self, t0: float, t1: float) -> list[EventTuple]:
        return [(b, "door_cycle", "pulse", f"open {b - a:.0f} s") for a, b in self._cycles(t0, t1) if t0 <= b < t1]


@dataclass
class CareWater(Model):
    """Water meter of a care unit: short draws (wash, cook, flush) by day; ``total`` is the meter reading.

    The meter integrates every draw since the simulation origin, with prefix sums per slot cached, so
    ``values(t)`` stays a pure function of (seed, device, origin, quiet windows, t).
    """

    SLOT = 600.0
    PROFILE = ((0.0, 6.5, 0.02), (6.5, 9.0, 0.45), (9.0, 11.0, 0.12), (11.0, 13.0, 0.35), (13.0, 17.0, 0.12),
               (17.0, 21.0, 0.40), (21.0, 23.0, 0.10), (23.0, 24.0, 0.02))
    _prefix: list[float] = field(default_factory=list, repr=False)

    def _draw(self, k: int) -> tuple[float, float, float] | None:
        """(start, end, L/min) of slot k's draw, if any."""
        t = k * self.SLOT
        if self.u(1, k) >= _care_busy(self.hour(t), self.PROFILE):
            return None
        dur = 20 + 220 * self.u(2, k) ** 2
        a = t + self.u(3, k) * (self.SLOT - dur)
        if self.is_quiet(a):
            return None
        return a, a + dur, round(3 + 6 * self.u(4, k), 1)

    def _litres_before(self, t: float) -> float:
        k0 = math.floor(self.origin / self.SLOT)
        k = math.floor(t / self.SLOT)
        while len(self._prefix) <= k - k0:
            j = k0 + len(self._prefix) - 1  # the slot whose draw the new prefix entry adds
            w = self._draw(j) if self._prefix else None
            litres = 0.0 if w is None or w[0] < self.origin else (w[1] - w[0]) / 60 * w[2]
            self._prefix.append((self._prefix[-1] if self._prefix else 0.0) + litres)
        used = self._prefix[k - k0] if k >= k0 else 0.0
        w = self._draw(k)
        if w is not None and w[0] >= self.origin:
            used += max(0.0, min(t, w[1]) - w[0]) / 60 * w[2]
        return used

    def _values(self, t: float) -> dict[str, Value]:
        w = self._draw(math.floor(t / self.SLOT))
        flow = w[2] if w is not None and w[0] <= t < w[1] else 0.0
        base = 20_000 + 60_000 * self.u(9, 0)
        return {"flow": flow, "total": round(base + self._litres_before(t), 1)}

    def changes(self, t0: float, t1: float) -> list[float]:
        ks = range(math.floor(t0 / self.SLOT), math.floor(t1 / self.SLOT) + 1)
        return [x for k in ks if (w := self._draw(k)) for x in w[:2] if t0 <= x < t1]


# --- registry -------------------------------------------------------------------------------------

MODELS: dict[str, Callable[..., Model]] = {
    "fire_panel": FirePanel,
    "smoke_detector": SmokeDetector,
    "heat_detector": HeatDetector,
    "manual_call_point": ManualCallPoint,
    "hydrant_pressure": HydrantPressure,
    "sprinkler_pressure": SprinklerPressure,
    "fire_pump": FirePump,
    "jockey_pump": JockeyPump,
    "fire_door": FireDoor,
    "emergency_light": EmergencyLight,
    "extinguisher": Extinguisher,
    "elevator": Elevator,
    "gas": Gas,
    "co": CO,
    "gas_valve": GasValve,
    "exhaust_fan": ExhaustFan,
    "water_leak": WaterLeak,
    "temp_humidity": TempHumidity,
    "water_tank": WaterTank,
    "noise": Noise,
    "care_door": CareDoor,
    "care_water": CareWater,
}


def elevator_floors(community: Community | None, device: Device) -> list[int]:
    """Floors an elevator device's car serves: its elevator's range, else its building's floors."""
    if community is None:
        return list(range(1, 11))
    building = community.building(device.building) if device.building else None
    if device.elevator:
        lift = next((e for e in community.elevators if e.id == device.elevator), None)
        if lift is not None:
            b = community.building(lift.building) or building
            floors = b.floors if b else list(range(lift.serves[0], lift.serves[1] + 1))
            return [f for f in floors if lift.serves[0] <= f <= lift.serves[1]] or floors
    return building.floors if building else list(range(1, 11))


METER_EPOCH = 1_767_225_600.0  # 2026-01-01T00:00Z: where accumulating meters start when no origin is given


def model_for(device: Device, *, seed: int, community: Community | None = None, origin: float | None = None,
              quiet: list[tuple[float, float]] | None = None, leaks: tuple[Leak, ...] = ()) -> Model:
    """The behaviour model of one device (every catalogue kind has one).

    ``origin`` is the simulation start: accumulating readings (the care water meter) count from there. ``leaks``:
    scenario leaks of the device's fire-water system (pipe-pressure sensors and the jockey pump of one building
    share one :class:`Riser`, keyed by building and system, so they agree).
    """
    kind = catalogue.KINDS[device.kind]
    common = {"device": device, "kind": kind, "key": device_key(seed, device.id),
              "utc_offset": utc_offset_s(community) if community else 28_800,
              "origin": METER_EPOCH if origin is None else origin,
              "quiet": list(quiet or [])}
    if device.kind == "elevator":
        return Elevator(**common, floors=elevator_floors(community, device))  # type: ignore[arg-type]
    system = RISER_SYSTEMS.get(device.kind)
    if system is not None:
        riser = Riser(device_key(seed, f"riser:{device.building or device.id}:{system}"), leaks)
        if device.kind == "jockey_pump":
            return JockeyPump(**common, riser=riser)  # type: ignore[arg-type]
        head = hydraulics.head_below_top(community, device) if community is not None else None
        pipe = HydrantPressure if device.kind == "hydrant_pressure" else SprinklerPressure
        return pipe(**common, riser=riser, head_mpa=hydraulics.static_offset(head or 0.0))  # type: ignore[arg-type]
    return MODELS[device.kind](**common)


def heartbeat_times(model: Model, t0: float, t1: float) -> list[float]:
    """The device's periodic reports in [t0, t1): every catalogue ``heartbeat_s``, at a per-device phase."""
    period = float(model.kind.heartbeat_s)
    phase = model.u(0, 0) * period
    n = math.ceil((t0 - phase) / period)
    out = []
    while (t := phase + n * period) < t1:
        out.append(t)
        n += 1
    return out
