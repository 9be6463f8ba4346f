"""Reading what :func:`outcomes` measures: tickets created in the period (with their ratings), which of them are
one-click reports, the care register's visits and level changes, and patrol check-ins. Does I/O (one pooled
connection per call); the measuring is :mod:`twin.outcomes.compute`."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import psycopg

from gateway.api.pool import StoragePool
from gateway.care.store import CareRegister, visit_history
from gateway.patrols.store import checkins_between, patrols_started
from gateway.storage import fetch_rows, fetch_values
from gateway.tickets.rows import SELECT_TICKETS, TICKET_ROW
from twin import patrols as pt
from twin.community import Community
from twin.outcomes import BUCKETS, Outcomes
from twin.outcomes.compute import CareHistory, Records, care_dues, local_dates, measure, patrol_rounds
from twin.tickets import InvalidInput, Ticket

MAX_DAYS = 366 * 2  # the longest period asked for at once
MAX_DAY_BUCKETS = 120  # by day at most this many days


def check_period(start: datetime, end: datetime, bucket: str) -> None:
    """:class:`InvalidInput` (what and why) for a period or bucket that cannot be measured."""
    if bucket not in BUCKETS:
        raise InvalidInput(f"bucket must be one of {', '.join(BUCKETS)}, not {bucket[:20]!r}")
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidInput("the period's start and end need a time zone")
    if end <= start:
        raise InvalidInput(f"the period must end after it starts (from {start.date()} to {end.date()})")
    if end - start > timedelta(days=MAX_DAYS):
        raise InvalidInput(f"a period is at most {MAX_DAYS} days")
    if bucket == "day" and end - start > timedelta(days=MAX_DAY_BUCKETS):
        raise InvalidInput(f"by day, a period is at most {MAX_DAY_BUCKETS} days: choose week or month")


def outcomes(pool: StoragePool, community: Community, start: datetime, end: datetime, *,
             bucket: Literal["day", "week", "month"] = "week", grids: Collection[str] | None = None,
             now: datetime | None = None) -> Outcomes:
    """The community's outcomes over ``[start, end)`` (aware), bucketed in its local time; ``grids``: only these
    grids (a supervisor's); ``now``: the time that decides what is still open (default: the clock)."""
    check_period(start, end, bucket)
    with pool.storage() as st:
        return read_outcomes(st.conn, community, start, end, bucket=bucket, grids=grids, now=now)


def read_outcomes(conn: psycopg.Connection[Any], community: Community, start: datetime, end: datetime, *,
                  bucket: Literal["day", "week", "month"] = "week", grids: Collection[str] | None = None,
                  now: datetime | None = None) -> Outcomes:
    """:func:`outcomes` on a connection the caller holds."""
    check_period(start, end, bucket)
    now = now or datetime.now(UTC)
    tz = community.tz
    first, stop = local_dates(start, end, tz)
    keep = None if grids is None else set(grids)

    def mine(grid: str | None) -> bool:
        return keep is None or (grid is not None and grid in keep)

    where = "community = %s AND created_at >= %s AND created_at < %s"
    tickets: list[Ticket] = [t for t in fetch_rows(conn, TICKET_ROW, f"{SELECT_TICKETS} WHERE {where}",
                                                   (community.id, start, end)) if mine(t.grid)]
    report_ids = {int(i) for i in fetch_values(conn, f"SELECT ticket_id FROM ticket_reports WHERE {where}",
                                               (community.id, start, end))}

    residents = [r for r in CareRegister(conn, {community.id: community}, now).rows(community=community.id)
                 if mine(r.grid)]
    visits, changes = visit_history(conn, community.id)
    histories = [CareHistory(r.id, r.grid, changes[r.id][0][1] if r.id in changes else r.level, r.registered_at,
                             visits.get(r.id, ()), [(at, to) for at, _f, to in changes.get(r.id, ())])
                 for r in residents]

    plans = pt.default_plans()
    points = [p for p in pt.checkpoints(community, plans) if mine(p.grid)]
    longest = max((p.every_days or 31 * (p.every_months or 1) for p in plans.plans), default=31)
    since = datetime.combine(first - timedelta(days=longest + 1), datetime.min.time(), tz)
    checkins = [r.as_checkin() for r in checkins_between(conn, community.id, since, end + timedelta(days=1))]
    rounds = patrol_rounds(points, plans, checkins, tz=tz, now=now, first=first, stop=stop,
                           since=patrols_started(conn))

    grid_workers = {g.id: [w.id for w in g.workers] for g in community.grids if mine(g.id)}
    records = Records(tickets=tickets, report_ids=report_ids, care=care_dues(histories, tz, now), patrols=rounds,
                      kinds={d.id: d.kind for d in community.devices}, grid_workers=grid_workers,
                      buildings={b.id: b.name for b in community.buildings})
    return measure(community.id, start, end, bucket, tz, now, records)
