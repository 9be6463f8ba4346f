"""REST routes of the knowledge assistant under ``/api/v1`` (signed in: the API's bearer token). Does I/O.

=================================  ==========================================================================
``POST /assistant/ask``            ``{"question", "audience"?, "limit"?, "lang"?}``: the answer (the best
                                   matches with quote, source and score; ``confident`` says whether to trust it)
``POST /assistant/handoff``        ``{"question", "building"?, "floor"?, "unit"?, "note"?, "phone"?}``: a ticket
                                   for the building's grid worker (report category ``question``) with the
                                   question and the assistant's best guess; 201 with the ticket and the answer
=================================  ==========================================================================

The answer's language: ``lang`` if sent, else the request's ``Accept-Language`` (English when it starts with
``en``), else Chinese. Bad input is a 422 naming the field (empty, longer than 500 characters, a control
character, a wrong type, an unknown building).

No ``from __future__ import annotations``: FastAPI reads the annotations at run time.
"""

from collections.abc import Callable, Iterable, Iterator
from typing import Annotated, Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Depends, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from gateway.assistant.core import MAX_NOTE, MAX_QUESTION, Handoff, ask, bad_char, hand_off
from gateway.tickets.service import API_PREFIX, TicketService
from twin.community import Community
from twin.people import User
from twin.tickets import InvalidInput


def _plain(v: str) -> str:
    bad = bad_char(v)
    if bad is not None:
        raise ValueError(f"holds a control character (U+{ord(bad):04X}); send plain text")
    return v


def _filled(v: str) -> str:
    if not v.strip():
        raise ValueError("empty; type the question")
    return v


Plain = Annotated[str, AfterValidator(_plain)]
Question = Annotated[str, Field(min_length=1, max_length=MAX_QUESTION, description="what was asked"),
                     AfterValidator(_plain), AfterValidator(_filled)]
Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class AskBody(_Body):
    question: Question
    audience: Literal["resident", "worker", "all"] = Field(
        default="all", description="whose entries: resident (what residents may read), worker, all")
    limit: Annotated[int, Field(ge=1, le=10)] = 3
    lang: Literal["zh", "en"] | None = None


class HandoffBody(_Body):
    question: Question
    building: Id | None = Field(default=None, description="building id; default: the first of your grids'")
    floor: Annotated[int | None, Field(ge=-10, le=200)] = None
    unit: Annotated[Plain | None, Field(max_length=32)] = None
    note: Annotated[Plain, Field(max_length=MAX_NOTE, description="what else the worker should know")] = ""
    phone: Annotated[str | None, Field(pattern=r"^\+?[0-9][0-9 \-]{4,19}$", description="for a call-back")] = None
    community: Id | None = None
    lang: Literal["zh", "en"] | None = None


def lang_of(request: Request, asked: str | None) -> str:
    if asked in ("zh", "en"):
        return asked
    return "en" if request.headers.get("accept-language", "").strip().lower().startswith("en") else "zh"


def router(communities: Iterable[Community], service: Callable[[], Iterator[TicketService]],
           current_user: Callable[..., User]) -> APIRouter:
    cs = {c.id: c for c in communities}
    Svc = Annotated[TicketService, Depends(service)]
    Me = Annotated[User, Depends(current_user)]
    r = APIRouter(prefix=API_PREFIX)

    @r.post("/assistant/ask", tags=["assistant"], summary="Ask the knowledge assistant (top answers with sources)")
    async def assistant_ask(body: AskBody, request: Request, user: Me) -> dict[str, Any]:
        del user  # any signed-in account may ask
        answer = await anyio.to_thread.run_sync(lambda: ask(body.question, body.audience, limit=body.limit))
        return answer.as_dict(lang_of(request, body.lang))

    @r.post("/assistant/handoff", tags=["assistant"], status_code=201,
            summary="Hand a question to the building's grid worker: a ticket with the assistant's best guess")
    def assistant_handoff(body: HandoffBody, request: Request, svc: Svc, user: Me) -> dict[str, Any]:
        code = body.community or next(iter(cs))
        c = cs.get(code)
        if c is None:
            raise InvalidInput(f"community: unknown {code!r}; known: {', '.join(cs)}")
        h = Handoff(body.question, body.building, body.floor, body.unit, body.note, body.phone)
        t, _token, answer = hand_off(svc, c, h, reporter=user, audience="all")
        ticket = {"id": t.id, "version": t.version, "title": t.title, "state": t.state.value,
                  "priority": t.priority.value, "grid": t.grid, "assignee": t.assignee, "building": t.building,
                  "floor": t.floor, "unit": t.unit, "description": t.description,
                  "respond_by": svc.iso(t.respond_by), "resolve_by": svc.iso(t.resolve_by)}
        return {"ticket": ticket, "answer": answer.as_dict(lang_of(request, body.lang))}

    return r
