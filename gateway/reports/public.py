"""The residents' pages (no account), plain server-rendered HTML for a phone. Does I/O.

=============================  ==================================================================
``GET  /r/{community}/{building}``   the report form the building's QR code opens (``?lang=en``)
``POST /r/{community}/{building}``   a report (multipart): 303 to its tracking page, or the form again with
                                     the reason (4xx) and nothing stored
``GET  /r/t/{token}``                the report's progress (Chinese default, ``?lang=en``), the result, and the
                                     rating form once it is resolved (and checked, for checked categories)
``POST /r/t/{token}/rate``           the rating: 303 back to the tracking page
=============================  ==================================================================

What they show: the resident's own report only (by an unguessable token, only its hash stored), the worker's
name masked (张*), no internal notes, no other ticket. Every POST: rate-limited per client address, one budget
for all gateways (:class:`gateway.web.public_limits.SharedLimiter` in the database; page views: in memory per
gateway), a double-submit form token (cookie and field must match) and, when
the browser sends one, an ``Origin`` of this host (CSRF); every field is validated and sized. The routes live in
the REST API's FastAPI app (its body-size limit, admission and security headers apply); the web server sends
``/r/...`` there (``gateway/web/asgi.py``), so nothing here reaches the dashboard's session or pages. The checks
are :class:`gateway.web.public_forms.PublicForms`'s (the assistant's routes use the same).
"""

import contextlib
import logging
import secrets
from collections.abc import Callable, Iterable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import FormData, UploadFile

from gateway.assistant.box import ask_box
from gateway.ratelimit import PerKeyLimiter
from gateway.reports.store import (
    MAX_TEXT,
    MAX_UNIT,
    PHONE_RE,
    TOKEN_RE,
    NewReport,
    by_track_token,
    categories,
    public_view,
    submit,
)
from gateway.settings import Settings
from gateway.tickets.photos import PHOTO_TYPES, Photo, PhotoRejected
from gateway.tickets.service import TicketNotFound, TicketService
from gateway.web.public_forms import PREFIX, Limiter, PublicForms, Refused
from gateway.web.public_forms import e as _e
from gateway.web.public_forms import page as _html
from gateway.web.public_forms import q as _q
from twin.community import Community
from twin.tickets import InvalidInput, TicketError
from viz.i18n import floor_label, t

log = logging.getLogger(__name__)


