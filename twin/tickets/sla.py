"""SLA arithmetic: targets per priority (tighter for life-safety rules), deadlines, the clocks running in each
state, and the warnings (75 %) and breaches they raise. Pure functions of a ticket and a time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import NamedTuple

from twin.tickets.model import AlertLevel, Clock, Priority, Ticket, TicketState, require_aware


@dataclass(frozen=True, slots=True)
class Target:
    """How long a ticket may take. ``resolve_s`` None: resolved by plan (complex tickets)."""

    respond_s: float
    resolve_s: float | None
    progress_every_s: float | None = None  # complex: plan due with the response, then feedback this often
    source: str = ""
    arrive_s: float | None = None  # life-safety: someone on site (到场), e.g. entrapment rescuers (TSG T5002-2017)
    release_s: float | None = None  # entrapment: the trapped people out (解困)


@dataclass(frozen=True, slots=True)
class Deadlines:
    respond_by: datetime
    resolve_by: datetime | None
    progress_by: datetime | None
    arrive_by: datetime | None = None
    release_by: datetime | None = None


HOUR = 3600.0
DEFAULT_TARGETS: Mapping[Priority, Target] = {
    Priority.URGENT: Target(2 * HOUR, 24 * HOUR, source="seed 3.3: urgent respond 2 h, resolve 24 h"),
    Priority.GENERAL: Target(24 * HOUR, 72 * HOUR, source="seed 3.3: general respond 24 h, resolve 72 h"),
    Priority.COMPLEX: Target(24 * HOUR, None, 72 * HOUR,
                             source="seed 3.3: complex respond 24 h, then plan and staged progress feedback"),
}


@dataclass(frozen=True, slots=True)
class SlaPolicy:
    """SLA targets per priority, and tighter site targets for life-safety rules (by rule id)."""

    targets: Mapping[Priority, Target] = field(default_factory=lambda: dict(DEFAULT_TARGETS))
    life_safety: Mapping[str, Target] = field(default_factory=dict)
    warn_fraction: float = 0.75

    def __post_init__(self) -> None:
        if not 0 < self.warn_fraction < 1:
            raise ValueError(f"warn_fraction {self.warn_fraction} must lie strictly between 0 and 1")
        missing = [p.value for p in Priority if p not in self.targets]
        if missing:
            raise ValueError(f"SLA targets missing for {', '.join(missing)}")

    def is_life_safety(self, rule: str | None) -> bool:
        return rule is not None and rule in self.life_safety

    def target(self, priority: Priority, rule: str | None) -> Target:
        """The priority's target, tightened by the rule's life-safety target where that is stricter."""
        base = self.targets[priority]
        strict = self.life_safety.get(rule) if rule is not None else None
        if strict is None:
            return base
        if strict.resolve_s is None or base.resolve_s is None:
            resolve = base.resolve_s if strict.resolve_s is None else strict.resolve_s
        else:
            resolve = min(base.resolve_s, strict.resolve_s)
        return Target(min(base.respond_s, strict.respond_s), resolve,
                      base.progress_every_s if resolve is None else None, strict.source or base.source,
                      strict.arrive_s, strict.release_s)

    def deadlines(self, priority: Priority, rule: str | None, start: datetime) -> Deadlines:
        t = self.target(priority, rule)
        respond_by = start + timedelta(seconds=t.respond_s)
        resolve_by = None if t.resolve_s is None else start + timedelta(seconds=t.resolve_s)
        # complex: the handling plan is due with the response; progress feedback then follows every N h
        progress_by = respond_by if t.resolve_s is None and t.progress_every_s is not None else None
        return Deadlines(respond_by, resolve_by, progress_by, _after(start, t.arrive_s), _after(start, t.release_s))


def _after(start: datetime, seconds: float | None) -> datetime | None:
    return None if seconds is None else start + timedelta(seconds=seconds)


@dataclass(frozen=True, slots=True)
class Alert:
    """A deadline reached 75 % (``warn``) or passed (``breach``). ``due`` is when that happened."""

    clock: Clock
    level: AlertLevel
    due: datetime
    deadline: datetime

    @property
    def key(self) -> str:
        return f"{self.level}:{self.clock.value}"


# -- SLA clocks ----------------------------------------------------------------------------------------

_AWAITING_RESPONSE = frozenset({TicketState.ACCEPTED, TicketState.DISPATCHED, TicketState.REOPENED})


class RunningClock(NamedTuple):
    """An SLA clock running in the ticket's current state: from ``start`` to ``deadline``."""

    clock: Clock
    start: datetime
    deadline: datetime


