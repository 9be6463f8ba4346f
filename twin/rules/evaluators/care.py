"""The care-inactivity rule: no activity in an elderly resident's home for too long (a window per care level),
raised inside a local daily window, never for a home not yet watched that long, and not while the resident is
away (in hospital, with family: an operator's status, :class:`CareAway`)."""

from __future__ import annotations

import math
from datetime import timedelta, timezone, tzinfo
from typing import TYPE_CHECKING, Any, NamedTuple

from twin.alarms import Subject, format_duration
from twin.community import Community
from twin.rules.evaluators.base import DailyWindow, Evaluator, local_seconds, utc_datetime
from twin.rules.schema import CareInactivityRule

if TYPE_CHECKING:
    from twin.rules.engine import Engine


class CareAway(NamedTuple):
    """A care unit's resident is away (in hospital, with family): its inactivity rules are suspended. Times are
    the engine's clock; ``until`` None means until an operator says the resident is back."""

    since: float
    by: str
    reason: str | None = None
    until: float | None = None


class CareUnitState:
    """One care unit under one care-inactivity rule."""

    __slots__ = ("after", "base", "last", "on", "since", "subject")

    def __init__(self, subject: Subject, after: float) -> None:
        self.subject = subject
        self.after = after  # how long without activity raises, for this unit's care level
        self.last: float | None = None  # engine time of the newest activity
        self.since: float | None = None  # engine time the unit was first heard (or its resident came back)
        self.on = False
        self.base = 0.0  # last activity (or start of watch) when raised


class CareWatch(NamedTuple):
    """A care-inactivity rule watching a device of its care unit: which of its fields and events are activity."""

    evaluator: CareInactivityEvaluator
    fields: tuple[str, ...]
    events: frozenset[str]


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
        self.units = {cu.unit: CareUnitState(Subject(cu.unit, "care_unit", cu.building, cu.floor, None),
                                             rule.after_for(cu.level))
                      for cu in community.care_units if self.applies_building(cu.building)}
        self.tz: tzinfo = (timezone(timedelta(seconds=rule.offset_s)) if rule.utc_offset is not None
                           else community.tz)
        self.window = DailyWindow.of(rule.window) if rule.window else None

    def applies_building(self, building: str) -> bool:
        return self.rule.buildings is None or building in self.rule.buildings

    def watch(self, kind: str) -> CareWatch:
        """What this rule counts as activity on a device of ``kind``."""
        return CareWatch(self, self.fields.get(kind, ()), self.events.get(kind, frozenset()))

    def observed(self, eng: Engine, unit: str, t: float) -> None:
        """A sensor of ``unit`` was heard at engine time ``t``: the unit is watched from its first message on."""
        st = self.units.get(unit)
        if st is not None and st.since is None:
            st.since = t
            eng._next_care_check = min(eng._next_care_check, t + st.after)

    def activity(self, eng: Engine, unit: str, t: float, what: str) -> None:
        st = self.units.get(unit)
        if st is None:
            return
        if st.last is None or t > st.last:
            st.last = t
            eng._next_care_check = min(eng._next_care_check, t + st.after)
        if st.on and t > st.base:
            st.on = False
            eng._raise_or_clear(self, st.subject, t, False, f"activity: {what}")

    def away(self, eng: Engine, unit: str, status: CareAway | None, t: float) -> None:
        """The resident left (``status``) or came back (None) at engine time ``t``."""
        st = self.units.get(unit)
        if st is None:
            return
        if status is not None:
            if st.on:
                st.on = False
                eng._raise_or_clear(self, st.subject, t, False,
                                    f"resident away ({status.reason or 'no reason given'}, by {status.by})")
        else:
            st.since = t  # watched afresh: the days away are not inactivity
            eng._next_care_check = min(eng._next_care_check, t + st.after)

    def _open(self, t: float) -> float:
        """``t`` if inside the daily window, else the next opening of the window (local time of the zone)."""
        if self.window is None:
            return t
        s = local_seconds(t, self.tz)
        return t if self.window.holds(s) else t + (self.window.start - s) % 86400

    def check(self, eng: Engine, now: float) -> float:
        """Raise for every unit whose inactivity fell due; return the next time worth checking again."""
        nxt = math.inf
        for unit, st in self.units.items():
            if st.on or st.since is None or unit in eng.care_away:
                continue  # raised, never heard (its sensors' no-data rule speaks), or away
            base = max(st.since, st.last) if st.last is not None else st.since
            due = self._open(base + st.after)
            if now >= due:
                st.on, st.base = True, base
                local = utc_datetime(base).astimezone(self.tz).strftime("%Y-%m-%d %H:%M %z")
                start = "" if st.last is not None and st.last >= st.since else ", start of watch"
                eng._raise_or_clear(self, st.subject, due, True,
                                    f"no activity for {format_duration(due - base)} (since {local}{start}; "
                                    f"limit {format_duration(st.after)})")
            else:
                nxt = min(nxt, due)
        return nxt

    def snapshot(self) -> Any:
        return {u: [s.last, s.on, s.base, s.since] for u, s in self.units.items()
                if s.last is not None or s.on or s.since is not None}

    def restore(self, data: Any, engine: Engine) -> None:
        for u, item in data.items():
            st = self.units.get(u)
            if st is not None:
                last, on, base = item[:3]
                st.last, st.on, st.base = last, bool(on), float(base)
                # snapshots before the watch start was kept: watched since the last activity, if any
                st.since = item[3] if len(item) > 3 else last
