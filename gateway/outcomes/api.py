"""``GET /api/v1/outcomes``: a community's outcomes over a period (supervisors: their grids; operators and admins:
everything; workers: 403) with the community file's baseline and target per metric. Does I/O.

``from`` and ``to`` are local calendar days, both included (default: the last 12 weeks up to today); ``bucket`` is
``day`` (at most 120 days), ``week`` (from Monday) or ``month``; ``community`` defaults to the server's first.

No ``from __future__ import annotations``: FastAPI reads the annotations at run time.
"""

from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from gateway.outcomes.store import read_outcomes
from gateway.tickets.service import API_PREFIX, Forbidden, TicketService
from twin.community import Community
from twin.outcomes import LOWER_IS_BETTER, METRICS, Outcomes, OutcomeTargets, Values
from twin.people import Role, User
from twin.tickets import InvalidInput, known_people

DEFAULT_WEEKS = 12


def period(community: Community, start: date | None, end: date | None,
           today: date) -> tuple[date, date, datetime, datetime]:
    """Local days ``[start, end]`` (defaults: 12 weeks up to ``today``) and the aware interval they make."""
    end = end or today
    start = start or end - timedelta(weeks=DEFAULT_WEEKS) + timedelta(days=1)
    if not (2000 <= start.year <= 2999 and 2000 <= end.year <= 2999):
        raise InvalidInput("from and to must be dates in 2000..2999")
    if end < start:
        raise InvalidInput(f"from ({start}) must not be after to ({end})")
    tz = community.tz
    return start, end, datetime.combine(start, time(0), tz), datetime.combine(end + timedelta(days=1), time(0), tz)


def targets_json(targets: OutcomeTargets, values: Values) -> dict[str, dict[str, Any]]:
    """Per metric: the community file's baseline and target, whether ``values`` meet it, which way is better."""
    out: dict[str, dict[str, Any]] = {}
    for m in METRICS:
        t = getattr(targets, m)
        out[m] = {"baseline": t.baseline, "target": t.target, "value": values.get(m),
                  "met": targets.met(m, values.get(m)), "lower_is_better": m in LOWER_IS_BETTER}
    return out


def outcomes_json(o: Outcomes, community: Community) -> dict[str, Any]:
    """The API's answer for ``o`` (names from the community file)."""
    people = known_people(community)
    grid_names = {g.id: g.name for g in community.grids}
    worker_grids: dict[str, list[str]] = {}
    for g in community.grids:
        for w in g.workers:
            worker_grids.setdefault(w.id, []).append(g.id)
    return {
        "community": o.community, "timezone": community.timezone, "bucket": o.bucket,
        "start": o.start.isoformat(), "end": o.end.isoformat(), "metrics": list(METRICS),
        "values": o.values, "targets": targets_json(community.targets, o.values),
        "series": [{"start": s.isoformat(), "values": v} for s, v in o.series],
        "by_grid": [{"grid": g, "name": grid_names.get(g, g), "values": v} for g, v in o.by_grid.items()],
        "by_worker": [{"worker": w, "name": people.get(w, w), "grids": worker_grids.get(w, []), "values": v}
                      for w, v in o.by_worker.items()],
        "false_alarms_by_kind": [{"kind": k, "alarm_tickets": n, "false_alarms": f,
                                  "rate": round(f / n, 3) if n else None}
                                 for k, (n, f) in o.false_alarms_by_kind.items()],
        "repeats": [{"place": p, "incidents": n} for p, n in o.repeats],
    }


def visible_grids(user: User) -> list[str] | None:
    """The grids ``user`` measures (None: all); a worker may not (Forbidden)."""
    if user.role not in (Role.SUPERVISOR, Role.OPERATOR, Role.ADMIN):
        raise Forbidden(f"outcomes need the role supervisor, operator or admin; you are {user.role.value}")
    return None if user.sees_everything() else list(user.grids)


def router(communities: Iterable[Community], service: Callable[[], Iterator[TicketService]],
           current_user: Callable[..., User]) -> APIRouter:
    """The outcomes route, with the app's ticket-service and user dependencies."""
    cs = {c.id: c for c in communities}
    Svc = Annotated[TicketService, Depends(service)]
    Me = Annotated[User, Depends(current_user)]
    r = APIRouter(prefix=API_PREFIX, tags=["operator"])

    @r.get("/outcomes", summary="Outcomes over time with baseline and target (supervisor: their grids; operator)",
           description="Mean time to close, satisfaction, response and resolution SLA, reports per worker, care "
                       "visits on time, patrols done, false alarms per device kind and repeated incidents per "
                       "place, per bucket, grid and worker (docs/outcomes.md).")
    def outcomes(svc: Svc, user: Me,
                 start: Annotated[date | None, Query(alias="from", description="first local day")] = None,
                 end: Annotated[date | None, Query(alias="to", description="last local day (included)")] = None,
                 bucket: Literal["day", "week", "month"] = "week",
                 community: Annotated[str | None, Query(max_length=64)] = None) -> dict[str, Any]:
        grids = visible_grids(user)
        if community is not None and community not in cs:
            raise InvalidInput(f"unknown community {community[:64]!r}; known: {', '.join(cs)}")
        c = cs[community] if community is not None else next(iter(cs.values()))
        now = svc.clock()
        first, last, a, b = period(c, start, end, now.astimezone(c.tz).date())
        o = read_outcomes(svc.conn, c, a, b, bucket=bucket, grids=grids, now=now)
        return {**outcomes_json(o, c), "from": first.isoformat(), "to": last.isoformat()}

    return r
