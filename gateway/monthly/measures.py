"""What the monthly report measures, from rows already read: the month's bounds in the community's local time, the
worst SLA breaches, tickets per day and category, weekly close time and satisfaction, care visits due and made on
time per level, patrol periods done per plan, and (until :mod:`gateway.outcomes` and the hotspot analysis answer)
the headline outcomes and repeats. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo

from twin import care
from twin import patrols as pt
from twin.outcomes.compute import CareHistory, PatrolRound, care_dues
from twin.tickets import Ticket, TicketState

_MONTH = re.compile(r"^([0-9]{4})-([0-9]{2})$")
WORST_BREACHES = 10
TOP_PLACES = 10


class MonthError(ValueError):
    """A --month that is not a month we can report on (the message says why)."""


def parse_month(text: str) -> tuple[int, int]:
    """(year, month) of ``YYYY-MM`` with the year in 2000..2999."""
    m = _MONTH.match(text.strip())
    if m is None:
        raise MonthError(f"{text!r} is not a month like 2026-11 (YYYY-MM)")
    year, month = int(m.group(1)), int(m.group(2))
    if not 2000 <= year <= 2999:
        raise MonthError(f"{text!r}: the year must lie in 2000..2999")
    if not 1 <= month <= 12:
        raise MonthError(f"{text!r}: the month must be 01..12")
    return year, month


def month_days(year: int, month: int) -> tuple[date, date]:
    """(first day, first day of the next month)."""
    first = date(year, month, 1)
    nxt = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    return first, nxt


def month_bounds(year: int, month: int, tz: tzinfo) -> tuple[datetime, datetime]:
    """[start, end) of the local month as aware datetimes."""
    first, nxt = month_days(year, month)
    return datetime.combine(first, time(0), tz), datetime.combine(nxt, time(0), tz)


# -- tickets --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Breach:
    """A ticket's worst missed deadline: which clock, when it was due, how late it was done (or still is)."""

    ticket: int
    category: str
    building: str | None
    floor: int | None
    clock: str  # respond | resolve | arrive | release
    deadline: datetime
    late: timedelta
    worker: str | None
    done: bool  # False: still not done at the report's cut-off


def _clocks(t: Ticket) -> list[tuple[str, datetime | None, datetime | None]]:
    return [("respond", t.respond_by, t.accepted_at or t.responded_at), ("resolve", t.resolve_by, t.resolved_at),
            ("arrive", t.arrive_by, t.arrived_at), ("release", t.release_by, t.released_at)]


def worst_breaches(tickets: Iterable[Ticket], cutoff: datetime, n: int = WORST_BREACHES) -> list[Breach]:
    """The ``n`` tickets whose worst deadline was missed by most (a deadline still open at ``cutoff`` counts up to
    it); cancelled tickets are left out."""
    out: list[Breach] = []
    for t in tickets:
        if t.state is TicketState.CANCELLED:
            continue
        worst: Breach | None = None
        for clock, deadline, done_at in _clocks(t):
            if deadline is None or deadline >= cutoff:
                continue
            late = (min(done_at, cutoff) if done_at is not None else cutoff) - deadline
            if late > timedelta(0) and (worst is None or late > worst.late):
                worst = Breach(t.id, t.category, t.building, t.floor, clock, deadline, late, t.assignee,
                               done_at is not None and done_at <= cutoff)
        if worst is not None:
            out.append(worst)
    return sorted(out, key=lambda b: (-b.late, b.ticket))[:n]


def per_day(tickets: Iterable[Ticket], first: date, nxt: date, tz: tzinfo) -> list[tuple[date, int]]:
    counts = Counter(t.created_at.astimezone(tz).date() for t in tickets)
    days = [first + timedelta(days=i) for i in range((nxt - first).days)]
    return [(d, counts.get(d, 0)) for d in days]


def per_category(tickets: Iterable[Ticket]) -> list[tuple[str, int]]:
    return sorted(Counter(t.category for t in tickets).items(), key=lambda kv: (-kv[1], kv[0]))


def _share(ok: int, n: int) -> float | None:
    return ok / n if n else None


# -- care and patrols (the schedule replays of :mod:`twin.outcomes.compute`, broken down) --------------------------


@dataclass(slots=True)
class CareLevel:
    due: int = 0  # visits decided in the month (made, or due and not made by the cut-off)
    on_time: int = 0


@dataclass(slots=True)
class CareCoverage:
    levels: dict[str, CareLevel] = field(default_factory=lambda: {lv: CareLevel() for lv in care.LEVELS})
    overdue: int = 0  # residents overdue at the cut-off
    residents: int = 0

    @property
    def on_time_share(self) -> float | None:
        return _share(sum(v.on_time for v in self.levels.values()), sum(v.due for v in self.levels.values()))


def care_coverage(histories: Sequence[CareHistory], levels: Mapping[int, str], first: date, nxt: date,
                  cutoff: datetime, tz: tzinfo) -> CareCoverage:
    """Visits due and made on time in [first, nxt) per level (the resident's level now), as
    :func:`twin.outcomes.compute.care_dues` decides them at ``cutoff``; and the residents overdue then: a due date
    passed with no visit since."""
    out = CareCoverage()
    dues = care_dues(histories, tz, cutoff)
    for d in dues:
        if first <= d.day < nxt:
            lv = out.levels.setdefault(levels.get(d.resident, "green"), CareLevel())
            lv.due += 1
            lv.on_time += d.on_time
    last_visit = {h.resident: max(h.visits).astimezone(tz).date() if h.visits else None for h in histories}
    overdue = {d.resident for d in dues if not d.on_time
               and (last_visit.get(d.resident) is None or d.due > last_visit[d.resident])}  # type: ignore[operator]
    out.residents = sum(h.registered_at < cutoff for h in histories)
    out.overdue = len(overdue)
    return out


@dataclass(frozen=True, slots=True)
class PlanCoverage:
    plan: str
    periods: int  # checkpoint rounds that ended in the month (by the cut-off)
    done: int
    checkins: int  # check-ins in the month


def patrol_coverage(rounds: Iterable[PatrolRound], plans: pt.Plans, checkins: Iterable[pt.CheckIn],
                    start: datetime, cutoff: datetime) -> list[PlanCoverage]:
    """Per plan: the rounds of :func:`twin.outcomes.compute.patrol_rounds` done or not, and the month's check-ins."""
    counts: dict[str, list[int]] = {p.id: [0, 0, 0] for p in plans.plans}
    for r in rounds:
        c = counts.setdefault(r.checkpoint.split(".", 1)[0], [0, 0, 0])
        c[0] += 1
        c[1] += r.done
    for ci in checkins:
        if start <= ci.at < cutoff:
            counts.setdefault(ci.checkpoint.split(".", 1)[0], [0, 0, 0])[2] += 1
    return [PlanCoverage(plan, n, done, k) for plan, (n, done, k) in counts.items()]
