"""Level rules, one condition per device, optionally pending for ``for`` seconds: threshold (with hysteresis),
duration (a condition held for a time) and rate (units per minute over a window)."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from datetime import UTC, tzinfo
from typing import TYPE_CHECKING, Any, NamedTuple

from twin import catalogue
from twin.alarms import format_duration
from twin.rules.evaluators.base import DailyWindow, Evaluator, TrackedDevice, format_value, iso_utc, local_seconds
from twin.rules.schema import DoseRule, DropFromNormalRule, DurationRule, Period, RateRule, ThresholdRule

if TYPE_CHECKING:
    from twin.rules.engine import Engine


RatePoint = tuple[float, float]  # (device time, value)
RATE_POINTS_KEPT = 1024


class LevelState:
    """One device under one level rule."""

    __slots__ = ("last", "on", "points", "since")

    def __init__(self) -> None:
        self.on = False
        self.since: float | None = None  # device time the condition became true, while pending
        self.last: bool | float = 0.0  # newest value while pending (named in the alarm when ``for`` passes)
        self.points: deque[RatePoint] | None = None  # rate rules: the readings inside the window


class LevelEvaluator(Evaluator):
    """Threshold, duration and rate: a condition per device, optionally pending for ``for`` seconds."""

    field: str
    unit: str
    for_s: float
    keeps_points: bool = False  # rate rules keep the readings of their window (in snapshots too)

    def __init__(self, rule: ThresholdRule | DurationRule | RateRule | DoseRule | DropFromNormalRule) -> None:
        super().__init__(rule)
        self.field = rule.field
        f = catalogue.KINDS[rule.kind[0]].field(rule.field)
        self.unit = f" {f.unit}" if f is not None and f.unit else ""
        self.state: dict[str, LevelState] = {}
        self.pending: set[str] = set()

    def on_value(self, eng: Engine, dev: TrackedDevice, t: float, v: bool | float) -> None:
        """A reading in order, at device time ``t``."""
        raise NotImplementedError

    def on_late(self, eng: Engine, dev: TrackedDevice, t: float, v: bool | float) -> None:
        """A reading older than the device's newest: durations and rates ignore it (it says nothing about now)."""

    def _exceeded(self, eng: Engine, dev: TrackedDevice, st: LevelState, t: float, v: bool | float) -> None:
        since = st.since
        if self.for_s <= 0 or (since is not None and t - since >= self.for_s):
            st.on, st.since = True, None
            self.pending.discard(dev.id)
            held = t - (since if since is not None else t)
            eng._device_condition(self, dev, eng._engine_time(dev, t), True, self.raise_detail(v, held), t)
        elif since is None:
            st.since, st.last = t, v
            self.pending.add(dev.id)
        else:
            st.last = v

    def _released(self, eng: Engine, dev: TrackedDevice, st: LevelState, t: float, v: bool | float) -> None:
        st.on = False
        eng._device_condition(self, dev, eng._engine_time(dev, t), False, self.clear_detail(v), t)

    def tick(self, eng: Engine, now: float) -> None:
        """Pending conditions whose ``for`` has passed on the device's clock (the engine's plus its skew)."""
        for dev_id in list(self.pending):
            st = self.state[dev_id]
            dev = eng._devices[dev_id]
            if st.since is not None and now + dev.skew - st.since >= self.for_s:
                at = st.since + self.for_s
                st.on, st.since = True, None
                self.pending.discard(dev_id)
                eng._device_condition(self, dev, eng._engine_time(dev, at), True,
                                      self.raise_detail(st.last, self.for_s), at)

    def raise_detail(self, v: bool | float, held: float) -> str:
        return f"{self.field}={format_value(v)}{self.unit}" + (f" for {format_duration(held)}" if held > 0 else "")

    def clear_detail(self, v: bool | float) -> str:
        return f"{self.field}={format_value(v)}{self.unit}"

    def is_on(self, device_id: str) -> bool:
        st = self.state.get(device_id)
        return st is not None and st.on

    def snapshot(self) -> Any:
        return {d: [s.on, s.since, s.last, list(s.points) if s.points is not None else None]
                for d, s in self.state.items() if s.on or s.since is not None or s.points}

    def restore(self, data: Any, engine: Engine) -> None:
        for d, (on, since, last, points) in data.items():
            if d not in engine._devices:
                continue
            st = self.state[d] = LevelState()
            st.on, st.since, st.last = bool(on), since, last
            if points is not None and self.keeps_points:
                st.points = deque(((float(at), float(v)) for at, v in points), maxlen=RATE_POINTS_KEPT)
            if since is not None:
                self.pending.add(d)


