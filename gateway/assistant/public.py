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
POSTs are rate-limited per client address (asking: its own budget; a handoff: the report form's, shared, since it
files a ticket too) and carry the report form's protection: the double-submit form token (cookie and field) and,
when the browser sends one, an ``Origin`` of this host. Every field is checked and sized; a refused handoff shows
the answer page again with the reason and stores nothing.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from psycopg import InterfaceError, OperationalError
from starlette.datastructures import FormData

from gateway.assistant import box
from gateway.assistant.core import MAX_NOTE, MAX_QUESTION, Handoff, ask, clean_text, hand_off
from gateway.ratelimit import PerKeyLimiter
from gateway.reports.public import FORM_COOKIE, LANG_COOKIE, MAX_FIELDS, PREFIX, Refused, _e, _html, _q
from gateway.reports.store import ID_RE, MAX_UNIT, PHONE_RE, TOKEN_RE
from gateway.storage import StorageError
from gateway.tickets.service import TicketService
from twin.community import Community
from twin.tickets import InvalidInput
from viz.i18n import t

log = logging.getLogger(__name__)


def router(communities: Iterable[Community],
           service: Callable[[], contextlib.AbstractContextManager[TicketService]], *,
           ask_limit: PerKeyLimiter | None = None, handoff_limit: PerKeyLimiter | None = None) -> APIRouter:
    """The residents' assistant routes. ``ask_limit``: questions per client address (default: 10 at once, then one
    every 6 s); ``handoff_limit``: handoffs per address, best the report form's own limiter (default: 5 at once,
    then one every 2 min)."""
    cs = {c.id: c for c in communities}
    asks = ask_limit or PerKeyLimiter(10, 6.0)
    handoffs = handoff_limit or PerKeyLimiter(5, 120.0)
    r = APIRouter(prefix=PREFIX, include_in_schema=False)

    def lang_of(request: Request) -> str:
        q = request.query_params.get("lang")
        if q in ("zh", "en"):
            return q
        return "en" if request.cookies.get(LANG_COOKIE) == "en" else "zh"

    def place(community: str, building: str) -> tuple[Community, Any]:
        c = cs.get(community) if ID_RE.match(community) else None
        b = c.building(building) if c is not None and ID_RE.match(building) else None
        if c is None or b is None:
            raise Refused(404, "pub.err.not_found")
        return c, b

    def refused(request: Request, exc: Refused) -> HTMLResponse:
        lang = lang_of(request)
        body = f'<div class="err" id="pub-error">{_e(t(lang, exc.key, **exc.values))}</div>'
        headers = {"Retry-After": str(exc.values.get("s", 60))} if exc.status == 429 else {}
        return _html(lang, t(lang, "pub.err.title"), body, secrets.token_urlsafe(12), exc.status, headers=headers)

    async def read_form(request: Request, limiter: PerKeyLimiter) -> FormData:
        """The POST's form, once the address is within its budget and the form is this site's own."""
        if not limiter.take(request.client.host if request.client else "?"):
            raise Refused(429, "pub.err.rate_limited", s=max(1, round(1 / limiter.rate)))
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in ("multipart/form-data", "application/x-www-form-urlencoded"):
            raise Refused(415, "pub.err.bad")
        try:
            form = await request.form(max_files=0, max_fields=MAX_FIELDS, max_part_size=16 * 1024)
        except Exception:  # malformed, too many parts, a part too large: the client's fault
            raise Refused(400, "pub.err.bad") from None
        origin = request.headers.get("origin")  # "null" from privacy settings: the form token still decides
        sent, have = form.get("form_token"), request.cookies.get(FORM_COOKIE, "")
        if ((origin is not None and origin != "null" and urlsplit(origin).netloc != request.headers.get("host", ""))
                or not isinstance(sent, str) or not TOKEN_RE.match(have) or not secrets.compare_digest(sent, have)):
            await form.close()
            raise Refused(403, "pub.err.form")
        return form

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
            form = await read_form(request, asks)
            try:
                question = question_of(form)
                token = text(form, "form_token")
            finally:
                await form.close()
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
            form = await read_form(request, handoffs)
            try:
                question = question_of(form)
                token = text(form, "form_token")
                values = {k: text(form, k) for k in ("floor", "unit", "note", "phone")}
            finally:
                await form.close()
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

        def run() -> str | None:
            with service() as svc:
                return hand_off(svc, c, h, reporter=None, audience="resident")[1]

        try:
            track = await anyio.to_thread.run_sync(run)
        except InvalidInput as exc:  # the report's own checks (the same rules)
            log.info("public handoff refused: %s", exc)
            return await again(422, "pub.err.bad")
        except (StorageError, OperationalError, InterfaceError) as exc:
            log.warning("public handoff: database unavailable: %s", str(exc).splitlines()[0] if str(exc) else exc)
            return refused(request, Refused(503, "pub.err.unavailable"))
        return RedirectResponse(f"{PREFIX}/t/{track}{_q(lang)}", status_code=303)

    return r


def box_bad(text: str) -> bool:
    try:
        clean_text(text, "unit", MAX_UNIT, required=False)
    except InvalidInput:
        return True
    return False
