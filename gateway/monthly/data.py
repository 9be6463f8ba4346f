"""Gathering the monthly report of one community (:class:`MonthReport`) from PostgreSQL: the outcomes measured by
:func:`gateway.outcomes.outcomes` (headline figures, weekly series, per grid, false alarms per device kind, repeated
incidents), hotspots (:func:`gateway.web.hotspots_data.hotspots`), and what only the report shows: the month's worst
missed deadlines, tickets per day and category, care visits per level and patrol rounds per plan (the same replays of
:mod:`twin.outcomes.compute`, broken down). Does I/O; drawing it is :mod:`gateway.monthly.pdf`.

The month is the community's local calendar month; what is still open is judged at the end of the month, or now
for the current month (the cut-off).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from psycopg.rows import tuple_row

from gateway.api.pool import StoragePool
from gateway.care.store import visit_history
from gateway.monthly import measures as ms
from gateway.outcomes import outcomes
from gateway.patrols.store import checkins_between, patrols_started
from gateway.storage import Storage, fetch_rows
from gateway.tickets.rows import SELECT_TICKETS, TICKET_ROW
from gateway.web.hotspots_data import Hotspot, hotspots
from twin import patrols as pt
from twin.community import Community
from twin.outcomes import OutcomeTargets
from twin.outcomes.compute import CareHistory, patrol_rounds
from twin.tickets import known_people

log = logging.getLogger(__name__)

Values = dict[str, float | None]


@dataclass(frozen=True)
class MonthReport:
    """Everything the monthly PDF shows, measured over ``[start, end)`` (the community's local month)."""

    community: str
    name: str
    year: int
    month: int
    start: datetime
    end: datetime
    cutoff: datetime  # what is open is judged at this time (the month's end, or now)
    targets: OutcomeTargets
    values: Values  # outcome metric -> value over the month (twin.outcomes.METRICS and more)
    weeks: list[tuple[date, Values]]  # week start (clipped to the month) -> close_days, satisfaction
    sla_by_grid: dict[str, Values]  # grid name -> response_sla, resolution_sla
    per_day: list[tuple[date, int]]
    per_category: list[tuple[str, int]]
    false_by_kind: dict[str, tuple[int, int]]  # device kind -> (alarms, false alarms)
    hotspots: list[Hotspot]  # worst place first (gateway.web.hotspots_data)
    repeats: list[tuple[str, int]]  # place label -> incidents (>= 2)
    breaches: list[ms.Breach]
    care: ms.CareCoverage
    patrols: list[ms.PlanCoverage]
    building_names: dict[str, str] = field(default_factory=dict)
    people: dict[str, str] = field(default_factory=dict)  # worker id -> name

    @property
    def tickets(self) -> int:
        return sum(n for _, n in self.per_day)

    def place(self, building: str | None, floor: int | None) -> str:
        return place_label(self.building_names, building, floor)


def gather(pool: StoragePool, community: Community, year: int, month: int, *,
           now: datetime | None = None) -> MonthReport:
    """The report of ``community`` for the local month ``year-month``; ``now`` (default: the clock) cuts the current
    month off."""
    tz = community.tz
    start, end = ms.month_bounds(year, month, tz)
    first, nxt = ms.month_days(year, month)
    now = now or datetime.now(UTC)
    cutoff = min(end, now)
    with pool.storage() as st:
        tickets = fetch_rows(st.conn, TICKET_ROW, f"{SELECT_TICKETS} WHERE community = %s AND created_at >= %s "
                             "AND created_at < %s ORDER BY id", (community.id, start, end))
        care = _care(st, community, first, nxt, cutoff)
        patrols = _patrols(st, community, first, nxt, start, cutoff)
    grid_names = {g.id: g.name for g in community.grids}
    out = outcomes(pool, community, start, end, bucket="week", now=cutoff)
    spots = hotspots(pool, community, start, end, top=ms.TOP_PLACES)
    return MonthReport(
        community=community.id, name=community.name, year=year, month=month, start=start, end=end, cutoff=cutoff,
        targets=community.targets, values=dict(out.values),
        weeks=[(b.astimezone(tz).date(), v) for b, v in out.series],
        sla_by_grid={grid_names.get(g, g): v for g, v in out.by_grid.items()},
        per_day=ms.per_day(tickets, first, nxt, tz), per_category=ms.per_category(tickets),
        false_by_kind=dict(out.false_alarms_by_kind), hotspots=spots, repeats=list(out.repeats),
        breaches=ms.worst_breaches(tickets, cutoff), care=care, patrols=patrols,
        building_names={b.id: b.name for b in community.buildings}, people=known_people(community))


def place_label(names: dict[str, str], building: str | None, floor: int | None) -> str:
    """A building's name and floor as a place reads in either language (``3号楼 12F``, ``3号楼 B1``)."""
    name = names.get(building, building) if building else "-"
    if floor is None:
        return name
    return f"{name} {floor}F" if floor >= 0 else f"{name} B{-floor}"


def _care(st: Storage, c: Community, first: date, nxt: date, cutoff: datetime) -> ms.CareCoverage:
    """The care register replayed as :mod:`gateway.outcomes` does (counts only: no name is read)."""
    rows = fetch_rows(st.conn, tuple_row, "SELECT id, grid, level, registered_at FROM care_residents "
                      "WHERE community = %s ORDER BY id", (c.id,))
    visits, changes = visit_history(st.conn, c.id)
    histories = [CareHistory(int(i), grid, changes[i][0][1] if i in changes else level, at, visits.get(i, ()),
                             [(when, to) for when, _f, to in changes.get(i, ())]) for i, grid, level, at in rows]
    return ms.care_coverage(histories, {int(i): level for i, _g, level, _a in rows}, first, nxt, cutoff, c.tz)


def _patrols(st: Storage, c: Community, first: date, nxt: date, start: datetime, cutoff: datetime
             ) -> list[ms.PlanCoverage]:
    """Patrol rounds of the month as :mod:`gateway.outcomes` counts them, per plan."""
    plans = pt.default_plans()
    points = pt.checkpoints(c, plans)
    longest = max((p.every_days or 31 * (p.every_months or 1) for p in plans.plans), default=31)
    since = pt.local_start(first - timedelta(days=longest + 1), c.tz)
    checkins = [r.as_checkin() for r in checkins_between(st.conn, c.id, since, cutoff)]
    rounds = patrol_rounds(points, plans, checkins, tz=c.tz, now=cutoff, first=first, stop=nxt,
                           since=patrols_started(st.conn))
    return ms.patrol_coverage(rounds, plans, checkins, start, cutoff)
