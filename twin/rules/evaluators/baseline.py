"""The drop-from-normal rule: a reading falls well below what is normal *for this device*, as learned from its
own recent readings, on the engine's clock.

Per device the evaluator keeps the readings of the last ``learn`` seconds as means of :data:`BUCKETS` equal
slices (a slice of a 24 h window is 30 min), so its state stays small whatever the reporting rate. The learned
normal is the median of the means of the completed slices (of the slice still filling while it is the only one):
robust to a slice that was odd (a test run, a short outage) and to a sawtooth such as a pressure-holding pump's,
whose slices average out to the middle of its band. The rule
raises when a reading is ``drop`` units (or ``drop_pct`` % of the normal, the larger when both are given) below
the normal and stays there for ``for``; it clears when a reading is back within half that drop. Readings taken
while the condition holds (pending or raised) are not learned, so a leak cannot teach the rule that low is
normal. Until the device has ``min_samples`` learned readings spanning ``warmup`` the rule only learns.

Time is the engine's clock only (a reading counts when it was received): no device clock moves a slice or a
``for``. A late reading (older than the device's newest) is ignored.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from typing import TYPE_CHECKING, Any

from twin.alarms import format_duration
from twin.rules.evaluators.base import TrackedDevice, format_value
from twin.rules.evaluators.level import LevelEvaluator
from twin.rules.schema import DropFromNormalRule

if TYPE_CHECKING:
    from twin.rules.engine import Engine

BUCKETS = 48  # slices of the learning window


class Learned:
    """One device under one drop-from-normal rule. Times are the engine's clock (epoch seconds)."""

    __slots__ = ("first", "last", "on", "samples", "since", "slices")

    def __init__(self) -> None:
        self.slices: deque[list[float]] = deque()  # [slice index, sum, count], oldest first
        self.first: float | None = None  # when the first learned reading was received
        self.samples = 0  # learned readings (all time)
        self.on = False
        self.since: float | None = None  # when the reading first fell past the limit, while pending
        self.last = 0.0  # newest reading while pending (named in the alarm when ``for`` passes)


class DropFromNormalEvaluator(LevelEvaluator):
    def __init__(self, rule: DropFromNormalRule) -> None:
        super().__init__(rule)
        self.for_s = rule.for_
        self.drop, self.drop_pct = rule.drop or 0.0, rule.drop_pct or 0.0
        self.learn, self.warmup, self.min_samples = rule.learn, rule.warmup, rule.min_samples
        self.slice_s = rule.learn / BUCKETS
        self.learned: dict[str, Learned] = {}

    # -- the learned normal ------------------------------------------------------------------------

    def _prune(self, st: Learned, now: float) -> None:
        oldest = math.floor((now - self.learn) / self.slice_s)
        while st.slices and st.slices[0][0] <= oldest:
            st.slices.popleft()

    def _learn(self, st: Learned, now: float, v: float) -> None:
        index = math.floor(now / self.slice_s)
        if st.slices and st.slices[-1][0] == index:
            st.slices[-1][1] += v
            st.slices[-1][2] += 1
        elif not st.slices or st.slices[-1][0] < index:
            st.slices.append([index, v, 1])
        st.first = now if st.first is None else st.first
        st.samples += 1

    def normal(self, device_id: str, now: float) -> float | None:
        """The device's learned normal at engine time ``now`` (None before the warm-up is over)."""
        st = self.learned.get(device_id)
        if st is None or st.first is None or st.samples < self.min_samples or now - st.first < self.warmup:
            return None
        self._prune(st, now)
        current = math.floor(now / self.slice_s)
        done = [total / n for i, total, n in st.slices if i < current]  # a slice still filling weighs nothing yet
        if not done:
            done = [total / n for _i, total, n in st.slices]
        return statistics.median(done) if done else None

    def _amount(self, normal: float) -> float:
        """How far below ``normal`` a reading must fall."""
        return max(self.drop, abs(normal) * self.drop_pct / 100.0)

    # -- readings ----------------------------------------------------------------------------------

    def on_value(self, eng: Engine, dev: TrackedDevice, t: float, v: bool | float) -> None:
        now = eng._engine_time(dev, t)
        value = float(v)
        st = self.learned.get(dev.id)
        if st is None:
            st = self.learned[dev.id] = Learned()
        normal = self.normal(dev.id, now)
        if normal is None:
            self._learn(st, now, value)
            return
        amount = self._amount(normal)
        if st.on:
            if value >= normal - amount / 2:
                st.on = False
                eng._device_condition(self, dev, now, False,
                                      f"{self.field}={format_value(value)}{self.unit}: back within "
                                      f"{amount / 2:.3g}{self.unit} of its learned normal {normal:.3g}{self.unit}", t)
            return
        if value > normal - amount:
            if st.since is not None:
                st.since = None
                self.pending.discard(dev.id)
            self._learn(st, now, value)
            return
        if st.since is None:
            st.since = now
        st.last = value
        if now - st.since >= self.for_s:
            self._raise(eng, dev, st, now, normal, t)
        else:
            self.pending.add(dev.id)

    def _raise(self, eng: Engine, dev: TrackedDevice, st: Learned, at: float, normal: float,
               occurred: float | None) -> None:
        held = at - (st.since if st.since is not None else at)
        st.on, st.since = True, None
        self.pending.discard(dev.id)
        amount = self._amount(normal)
        eng._device_condition(self, dev, at, True,
                              f"{self.field}={format_value(st.last)}{self.unit} is {normal - st.last:.3g}{self.unit} "
                              f"below its learned normal {normal:.3g}{self.unit} (limit {amount:.3g}{self.unit}"
                              + (f", for {format_duration(held)})" if held > 0 else ")"), occurred)

    def tick(self, eng: Engine, now: float) -> None:
        """Pending drops whose ``for`` has passed on the engine's clock."""
        for dev_id in list(self.pending):
            st = self.learned[dev_id]
            if st.since is None:
                self.pending.discard(dev_id)
                continue
            at = st.since + self.for_s
            normal = self.normal(dev_id, at)
            if now >= at and normal is not None:
                self._raise(eng, eng._devices[dev_id], st, at, normal, None)

    def is_on(self, device_id: str) -> bool:
        st = self.learned.get(device_id)
        return st is not None and st.on

    def snapshot(self) -> Any:
        return {d: [st.first, st.samples, st.on, st.since, st.last, [list(s) for s in st.slices]]
                for d, st in self.learned.items()}

    def restore(self, data: Any, engine: Engine) -> None:
        for d, (first, samples, on, since, last, slices) in data.items():
            if d not in engine._devices:
                continue
            st = self.learned[d] = Learned()
            st.first, st.samples, st.on = first, int(samples), bool(on)
            st.since, st.last = since, float(last)
            st.slices = deque([int(i), float(total), int(n)] for i, total, n in slices)
            if since is not None:
                self.pending.add(d)
