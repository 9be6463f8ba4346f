"""Event rules: state (raised while an event code is active) and count (N events within a window)."""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Any

from twin.alarms import format_duration
from twin.rules.evaluators.base import Evaluator, TrackedDevice
from twin.rules.schema import CountRule, StateRule

if TYPE_CHECKING:
    from twin.rules.engine import Engine


class EventEvaluator(Evaluator):
    """State and count rules: driven by the device's events."""

    def on_event(self, eng: Engine, dev: TrackedDevice, t: float, code: str, state: str, late: bool) -> None:
        raise NotImplementedError


class StateEvaluator(EventEvaluator):
    def __init__(self, rule: StateRule) -> None:
        super().__init__(rule)
        self.codes = rule.event
        self.active_by_device: dict[str, set[str]] = {}  # device -> its active codes among ``codes``

    def on_event(self, eng: Engine, dev: TrackedDevice, t: float, code: str, state: str, late: bool) -> None:
        if late:
            return
        active = self.active_by_device.setdefault(dev.id, set())
        if state == "active":
            active.add(code)
            eng._device_condition(self, dev, eng._engine_time(dev, t), True, f"{code} active", t)
        elif state == "cleared" and code in active:
            active.discard(code)
            if not active:
                eng._device_condition(self, dev, eng._engine_time(dev, t), False, f"{code} cleared", t)

    def is_on(self, device_id: str) -> bool:
        return bool(self.active_by_device.get(device_id))

    def snapshot(self) -> Any:
        return {d: sorted(c) for d, c in self.active_by_device.items() if c}

    def restore(self, data: Any, engine: Engine) -> None:
        self.active_by_device = {d: set(c) for d, c in data.items() if d in engine._devices}


class CountEvaluator(EventEvaluator):
    def __init__(self, rule: CountRule) -> None:
        super().__init__(rule)
        self.count, self.within, self.event_code = rule.count, rule.within, rule.event
        self.times: dict[str, list[float]] = {}  # device -> device times of its newest ``count`` events
        self.on: set[str] = set()

    def on_event(self, eng: Engine, dev: TrackedDevice, t: float, code: str, state: str, late: bool) -> None:
        if state == "cleared":
            return
        times = self.times.setdefault(dev.id, [])
        bisect.insort(times, t)  # a late event still counts, in its place
        if len(times) > self.count:
            del times[0]
        if len(times) == self.count and times[-1] - times[0] <= self.within:
            self.on.add(dev.id)
            eng._device_condition(self, dev, eng._engine_time(dev, t), True,
                     f"{self.count} x {code} within {format_duration(times[-1] - times[0])} "
                     f"(limit {self.count} in {format_duration(self.within)})", t)

    def tick(self, eng: Engine, now: float) -> None:
        """The window (on the device's clock) moved past the oldest of the N events."""
        for dev_id in list(self.on):
            times = self.times[dev_id]
            dev = eng._devices[dev_id]
            if now + dev.skew - times[0] > self.within:
                self.on.discard(dev_id)
                at = times[0] + self.within
                eng._device_condition(self, dev, eng._engine_time(dev, at), False,
                         f"fewer than {self.count} in the last {format_duration(self.within)}", at)

    def is_on(self, device_id: str) -> bool:
        return device_id in self.on

    def snapshot(self) -> Any:
        return {"times": {d: t for d, t in self.times.items() if t}, "on": sorted(self.on)}

    def restore(self, data: Any, engine: Engine) -> None:
        self.times = {d: [float(x) for x in t][-self.count:] for d, t in data["times"].items() if d in engine._devices}
        self.on = {d for d in data["on"] if d in self.times}
