"""The correlation rule: signals (events, or other rules' conditions) from several devices of one place
starting within a window."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from twin.alarms import Subject, format_duration
from twin.rules.evaluators.base import Evaluator, TrackedDevice
from twin.rules.schema import CorrelationRule

if TYPE_CHECKING:
    from twin.rules.engine import Engine


class CorrelationState:
    """One place (device, floor or building) under one correlation rule."""

    __slots__ = ("active", "on", "subject")

    def __init__(self, subject: Subject) -> None:
        self.subject = subject
        self.active: dict[tuple[str, str], float] = {}  # (device, signal name) -> onset (engine time)
        self.on = False


class Onset(NamedTuple):
    """When a device's first active signal started (engine time). Sorts by time."""

    at: float
    device: str


def _signal_label(name: str) -> str:
    """``fire_alarm`` from the signal name ``event:fire_alarm`` (or ``gas_level2`` from ``rule:gas_level2``)."""
    return name.split(":", 1)[1]


class CorrelationEvaluator(Evaluator):
    def __init__(self, rule: CorrelationRule) -> None:
        super().__init__(rule)
        self.correlation_rule = rule
        self.state: dict[str, CorrelationState] = {}

    def signal(self, eng: Engine, dev: TrackedDevice, name: str, t: float, on: bool,
               occurred: float | None = None) -> None:
        """A signal of ``dev`` went on or off at engine time ``t`` (onsets of different devices compare on it)."""
        if not self.applies(dev):
            return
        subject = eng._scope_subject(self.correlation_rule.scope, dev)
        if subject is None:
            return
        st = self.state.get(subject.id)
        if st is None:
            st = self.state[subject.id] = CorrelationState(subject)
        key = (dev.id, name)
        if not on:
            if st.active.pop(key, None) is not None and st.on and not st.active:
                st.on = False
                eng._raise_or_clear(self, subject, t, False, f"{dev.id}: {_signal_label(name)} cleared", occurred)
            return
        if key in st.active:
            return
        muted = self.muted_by(dev)
        if muted:
            eng.book.suppressed(self.policy, subject, t,
                                f"{dev.id}: {_signal_label(name)} (suppressed: {', '.join(muted)} active)",
                                eng._events, occurred)
            return
        new_device = all(d != dev.id for d, _ in st.active)
        st.active[key] = t
        devices = self._devices_within(st)
        if devices is None:
            return
        if not st.on:
            st.on = True
            eng._raise_or_clear(self, subject, t, True, self._describe(devices), occurred)
        elif new_device:
            eng._raise_or_clear(self, subject, t, True, self._describe(devices), occurred)

    def _devices_within(self, st: CorrelationState) -> list[Onset] | None:
        """``min_devices`` different devices whose onsets lie within ``within`` of each other, or None."""
        first: dict[str, float] = {}
        for (d, _sig), onset in st.active.items():
            first[d] = min(onset, first.get(d, onset))
        onsets = sorted(Onset(o, d) for d, o in first.items())
        n, w = self.correlation_rule.min_devices, self.correlation_rule.within
        for i in range(len(onsets) - n + 1):
            if onsets[i + n - 1].at - onsets[i].at <= w:
                return onsets[i:i + n]
        return None

    def _describe(self, devices: list[Onset]) -> str:
        if len(devices) == 1:
            return f"{devices[0].device}: one signal, verify on site"
        span = devices[-1].at - devices[0].at
        return f"{len(devices)} devices within {format_duration(span)}: {', '.join(o.device for o in devices)}"

    def snapshot(self) -> Any:
        return {k: [v.on, [[d, sig, o] for (d, sig), o in v.active.items()],
                    [v.subject.type, v.subject.building, v.subject.floor, v.subject.device]]
                for k, v in self.state.items() if v.active or v.on}

    def restore(self, data: Any, engine: Engine) -> None:
        for subject_id, (on, active, (stype, building, floor, device)) in data.items():
            st = self.state[subject_id] = CorrelationState(Subject(subject_id, stype, building, floor, device))
            st.on = bool(on)
            st.active = {(d, sig): float(o) for d, sig, o in active if d in engine._devices}