def running_clocks(t: Ticket) -> list[RunningClock]:
    """Every clock running in the ticket's current state."""
    if not t.open:
        return []
    out: list[RunningClock] = []
    if t.state in _AWAITING_RESPONSE or (t.state is TicketState.ESCALATED and t.accepted_at is None):
        out.append(RunningClock(Clock.RESPOND, t.clock_start, t.respond_by))
    if t.arrive_by is not None and t.arrived_at is None:
        out.append(RunningClock(Clock.ARRIVE, t.clock_start, t.arrive_by))
    if t.release_by is not None and t.released_at is None:
        out.append(RunningClock(Clock.RELEASE, t.clock_start, t.release_by))
    if t.resolve_by is not None:
        out.append(RunningClock(Clock.RESOLVE, t.clock_start, t.resolve_by))
    if t.progress_by is not None and t.progress_from is not None:
        out.append(RunningClock(Clock.PROGRESS, t.progress_from, t.progress_by))
    return out


def warn_at(start: datetime, deadline: datetime, fraction: float) -> datetime:
    """When ``fraction`` of the time from ``start`` to ``deadline`` has passed (whole microseconds)."""
    return start + timedelta(microseconds=int((deadline - start) / timedelta(microseconds=1) * fraction))


_ONE_MICROSECOND = timedelta(microseconds=1)


def alerts_due(t: Ticket, now: datetime, warn_fraction: float) -> list[Alert]:
    """Alerts that are due at ``now`` and not yet raised in this cycle, oldest first.

    A warning is due from 75 % of a clock's time on (``now >= warn_at``); a breach once the
    deadline has passed (``now > deadline``: acting exactly at the deadline is on time).
    A breach makes the warning of the same clock moot, so only the breach is returned then.
    """
    require_aware(now)
    out: list[Alert] = []
    for clock, start, deadline in running_clocks(t):
        if now > deadline and f"breach:{clock.value}" not in t.alerts:
            out.append(Alert(clock, "breach", deadline, deadline))
        elif now <= deadline and f"warn:{clock.value}" not in t.alerts:
            w = warn_at(start, deadline, warn_fraction)
            if now >= w:
                out.append(Alert(clock, "warn", w, deadline))
    return sorted(out, key=lambda a: a.due)


def next_alert_at(t: Ticket, warn_fraction: float) -> datetime | None:
    """The earliest time at which :func:`alerts_due` will return something new (None: nothing pending).

    Stored with the ticket, so a watchdog (after a restart too) only looks at tickets that are due.
    """
    times: list[datetime] = []
    for clock, start, deadline in running_clocks(t):
        if f"warn:{clock.value}" not in t.alerts and f"breach:{clock.value}" not in t.alerts:
            times.append(warn_at(start, deadline, warn_fraction))
        if f"breach:{clock.value}" not in t.alerts:
            times.append(deadline + _ONE_MICROSECOND)
    return min(times) if times else None


def note_alert(t: Ticket, a: Alert) -> Ticket:
    """Remember that ``a`` was raised (a breach also counts toward the on-time KPI)."""
    keys = set(t.alerts) | {a.key}
    if a.level == "breach":
        keys.add(f"warn:{a.clock.value}")
    return replace(t, alerts=frozenset(keys), breaches=t.breaches + (a.level == "breach"))


def remaining(t: Ticket, now: datetime) -> dict[str, float]:
    """Seconds left on each running clock (negative: overdue), for the worker's view."""
    return {rc.clock.value: (rc.deadline - now).total_seconds() for rc in running_clocks(t)}
