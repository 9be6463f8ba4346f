"""REST routes of one-click reports under ``/api/v1`` (signed in: the API's bearer token). Does I/O.

=========================================  ====================================================================
``GET  /reports/categories``               the categories (labels zh/en, ticket category, priority, verify, public)
``POST /reports``                          a staff report (worker, supervisor, operator): a ticket, dispatched
``GET  /reports/checks``                   resolved reports waiting for my check (supervisor: their grids')
``GET  /tickets/{id}/check``               where a ticket's check (核查) stands
``POST /tickets/{id}/verify``              ``{"result": "pass" | "fail", "reason": ...}``: pass closes it as usual,
                                           fail sends it back to the worker (reason required)
=========================================  ====================================================================

No ``from __future__ import annotations``: FastAPI reads the annotations at run time.
"""

from collections.abc import Callable, Iterable, Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from gateway.reports.store import NewReport, categories, check_state, pending_checks, submit, verify
from gateway.settings import Settings
from gateway.tickets.service import API_PREFIX, TicketService
from twin.community import Community
from twin.people import User
from twin.tickets import InvalidInput

TicketId = Annotated[int, Path(ge=1, le=2**62, description="ticket id")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StaffReport(_Body):
    category: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$", description="id from /reports/categories")]
    building: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")]
    floor: Annotated[int | None, Field(ge=-10, le=200)] = None
    unit: Annotated[str | None, Field(max_length=32)] = None
    text: Annotated[str, Field(min_length=1, max_length=1000, description="what was seen")]
    community: Annotated[str | None, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")] = None


class VerifyBody(_Body):
    result: Literal["pass", "fail"]
    reason: Annotated[str, Field(max_length=1000, description="required when the result is fail")] = ""
    version: Annotated[int | None, Field(ge=1, le=2**31 - 1)] = None


def router(communities: Iterable[Community], service: Callable[[], Iterator[TicketService]],
           current_user: Callable[..., User], settings: Settings) -> APIRouter:
    cs = {c.id: c for c in communities}
    Svc = Annotated[TicketService, Depends(service)]
    Me = Annotated[User, Depends(current_user)]
    r = APIRouter(prefix=API_PREFIX)
    del settings

    def ticket_json(svc: TicketService, user: User, ticket_id: int) -> dict[str, Any]:
        t = svc.get(ticket_id, user)
        return {**svc.view(t, private=user.sees_everything()), "check": check_state(svc, t).value}

    @r.get("/reports/categories", tags=["reports"], summary="One-click report categories (一键上报)")
    def report_categories(user: Me) -> dict[str, Any]:
        del user
        return {"categories": [c.model_dump(mode="json") for c in categories().items]}

    @r.post("/reports", tags=["reports"], status_code=201, summary="A staff report: becomes a dispatched ticket")
    def staff_report(body: StaffReport, svc: Svc, user: Me) -> dict[str, Any]:
        code = body.community or next(iter(cs))
        c = cs.get(code)
        if c is None:
            raise InvalidInput(f"unknown community {code!r}; known: {', '.join(cs)}")
        t, _token = submit(svc, c, NewReport(body.category, body.building, body.floor, body.unit, body.text),
                           reporter=user)
        return ticket_json(svc, user, t.id)

    @r.get("/reports/checks", tags=["reports"], summary="Resolved reports waiting for my check (核查)")
    def checks(svc: Svc, user: Me) -> dict[str, Any]:
        ts = pending_checks(svc, user)
        return {"tickets": [{"id": t.id, "version": t.version, "title": t.title, "category": t.category,
                             "building": t.building, "floor": t.floor, "assignee": t.assignee, "grid": t.grid,
                             "resolved_at": svc.iso(t.resolved_at)} for t in ts]}

    @r.get("/tickets/{ticket_id}/check", tags=["reports"], summary="Where a ticket's check (核查) stands")
    def check(ticket_id: TicketId, svc: Svc, user: Me) -> dict[str, Any]:
        t = svc.get(ticket_id, user)
        return {"id": t.id, "state": t.state.value, "check": check_state(svc, t).value}

    @r.post("/tickets/{ticket_id}/verify", tags=["reports"],
            summary="核查 a resolved report (grid supervisor, operator): pass closes it, fail sends it back")
    def verify_ticket(ticket_id: TicketId, body: VerifyBody, svc: Svc, user: Me) -> dict[str, Any]:
        if body.result == "fail" and not body.reason.strip():
            raise InvalidInput("a failed check needs a reason the worker can act on")
        svc.get(ticket_id, user)  # 404 / 403 before anything else
        verify(svc, user, ticket_id, body.result == "pass", body.reason, version=body.version)
        return ticket_json(svc, user, ticket_id)

    return r