class ThresholdEvaluator(LevelEvaluator):
    def __init__(self, rule: ThresholdRule) -> None:
        super().__init__(rule)
        self.high = rule.direction == "high"
        self.raise_at, self.clear_at, self.for_s = rule.raise_, rule.clear, rule.for_

    def on_value(self, eng: Engine, dev: TrackedDevice, t: float, v: bool | float) -> None:
        st = self.state.get(dev.id)
        if st is None:
            st = self.state[dev.id] = LevelState()
        if st.on:
            if (v < self.clear_at) if self.high else (v > self.clear_at):
                self._released(eng, dev, st, t, v)
        elif (v >= self.raise_at) if self.high else (v <= self.raise_at):
            self._exceeded(eng, dev, st, t, v)
        elif st.since is not None:
            st.since = None
            self.pending.discard(dev.id)

    def on_late(self, eng: Engine, dev: TrackedDevice, t: float, v: bool | float) -> None:
        """A level crossed in a late reading (store-and-forward after an outage) raises: it happened. It never
        clears (the newest reading stands for now) and does not start a ``for`` (one old point proves no hold)."""
        if self.for_s > 0 or isinstance(v, bool) or not ((v >= self.raise_at) if self.high else (v <= self.raise_at)):
            return
        st = self.state.get(dev.id)
        if st is None:
            st = self.state[dev.id] = LevelState()
        st.on, st.since = True, None
        self.pending.discard(dev.id)
        behind = f", {format_duration(dev.last_ts - t)} before its newest" if dev.last_ts is not None else ""
        eng._device_condition(self, dev, eng._engine_time(dev, t), True,
                              f"{self.raise_detail(v, 0)}; late reading taken at {iso_utc(t)} device time{behind}", t)

    def raise_detail(self, v: bool | float, held: float) -> str:
        op = ">=" if self.high else "<="
        return f"{super().raise_detail(v, held)} ({op} {self.raise_at:g})"

    def clear_detail(self, v: bool | float) -> str:
        return f"{super().clear_detail(v)} ({'<' if self.high else '>'} {self.clear_at:g})"


class Condition(NamedTuple):
    """A duration rule's condition: the test and how the alarm detail says it."""

    test: Callable[[bool | float], bool]
    text: str


def _condition(c: DurationRule | Period) -> Condition:
    if c.equals is not None:
        target = c.equals
        return Condition(lambda v: v == target, f"= {format_value(target)}")
    if c.above is not None:
        lim = c.above
        return Condition(lambda v: v > lim, f"> {lim:g}")
    low = c.below if c.below is not None else -math.inf
    return Condition(lambda v: v < low, f"< {low:g}")


class DurationEvaluator(LevelEvaluator):
    def __init__(self, rule: DurationRule) -> None:
        super().__init__(rule)
        self.for_s = rule.for_
        self.default = _condition(rule)
        self.test, self.text = self.default
        # other limits in daily windows of the community's local time (the engine sets ``tz``)
        self.periods = [(DailyWindow.of(p.between), _condition(p), p.name) for p in rule.periods or ()]
        self.tz: tzinfo = UTC

    def condition_at(self, t: float) -> Condition:
        """The condition in force at engine time ``t``: the first period whose window holds it, else the rule's."""
        if self.periods:
            s = local_seconds(t, self.tz)
            for window, cond, name in self.periods:
                if window.holds(s):
                    return Condition(cond.test, f"{cond.text}, {name or 'period'} {window.text()}")
        return self.default

    def on_value(self, eng: Engine, dev: TrackedDevice, t: float, v: bool | float) -> None:
        st = self.state.get(dev.id)
        if st is None:
            st = self.state[dev.id] = LevelState()
        if self.periods:
            self.test, self.text = self.condition_at(eng._engine_time(dev, t))
        hit = self.test(v)
        if st.on:
            if not hit:
                self._released(eng, dev, st, t, v)
        elif hit:
            self._exceeded(eng, dev, st, t, v)
        elif st.since is not None:
            st.since = None
            self.pending.discard(dev.id)

    def raise_detail(self, v: bool | float, held: float) -> str:
        return f"{super().raise_detail(v, held)} ({self.text})"


class RateEvaluator(LevelEvaluator):
    keeps_points = True

    def __init__(self, rule: RateRule) -> None:
        super().__init__(rule)
        self.for_s = 0.0
        self.sign = 1.0 if rule.direction == "rising" else -1.0
        self.raise_at, self.clear_at = rule.raise_, rule.clear_at
        self.raise_cmp = rule.raise_ * (1 - 1e-9)  # a rate computed from decimals lands a hair off the limit
        self.window = rule.window
        self.min_span = rule.min_span if rule.min_span is not None else rule.window / 2
        self.rate = 0.0

    def on_value(self, eng: Engine, dev: TrackedDevice, t: float, v: bool | float) -> None:
        st = self.state.get(dev.id)
        if st is None:
            st = self.state[dev.id] = LevelState()
        points = st.points
        if points is None:
            points = st.points = deque(maxlen=RATE_POINTS_KEPT)
        points.append((t, float(v)))
        oldest = t - self.window
        while points[0][0] < oldest:  # the device time of the oldest point
            points.popleft()
        t0, v0 = points[0]
        span = t - t0
        if span < self.min_span:
            return
        rate = self.sign * (v - v0) * 60.0 / span
        if st.on:
            if rate < self.clear_at:
                self.rate = rate
                self._released(eng, dev, st, t, v)
        elif rate >= self.raise_cmp:
            self.rate = rate
            self._exceeded(eng, dev, st, t, v)

    def raise_detail(self, v: bool | float, held: float) -> str:
        word = "rising" if self.sign > 0 else "falling"
        return (f"{self.field} {word} {abs(self.rate):.3g}{self.unit}/min over {format_duration(self.window)} "
                f"(>= {self.raise_at:g}), now {format_value(v)}{self.unit}")

    def clear_detail(self, v: bool | float) -> str:
        word = "rising" if self.sign > 0 else "falling"
        return (f"{self.field} {word} at {self.rate:.3g}{self.unit}/min (< {self.clear_at:g}), "
                f"now {format_value(v)}{self.unit}")
