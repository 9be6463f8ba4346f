"""The care-inactivity rule: no activity in an elderly resident's home for too long, raised inside a local
daily window."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple

from twin.alarms import Subject, format_duration
from twin.community import Community
from twin.rules.evaluators.base import Evaluator, utc_datetime
from twin.rules.schema import CareInactivityRule

if TYPE_CHECKING:
    from twin.rules.engine import Engine


class CareUnitState:
    """One care unit under one care-inactivity rule."""

    __slots__ = ("base", "last", "on", "subject")

    def __init__(self, subject: Subject) -> None:
        self.subject = subject
        self.last: float | None = None  # engine time of the newest activity
        self.on = False
        self.base = 0.0  # last activity (or start) when raised


class CareWatch(NamedTuple):
    """A care-inactivity rule watching a device of its care unit: which of its fields and events are activity."""

    evaluator: CareInactivityEvaluator
    fields: tuple[str, ...]
    events: frozenset[str]


def _seconds_of_day(hhmm: str) -> int:
    return int(hhmm[:2]) * 3600 + int(hhmm[3:]) * 60


class CareInactivityEvaluator(Evaluator):
    def __init__(self, rule: CareInactivityRule, community: Community) -> None:
        super().__init__(rule)
        self.care_rule = rule
        self.fields: dict[str, tuple[str, ...]] = {}  # device kind -> fields that show activity
        self.events: dict[str, frozenset[str]] = {}  # device kind -> events that show activity
        for a in rule.activity:
            if a.field is not None:
                self.fields[a.kind] = (*self.fields.get(a.kind, ()), a.field)
            if a.event is not None:
                self.events[a.kind] = self.events.get(a.kind, frozenset()) | {a.event}
        self.units = {cu.unit: CareUnitState(Subject(cu.unit, "care_unit", cu.building, cu.floor, None))
                      for cu in community.care_units if self.applies_building(cu.building)}
        self.offset = rule.offset_s
        w = rule.window
        self.window = (_seconds_of_day(w[0]), _seconds_of_day(w[1])) if w else None

    def applies_building(self, building: str) -> bool:
        return self.rule.buildings is None or building in self.rule.buildings

    def watch(self, kind: str) -> CareWatch:
        """What this rule counts as activity on a device of ``kind``."""
        return CareWatch(self, self.fields.get(kind, ()), self.events.get(kind, frozenset()))

    def activity(self, eng: Engine, unit: str, t: float, what: str) -> None:
        st = self.units.get(unit)
        if st is None:
            return
        if st.last is None or t > st.last:
            st.last = t
            eng._next_care_check = min(eng._next_care_check, t + self.care_rule.after)
        if st.on and t > st.base:
            st.on = False
            eng._raise_or_clear(self, st.subject, t, False, f"activity: {what}")

    def _open(self, t: float) -> float:
        """``t`` if inside the daily window, else the next opening of the window."""
        if self.window is None:
            return t
        a, b = self.window
        s = (t + self.offset) % 86400
        inside = a <= s < b if a < b else (s >= a or s < b)
        return t if inside else t + (a - s) % 86400

    def check(self, eng: Engine, now: float) -> float:
        """Raise for every unit whose inactivity fell due; return the next time worth checking again."""
        nxt = math.inf
        for st in self.units.values():
            if st.on:
                continue
            base = st.last if st.last is not None else (eng.epoch or now)
            due = self._open(base + self.care_rule.after)
            if now >= due:
                st.on, st.base = True, base
                local = utc_datetime(base + self.offset).strftime("%Y-%m-%d %H:%M")
                eng._raise_or_clear(self, st.subject, due, True,
                                    f"no activity for {format_duration(due - base)} (since {local} "
                                    f"{self.care_rule.utc_offset}{'' if st.last is not None else ', start of watch'})")
            else:
                nxt = min(nxt, due)
        return nxt

    def snapshot(self) -> Any:
        return {u: [s.last, s.on, s.base] for u, s in self.units.items() if s.last is not None or s.on}

    def restore(self, data: Any, engine: Engine) -> None:
        for u, (last, on, base) in data.items():
            st = self.units.get(u)
            if st is not None:
                st.last, st.on, st.base = last, bool(on), float(base)
