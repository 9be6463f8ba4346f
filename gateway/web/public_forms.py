"""What every residents' page (no account, ``/r/...``) checks and how it answers: the language, the building of the
URL, the double-submit form token (cookie and field must match), the ``Origin`` check (CSRF), the form's size
limits, the rate limits per client address, the database thread, the refusal page and the page frame. Used by
:mod:`gateway.reports.public` (report form, tracking, rating) and :mod:`gateway.assistant.public` (ask box,
handoff). Does I/O.

Rate limits: page views use an in-memory :class:`gateway.ratelimit.PerKeyLimiter` per gateway (cheap, and a page
view changes nothing); the POSTs take a :class:`gateway.web.public_limits.SharedLimiter` in the database (the API
app passes them), so N gateways behind a load balancer give a resident one budget, not N. The key of both is the
client address as the route sees it (``request.client.host``: the web server puts the ``X-Forwarded-For``
address there only behind a trusted proxy, ``FORWARDED_ALLOW_IPS``); ``"?"`` when there is none.
"""

from __future__ import annotations

import contextlib
import html
import logging
import secrets
from collections.abc import Callable, Iterable
from typing import Any, Protocol
from urllib.parse import urlsplit

import anyio.to_thread
from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from psycopg import InterfaceError, OperationalError
from starlette.datastructures import FormData

from gateway.assistant.box import STYLE as ASK_STYLE
from gateway.ratelimit import PerKeyLimiter
from gateway.reports.store import ID_RE, TOKEN_RE
from gateway.storage import StorageError
from gateway.tickets.service import TicketService
from gateway.web.public_limits import SharedLimiter
from twin.community import Community
from viz.i18n import t

log = logging.getLogger(__name__)

PREFIX = "/r"
FORM_COOKIE = "gridtwin_form"
LANG_COOKIE = "gridtwin_lang"  # the dashboard's language cookie (viz.shell.LANG_COOKIE)
MAX_FIELDS = 12
STYLE = (
    "body{font:16px/1.5 system-ui,-apple-system,'PingFang SC','Microsoft YaHei',sans-serif;margin:0;"
    "background:#f3f5f8;color:#1d2733}main{max-width:560px;margin:0 auto;padding:16px}"
    "h1{font-size:1.35rem;margin:.2em 0 .4em}h2{font-size:1.05rem;margin:1.2em 0 .4em}"
    ".card{background:#fff;border-radius:10px;padding:14px 16px;margin:12px 0;box-shadow:0 1px 3px #0002}"
    "label{display:block;font-weight:600;margin:.9em 0 .3em}input,select,textarea{width:100%;box-sizing:border-box;"
    "font:inherit;padding:10px;border:1px solid #b9c3cf;border-radius:8px;background:#fff}textarea{min-height:6em}"
    ".cats{display:grid;grid-template-columns:1fr 1fr;gap:8px}.cats label{margin:0;font-weight:400;border:1px solid "
    "#b9c3cf;border-radius:8px;padding:10px 8px;background:#fff;display:flex;gap:6px;align-items:center}"
    ".cats input{width:auto;margin:0}.cats label:has(input:checked){border-color:#1565c0;background:#e8f0fc}"
    "button{width:100%;font:inherit;font-weight:600;padding:12px;margin-top:16px;border:0;border-radius:8px;"
    "background:#1565c0;color:#fff}.err{background:#fdecea;color:#8a1c12;border-radius:8px;padding:10px 12px}"
    ".muted{color:#5b6775;font-size:.9rem}.top{display:flex;justify-content:space-between;align-items:center;"
    "gap:8px}.top a{color:#1565c0;white-space:nowrap}ol.steps{list-style:none;padding:0;margin:0}"
    "ol.steps li{border-left:3px solid #1565c0;padding:2px 0 10px 12px;margin-left:4px}"
    "ol.steps time{display:block;color:#5b6775;font-size:.85rem}.state{display:inline-block;padding:2px 10px;"
    "border-radius:12px;background:#e8f0fc;color:#0d47a1;font-weight:600}.stars{display:flex;gap:6px}"
    ".stars label{flex:1;text-align:center;margin:0;font-weight:400;border:1px solid #b9c3cf;border-radius:8px;"
    "padding:8px 0}.stars input{width:auto;display:block;margin:0 auto 4px}.scale{display:flex;"
    "justify-content:space-between}.note{white-space:pre-wrap}"
)


