"""The dose rule: a time-weighted exposure, as a home CO alarm integrates it (GB/T 34004, EN 50291-1), on the
engine's clock.

Per device the evaluator keeps the exposure ``dose`` in field units x minutes: while the newest reading ``c``
stands, it grows at ``c - baseline`` per minute (so it drains while ``c`` is below the baseline) and never goes
below zero. A constant ``c`` above the baseline therefore raises after ``dose / (c - baseline)`` minutes and a
concentration at or below the baseline never raises, however long it lasts. The constants and the alarm curve
they meet are in docs/alarms.md.

Time is the engine's clock only: a reading counts from when it was received, and the crossing instant between
two readings (or between a reading and a tick) is computed on that clock. A device's clock never moves a dose.
A reading older than the device's newest (late) is ignored: it says nothing about the exposure now.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twin.alarms import format_duration
from twin.rules.evaluators.base import TrackedDevice, format_value
from twin.rules.evaluators.level import LevelEvaluator
from twin.rules.schema import DoseRule

if TYPE_CHECKING:
    from twin.rules.engine import Engine


class Exposure:
    """One device under one dose rule. Times are the engine's clock (epoch seconds)."""

    __slots__ = ("at", "dose", "on", "read_at", "value")

    def __init__(self, at: float, value: float) -> None:
        self.dose = 0.0  # units x minutes, as of ``at``
        self.at = at  # engine time the dose was last brought up to date
        self.value = value  # the newest reading: stands until ``read_at + hold``
        self.read_at = at  # engine time the newest reading was received
        self.on = False


class DoseEvaluator(LevelEvaluator):
    def __init__(self, rule: DoseRule) -> None:
        super().__init__(rule)
        self.for_s = 0.0
        self.baseline, self.limit, self.clear_at = rule.baseline, rule.dose, rule.clear
        self.hold = {k: rule.hold_for(k) for k in rule.kind}
        self.exposure: dict[str, Exposure] = {}

    def _advance(self, eng: Engine, dev: TrackedDevice, x: Exposure, now: float) -> None:
        """Bring the dose up to ``now``, raising or clearing at the instant it crosses its limit."""
        expires = x.read_at + self.hold[dev.kind]
        end = min(now, expires)
        if end <= x.at:
            x.at = max(x.at, now)
            if now >= expires:  # the reading no longer stands: nothing changes until the next one
                self.pending.discard(dev.id)
            return
        slope = (x.value - self.baseline) / 60.0  # units x minutes per second
        start, before = x.at, x.dose
        after = max(0.0, before + slope * (end - start))
        x.dose, x.at = after, now
        if not x.on and slope > 0 and after >= self.limit:
            x.on = True
            crossed = start + (self.limit - before) / slope
            eng._device_condition(self, dev, crossed, True, self._raise_detail(x, crossed), None)
        elif x.on and slope < 0 and after <= self.clear_at:
            x.on = False
            crossed = start + (self.clear_at - before) / slope
            eng._device_condition(self, dev, crossed, False,
                                  f"{self.field}={format_value(x.value)}{self.unit}: exposure drained to "
                                  f"{self.clear_at:g}{self.unit}·min", None)
        self._track(dev.id, x)

    def _raise_detail(self, x: Exposure, at: float) -> str:
        minutes = self.limit / (x.value - self.baseline)
        return (f"{self.field}={format_value(x.value)}{self.unit}: exposure above {self.baseline:g}{self.unit} reached "
                f"{self.limit:g}{self.unit}·min (at this level: alarm after {format_duration(minutes * 60)})")

    def _track(self, dev_id: str, x: Exposure) -> None:
        """Ticks are needed while the dose can still cross a limit between readings."""
        if (x.value > self.baseline and not x.on) or (x.on and x.value < self.baseline):
            self.pending.add(dev_id)
        else:
            self.pending.discard(dev_id)

    def on_value(self, eng: Engine, dev: TrackedDevice, t: float, v: bool | float) -> None:
        now = eng._engine_time(dev, t)
        x = self.exposure.get(dev.id)
        if x is None:
            x = self.exposure[dev.id] = Exposure(now, float(v))
        else:
            self._advance(eng, dev, x, now)
            x.value, x.read_at, x.at = float(v), max(now, x.read_at), max(now, x.at)
        self._track(dev.id, x)

    def tick(self, eng: Engine, now: float) -> None:
        for dev_id in list(self.pending):
            self._advance(eng, eng._devices[dev_id], self.exposure[dev_id], now)

    def is_on(self, device_id: str) -> bool:
        x = self.exposure.get(device_id)
        return x is not None and x.on

    def dose_of(self, device_id: str) -> float | None:
        """The device's exposure (units x minutes) as of its last update, or None if never read."""
        x = self.exposure.get(device_id)
        return None if x is None else x.dose

    def snapshot(self) -> Any:
        return {d: [x.dose, x.at, x.value, x.read_at, x.on] for d, x in self.exposure.items()}

    def restore(self, data: Any, engine: Engine) -> None:
        for d, (dose, at, value, read_at, on) in data.items():
            if d not in engine._devices:
                continue
            x = self.exposure[d] = Exposure(float(at), float(value))
            x.dose, x.read_at, x.on = float(dose), float(read_at), bool(on)
            self._track(d, x)
