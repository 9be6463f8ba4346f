"""REST routes of patrols and location under ``/api/v1`` (signed in: the API's bearer token). Does I/O.

==========================================  ===================================================================
``GET  /patrols/plans``                     the plans (source standard, interval) and the user's checkpoints
``GET  /patrols/status?grid=G1``            each checkpoint's state this period (done/due) and the last period's
``POST /patrols/checkins``                  ``{"token": "..."}`` (a QR code) or ``{"checkpoint": "...", "position":
                                            {...}}``; ``result`` ok/problem, ``note`` (a problem raises a ticket)
``GET  /patrols/checkins?hours=24``         check-ins of the user's grids
``POST /patrols/positions``                 ``{"lat", "lon", "accuracy_m", "at"}``: the worker's own position, on
                                            duty only (202)
``GET  /patrols/trails?hours=12&grid=G1``   positions of the workers the user may see, per worker
``GET  /patrols/nearest?ticket=12``         on-duty workers nearest to a ticket's (or ``building=``) place
==========================================  ===================================================================

Roles (docs/patrols.md): a worker posts only their own position (the body names nobody) and sees only their own
trail; supervisors see their grids; operators and admins everything. Positions and check-ins are rate limited per
user (429 with ``Retry-After``).

No ``from __future__ import annotations``: FastAPI reads the annotations at run time.
"""

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from gateway.api.fieldwork import PositionBody
from gateway.api.text import storable
from gateway.patrols.store import MAX_NOTE, CheckinRow, Patrols, PositionRow
from gateway.ratelimit import PerKeyLimiter
from gateway.tickets.service import API_PREFIX, TicketService
from twin import patrols as pt
from twin.community import Community
from twin.people import User
from twin.tickets import InvalidInput