def router(settings: Settings, communities: Iterable[Community],
           service: Callable[[], contextlib.AbstractContextManager[TicketService]], *,
           report_limit: Limiter | None = None, page_limit: Limiter | None = None) -> APIRouter:
    """The public routes. ``service()``: a ticket service on a pooled connection (the API's).
    ``report_limit``: reports and ratings per client address (default: 5 at once, then one every 2 min, in this
    process; the API passes a :class:`gateway.web.public_limits.SharedLimiter` all gateways share);
    ``page_limit``: page views per address (default: 60 at once, then 2 a second: guessing tokens is slow)."""
    forms = PublicForms(communities, service, views=page_limit, what="public report page")
    max_photo = settings.tickets.photo_max_bytes
    posts = report_limit or PerKeyLimiter(5, 120.0)
    r = APIRouter(prefix=PREFIX, include_in_schema=False)
    lang_of, place, refused, db = forms.lang_of, forms.place, forms.refused, forms.db
    form_token, set_form_cookie, view_allowed = forms.form_token, forms.set_form_cookie, forms.view_allowed

    async def read_form(request: Request) -> FormData:
        return await forms.read_form(request, posts, max_files=1, max_part_size=64 * 1024)

    # -- tracking and rating (first: /r/t/... is no building of a community "t") -----------------------

    @r.get("/t/{token}", response_class=HTMLResponse)
    async def track(token: str, request: Request) -> Response:
        lang = lang_of(request)
        try:
            view_allowed(request)
            if not TOKEN_RE.match(token):
                raise Refused(404, "pub.err.not_found")

            def read(svc: TicketService) -> dict[str, Any]:
                tk, report = by_track_token(svc, token)
                return public_view(svc, tk, report)

            try:
                info = await db(read)
            except TicketNotFound:
                raise Refused(404, "pub.err.not_found") from None
        except Refused as exc:
            return refused(request, exc)
        form, new = form_token(request)
        response = _track_page(lang, info, token, form, request.url.path)
        if new:
            set_form_cookie(response, form, request)
        return response

    @r.post("/t/{token}/rate", response_class=HTMLResponse)
    async def rate(token: str, request: Request) -> Response:
        lang = lang_of(request)
        try:
            if not TOKEN_RE.match(token):
                raise Refused(404, "pub.err.not_found")
            form = await read_form(request)
            try:
                raw, comment = form.get("rating"), form.get("comment", "")
            finally:
                await form.close()
            if not isinstance(raw, str) or raw not in ("1", "2", "3", "4", "5"):
                raise Refused(422, "pub.rate.bad")
            if not isinstance(comment, str) or len(comment) > MAX_TEXT or "\x00" in comment:
                raise Refused(422, "pub.err.text", n=MAX_TEXT)

            def do(svc: TicketService) -> None:
                tk, _report = by_track_token(svc, token)
                svc.rate(tk.rate_token, int(raw), comment.strip() or None)

            try:
                await db(do)
            except TicketNotFound:
                raise Refused(404, "pub.err.not_found") from None
            except TicketError:
                raise Refused(409, "pub.rate.closed") from None
        except Refused as exc:
            return refused(request, exc)
        return RedirectResponse(f"{PREFIX}/t/{token}" + ("?lang=en" if lang == "en" else ""), status_code=303)

    # -- the report form --------------------------------------------------------------------------------

    @r.get("/{community}/{building}", response_class=HTMLResponse)
    async def report_form(community: str, building: str, request: Request) -> Response:
        try:
            view_allowed(request)
            c, b = place(community, building)
        except Refused as exc:
            return refused(request, exc)
        lang = lang_of(request)
        token, new = form_token(request)
        response = _form_page(lang, c, b, token, max_photo, request.url.path)
        if new:
            set_form_cookie(response, token, request)
        return response

    @r.post("/{community}/{building}", response_class=HTMLResponse)
    async def report_post(community: str, building: str, request: Request) -> Response:
        lang = lang_of(request)
        try:
            c, b = place(community, building)
        except Refused as exc:
            return refused(request, exc)
        values: dict[str, str] = {}

        def again(status: int, message: str) -> HTMLResponse:
            """The form again, as the person filled it in (but the photo), with what was wrong; nothing stored."""
            token, _new = form_token(request)
            return _form_page(lang, c, b, token, max_photo, request.url.path, error=message, values=values,
                              status=status)

        try:
            form = await read_form(request)
            try:
                values = {k: v for k, v in form.items() if isinstance(v, str) and k != "form_token"}
                report = await _report_of(form, b, max_photo)
            finally:
                await form.close()
            ticket_token = await db(lambda svc: submit(svc, c, report, reporter=None)[1])
        except Refused as exc:
            if exc.status in (400, 413, 415, 422):
                return again(exc.status, t(lang, exc.key, **exc.values))
            return refused(request, exc)
        except (InvalidInput, PhotoRejected) as exc:  # the service's own checks (the same rules)
            log.info("public report refused: %s", exc)
            return again(exc.status if isinstance(exc, PhotoRejected) else 422, t(lang, "pub.err.bad"))
        return RedirectResponse(f"{PREFIX}/t/{ticket_token}" + ("?lang=en" if lang == "en" else ""), status_code=303)

    return r


