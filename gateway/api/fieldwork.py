"""REST routes of the worker on site (issue 15): 到场 with where the phone was, and the SOP checklist's ticks.
Registered on the API's router by :func:`gateway.api.app.create_api` (:func:`add_fieldwork_routes`).

No ``from __future__ import annotations`` here: FastAPI reads the route signatures' annotations at run time, and
the dependency aliases are made inside :func:`add_fieldwork_routes` from the app's own dependencies.
"""

from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool

from gateway.api.text import storable
from gateway.tickets import handoff as handoff_store
from gateway.tickets.service import TicketService
from twin import tickets as tk
from twin.people import User
from twin.tickets.fieldwork import MAX_ACCURACY_M

TicketJson = Callable[[TicketService, tk.Ticket, User], dict[str, Any]]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PositionBody(_Body):
    """Where the phone was, as the browser's geolocation gives it (WGS 84)."""

    lat: float = Field(ge=-90, le=90, allow_inf_nan=False, description="latitude, degrees")
    lon: float = Field(ge=-180, le=180, allow_inf_nan=False, description="longitude, degrees")
    accuracy_m: float | None = Field(default=None, ge=0, le=MAX_ACCURACY_M, allow_inf_nan=False,
                                     description="the fix's accuracy radius in metres, as the phone reports it")


class ArriveBody(_Body):
    note: Annotated[str, AfterValidator(storable), Field(max_length=4000)] = ""
    version: int | None = Field(default=None, ge=1, le=2**31 - 1,
                                description="the version you saw; a stale one is refused (409)")
    position: PositionBody | None = Field(
        default=None, description="where the phone was (leave it out when the worker did not allow it or the phone "
                                  "has none: the arrival counts all the same)")


class HandoffBody(_Body):
    partner: str = Field(min_length=1, max_length=40, description="whom: " + ", ".join(tk.PARTNER_ROLES))
    arrived: StrictBool = Field(default=False, description="false: the partner was called; true: they are on site")
    note: Annotated[str, AfterValidator(storable), Field(max_length=4000)] = ""


class SopCheckBody(_Body):
    done: StrictBool = Field(description="true: the step is done (ticked); false: untick it")


def add_fieldwork_routes(r: APIRouter, service: Callable[..., Iterator[TicketService]],
                         current_user: Callable[..., User], ticket_json: TicketJson) -> None:
    """``POST /tickets/{id}/arrive`` and ``PUT /tickets/{id}/sop/{step}`` on ``r``, with the app's dependencies."""
    Svc = Annotated[TicketService, Depends(service)]
    Me = Annotated[User, Depends(current_user)]
    TicketId = Annotated[int, Path(ge=1, le=2**62, description="ticket id")]
    Step = Annotated[int, Path(ge=0, le=999, description="the step's index in the ticket's SOP, from 0")]

    @r.post("/tickets/{ticket_id}/arrive", tags=["actions"],
            summary="到场: on site (stops the arrival clock), with where the phone was if it told")
    def arrive(ticket_id: TicketId, svc: Svc, user: Me, body: ArriveBody | None = None) -> dict[str, Any]:
        b = body or ArriveBody()
        p = b.position
        position = tk.Position(p.lat, p.lon, p.accuracy_m) if p is not None else None
        return ticket_json(svc, svc.arrive(user, ticket_id, b.note, version=b.version, position=position), user)

    @r.post("/tickets/{ticket_id}/handoffs", tags=["actions"],
            summary="A partner called for the ticket (96333, the gas company, 119, the property...), or on site",
            responses={422: {"description": "unknown partner"},
                       409: {"description": "the ticket is closed, or the partner's arrival has no call before it"}})
    def handoff(ticket_id: TicketId, body: HandoffBody, svc: Svc, user: Me) -> dict[str, Any]:
        t = handoff_store.record(svc, user, ticket_id, body.partner, arrived=body.arrived, note=body.note)
        return {**ticket_json(svc, t, user), "handoffs": handoff_store.as_json(svc, handoff_store.current(svc, t.id))}

    @r.put("/tickets/{ticket_id}/sop/{step}", tags=["actions"],
           summary="Tick (done=true) or untick a step of the ticket's SOP checklist; kept in its timeline",
           responses={422: {"description": "no such step in the ticket's SOP"},
                      409: {"description": "the ticket is closed"}})
    def check_sop(ticket_id: TicketId, step: Step, body: SopCheckBody, svc: Svc, user: Me) -> dict[str, Any]:
        return ticket_json(svc, svc.check_sop(user, ticket_id, step, body.done), user)