class Refused(Exception):
    """A public request refused with ``status`` and a catalogue key (and its values) for the person."""

    def __init__(self, status: int, key: str, **values: object) -> None:
        super().__init__(key)
        self.status = status
        self.key = key
        self.values = values


class Limiter(Protocol):
    """``take(key) -> bool`` and ``rate`` (tokens per second): :class:`gateway.ratelimit.PerKeyLimiter` or
    :class:`SharedLimiter` (which blocks: it runs in a worker thread)."""

    rate: float

    def take(self, key: str) -> bool: ...


def e(text: object) -> str:
    """``text`` escaped for HTML (content and attribute values)."""
    return html.escape(str(text), quote=True)


def q(lang: str) -> str:
    """The query that keeps the page's language through a form (Chinese is the default)."""
    return "?lang=en" if lang == "en" else ""


def page(lang: str, title: str, body: str, nonce: str, status: int = 200, *, switch: str | None = None,
         headers: dict[str, str] | None = None) -> HTMLResponse:
    """A residents' page: ``body`` in the frame (title, language link to ``switch``), a strict CSP by ``nonce``."""
    other = "en" if lang == "zh" else "zh"
    top = f'<div class="top"><h1>{e(title)}</h1>' + (
        f'<a id="pub-lang" href="{e(switch)}?lang={other}">{e(t(lang, "pub.lang"))}</a>' if switch else "") + "</div>"
    doc = (f'<!doctype html><html lang="{"en" if lang == "en" else "zh-CN"}"><head><meta charset="utf-8">'
           '<meta name="viewport" content="width=device-width,initial-scale=1"><meta name="referrer" '
           f'content="same-origin"><title>{e(title)}</title><style nonce="{nonce}">{STYLE}{ASK_STYLE}</style></head>'
           f"<body><main>{top}{body}</main></body></html>")
    csp = (f"default-src 'none'; style-src 'nonce-{nonce}'; img-src 'self'; form-action 'self'; "
           "frame-ancestors 'none'; base-uri 'none'")
    # same-origin: the browser sends its Origin with the form (no-referrer would make it "null"), and no page
    # elsewhere ever learns a tracking link
    return HTMLResponse(doc, status_code=status, headers={"Content-Security-Policy": csp, "Cache-Control": "no-store",
                                                          "Referrer-Policy": "same-origin", **(headers or {})})