async def _report_of(form: FormData, b: Any, max_photo: int) -> NewReport:
    """The form's report, every field checked (a :class:`Refused` names the first problem)."""
    def text(name: str) -> str:
        v = form.get(name, "")
        if not isinstance(v, str):
            raise Refused(400, "pub.err.bad")
        return v

    cat = text("category")
    found = categories().get(cat)
    if found is None or not found.public:
        raise Refused(422, "pub.err.category")
    floor_text = text("floor").strip()
    floor: int | None = None
    if floor_text:
        if not floor_text.lstrip("-").isdigit() or len(floor_text) > 4 or int(floor_text) not in b.floors:
            raise Refused(422, "pub.err.floor")
        floor = int(floor_text)
    unit = text("unit").strip()
    if len(unit) > MAX_UNIT or "\x00" in unit:
        raise Refused(422, "pub.err.unit", n=MAX_UNIT)
    description = text("text").strip()
    if not description or len(description) > MAX_TEXT or "\x00" in description:
        raise Refused(422, "pub.err.text", n=MAX_TEXT)
    phone = text("phone").strip()
    if phone and not PHONE_RE.match(phone):
        raise Refused(422, "pub.err.phone")
    photo: Photo | None = None
    upload = form.get("photo")
    if isinstance(upload, UploadFile) and (upload.filename or upload.size):
        data = await upload.read(max_photo + 1)
        ctype = (upload.content_type or "").split(";")[0].strip().lower()
        if len(data) > max_photo:
            raise Refused(413, "pub.err.photo_size", mb=max_photo // (1024 * 1024))
        if ctype not in PHOTO_TYPES or not data or not any(data.startswith(m) for m in PHOTO_TYPES[ctype]):
            raise Refused(415, "pub.err.photo_type")
        photo = Photo(ctype, data)
    elif upload is not None and not isinstance(upload, UploadFile | str):
        raise Refused(400, "pub.err.bad")
    return NewReport(cat, b.id, floor, unit or None, description, phone or None, photo)


# -- rendering --------------------------------------------------------------------------------------------


def _form_page(lang: str, c: Community, b: Any, token: str, max_photo: int, path: str, *, error: str | None = None,
               values: dict[str, str] | None = None, status: int = 200) -> HTMLResponse:
    v = values or {}
    nonce = secrets.token_urlsafe(12)
    cats = "".join(
        f'<label><input type="radio" name="category" value="{_e(x.id)}" required'
        f'{" checked" if v.get("category") == x.id else ""}>{_e(x.label(lang))}</label>'
        for x in categories().public())
    floors = f'<option value="">{_e(t(lang, "report.any_floor"))}</option>' + "".join(
        f'<option value="{f}"{" selected" if v.get("floor") == str(f) else ""}>{_e(floor_label(lang, f))}</option>'
        for f in b.floors)
    mb = max_photo // (1024 * 1024)
    body = (
        f'<p class="muted">{_e(t(lang, "pub.lead", community=c.name, building=b.name))}</p>'
        + (f'<div class="err" id="pub-error" role="alert">{_e(error)}</div>' if error else "")
        + ask_box(lang, path, token)  # the knowledge assistant first (gateway/assistant/public.py)
        + f'<form class="card" id="pub-form" method="post" action="{_e(path)}{_q(lang)}" enctype="multipart/form-data">'
        f'<input type="hidden" name="form_token" value="{_e(token)}">'
        f'<label>{_e(t(lang, "report.category"))}</label><div class="cats">{cats}</div>'
        f'<label for="floor">{_e(t(lang, "pub.floor"))}</label><select id="floor" name="floor">{floors}</select>'
        f'<label for="unit">{_e(t(lang, "pub.unit"))}</label><input id="unit" name="unit" maxlength="{MAX_UNIT}" '
        f'value="{_e(v.get("unit", ""))}">'
        f'<label for="text">{_e(t(lang, "report.text"))}</label><textarea id="text" name="text" required '
        f'maxlength="{MAX_TEXT}" placeholder="{_e(t(lang, "report.text_hint"))}">{_e(v.get("text", ""))}</textarea>'
        f'<label for="photo">{_e(t(lang, "pub.photo", mb=mb))}</label><input id="photo" name="photo" type="file" '
        'accept="image/jpeg,image/png,image/webp">'
        f'<label for="phone">{_e(t(lang, "pub.phone"))}</label><input id="phone" name="phone" type="tel" '
        f'maxlength="20" inputmode="tel" value="{_e(v.get("phone", ""))}">'
        f'<button id="pub-submit">{_e(t(lang, "pub.submit"))}</button>'
        f'<p class="muted">{_e(t(lang, "pub.privacy"))}</p></form>')
    return _html(lang, t(lang, "pub.title"), body, nonce, status, switch=path)


def _track_page(lang: str, info: dict[str, Any], token: str, form: str, path: str) -> HTMLResponse:
    nonce = secrets.token_urlsafe(12)
    cat = info["category"]
    where = " ".join(x for x in (info["community"], info["building"] or "",
                                 floor_label(lang, info["floor"]) if info["floor"] is not None else "",
                                 info["unit"] or "") if x)
    state = "checking" if info["check"] == "pending" else info["state"]
    colon = ": " if lang == "en" else "："
    steps = []
    for s in info["steps"]:
        action = s["action"]
        if action in ("dispatch", "reassign"):
            if s.get("worker"):
                text = t(lang, f"pub.step.{action}", name=s["worker"])
            else:
                text = t(lang, "pub.step.dispatch_supervisor" if s.get("supervisor") else "pub.step.dispatch_anon")
        else:
            text = t(lang, f"pub.step.{action}")
        note = f'<div class="note">{_e(s["note"])}</div>' if s.get("note") else ""
        steps.append(f'<li><time>{_e(s["at"].strftime("%Y-%m-%d %H:%M"))}</time>{_e(text)}{note}</li>')
    if info["rating"] is not None:
        rate = f'<p id="pub-rated">{_e(t(lang, "pub.rate.done", n=info["rating"]))}</p>'
    elif info["can_rate"]:
        stars = "".join(f'<label><input type="radio" name="rating" value="{i}" required{" checked" if i == 5 else ""}>'
                        f'{_e(t(lang, "pub.rate.n", n=i))}</label>' for i in range(1, 6))
        rate = (f'<form id="pub-rate" method="post" action="{_e(path)}/rate{_q(lang)}">'
                f'<input type="hidden" name="form_token" value="{_e(form)}"><div class="stars">{stars}</div>'
                f'<div class="scale muted"><span>{_e(t(lang, "pub.rate.low"))}</span>'
                f'<span>{_e(t(lang, "pub.rate.high"))}</span></div>'
                f'<label for="comment">{_e(t(lang, "pub.rate.comment"))}</label>'
                f'<textarea id="comment" name="comment" maxlength="{MAX_TEXT}"></textarea>'
                f'<button id="pub-rate-submit">{_e(t(lang, "pub.rate.submit"))}</button></form>')
    elif info["check"] == "pending":
        rate = f'<p class="muted">{_e(t(lang, "pub.rate.wait_check"))}</p>'
    elif info["state"] == "cancelled":
        rate = ""
    else:
        rate = f'<p class="muted">{_e(t(lang, "pub.rate.wait"))}</p>'
    body = (
        f'<p class="muted">{_e(t(lang, "pub.track.keep"))}</p><div class="card">'
        f'<p><strong>{_e(cat.label(lang) if cat else "")}</strong></p>'
        f'<p>{_e(t(lang, "pub.track.status"))}{colon}<span class="state" id="pub-state" data-state="{_e(state)}">'
        f'{_e(t(lang, f"pub.state.{state}"))}</span></p>'
        f'<p>{_e(t(lang, "pub.track.where"))}{colon}{_e(where)}</p>'
        f'<p>{_e(t(lang, "pub.track.what"))}{colon}<span class="note">{_e(info["description"])}</span></p></div>'
        f'<div class="card"><h2>{_e(t(lang, "pub.track.steps"))}</h2><ol class="steps" id="pub-steps">'
        f'{"".join(steps)}</ol></div>'
        f'<div class="card"><h2>{_e(t(lang, "pub.rate.title"))}</h2>{rate}</div>')
    del token
    return _html(lang, t(lang, "pub.track.title"), body, nonce, switch=path)
