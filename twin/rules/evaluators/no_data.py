"""The no-data rule: a device silent for too long (on the engine's clock), or reported offline."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from twin.alarms import format_duration
from twin.rules.evaluators.base import Evaluator, TrackedDevice
from twin.rules.schema import NoDataRule

if TYPE_CHECKING:
    from twin.rules.engine import Engine


class NoDataEvaluator(Evaluator):
    def __init__(self, rule: NoDataRule) -> None:
        super().__init__(rule)
        self.no_data_rule = rule
        self.after = {k: rule.after_for(k) for k in rule.kind}
        self.on: set[str] = set()

    def due(self, eng: Engine, dev: TrackedDevice) -> tuple[float, str]:
        """When this device's alarm falls due (if nothing is heard), and why."""
        due, offline = self._due(eng, dev)
        if offline:
            return due, "reported offline" + (
                f" for {format_duration(self.no_data_rule.offline_for)}" if self.no_data_rule.offline_for else "")
        return due, f"no message for {format_duration(self.after[dev.kind])}"

    def _due(self, eng: Engine, dev: TrackedDevice) -> tuple[float, bool]:
        """When this device's alarm falls due, and whether because it was reported offline."""
        base = dev.last_seen if dev.last_seen is not None else eng.epoch
        due = (base or 0.0) + self.after[dev.kind]
        if dev.online is False and dev.offline_since is not None:
            off = dev.offline_since + self.no_data_rule.offline_for
            if off < due:
                return off, True
        return due, False

    def check(self, eng: Engine, dev: TrackedDevice, now: float) -> float:
        """Raise if due; return the next time worth checking again (inf while raised)."""
        if dev.id in self.on:
            return math.inf
        due = self._due(eng, dev)[0]
        if now >= due:
            self.on.add(dev.id)
            eng._device_condition(self, dev, due, True, self.due(eng, dev)[1])
            return math.inf
        return due

    def heard(self, eng: Engine, dev: TrackedDevice, t: float) -> None:
        if dev.id in self.on:
            self.on.discard(dev.id)
            eng._device_condition(self, dev, t, False, "heard from again")

    def is_on(self, device_id: str) -> bool:
        return device_id in self.on

    def snapshot(self) -> Any:
        return sorted(self.on)

    def restore(self, data: Any, engine: Engine) -> None:
        self.on = {d for d in data if d in engine._devices}
