"""The pump-cycling rule: a pump that starts too often, on the engine's clock.

A fire-water network at rest loses pressure only slowly, so its pressure-holding (jockey) pump starts a few times
a day; a leak makes it start again and again long before the pressure itself falls out of its band. A start is
counted at the engine time it is received, from one of three sources:

- the pump's ``event`` going active (or a pulse of it): :class:`PumpStartsEvaluator`;
- the pump's true/false ``field`` (``running``) turning true: :class:`ReadingStartsEvaluator`;
- a pressure ``field`` rising ``rise`` or more above its low since the last start (the sawtooth a pump leaves
  on a pressure sensor of its network, when the pump itself reports nothing): :class:`ReadingStartsEvaluator`.

The rule raises when ``starts`` starts fall within ``within`` (each further start inside the window repeats the
alarm) and clears once the window has moved past the oldest of them. A late event (older than the device's newest
of its code, e.g. a backlog sent after an outage) is counted where it belongs on the engine's clock: its device
time less the device's clock offset. A late reading is not used (it says nothing about the sawtooth now).
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Any

from twin import catalogue
from twin.alarms import format_duration
from twin.rules.evaluators.base import Evaluator, TrackedDevice, format_value
from twin.rules.evaluators.events import CountEvaluator
from twin.rules.evaluators.level import LevelEvaluator
from twin.rules.schema import PumpCyclingRule

if TYPE_CHECKING:
    from twin.rules.engine import Engine


class StartCounter:
    """The newest ``starts`` start times (engine clock) of each device, and which devices are raised."""

    def __init__(self, starts: int, within: float) -> None:
        self.starts, self.within = starts, within
        self.times: dict[str, list[float]] = {}  # sorted
        self.on: set[str] = set()

    def start(self, ev: Evaluator, eng: Engine, dev: TrackedDevice, now: float, why: str,
              occurred: float | None, *, when: float | None = None) -> None:
        """A start learned of at engine time ``now``, which happened at ``when`` (default: now)."""
        when = now if when is None else when
        times = self.times.setdefault(dev.id, [])
        bisect.insort(times, when)
        del times[:-self.starts]
        if len(times) == self.starts and times[-1] - times[0] <= self.within:
            self.on.add(dev.id)
            eng._device_condition(ev, dev, now, True,
                                  f"{self.starts} starts within {format_duration(times[-1] - times[0])} "
                                  f"(limit {self.starts} in {format_duration(self.within)}); last: {why}", occurred)

    def expire(self, ev: Evaluator, eng: Engine, now: float) -> None:
        """The window moved past the oldest of the counted starts."""
        for dev_id in list(self.on):
            oldest = self.times[dev_id][0]
            if now - oldest > self.within:
                self.on.discard(dev_id)
                eng._device_condition(ev, eng._devices[dev_id], oldest + self.within, False,
                                      f"fewer than {self.starts} starts in the last {format_duration(self.within)}")

    def snapshot(self) -> dict[str, Any]:
        return {"times": {d: list(t) for d, t in self.times.items() if t}, "on": sorted(self.on)}

    def restore(self, data: Any, engine: Engine) -> None:
        self.times = {d: sorted(float(x) for x in t)[-self.starts:] for d, t in data["times"].items()
                      if d in engine._devices}
        self.on.clear()
        self.on.update(d for d in data["on"] if d in self.times)


class PumpStartsEvaluator(CountEvaluator):
    """Starts from the pump's event. A count rule to the engine (indexed by its event code, ticked while raised),
    but on the engine's clock."""

    def __init__(self, rule: PumpCyclingRule) -> None:
        Evaluator.__init__(self, rule)
        assert rule.event is not None
        self.counter = StartCounter(rule.starts, rule.within)
        self.count, self.within, self.event_code = rule.starts, rule.within, rule.event
        self.on = self.counter.on

    def on_event(self, eng: Engine, dev: TrackedDevice, t: float, code: str, state: str, late: bool) -> None:
        if state == "cleared":
            return
        now = eng._engine_time(dev, t)
        self.counter.start(self, eng, dev, now, f"{code} {state}", t, when=min(now, t - dev.skew) if late else now)

    def tick(self, eng: Engine, now: float) -> None:
        self.counter.expire(self, eng, now)

    def is_on(self, device_id: str) -> bool:
        return device_id in self.counter.on

    def snapshot(self) -> Any:
        return self.counter.snapshot()

    def restore(self, data: Any, engine: Engine) -> None:
        self.counter.restore(data, engine)


class ReadingStartsEvaluator(LevelEvaluator):
    """Starts from readings: a true/false field turning true, or a pressure sawtooth. A level rule to the engine
    (indexed by its field, ticked while raised)."""

    def __init__(self, rule: PumpCyclingRule) -> None:
        Evaluator.__init__(self, rule)
        assert rule.field is not None
        self.field = rule.field
        f = catalogue.KINDS[rule.kind[0]].field(rule.field)
        self.unit = f" {f.unit}" if f is not None and f.unit else ""
        self.for_s = 0.0
        self.state = {}
        self.rise = rule.rise or 0.0
        self.counter = StartCounter(rule.starts, rule.within)
        self.pending = self.counter.on
        self.running: dict[str, bool] = {}  # true/false source: the newest value
        self.sawtooth: dict[str, list[float]] = {}  # pressure source: [low, peak, rising (1.0) or falling (0.0)]

    def on_value(self, eng: Engine, dev: TrackedDevice, t: float, v: bool | float) -> None:
        now = eng._engine_time(dev, t)
        if isinstance(v, bool):
            was = self.running.get(dev.id)
            self.running[dev.id] = v
            if v and was is False:
                self.counter.start(self, eng, dev, now, f"{self.field} turned true", t)
            return
        value = float(v)
        saw = self.sawtooth.get(dev.id)
        if saw is None:
            self.sawtooth[dev.id] = [value, value, 0.0]
            return
        low, peak, rising = saw
        if rising:  # a start was counted: wait for the fall that follows the pump's cut-out
            if value > peak:
                saw[1] = value
            elif value <= peak - self.rise / 2:
                saw[:] = [value, value, 0.0]
        elif value < low:
            saw[0] = value
        elif value - low >= self.rise:
            saw[:] = [low, value, 1.0]
            self.counter.start(self, eng, dev, now, f"{self.field} rose from {format_value(low)} to "
                                                    f"{format_value(value)}{self.unit}", t)

    def tick(self, eng: Engine, now: float) -> None:
        self.counter.expire(self, eng, now)

    def is_on(self, device_id: str) -> bool:
        return device_id in self.counter.on

    def snapshot(self) -> Any:
        return {**self.counter.snapshot(), "running": dict(self.running), "sawtooth": dict(self.sawtooth)}

    def restore(self, data: Any, engine: Engine) -> None:
        self.counter.restore(data, engine)
        self.running = {d: bool(v) for d, v in data.get("running", {}).items() if d in engine._devices}
        self.sawtooth = {d: [float(x) for x in v] for d, v in data.get("sawtooth", {}).items()
                         if d in engine._devices}


def pump_cycling_evaluator(rule: PumpCyclingRule) -> Evaluator:
    """The evaluator for the rule's source: the pump's event, or a field."""
    return PumpStartsEvaluator(rule) if rule.event is not None else ReadingStartsEvaluator(rule)
