"""The residents' assistant (no account), next to the report form of :mod:`gateway.reports.public`. Does I/O.

==========================================  ==================================================================
``POST /r/{community}/{building}/ask``      a question (form: ``question``): the answer page (the best entry
                                            quoted with its source, "did this help?", the handoff form)
``POST /r/{community}/{building}/handoff``  the question handed to the building's grid worker (form:
                                            ``question``, ``floor``, ``unit``, ``note``, ``phone``, all but the
                                            question optional): 303 to the tracking page ``/r/t/{token}``
``POST /r/{community}/{building}/feedback`` "did this help?" (form: ``answer``: the answer's ref, ``helped``:
                                            ``1`` or ``0``): a thank-you page (:mod:`gateway.assistant.outcomes`)
``GET  /r/{community}/{building}/ask``      303 back to the building page (a reload of the answer page; the
                                            same for ``/feedback``)
==========================================  ==================================================================

Life safety first: an answer about an emergency (:mod:`twin.assistant.urgent`) shows what to do now and the
community's numbers to call (``tel:`` links) above everything else, and its handoff is a report of the
emergency's category (urgent clock, its SOP). Each answer shown is counted without personal data
(:mod:`gateway.assistant.outcomes`: the day, the entry, sure or not, then helped or handed off); counting is best
effort: an answer still shows while the database is unavailable, without the feedback buttons.

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

from gateway.assistant import box, outcomes
from gateway.assistant.core import MAX_NOTE, MAX_QUESTION, Handoff, ask, clean_text, hand_off
from gateway.ratelimit import PerKeyLimiter
from gateway.reports.store import MAX_UNIT, PHONE_RE
from gateway.tickets.service import TicketService
from gateway.web.public_forms import PREFIX, Limiter, PublicForms, Refused
from gateway.web.public_forms import e as _e
from gateway.web.public_forms import page as _html
from gateway.web.public_forms import q as _q
from twin.assistant import Answer
from twin.assistant.urgent import Kind, urgent
from twin.community import Community
from twin.contacts import calls_for
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

    def answer_page(lang: str, c: Community, b: Any, path: str, token: str, found: Answer, *, ref: str | None = None,
                    error: str | None = None, values: dict[str, str] | None = None, status: int = 200) -> HTMLResponse:
        kind = urgent(found)
        alert = box.urgent_card(lang, kind.id, calls_for(c.contacts, kind.calls)) if kind is not None else ""
        body = (f'<p class="muted">{_e(c.name)} · {_e(b.name)}</p>' + alert
                + box.answer_body(lang, path, b.floors, token, found.as_dict(lang), error=error, values=values,
                                  ref=ref, urgent=kind is not None)
                + box.ask_box(lang, path, token, heading=t(lang, "ask.again")) + box.links(lang, path))
        return _html(lang, t(lang, "ask.page.title"), body, secrets.token_urlsafe(12), status, switch=None)

    async def answer_of(question: str) -> Answer:
        return await anyio.to_thread.run_sync(lambda: ask(question, "resident"))

    async def count(c: Community, found: Answer, kind: Kind | None) -> str | None:
        """The answer counted (:func:`gateway.assistant.outcomes.record`): its ref, None without a database."""
        best = found.best
        try:
            return str(await forms.db(lambda svc: outcomes.record(
                svc.conn, c.id, svc.clock().date(), best.document.id if best else None, found.confident,
                kind.id if kind else None)))
        except Refused:
            return None

    @r.get("/{community}/{building}/ask", include_in_schema=False)
    @r.get("/{community}/{building}/feedback", include_in_schema=False)
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
            found = await answer_of(question)
        except Refused as exc:
            return refused(request, exc)
        except InvalidInput:  # the engine's own checks (the same rules)
            return refused(request, Refused(422, "ask.err.question", n=MAX_QUESTION))
        return answer_page(lang, c, b, path, token, found, ref=await count(c, found, urgent(found)))

    @r.post("/{community}/{building}/feedback", response_class=HTMLResponse)
    async def feedback_post(community: str, building: str, request: Request) -> Response:
        lang = lang_of(request)
        path = f"{PREFIX}/{community}/{building}"
        try:
            c, b = place(community, building)
            form = await forms.read_form(request, asks, max_files=0, max_part_size=1024)
            try:
                ref, helped = text(form, "answer"), text(form, "helped")
            finally:
                await form.close()
            if helped not in ("1", "0") or not outcomes.REF_RE.match(ref):
                raise Refused(422, "pub.err.bad")
            await forms.db(lambda svc: outcomes.feedback(svc.conn, c.id, ref, helped == "1", svc.clock().date()))
        except Refused as exc:
            return refused(request, exc)
        body = (f'<p class="muted">{_e(c.name)} · {_e(b.name)}</p>'
                + box.thanks(lang, helped == "1") + box.ask_box(lang, path, token_of(request), heading=t(
                    lang, "ask.again")) + box.links(lang, path))
        return _html(lang, t(lang, "ask.page.title"), body, secrets.token_urlsafe(12), switch=None)

    def token_of(request: Request) -> str:
        return forms.form_token(request)[0]  # the POST just matched the cookie: it is there

    @r.post("/{community}/{building}/handoff", response_class=HTMLResponse)
    async def handoff_post(community: str, building: str, request: Request) -> Response:
        lang = lang_of(request)
        path = f"{PREFIX}/{community}/{building}"
        try:
            c, b = place(community, building)
            question, token, values = await read_post(request, handoffs, "floor", "unit", "note", "phone", "answer")
        except Refused as exc:
            return refused(request, exc)

        async def again(status: int, key: str, **kw: object) -> HTMLResponse:
            """The answer page again, as the resident filled it in, with what was wrong; nothing stored."""
            ref = values["answer"] if outcomes.REF_RE.match(values["answer"]) else None
            return answer_page(lang, c, b, path, token, await answer_of(question), error=t(lang, key, **kw),
                               values=values, status=status, ref=ref)

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
            def go(svc: TicketService) -> str | None:
                token = hand_off(svc, c, h, reporter=None, audience="resident")[1]
                outcomes.handed_off(svc.conn, c.id, values["answer"], svc.clock().date())  # no ref: not counted
                return token

            track = await forms.db(go)
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
