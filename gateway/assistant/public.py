"""The residents' assistant (no account), next to the report form of :mod:`gateway.reports.public`. Does I/O.

==========================================  ==================================================================
``POST /r/{community}/{building}/ask``      a question (form: ``question``): the answer page (the best entry
                                            quoted with its source, "did this help?", the handoff form)
``POST /r/{community}/{building}/handoff``  the question handed to the building's grid worker (form:
                                            ``question``, ``floor``, ``unit``, ``note``, ``phone``, all but the
                                            question optional): 303 to the tracking page ``/r/t/{token}``
``GET  /r/{community}/{building}/ask``      303 back to the building page (a reload of the answer page)
==========================================  ==================================================================

Residents get resident entries only (``audience="resident"``: never a worker's SOP, never personal data). Both
POSTs are rate-limited per client address, one budget for all gateways (asking: its own budget; a handoff: the
report form's, shared, since it files a ticket too) and carry the report form's protection
(:class:`gateway.web.public_forms.PublicForms`): the double-submit form token (cookie and field) and,
when the browser sends one, an ``Origin`` of this host. Every field is checked and sized; a refused handoff shows
the answer page again with the reason and stores nothing.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Callable, Iterable
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import FormData

from gateway.assistant import box
from gateway.assistant.core import MAX_NOTE, MAX_QUESTION, Handoff, ask, clean_text, hand_off
from gateway.ratelimit import PerKeyLimiter
from gateway.reports.store import MAX_UNIT, PHONE_RE
from gateway.tickets.service import TicketService
from gateway.web.public_forms import PREFIX, Limiter, PublicForms, Refused
from gateway.web.public_forms import e as _e
from gateway.web.public_forms import page as _html
from gateway.web.public_forms import q as _q
from twin.community import Community
from twin.tickets import InvalidInput
from viz.i18n import t

log = logging.getLogger(__name__)


def router(communities: Iterable[Community],
           service: Callable[[], contextlib.AbstractContextManager[TicketService]], *,
           ask_limit: Limiter | None = None, handoff_limit: Limiter | None = None) -> APIRouter:
    """The residents' assistant routes. ``ask_limit``: questions per client address (default: 10 at once, then one
    every 6 s, in this process); ``handoff_limit``: handoffs per address, best the report form's own limiter
    (default: 5 at once, then one every 2 min, in this process). The API passes
    :class:`gateway.web.public_limits.SharedLimiter` ones, which all gateways share."""
    forms = PublicForms(communities, service, what="public assistant page")
    asks = ask_limit or PerKeyLimiter(10, 6.0)
    handoffs = handoff_limit or PerKeyLimiter(5, 120.0)
    r = APIRouter(prefix=PREFIX, include_in_schema=False)
    lang_of, place, refused = forms.lang_of, forms.place, forms.refused

    async def read_post(request: Request, limiter: Limiter, *extra: str) -> tuple[str, str, dict[str, str]]:
        """The POST's question, form token and ``extra`` fields, once the address is within ``limiter``'s budget
        and the form is this site's own (:meth:`PublicForms.read_form`)."""
        form = await forms.read_form(request, limiter, max_files=0, max_part_size=16 * 1024)
        try:
            return question_of(form), text(form, "form_token"), {k: text(form, k) for k in extra}
        finally:
            await form.close()

    def text(form: FormData, name: str) -> str:
        v = form.get(name, "")
        if not isinstance(v, str):
            raise Refused(400, "pub.err.bad")
        return v

    def question_of(form: FormData) -> str:
        try:
            return clean_text(text(form, "question"), "question", MAX_QUESTION, required=True)
        except InvalidInput:
            raise Refused(422, "ask.err.question", n=MAX_QUESTION) from None

    def answer_page(lang: str, c: Community, b: Any, path: str, token: str, answer: dict[str, Any], *,
                    error: str | None = None, values: dict[str, str] | None = None, status: int = 200) -> HTMLResponse:
        body = (f'<p class="muted">{_e(c.name)} · {_e(b.name)}</p>'
                + box.answer_body(lang, path, b.floors, token, answer, error=error, values=values)
                + box.ask_box(lang, path, token, heading=t(lang, "ask.again")) + box.links(lang, path))
        return _html(lang, t(lang, "ask.page.title"), body, secrets.token_urlsafe(12), status, switch=None)

    async def answer_of(question: str, lang: str) -> dict[str, Any]:
        found = await anyio.to_thread.run_sync(lambda: ask(question, "resident"))
        return found.as_dict(lang)

    @r.get("/{community}/{building}/ask", include_in_schema=False)
    async def ask_get(community: str, building: str, request: Request) -> Response:
        try:
            place(community, building)
        except Refused as exc:
            return refused(request, exc)
        return RedirectResponse(f"{PREFIX}/{community}/{building}{_q(lang_of(request))}", status_code=303)

    @r.post("/{community}/{building}/ask", response_class=HTMLResponse)
    async def ask_post(community: str, building: str, request: Request) -> Response:
        lang = lang_of(request)
        path = f"{PREFIX}/{community}/{building}"
        try:
            c, b = place(community, building)
            question, token, _ = await read_post(request, asks)
            answer = await answer_of(question, lang)
        except Refused as exc:
            return refused(request, exc)
        except InvalidInput:  # the engine's own checks (the same rules)
            return refused(request, Refused(422, "ask.err.question", n=MAX_QUESTION))
        return answer_page(lang, c, b, path, token, answer)

    @r.post("/{community}/{building}/handoff", response_class=HTMLResponse)
    async def handoff_post(community: str, building: str, request: Request) -> Response:
        lang = lang_of(request)
        path = f"{PREFIX}/{community}/{building}"
        try:
            c, b = place(community, building)
            question, token, values = await read_post(request, handoffs, "floor", "unit", "note", "phone")
        except Refused as exc:
            return refused(request, exc)

        async def again(status: int, key: str, **kw: object) -> HTMLResponse:
            """The answer page again, as the resident filled it in, with what was wrong; nothing stored."""
            return answer_page(lang, c, b, path, token, await answer_of(question, lang), error=t(lang, key, **kw),
                               values=values, status=status)

        floor_text = values["floor"].strip()
        if floor_text and (not floor_text.lstrip("-").isdigit() or len(floor_text) > 4
                           or int(floor_text) not in b.floors):
            return await again(422, "pub.err.floor")
        unit = values["unit"].strip()
        if len(unit) > MAX_UNIT or box_bad(unit):
            return await again(422, "pub.err.unit", n=MAX_UNIT)
        try:
            note = clean_text(values["note"], "note", MAX_NOTE, required=False, one_line=False)
        except InvalidInput:
            return await again(422, "ask.err.note", n=MAX_NOTE)
        phone = values["phone"].strip()
        if phone and not PHONE_RE.match(phone):
            return await again(422, "pub.err.phone")
        h = Handoff(question, b.id, int(floor_text) if floor_text else None, unit or None, note, phone or None)

        try:
            track = await forms.db(lambda svc: hand_off(svc, c, h, reporter=None, audience="resident")[1])
        except InvalidInput as exc:  # the report's own checks (the same rules)
            log.info("public handoff refused: %s", exc)
            return await again(422, "pub.err.bad")
        except Refused as exc:  # the database is unavailable
            return refused(request, exc)
        return RedirectResponse(f"{PREFIX}/t/{track}{_q(lang)}", status_code=303)

    return r


def box_bad(text: str) -> bool:
    try:
        clean_text(text, "unit", MAX_UNIT, required=False)
    except InvalidInput:
        return True
    return False
