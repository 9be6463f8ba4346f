"""REST routes of the care register under ``/api/v1`` (signed in: the API's bearer token). Does I/O.

=============================================  ==============================================================
``GET  /care/residents``                       the register: ``level``, ``grid``, ``overdue``, ``community`` filters
``GET  /care/residents/{id}``                  one resident: schedule, planned visits, visit and level history
``POST /care/residents/{id}/visits``           log a visit (multipart: ``note``, ``checks`` as a JSON object of
                                               yes/no answers, ``visited_at`` ISO-8601 with offset, ``photo``)
``POST /care/residents/{id}/level``            ``{"level": "red", "reason": "...", "version": 3}``: a level change
``GET  /care/visits/{id}/photo``               a visit's photo
``GET  /care/evacuation?building=B1``          residents with limited mobility in a building (fire SOP)
=============================================  ==============================================================

Who sees what (twin/care.py, docs/care.md): the grid's workers and supervisors and admins see personal data;
operators see masked names (``张**``), units and schedules and may not log visits (403); workers and supervisors of
other grids get 404 for a resident of another grid and do not find them in lists.

No ``from __future__ import annotations``: FastAPI reads the annotations at run time.
"""

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, File, Form, Path, Query, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from gateway.care.store import MAX_NOTE, MAX_REASON, CareRegister
from gateway.settings import Settings
from gateway.tickets.photos import PHOTO_TYPES, Photo, PhotoRejected
from gateway.tickets.service import API_PREFIX, TicketService
from twin import care
from twin.community import Community
from twin.people import User
from twin.tickets import InvalidInput

