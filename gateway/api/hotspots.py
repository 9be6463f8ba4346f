"""``GET /api/v1/hotspots?community=&from=&to=``: places by incidents (device alarms + one-click reports) over local
calendar days [from, to], worst first, each with its source split, main category and root-cause hints
(:mod:`twin.hotspots`, :mod:`gateway.web.hotspots_data`). Supervisor (their grids' buildings), operator, admin.

No ``from __future__ import annotations``: FastAPI reads the annotations at run time.
"""

from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from gateway.tickets.service import API_PREFIX, Forbidden, TicketService
from gateway.web.hotspots_data import MAX_DAYS, labeller, read_groups
from twin.community import Community
from twin.hotspots import rank
from twin.people import Role, User
from twin.tickets import InvalidInput

ROLES = (Role.SUPERVISOR, Role.OPERATOR, Role.ADMIN)
CommunityId = Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$",
                                          description="community id (default: the only one served)")]


def period(c: Community, start: date, end: date) -> tuple[datetime, datetime]:
    """Local calendar days [start, end] of the community as an aware [from, to) interval; InvalidInput when bad."""
    if not (2000 <= start.year <= 2999 and 2000 <= end.year <= 2999):
        raise InvalidInput("from and to must be dates in 2000..2999")
    if end < start:
        raise InvalidInput(f"to ({end}) is before from ({start})")
    if (end - start).days + 1 > MAX_DAYS:
        raise InvalidInput(f"the period is {(end - start).days + 1} days; at most {MAX_DAYS}")
    return (datetime.combine(start, time(0), c.tz), datetime.combine(end + timedelta(days=1), time(0), c.tz))


def router(communities: Iterable[Community], service: Callable[[], Iterator[TicketService]],
           current_user: Callable[..., User]) -> APIRouter:
    cs = {c.id: c for c in communities}
    Svc = Annotated[TicketService, Depends(service)]
    Me = Annotated[User, Depends(current_user)]
    r = APIRouter(prefix=API_PREFIX)

    @r.get("/hotspots", tags=["operator"],
           summary="Places by incidents (alarms + one-click reports), worst first, with root-cause hints "
                   "(supervisor, operator, admin)")
    def hotspots(svc: Svc, user: Me, start: Annotated[date, Query(alias="from")],
                 end: Annotated[date, Query(alias="to")], community: CommunityId = None,
                 top: Annotated[int | None, Query(ge=1, le=1000)] = None) -> dict[str, Any]:
        if user.role not in ROLES:
            raise Forbidden(f"this needs the role {' or '.join(r.value for r in ROLES)}; you are {user.role.value}")
        if community is None:
            if len(cs) != 1:
                raise InvalidInput(f"community is required: one of {', '.join(sorted(cs))}")
            c = next(iter(cs.values()))
        else:
            found = cs.get(community)
            if found is None:
                raise InvalidInput(f"unknown community {community!r}; known: {', '.join(sorted(cs))}")
            c = found
        a, b = period(c, start, end)
        groups = read_groups(svc.storage, c, a, b)
        if not user.sees_everything():
            mine = {x.id for x in c.buildings if user.may_see_grid(c.grid_of(x))}
            groups = [g for g in groups if g.building in mine]
        spots = rank(groups, labeller(), top=top)
        return {"community": c.id, "from": start.isoformat(), "to": end.isoformat(), "timezone": c.timezone,
                "sensor": sum(h.sensor for h in spots), "reports": sum(h.reports for h in spots),
                "hotspots": [h.as_dict() for h in spots]}

    return r