class PublicForms:
    """The checks of one router's public routes. ``service()``: a ticket service on a pooled connection (the
    API's); ``views``: page views per client address (default: 60 at once, then 2 a second: guessing tokens is
    slow); ``what`` names the pages in the log."""

    def __init__(self, communities: Iterable[Community],
                 service: Callable[[], contextlib.AbstractContextManager[TicketService]], *,
                 views: Limiter | None = None, what: str = "public page") -> None:
        self.communities = {c.id: c for c in communities}
        self.service = service
        self.views = views or PerKeyLimiter(60, 0.5)
        self.what = what

    @staticmethod
    def lang_of(request: Request) -> str:
        """``?lang=`` if given, else the dashboard's language cookie, else Chinese."""
        v = request.query_params.get("lang")
        if v in ("zh", "en"):
            return v
        return "en" if request.cookies.get(LANG_COOKIE) == "en" else "zh"

    @staticmethod
    def client(request: Request) -> str:
        """The rate limits' key: the client address (see the module's doc)."""
        return request.client.host if request.client else "?"

    def place(self, community: str, building: str) -> tuple[Community, Any]:
        """The community and building of the URL (404 for an unknown or malformed one)."""
        c = self.communities.get(community) if ID_RE.match(community) else None
        b = c.building(building) if c is not None and ID_RE.match(building) else None
        if c is None or b is None:
            raise Refused(404, "pub.err.not_found")
        return c, b

    def refused(self, request: Request, exc: Refused) -> HTMLResponse:
        """The refusal page (``Retry-After`` with a 429)."""
        lang = self.lang_of(request)
        body = f'<div class="err" id="pub-error">{e(t(lang, exc.key, **exc.values))}</div>'
        headers = {"Retry-After": str(exc.values.get("s", 60))} if exc.status == 429 else {}
        return page(lang, t(lang, "pub.err.title"), body, secrets.token_urlsafe(12), exc.status, headers=headers)

    async def run(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` in a worker thread; the database's being unavailable becomes a 503 refusal."""
        try:
            return await anyio.to_thread.run_sync(fn)
        except (StorageError, OperationalError, InterfaceError) as exc:
            log.warning("%s: database unavailable: %s", self.what, str(exc).splitlines()[0] if str(exc) else exc)
            raise Refused(503, "pub.err.unavailable") from None

    async def db(self, fn: Callable[[TicketService], Any]) -> Any:
        """``fn(service)`` on a pooled connection in a worker thread (503 when the database is unavailable)."""
        def go() -> Any:
            with self.service() as svc:
                return fn(svc)

        return await self.run(go)

    @staticmethod
    def form_token(request: Request) -> tuple[str, bool]:
        """The double-submit token of this browser (a new one when it has none or a malformed one)."""
        have = request.cookies.get(FORM_COOKIE, "")
        if TOKEN_RE.match(have):
            return have, False
        return secrets.token_urlsafe(24), True

    @staticmethod
    def set_form_cookie(response: Response, token: str, request: Request) -> None:
        response.set_cookie(FORM_COOKIE, token, max_age=7 * 86400, path=PREFIX, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")

    @staticmethod
    def check_post(request: Request, form: FormData) -> None:
        """403 unless the form's token matches the cookie and the ``Origin``, if sent, is this host."""
        origin = request.headers.get("origin")  # "null" from privacy settings: the form token still decides
        if origin is not None and origin != "null" and urlsplit(origin).netloc != request.headers.get("host", ""):
            raise Refused(403, "pub.err.form")
        sent = form.get("form_token")
        have = request.cookies.get(FORM_COOKIE, "")
        if not isinstance(sent, str) or not TOKEN_RE.match(have) or not secrets.compare_digest(sent, have):
            raise Refused(403, "pub.err.form")

    async def allowed(self, request: Request, limiter: Limiter) -> None:
        """429 once the client address has spent ``limiter``'s budget (a shared one asks the database)."""
        key = self.client(request)
        ok = await self.run(lambda: limiter.take(key)) if isinstance(limiter, SharedLimiter) else limiter.take(key)
        if not ok:
            raise Refused(429, "pub.err.rate_limited", s=max(1, round(1 / limiter.rate)))

    async def read_form(self, request: Request, limiter: Limiter, *, max_files: int,
                        max_part_size: int) -> FormData:
        """The POST's form, once the address is within ``limiter``'s budget (429), the body is a form (415) of
        sane size (400) and the form is this site's own (403, :meth:`check_post`). The caller closes it."""
        await self.allowed(request, limiter)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in ("multipart/form-data", "application/x-www-form-urlencoded"):
            raise Refused(415, "pub.err.bad")
        try:
            form = await request.form(max_files=max_files, max_fields=MAX_FIELDS, max_part_size=max_part_size)
        except Exception:  # malformed multipart, too many parts, a part too large: the client's fault
            raise Refused(400, "pub.err.bad") from None
        try:
            self.check_post(request, form)
        except Refused:
            await form.close()
            raise
        return form

    def view_allowed(self, request: Request) -> None:
        """429 once the client address has viewed too many pages (in memory, per gateway)."""
        if not self.views.take(self.client(request)):
            raise Refused(429, "pub.err.rate_limited", s=2)

