"""Thresholds on the pressure at a riser's most unfavourable point (``at: most_unfavourable_point``).

A pipe-pressure sensor low in a building reads the static head of the water above it on top of the pressure at
the riser's top: about 0.01 MPa a metre, 0.9 MPa at the bottom of a 33-storey riser. One threshold for every
sensor therefore false-alarms high at the bottom and misses a lost top low down. This evaluator compares
``reading - static head between the sensor and the riser top`` (:mod:`twin.hydraulics`, from the sensor's floor
in the community) instead, so every sensor of a riser judges the same quantity: the pressure where it is lowest.
Everything else (hysteresis, ``for``, late readings) is the threshold rule's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twin import hydraulics
from twin.rules.evaluators.base import TrackedDevice
from twin.rules.evaluators.level import ThresholdEvaluator
from twin.rules.schema import ThresholdRule

if TYPE_CHECKING:
    from twin.rules.engine import Engine


class RiserThresholdEvaluator(ThresholdEvaluator):
    def __init__(self, rule: ThresholdRule) -> None:
        super().__init__(rule)
        self.offsets: dict[str, float] = {}  # device -> MPa it reads above the riser top (its static head)

    def offset(self, eng: Engine, dev: TrackedDevice) -> float:
        off = self.offsets.get(dev.id)
        if off is None:
            d = eng.community.device(dev.id)
            head = hydraulics.head_below_top(eng.community, d) if d is not None else None
            off = self.offsets[dev.id] = hydraulics.static_offset(head) if head is not None else 0.0
        return off

    def _at_top(self, eng: Engine, dev: TrackedDevice, v: bool | float) -> bool | float:
        return v if isinstance(v, bool) else round(v - self.offset(eng, dev), 4)

    def on_value(self, eng: Engine, dev: TrackedDevice, t: float, v: bool | float) -> None:
        super().on_value(eng, dev, t, self._at_top(eng, dev, v))

    def on_late(self, eng: Engine, dev: TrackedDevice, t: float, v: bool | float) -> None:
        super().on_late(eng, dev, t, self._at_top(eng, dev, v))

    def raise_detail(self, v: bool | float, held: float) -> str:
        return f"at the most unfavourable point (riser top): {super().raise_detail(v, held)}"

    def clear_detail(self, v: bool | float) -> str:
        return f"at the most unfavourable point (riser top): {super().clear_detail(v)}"


def threshold_evaluator(rule: ThresholdRule) -> ThresholdEvaluator:
    """A threshold rule's evaluator: at the sensor, or at its riser's most unfavourable point."""
    return RiserThresholdEvaluator(rule) if rule.at == "most_unfavourable_point" else ThresholdEvaluator(rule)