IdText = Annotated[str, Query(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")]
POSITION_BURST, POSITION_EVERY_S = 5, 10.0  # a phone posts every ~60 s; a few more (a retry) are fine
CHECKIN_BURST, CHECKIN_EVERY_S = 20, 3.0


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FixBody(PositionBody):
    accuracy_m: float | None = Field(default=None, ge=0, le=pt.MAX_ACCURACY_M, allow_inf_nan=False,
                                     description="the fix's accuracy radius in metres")
    at: datetime | None = Field(default=None, description="when the phone took the fix (ISO-8601 with offset; "
                                                          "default now; not ahead of the server by over 2 min)")


class CheckinBody(_Body):
    token: str | None = Field(default=None, min_length=3, max_length=200, pattern=r"^[A-Za-z0-9_.\-]+~[A-Za-z0-9_\-]+$",
                              description="the token of the checkpoint's QR code")
    checkpoint: str | None = Field(default=None, min_length=3, max_length=140, pattern=r"^[A-Za-z0-9_.\-]+$")
    position: PositionBody | None = None
    result: Literal["ok", "problem"] = "ok"
    note: Annotated[str, AfterValidator(storable), Field(max_length=MAX_NOTE)] = ""
    at: datetime | None = Field(default=None, description="when (default now; up to a day late)")


def checkin_json(r: CheckinRow) -> dict[str, Any]:
    return {"id": r.id, "checkpoint": r.checkpoint, "plan": r.plan, "grid": r.grid, "worker": r.worker,
            "at": r.at.isoformat(), "how": r.how, "result": r.result, "note": r.note,
            "distance_m": None if r.distance_m is None else round(r.distance_m, 1), "ticket": r.ticket_id}


def status_json(s: pt.CheckpointStatus) -> dict[str, Any]:
    cp = s.checkpoint
    return {"checkpoint": cp.id, "plan": cp.plan, "building": cp.building, "grid": cp.grid, "label": cp.label,
            "period": [s.start.isoformat(), s.end.isoformat()], "state": s.state, "previous": s.previous,
            "missed": s.missed, "last": None if s.last is None else {"at": s.last.at.isoformat(),
                                                                        "worker": s.last.worker,
                                                                        "result": s.last.result}}


def _limited(limiter: PerKeyLimiter, user: User, every_s: float) -> None:
    if not limiter.take(user.username):
        raise HTTPException(429, f"too many requests from {user.username}; try again in {every_s:g} s",
                            headers={"Retry-After": str(int(every_s))})


def router(communities: Iterable[Community], service: Callable[[], Iterator[TicketService]],
           current_user: Callable[..., User]) -> APIRouter:
    """The patrol routes, with the app's ticket-service and user dependencies."""
    cs = {c.id: c for c in communities}
    Svc = Annotated[TicketService, Depends(service)]
    Me = Annotated[User, Depends(current_user)]
    Community_ = Annotated[IdText | None, Query(alias="community")]
    r = APIRouter(prefix=API_PREFIX, tags=["patrols"])
    positions = PerKeyLimiter(POSITION_BURST, POSITION_EVERY_S)
    checkins = PerKeyLimiter(CHECKIN_BURST, CHECKIN_EVERY_S)

    def patrols(svc: TicketService, code: str | None) -> Patrols:
        if code is not None and code not in cs:
            raise InvalidInput(f"unknown community {code!r}; known: {', '.join(cs)}")
        return Patrols(svc, cs[code or next(iter(cs))])

    @r.get("/patrols/plans", summary="Patrol plans with their source standards, and the user's checkpoints")
    def plans(svc: Svc, user: Me, community: Community_ = None) -> dict[str, Any]:
        p = patrols(svc, community)
        return {"radius_m": p.plans.radius_m, "anchor": p.plans.anchor.isoformat(),
                "plans": [pl.model_dump() for pl in p.plans.plans],
                "checkpoints": [{"id": c.id, "plan": c.plan, "building": c.building, "grid": c.grid, "label": c.label,
                                 "x": c.x, "y": c.y} for c in p.visible(user)]}

    @r.get("/patrols/status", summary="Each checkpoint's state this period, and whether the last one was missed")
    def status(svc: Svc, user: Me, grid: IdText | None = None, community: Community_ = None) -> dict[str, Any]:
        rows = patrols(svc, community).status(user, grid)
        return {"checkpoints": [status_json(s) for s in rows],
                "due": sum(s.state == "due" for s in rows), "missed": sum(s.missed for s in rows)}

    @r.post("/patrols/checkins", status_code=201, summary="Check in at a checkpoint (QR token or position)")
    def check_in(body: CheckinBody, svc: Svc, user: Me, community: Community_ = None) -> dict[str, Any]:
        _limited(checkins, user, CHECKIN_EVERY_S)
        if (body.token is None) == (body.checkpoint is None):
            raise InvalidInput("send either token (a scanned QR code) or checkpoint with position")
        if body.checkpoint is not None and body.position is None:
            raise InvalidInput("a check-in by position needs the phone's position")
        p = body.position
        row = patrols(svc, community).check_in(
            user, token=body.token, checkpoint=body.checkpoint, result=body.result, note=body.note, at=body.at,
            position=None if p is None else (p.lat, p.lon, p.accuracy_m))
        return checkin_json(row)

    @r.get("/patrols/checkins", summary="Check-ins of the user's grids, newest first")
    def list_checkins(svc: Svc, user: Me, hours: Annotated[float, Query(gt=0, le=24 * 62)] = 24,
                      grid: IdText | None = None, community: Community_ = None) -> dict[str, Any]:
        p = patrols(svc, community)
        rows = p.checkins(user, since=p.now() - timedelta(hours=hours), grid=grid)
        return {"checkins": [checkin_json(x) for x in rows]}

    @r.post("/patrols/positions", status_code=202, summary="The worker's own position while on duty")
    def post_position(body: FixBody, svc: Svc, user: Me, community: Community_ = None) -> dict[str, Any]:
        _limited(positions, user, POSITION_EVERY_S)
        row = patrols(svc, community).post_position(user, body.lat, body.lon, body.accuracy_m, body.at)
        return {"at": row.at.isoformat(), "x": round(row.x, 1), "y": round(row.y, 1)}

    @r.get("/patrols/trails", summary="Position trails of the workers the user may see")
    def trails(svc: Svc, user: Me, hours: Annotated[float, Query(gt=0, le=24 * 30)] = 12,
               grid: IdText | None = None, community: Community_ = None) -> dict[str, Any]:
        out: dict[str, list[dict[str, Any]]] = {}
        for row in patrols(svc, community).trails(user, hours=hours, grid=grid):
            out.setdefault(row.worker_id or row.worker, []).append(_fix_json(row))
        return {"retention_days": pt.RETENTION.days, "workers": out}

    @r.get("/patrols/nearest", summary="On-duty workers nearest to a ticket's building (urgent tickets)")
    def nearest(svc: Svc, user: Me, ticket: Annotated[int | None, Query(ge=1, le=2**62)] = None,
                building: IdText | None = None, community: Community_ = None) -> dict[str, Any]:
        if (ticket is None) == (building is None):
            raise InvalidInput("give ticket or building")
        if ticket is not None:
            t = svc.get(ticket, user)
            if t.building is None:
                raise InvalidInput(f"ticket {ticket} names no building")
            building, community = t.building, t.community
        assert building is not None
        found = patrols(svc, community).nearest(user, building)
        return {"building": building, "workers": [{"distance_m": round(d, 1), "worker": f.worker,
                                                   "worker_id": f.worker_id, "at": f.at.isoformat()}
                                                  for d, f in found]}

    return r


def _fix_json(row: PositionRow) -> dict[str, Any]:
    return {"at": row.at.isoformat(), "x": round(row.x, 1), "y": round(row.y, 1), "accuracy_m": row.accuracy_m}