ResidentId = Annotated[int, Path(ge=1, le=2**62, description="resident id")]
VisitId = Annotated[int, Path(ge=1, le=2**62, description="visit id")]
IdText = Annotated[str, Query(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")]


class LevelBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    level: Literal["red", "yellow", "green"]
    reason: Annotated[str, Field(min_length=1, max_length=MAX_REASON, description="why (kept in the history)")]
    version: Annotated[int | None, Field(ge=1, le=2**31 - 1, description="the version you saw")] = None


def resident_json(v: care.ResidentView, *, planned: bool = False) -> dict[str, Any]:
    s = v.schedule
    out: dict[str, Any] = {
        "id": v.id, "community": v.community, "unit": v.unit, "building": v.building, "floor": v.floor,
        "grid": v.grid, "level": v.level, "name": v.name, "masked": not v.personal, "category": v.category,
        "phone": v.phone, "mobility_limited": v.mobility_limited, "version": v.version,
        "last_visit_at": v.last_visit_at.isoformat() if v.last_visit_at else None,
        "due": s.due.isoformat(), "status": s.status, "overdue": s.overdue, "days_overdue": s.days_overdue,
        "overdue_ticket": v.overdue_ticket,
    }
    if planned:
        out["planned"] = [d.isoformat() for d in care.next_dates(v.level, s.due)]
    return out


def visit_json(v: care.VisitView) -> dict[str, Any]:
    return {"id": v.id, "visited_at": v.visited_at.isoformat(), "recorded_at": v.recorded_at.isoformat(),
            "visitor": v.visitor, "note": v.note, "checks": v.checks,
            "photo_url": f"{API_PREFIX}/care/visits/{v.id}/photo" if v.has_photo else None}


def _checks(text: str) -> dict[str, bool]:
    if not text.strip():
        return {}
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise InvalidInput('checks: a JSON object of yes/no answers, e.g. {"well": true}') from None
    if not isinstance(data, dict):
        raise InvalidInput('checks: a JSON object of yes/no answers, e.g. {"well": true}')
    try:
        return care.check_answers(data.items())
    except ValueError as exc:
        raise InvalidInput(f"checks: {exc}") from None


def _when(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput("visited_at: an ISO-8601 time with its offset, e.g. 2026-12-02T10:30:00+08:00") from None
    if at.tzinfo is None:
        raise InvalidInput("visited_at needs its offset, e.g. 2026-12-02T10:30:00+08:00")
    return at


def _photo(photo: UploadFile | None, max_bytes: int) -> Photo | None:
    if photo is None:
        return None
    ctype = photo.content_type or ""
    if ctype.split(";")[0].strip().lower() not in PHOTO_TYPES:
        raise PhotoRejected(415, f"photo content type {ctype or '(none)'!r} is not accepted; send "
                                 f"{', '.join(PHOTO_TYPES)}")
    data = photo.file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise PhotoRejected(413, f"photo is larger than the limit of {max_bytes} bytes")
    return Photo(ctype, data)


def router(communities: Iterable[Community], service: Callable[[], Iterator[TicketService]],
           current_user: Callable[..., User], settings: Settings) -> APIRouter:
    """The care register's routes, with the app's ticket-service and user dependencies."""
    cs = {c.id: c for c in communities}
    Svc = Annotated[TicketService, Depends(service)]
    Me = Annotated[User, Depends(current_user)]
    r = APIRouter(prefix=API_PREFIX, tags=["care"])
    max_photo = min(settings.tickets.photo_max_bytes, 5 * 1024 * 1024)

    def register(svc: TicketService) -> CareRegister:
        return CareRegister(svc.conn, {**cs, **svc.communities}, svc.clock())

    def community(code: str | None) -> str | None:
        if code is not None and code not in cs:
            raise InvalidInput(f"unknown community {code!r}; known: {', '.join(cs)}")
        return code

    @r.get("/care/residents", summary="The care register (关爱台账): level, next visit due, overdue first")
    def residents(svc: Svc, user: Me, level: Literal["red", "yellow", "green"] | None = None,
                  grid: IdText | None = None, overdue: bool = False,
                  community_id: Annotated[IdText | None, Query(alias="community")] = None) -> dict[str, Any]:
        reg = register(svc)
        reg.seed_all()
        found = reg.residents(user, community=community(community_id), level=level, grid=grid, overdue_only=overdue)
        return {"residents": [resident_json(v) for v in found]}

    @r.get("/care/residents/{resident_id}", summary="One resident: schedule, visits and level changes")
    def resident(resident_id: ResidentId, svc: Svc, user: Me) -> dict[str, Any]:
        reg = register(svc)
        v = reg.resident(user, resident_id)
        return {**resident_json(v, planned=True),
                "visits": [visit_json(x) for x in reg.visits(user, resident_id)],
                "level_changes": [{"at": c.at.isoformat(), "by": c.by, "from": c.from_level, "to": c.to_level,
                                   "reason": c.reason} for c in reg.level_changes(user, resident_id)]}

    @r.post("/care/residents/{resident_id}/visits", status_code=201, summary="Log a visit (multipart form)")
    def log_visit(resident_id: ResidentId, svc: Svc, user: Me,
                  note: Annotated[str, Form(max_length=MAX_NOTE)] = "",
                  checks: Annotated[str, Form(max_length=2000, description='{"well": true, ...}')] = "",
                  visited_at: Annotated[str | None, Form(max_length=40)] = None,
                  photo: Annotated[UploadFile | None, File(description="JPEG, PNG or WebP")] = None,
                  ) -> dict[str, Any]:
        reg = register(svc)
        v = reg.log_visit(user, resident_id, note=note, checks=_checks(checks), visited_at=_when(visited_at),
                          photo=_photo(photo, max_photo))
        return {"visit": visit_json(v), "resident": resident_json(reg.resident(user, resident_id), planned=True)}

    @r.post("/care/residents/{resident_id}/level", summary="Change the care level, with the reason")
    def change_level(resident_id: ResidentId, body: LevelBody, svc: Svc, user: Me) -> dict[str, Any]:
        v = register(svc).change_level(user, resident_id, body.level, body.reason, version=body.version)
        return resident_json(v, planned=True)

    @r.get("/care/visits/{visit_id}/photo", summary="A visit's photo (the grid's people only)",
           response_class=Response)
    def visit_photo(visit_id: VisitId, svc: Svc, user: Me) -> Response:
        p = register(svc).photo(user, visit_id)
        return Response(p.data, media_type=p.content_type, headers={"Cache-Control": "private, max-age=300"})

    @r.get("/care/evacuation", summary="Residents with limited mobility in a building (fire: evacuate them first)")
    def evacuation(svc: Svc, user: Me, building: IdText,
                   community_id: Annotated[IdText | None, Query(alias="community")] = None) -> dict[str, Any]:
        code = community(community_id) or next(iter(cs))
        if cs[code].building(building) is None:
            raise InvalidInput(f"community {code} has no building {building!r}")
        return {"residents": [resident_json(v) for v in register(svc).evacuation(user, code, building)]}

    return r
