"""The control-room dashboard and the grid-worker pages (Dash). Does I/O: HTTP, through ``DashboardData``.

:func:`create_app` builds the Dash app around a :class:`viz.data.DashboardData`; :func:`serve` runs
it on a threaded WSGI server. The composition root (``gateway/cli.py``) builds the data source.

Pages (one Dash app, routed by path):

====================  ==========================================  =========================
path                  what                                        roles
====================  ==========================================  =========================
``/``                 3D community + active alarms panel          operator, admin
``/building/<id>``    the same with one building's floors apart   operator, admin
``/device/<id>``      device detail with history charts           operator, admin
``/tickets``          ticket board with SLA countdowns            operator, admin, supervisor
``/kpi``              KPIs per worker and grid                    operator, admin, supervisor
``/hotspots``         incidents per building/floor/kind, outliers operator, admin, supervisor
``/care``             care homes red/yellow/green, inactivity     operator, admin, supervisor
``/worker``           my tickets (phone)                          everyone signed in
``/worker/ticket/<id>`` one ticket: SOP, snapshot, accept/feedback/resolve  everyone signed in
``/login``            sign-in form                                anyone
====================  ==========================================  =========================

Security: the session is an HttpOnly, SameSite=Lax cookie holding the token the data source issued
(the REST API accepts the same token), marked Secure behind TLS (``secure_cookies``, or per request
when a proxy sends ``X-Forwarded-Proto: https``). A Flask hook sends page requests without a valid
session to the sign-in page and refuses pages a role may not open; *every* callback resolves the user
again from the cookie and checks the role before touching data (a forged callback request gets
nothing: HTTP 204). The 2 Hz poll notices an expired session and sends the browser to the sign-in
page. Unexpected errors in a callback are logged and swallowed, so a browser never sees a stack trace.

Sign-in attempts are throttled by the data source (per address and account, with a lockout): a
refused attempt gets 429 (503 when the server is busy hashing passwords) with ``Retry-After`` and a
page saying when to try again. When the database is down, pages answer 503 at once with a generic
note (no host, port or user: those are only in the server log); an open dashboard keeps its screen
and its session instead of being sent to the sign-in page. Redirect targets (``next``) must be local
paths. Every response carries nosniff, ``X-Frame-Options: DENY`` and a Referrer-Policy; HTML pages a
Content-Security-Policy (scripts: our origin, the hashes of Dash's inline scripts, and
``'unsafe-eval'``, which Plotly's WebGL traces need). Paths with ``..``, backslashes or control
characters, unknown Dash resources and malformed callback requests get 404/400, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import re
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import parse_qs, quote, urlsplit

import flask
from dash import ALL, Dash, Input, Output, State, ctx, dcc, html, no_update
from dash.development.base_component import Component
from dash.exceptions import DependencyException, PreventUpdate
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Response as HttpResponse

from twin import catalogue
from twin import geometry as geo
from twin.alarms import Severity
from twin.community import Community
from twin.people import Role, User
from twin.state import Level
from viz import analytics as an
from viz.data import (
    ActionRefused,
    AlarmView,
    DashboardData,
    DatabaseDown,
    DataUnavailable,
    Photo,
    SignInRefused,
    TicketView,
)
from viz.i18n import DEFAULT_LANG, duration, floor_label, kind_label, norm_lang, rule_label, t
from viz.scene import DEVICE_UNKNOWN, Marker, Scene

log = logging.getLogger(__name__)

SESSION_COOKIE = "gridtwin_session"
LANG_COOKIE = "gridtwin_lang"
CHINA = timezone(timedelta(hours=8), "CST")
MAX_PHOTO_BYTES = 5 * 1024 * 1024
PHOTO_TYPES = ("image/jpeg", "image/png", "image/webp")
MAX_TEXT = 2000  # longest comment or note accepted from a form
ID_RE = re.compile(r"^[A-Za-z0-9_.@/:\-]{1,200}$")  # alarm keys, ticket ids, device ids
USER_CACHE_S = 2.0  # how long a token -> user answer is reused (sign-out clears it at once)
DOWN_CACHE_S = 1.0  # how long "the database is down" is believed before asking again
UNAVAILABLE_RETRY_S = 5  # Retry-After of a 503 while the database is down

OPERATORS = frozenset({Role.OPERATOR, Role.ADMIN})
SUPERVISORS = frozenset({Role.OPERATOR, Role.ADMIN, Role.SUPERVISOR})
EVERYONE = frozenset(Role)
PAGE_ROLES: Mapping[str, frozenset[Role]] = {
    "control": OPERATORS, "device": OPERATORS, "tickets": SUPERVISORS, "kpi": SUPERVISORS,
    "hotspots": SUPERVISORS, "care": SUPERVISORS, "worker": EVERYONE, "wticket": EVERYONE,
}
HOME: Mapping[Role, str] = {Role.WORKER: "/worker", Role.SUPERVISOR: "/tickets", Role.OPERATOR: "/",
                            Role.ADMIN: "/"}
NAV: tuple[tuple[str, str, str], ...] = (
    ("control", "/", "nav.control"), ("tickets", "/tickets", "nav.tickets"), ("kpi", "/kpi", "nav.kpi"),
    ("hotspots", "/hotspots", "nav.hotspots"), ("care", "/care", "nav.care"), ("worker", "/worker", "nav.worker"),
)
SEVERITY_ORDER = (Severity.CRITICAL, Severity.MAJOR, Severity.MINOR, Severity.WARNING)
OPEN_PATHS = ("/login", "/auth/", "/lang/", "/assets/", "/_dash", "/_favicon", "/_reload", "/favicon.ico")


# -- paths ---------------------------------------------------------------------------------------------


def parse_path(path: str | None) -> tuple[str, str | None]:
    """(page kind, argument) of a URL path; unknown paths are kind ``notfound`` with the path."""
    p = (path or "/").rstrip("/") or "/"
    fixed = {"/": "control", "/tickets": "tickets", "/kpi": "kpi", "/hotspots": "hotspots", "/care": "care",
             "/worker": "worker", "/login": "login"}
    if p in fixed:
        return fixed[p], None
    for prefix, kind in (("/building/", "control"), ("/device/", "device"), ("/worker/ticket/", "wticket")):
        if p.startswith(prefix) and len(p) > len(prefix):
            return kind, p[len(prefix):]
    return "notfound", p


def safe_next(target: str | None) -> str:
    """Only local absolute paths may be redirect targets (no open redirect); anything else is ``/``.

    A target must start with exactly one ``/`` and hold no backslash and no control or other
    non-printable character: browsers drop tabs and newlines from URLs (``/%09/evil.example`` becomes
    ``//evil.example``, another site) and read a backslash as ``/``; a newline cannot go into a header.
    """
    if not target or len(target) > 2048 or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or not target.isprintable():
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or parts.path.startswith("//"):
        return "/"
    return target


def bad_path(path: str) -> bool:
    """A request path no page or resource of ours has: ``.``/``..`` segments, backslashes, control characters."""
    if "\\" in path or not path.isprintable():
        return True
    return any(seg in (".", "..") for seg in path.split("/"))


# -- metrics -------------------------------------------------------------------------------------------


class CallbackTimings:
    """Server time of callback requests (``/_dash-update-component``), bounded, per output."""

    def __init__(self, keep: int = 20_000) -> None:
        self._lock = threading.Lock()
        self._samples: deque[tuple[str, float]] = deque(maxlen=keep)

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self._samples.append((name, seconds))

    def clear(self) -> None:
        with self._lock:
            self._samples.clear()

    def summary(self) -> dict[str, Any]:
        with self._lock:
            samples = list(self._samples)
        if not samples:
            return {"count": 0}
        ms = sorted(s * 1000 for _n, s in samples)
        per: dict[str, list[float]] = {}
        for n, s in samples:
            per.setdefault(n, []).append(s * 1000)

        def p95(v: list[float]) -> float:
            v = sorted(v)
            return v[min(len(v) - 1, int(0.95 * len(v)))]

        return {"count": len(ms), "p50_ms": round(statistics.median(ms), 2), "p95_ms": round(p95(ms), 2),
                "max_ms": round(ms[-1], 2),
                "per_output": {n: {"count": len(v), "p95_ms": round(p95(v), 2)} for n, v in sorted(per.items())}}


# -- request context -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Req:
    user: User
    lang: str
    now: datetime


class Dashboard:
    """The app's state: the data source, the 3D scene cache, callback timings, the user cache."""

    def __init__(self, data: DashboardData, *, poll_ms: int, tz: tzinfo, secure_cookies: bool,
                 clock: Callable[[], datetime]) -> None:
        self.data = data
        self.poll_ms = poll_ms
        self.tz = tz
        self.secure_cookies = secure_cookies
        self.clock = clock
        self.timings = CallbackTimings()
        self._scene: Scene | None = None
        self._scene_for: Community | None = None
        self._scene_lock = threading.Lock()
        self._users: dict[str, tuple[float, User | None]] = {}
        self._users_lock = threading.Lock()
        self._down_at = -DOWN_CACHE_S

    # community and scene (rebuilt when the data source hands out a new community object)
    def community(self) -> Community:
        return self.data.community()

    def scene(self) -> Scene:
        c = self.community()
        with self._scene_lock:
            if self._scene is None or self._scene_for is not c:
                self._scene = Scene(c)
                self._scene_for = c
            return self._scene

    # who is asking
    def user_for(self, token: str | None) -> User | None:
        """The session's user, None when there is no valid session. Raises :class:`DataUnavailable`
        when it cannot tell (the database is down): that is not a reason to end anyone's session."""
        if not token or len(token) > 512:
            return None
        now = time.monotonic()
        with self._users_lock:
            hit = self._users.get(token)
            if hit is not None and now - hit[0] < USER_CACHE_S:
                return hit[1]
            if now - self._down_at < DOWN_CACHE_S:
                raise DatabaseDown()
        try:
            user = self.data.user_for_token(token)
        except DataUnavailable:
            with self._users_lock:
                self._down_at = now
            raise
        with self._users_lock:
            if len(self._users) > 10_000:
                self._users.clear()
            self._users[token] = (now, user)
        return user

    def forget(self, token: str) -> None:
        with self._users_lock:
            self._users.pop(token, None)

    def request(self) -> Req | None:
        """Who is asking (None: nobody signed in); raises :class:`DataUnavailable` when it cannot tell."""
        user = self.user_for(flask.request.cookies.get(SESSION_COOKIE))
        if user is None:
            return None
        return Req(user, current_lang(), self.clock())

    def local(self, dt: datetime | None, fmt: str = "%m-%d %H:%M") -> str:
        return "" if dt is None else dt.astimezone(self.tz).strftime(fmt)


def current_lang() -> str:
    return norm_lang(flask.request.cookies.get(LANG_COOKIE, DEFAULT_LANG))


def behind_tls(board: Dashboard) -> bool:
    """Cookies get the Secure flag: configured so, or this request came over HTTPS (directly or via a proxy)."""
    if board.secure_cookies or flask.request.is_secure:
        return True
    forwarded = flask.request.headers.get("X-Forwarded-Proto", "")
    return forwarded.split(",")[0].strip().lower() == "https"


def unavailable_text(lang: str, exc: DataUnavailable) -> str:
    """What a person reads when part of the system is not there: never connection details."""
    if isinstance(exc, DatabaseDown):
        return t(lang, "err.db_down")
    return t(lang, "err.unavailable", detail=str(exc))


# -- the app ---------------------------------------------------------------------------------------------


def create_app(data: DashboardData, *, poll_ms: int = 500, tz: tzinfo = CHINA, secure_cookies: bool = False,
               clock: Callable[[], datetime] | None = None) -> Dash:
    """The dashboard as a Dash app; ``app.server`` is its Flask (WSGI) app.

    ``data``: the data source (see :class:`viz.data.DashboardData`). ``poll_ms``: how often browsers
    ask whether anything changed. ``secure_cookies``: mark cookies Secure (behind HTTPS).
    ``callback_timings(app)`` gives the server time of callbacks (the benchmark uses it).
    """
    dash_board = Dashboard(data, poll_ms=poll_ms, tz=tz, secure_cookies=secure_cookies,
                           clock=clock or (lambda: datetime.now(UTC)))
    server = flask.Flask("gridtwin_dashboard")
    # gzip everything but streamed files (assets): flask-compress leaves those file handles open
    server.config["COMPRESS_STREAMS"] = False
    options: dict[str, Any] = {  # (Dash's type hints do not know a Flask server or update_title=None)
        "server": server, "assets_folder": str(Path(__file__).parent / "assets"),
        "title": t(DEFAULT_LANG, "app.title"), "update_title": None, "suppress_callback_exceptions": True,
        "compress": True, "serve_locally": True,
        "meta_tags": [{"name": "viewport", "content": "width=device-width, initial-scale=1"}],
    }
    app = Dash(__name__, **options)
    app.index_string = app.index_string.replace("<html>", '<html lang="zh-CN">')
    app.layout = html.Div(id="root", children=[
        dcc.Location(id="url", refresh="callback-nav"),
        dcc.Location(id="redirect", refresh=True),
        dcc.Store(id="version"),
        dcc.Store(id="page-kind"),
        dcc.Interval(id="poll", interval=poll_ms),
        html.Header(id="topbar", className="topbar"),
        html.Main(id="page", className="page"),
    ])
    server.extensions["gridtwin_dashboard"] = dash_board
    _routes(server, dash_board)
    _callbacks(app, dash_board)
    _protect(app, server)
    return app


def callback_timings(app: Dash) -> CallbackTimings:
    board: Dashboard = app.server.extensions["gridtwin_dashboard"]
    return board.timings


# -- Flask routes: sign-in, language, media, page guard ----------------------------------------------


def _routes(server: flask.Flask, board: Dashboard) -> None:
    data = board.data

    @server.before_request
    def _guard() -> HttpResponse | None:
        flask.g.t0 = time.perf_counter()
        path = flask.request.path
        if bad_path(path):
            return flask.Response(status=404)
        if flask.request.method != "GET" or path.startswith(OPEN_PATHS) or path.startswith("/media/"):
            return None
        kind, _arg = parse_path(path)
        try:
            user = board.user_for(flask.request.cookies.get(SESSION_COOKIE))
        except DataUnavailable:
            return _unavailable_page()
        if user is None:
            return flask.redirect(f"/login?next={quote(path)}", code=302)
        if kind == "control" and path in ("", "/") and user.role not in OPERATORS:
            return flask.redirect(HOME[user.role], code=302)
        roles = PAGE_ROLES.get(kind)
        if roles is not None and user.role not in roles:
            return _forbidden_page(user)
        return None

    @server.after_request
    def _after(resp: flask.Response) -> flask.Response:
        h = resp.headers
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("Referrer-Policy", "same-origin")
        if resp.mimetype == "text/html":
            h.setdefault("Content-Security-Policy", server.config.get("GRIDTWIN_CSP", PLAIN_CSP))
        if behind_tls(board):
            h.setdefault("Strict-Transport-Security", "max-age=31536000")
        t0 = flask.g.get("t0")
        if t0 is not None and flask.request.path == "/_dash-update-component":
            body = flask.request.get_json(silent=True)
            output = body.get("output", "?") if isinstance(body, dict) else "?"
            board.timings.add(str(output)[:80], time.perf_counter() - t0)
        return resp

    @server.errorhandler(DependencyException)
    def _no_such_resource(_exc: DependencyException) -> flask.Response:
        return flask.Response(status=404)  # /_dash-component-suites/<package>/<anything not registered>

    @server.post("/auth/login")
    def _login() -> HttpResponse:
        form = flask.request.form
        username = form.get("username", "")[:128].strip()
        password = form.get("password", "")[:1024]
        target = safe_next(form.get("next"))
        try:
            session = (data.sign_in(username, password, flask.request.remote_addr or "")
                       if username and password else None)
        except SignInRefused as exc:
            return _refused_page(board, exc, target)
        except DataUnavailable:
            return _unavailable_page(target)
        if session is None:
            return flask.redirect(f"/login?error=bad&next={quote(target)}")
        if target == "/" or parse_path(target)[0] in ("login", "notfound"):
            target = HOME[session.user.role]
        resp = flask.redirect(target)
        max_age = max(60, int((session.expires_at - datetime.now(UTC)).total_seconds()))
        resp.set_cookie(SESSION_COOKIE, session.token, max_age=max_age, httponly=True, samesite="Lax",
                        secure=behind_tls(board))
        return resp

    @server.get("/auth/logout")
    def _logout() -> HttpResponse:
        token = flask.request.cookies.get(SESSION_COOKIE)
        if token:
            board.forget(token)
            with contextlib.suppress(DataUnavailable):
                data.sign_out(token)
        resp = flask.redirect("/login?signed_out=1")
        resp.delete_cookie(SESSION_COOKIE, httponly=True, samesite="Lax", secure=behind_tls(board))
        return resp

    @server.get("/lang/<code>")
    def _lang(code: str) -> HttpResponse:
        resp = flask.redirect(safe_next(flask.request.args.get("next")))
        resp.set_cookie(LANG_COOKIE, norm_lang(code), max_age=365 * 86400, samesite="Lax", secure=behind_tls(board))
        return resp

    def media_user() -> User | None:
        try:
            return board.user_for(flask.request.cookies.get(SESSION_COOKIE))
        except DataUnavailable:
            flask.abort(flask.Response(status=503, headers={"Retry-After": str(UNAVAILABLE_RETRY_S)}))

    @server.get("/media/tickets/<ticket_id>/snapshot.png")
    def _snapshot(ticket_id: str) -> flask.Response:
        user = media_user()
        if user is None or not ID_RE.match(ticket_id):
            return flask.Response(status=404)
        try:
            png = data.ticket_snapshot(user, ticket_id)
        except (DataUnavailable, ActionRefused):
            png = None
        if png is None:
            return flask.Response(status=404)
        return flask.Response(png, mimetype="image/png", headers={"Cache-Control": "private, max-age=60"})

    @server.get("/media/photos/<photo_id>")
    def _photo(photo_id: str) -> flask.Response:
        user = media_user()
        if user is None or not ID_RE.match(photo_id):
            return flask.Response(status=404)
        try:
            got = data.ticket_photo(user, photo_id)
        except (DataUnavailable, ActionRefused):
            got = None
        if got is None or got[1] not in PHOTO_TYPES:
            return flask.Response(status=404)
        return flask.Response(got[0], mimetype=got[1], headers={"Cache-Control": "private, max-age=300"})


def _protect(app: Dash, server: flask.Flask) -> None:
    """The CSP of the dashboard's pages (hashes of Dash's inline scripts, so computed after every callback is
    registered) and a check that a callback request names a callback we have (else Dash answers 500)."""
    server.config["GRIDTWIN_CSP"] = dashboard_csp(cast(Any, app).csp_hashes())
    known = app.callback_map

    @server.before_request
    def _callback_shape() -> HttpResponse | None:
        if flask.request.path != "/_dash-update-component" or flask.request.method != "POST":
            return None
        body = flask.request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("output"), str) or body["output"] not in known \
                or not isinstance(body.get("inputs"), list) or not isinstance(body.get("state", []), list) \
                or not isinstance(body.get("outputs"), dict | list):
            return flask.Response("malformed callback request", status=400, mimetype="text/plain")
        return None


PLAIN_CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
             "base-uri 'none'")


def dashboard_csp(script_hashes: Iterable[str]) -> str:
    """The dashboard's Content-Security-Policy. Scripts: our origin, Dash's inline scripts by hash, and
    'unsafe-eval' (Plotly's WebGL traces compile code at run time); styles: inline too (Plotly and React
    set style attributes); images: data: and blob: URLs (Plotly, photo previews)."""
    return ("default-src 'self'; "
            f"script-src 'self' 'unsafe-eval' {' '.join(script_hashes)}; "
            "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
            "connect-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'self'; form-action 'self'; "
            "frame-ancestors 'none'")


def _plain_page(lang: str, paragraphs: Sequence[tuple[str, str]], link: tuple[str, str], status: int,
                headers: Mapping[str, str] | None = None) -> flask.Response:
    """A small server-rendered page (no Dash): paragraphs as (id, text), one link (href, text)."""
    from html import escape

    ps = "".join(f'<p id="{escape(i)}">{escape(text)}</p>' for i, text in paragraphs)
    body = (f'<!doctype html><html lang="{"zh-CN" if lang == "zh" else "en"}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{escape(t(lang, "app.title"))}'
            f'</title><link rel="stylesheet" href="/assets/style.css"></head><body class="plain"><main class="notice">'
            f'{ps}<p><a href="{escape(link[0])}">{escape(link[1])}</a></p></main></body></html>')
    return flask.Response(body, status=status, mimetype="text/html", headers=dict(headers or {}))


def _forbidden_page(user: User) -> flask.Response:
    lang = current_lang()
    return _plain_page(lang, [("forbidden", t(lang, "err.forbidden", role=t(lang, "role." + user.role.value)))],
                       (HOME[user.role], t(lang, "err.back_home")), 403)


def _refused_page(board: Dashboard, exc: SignInRefused, target: str) -> flask.Response:
    """A sign-in refused before the password was checked: 429 (503 if busy), when to retry, a way back."""
    lang = current_lang()
    s = exc.retry_after_s
    wait = duration(lang, -(-s // 60) * 60) if s >= 120 else t(lang, "login.seconds", n=s)  # minutes rounded up
    text = t(lang, f"login.{exc.reason}", at=board.local(exc.retry_at, "%H:%M"), wait=wait)
    return _plain_page(lang, [("login-refused", text)], (f"/login?next={quote(target)}", t(lang, "login.back")),
                       503 if exc.reason == "busy" else 429, {"Retry-After": str(exc.retry_after_s)})


def _unavailable_page(target: str | None = None) -> flask.Response:
    """The database is down: 503 at once, a generic note, no connection details."""
    lang = current_lang()
    back = flask.request.full_path.rstrip("?") if target is None else f"/login?next={quote(target)}"
    return _plain_page(lang, [("unavailable", t(lang, "err.service_down"))], (safe_next(back), t(lang, "err.retry")),
                       503, {"Retry-After": str(UNAVAILABLE_RETRY_S)})


# -- callbacks -----------------------------------------------------------------------------------------


def _callbacks(app: Dash, board: Dashboard) -> None:
    data = board.data

    def guarded(*deps: Any, roles: frozenset[Role] = EVERYONE, **kw: Any) -> Callable[[Callable[..., Any]], None]:
        """Register a callback that runs only for a signed-in user with one of ``roles``.

        The wrapped function gets a :class:`Req` first. No user or wrong role: nothing is returned
        (HTTP 204), whatever the inputs say. Unexpected errors are logged, never sent to the browser.
        """

        def deco(fn: Callable[..., Any]) -> None:
            def run(*args: Any) -> Any:
                try:
                    req = board.request()
                except DataUnavailable:
                    raise PreventUpdate from None
                if req is None or req.user.role not in roles:
                    raise PreventUpdate
                try:
                    return fn(req, *args)
                except PreventUpdate:
                    raise
                except DataUnavailable:  # the database is down: keep what the screen shows (the data source logs it)
                    raise PreventUpdate from None
                except Exception:
                    log.exception("dashboard callback %s failed", fn.__name__)
                    raise PreventUpdate from None

            run.__name__ = fn.__name__
            app.callback(*deps, **kw)(run)

        return deco

    # -- frame: router and poll ----------------------------------------------------------------------

    @app.callback(Output("topbar", "children"), Output("page", "children"), Output("page-kind", "data"),
                  Input("url", "pathname"), Input("url", "search"), State("page-kind", "data"))
    def route(path: str | None, search: str | None, current: str | None) -> Any:
        kind, arg = parse_path(path)
        query = parse_qs((search or "").lstrip("?"))
        lang = current_lang()
        if kind == "login":
            return [], _login_page(lang, query), "login"
        try:
            req = board.request()
        except DataUnavailable:
            return [], _notice(t(lang, "err.service_down"), None, "unavailable"), "error"
        if req is None:
            return [], _login_page(lang, {"expired": ["1"], "next": [path or "/"]}), "login"
        try:
            top = _topbar(req, path or "/", board)
            if kind == "control" and current == "control":
                return top, no_update, "control"  # building <-> overview: the scene callback redraws
            roles = PAGE_ROLES.get(kind)
            if roles is not None and req.user.role not in roles:
                return top, _notice(t(lang, "err.forbidden", role=t(lang, "role." + req.user.role.value)),
                                    req, "forbidden"), "forbidden"
            page = _page(kind, arg, req, board)
        except DataUnavailable as exc:  # the data source has logged what went wrong
            return [], _notice(unavailable_text(lang, exc), req, "unavailable"), "error"
        except Exception:
            log.exception("rendering %s failed", path)
            return [], _notice(t(lang, "err.internal"), None, "internal"), "error"
        return top, page, kind

    @app.callback(Output("version", "data"), Output("redirect", "href"),
                  Input("poll", "n_intervals"), State("version", "data"), State("url", "pathname"),
                  State("url", "search"))
    def poll(_n: int | None, current: str | None, path: str | None, _search: str | None) -> Any:
        if parse_path(path)[0] == "login":
            raise PreventUpdate
        try:
            signed_in = board.request() is not None
        except DataUnavailable:  # the database is down: keep the screen (and the session) until it is back
            raise PreventUpdate from None
        if not signed_in:
            return no_update, f"/login?expired=1&next={quote(path or '/')}"
        try:
            v = data.version()
        except DataUnavailable:  # the database is down: nothing new to show (the data source logs it)
            raise PreventUpdate from None
        except Exception:
            log.exception("version poll failed")
            raise PreventUpdate from None
        if v == current:
            raise PreventUpdate
        return v, no_update

    # -- control room: 3D scene ---------------------------------------------------------------------

    @guarded(Output("scene", "figure"), Output("scene-title", "children"), Output("scene-buildings", "data"),
             Output("scene-note", "children"),
             Input("version", "data"), Input("url", "pathname"), Input("colour-mode", "value"), roles=OPERATORS)
    def draw_scene(req: Req, _v: str | None, path: str | None, mode: str | None) -> Any:
        kind, building = parse_path(path)
        if kind != "control":
            raise PreventUpdate
        return _scene_figure(req, board, building, mode or "alarm")

    @guarded(Output("url", "pathname"), Input("scene", "clickData"), State("url", "pathname"), roles=OPERATORS)
    def click_scene(req: Req, click: Mapping[str, Any] | None, path: str | None) -> Any:
        points = (click or {}).get("points") or []
        if not points:
            raise PreventUpdate
        cd = points[0].get("customdata")
        scene = board.scene()
        if isinstance(cd, str) and board.community().device(cd) is not None:
            return f"/device/{cd}"
        if isinstance(cd, int | float) and 0 <= int(cd) < len(scene.buildings):
            target = f"/building/{scene.buildings[int(cd)].id}"
            return no_update if target == path else target
        raise PreventUpdate

    cast(Any, app).clientside_callback(
        """function(hover, names) {
            var hide = {"display": "none"};
            if (!hover || !hover.points || !hover.points.length || !names) { return ["", hide]; }
            var cd = hover.points[0].customdata;
            if (typeof cd === "number" && cd >= 0 && cd < names.length) {
                return [names[cd], {"display": "block"}];
            }
            return ["", hide];
        }""",
        Output("hover-card", "children"), Output("hover-card", "style"),
        Input("scene", "hoverData"), State("scene-buildings", "data"),
    )

    # -- control room: alarms panel -----------------------------------------------------------------

    @guarded(Output("alarm-list", "children"), Output("alarm-count", "children"),
             Output("f-building", "options"), Output("f-category", "options"), Output("alarm-count", "className"),
             Input("version", "data"), Input("alarms-bump", "data"), Input("f-severity", "value"),
             Input("f-category", "value"), Input("f-building", "value"), Input("alarm-selected-key", "data"),
             roles=OPERATORS)
    def alarm_list(req: Req, _v: Any, _bump: Any, sev: Any, cat: Any, bld: Any, selected: Any) -> Any:
        alarms = list(data.active_alarms())
        community = board.community()
        sevs, cats, blds = _str_set(sev), _str_set(cat), _str_set(bld)
        shown = [a for a in alarms
                 if (not sevs or a.severity.value in sevs)
                 and (not cats or _category(a, community) in cats)
                 and (not blds or _alarm_building(a, community) in blds)]
        lang = req.lang
        rows: list[Any] = [_alarm_row(a, req, board, selected == a.key) for a in shown[:300]]
        b_opts = [{"label": b.name, "value": b.id} for b in community.buildings]
        c_opts = [{"label": t(lang, f"category.{c}"), "value": c}
                  for c in ("fire", "elevator", "environment", "water", "care", "other")]
        count = t(lang, "alarms.count", n=len(shown)) if len(shown) == len(alarms) else f"{len(shown)}/{len(alarms)}"
        badge = "badge" if any(a.status.active for a in shown) else "badge zero"
        return rows or [html.P(t(lang, "alarms.none"), className="muted")], count, b_opts, c_opts, badge

    @guarded(Output("alarm-selected-key", "data"), Output("alarm-selected", "children"),
             Input({"type": "alarm-row", "key": ALL}, "n_clicks"), roles=OPERATORS)
    def select_alarm(req: Req, clicks: list[int | None]) -> Any:
        trig = ctx.triggered_id
        if not isinstance(trig, Mapping) or not any(clicks or []):
            raise PreventUpdate
        if not ctx.triggered or not ctx.triggered[0].get("value"):
            raise PreventUpdate
        key = str(trig.get("key", ""))
        alarm = next((a for a in data.active_alarms() if a.key == key), None)
        if alarm is None:
            return None, t(req.lang, "refused.not_found")
        return key, t(req.lang, "alarms.selected", what=_alarm_title(alarm, req, board))

    @guarded(Output("action-msg", "children"), Output("action-msg", "className"), Output("ack-comment", "value"),
             Output("alarms-bump", "data"),
             Input("ack-btn", "n_clicks"), Input("shelve-btn", "n_clicks"), Input("dispatch-btn", "n_clicks"),
             State("alarm-selected-key", "data"), State("ack-comment", "value"), State("shelve-for", "value"),
             roles=OPERATORS)
    def alarm_action(req: Req, _a: Any, _s: Any, _d: Any, key: Any, comment: Any, shelve_for: Any) -> Any:
        action = ctx.triggered_id
        if action not in ("ack-btn", "shelve-btn", "dispatch-btn") or not ctx.triggered[0].get("value"):
            raise PreventUpdate
        lang = req.lang
        if not isinstance(key, str) or not ID_RE.match(key):
            return t(lang, "alarms.select_first"), "msg warn", no_update, no_update
        note = (comment or "").strip()[:MAX_TEXT] if isinstance(comment, str) else ""
        try:
            if action == "ack-btn":
                if not note:
                    return t(lang, "alarms.comment_needed"), "msg warn", no_update, no_update
                data.acknowledge(req.user, key, note)
                msg = t(lang, "alarms.acked", key=key)
            elif action == "shelve-btn":
                hours = {"1": 1, "8": 8, "24": 24}.get(str(shelve_for), 1)
                until = req.now + timedelta(hours=hours)
                data.shelve(req.user, key, until)
                msg = t(lang, "alarms.shelved_ok", until=board.local(until))
            else:
                ticket = data.dispatch(req.user, key, note)
                msg = t(lang, "alarms.dispatched", ticket=ticket)
        except ActionRefused as exc:
            return _refusal(lang, exc), "msg warn", no_update, no_update
        except DataUnavailable as exc:
            return unavailable_text(lang, exc), "msg warn", no_update, no_update
        return msg, "msg ok", "", time.time()

    # -- ticket board -------------------------------------------------------------------------------

    @guarded(Output("board", "children"), Input("version", "data"), Input("board-clock", "n_intervals"),
             roles=SUPERVISORS)
    def ticket_board(req: Req, _v: Any, _n: Any) -> Any:
        return _ticket_board(req, board)

    # -- device detail ------------------------------------------------------------------------------

    @guarded(Output("history", "figure"), Output("history-note", "children"),
             Input("dev-range", "value"), Input("dev-field", "value"), State("url", "pathname"), roles=OPERATORS)
    def device_history(req: Req, rng: Any, fld: Any, path: str | None) -> Any:
        kind, dev_id = parse_path(path)
        dev = board.community().device(dev_id or "") if kind == "device" else None
        spec = catalogue.KINDS.get(dev.kind) if dev else None
        if dev is None or spec is None or not isinstance(fld, str) or spec.field(fld) is None:
            raise PreventUpdate
        span, bucket = an.RANGES.get(str(rng), an.RANGES["hour"])
        until = req.now
        points = data.device_history(dev.id, fld, until - span, until, bucket)
        f = spec.field(fld)
        unit = f.unit if f else ""
        note = "" if points else t(req.lang, "device.no_history")
        return _history_figure(points, req, board, fld, unit, f.normal if f else None), note

    # -- KPIs, care ---------------------------------------------------------------------------------

    @guarded(Output("kpi-tables", "children"), Input("kpi-period", "value"), roles=SUPERVISORS)
    def kpi_tables(req: Req, period: Any) -> Any:
        days = {"7": 7, "30": 30, "90": 90}.get(str(period), 30)
        return _kpi_tables(req, board, days)

    @guarded(Output("care-body", "children"), Input("version", "data"), Input("care-clock", "n_intervals"),
             roles=SUPERVISORS)
    def care(req: Req, _v: Any, _n: Any) -> Any:
        return _care_body(req, board)

    # -- worker pages -------------------------------------------------------------------------------

    @guarded(Output("my-tickets", "children"), Input("version", "data"), Input("worker-clock", "n_intervals"))
    def my_tickets(req: Req, _v: Any, _n: Any) -> Any:
        return _my_tickets(req, board)

    @guarded(Output("wt-body", "children"), Input("version", "data"), Input("wt-bump", "data"),
             Input("wt-clock", "n_intervals"), State("url", "pathname"))
    def worker_ticket(req: Req, _v: Any, _b: Any, _n: Any, path: str | None) -> Any:
        kind, tid = parse_path(path)
        if kind != "wticket" or tid is None:
            raise PreventUpdate
        return _ticket_body(req, board, tid)

    @guarded(Output("wt-photo-note", "children"), Input("wt-photo", "contents"), State("wt-photo", "filename"))
    def photo_ready(req: Req, contents: Any, filename: Any) -> Any:
        if not contents:
            raise PreventUpdate
        photo = _photo(contents, filename)
        if photo is None:
            return html.Span(t(req.lang, "worker.photo_bad", mb=MAX_PHOTO_BYTES // 2**20), className="msg warn")
        return t(req.lang, "worker.photo_ready", name=photo.filename or "photo")

    @guarded(Output("wt-msg", "children"), Output("wt-msg", "className"), Output("wt-bump", "data"),
             Output("wt-note", "value"),
             Input("wt-accept", "n_clicks"), Input("wt-feedback", "n_clicks"), Input("wt-resolve", "n_clicks"),
             State("url", "pathname"), State("wt-note", "value"), State("wt-photo", "contents"),
             State("wt-photo", "filename"))
    def worker_action(req: Req, _a: Any, _f: Any, _r: Any, path: str | None, note: Any, contents: Any,
                      filename: Any) -> Any:
        action = ctx.triggered_id
        if action not in ("wt-accept", "wt-feedback", "wt-resolve") or not ctx.triggered[0].get("value"):
            raise PreventUpdate
        kind, tid = parse_path(path)
        lang = req.lang
        if kind != "wticket" or tid is None or not ID_RE.match(tid):
            return t(lang, "refused.bad_input"), "msg warn", no_update, no_update
        text = note.strip()[:MAX_TEXT] if isinstance(note, str) else ""
        try:
            if action == "wt-accept":
                data.accept_ticket(req.user, tid)
                msg = t(lang, "worker.accepted")
            elif action == "wt-feedback":
                photo = _photo(contents, filename) if contents else None
                if contents and photo is None:
                    return (t(lang, "worker.photo_bad", mb=MAX_PHOTO_BYTES // 2**20), "msg warn", no_update,
                            no_update)
                if not text and photo is None:
                    return t(lang, "worker.note_needed"), "msg warn", no_update, no_update
                data.ticket_feedback(req.user, tid, text, photo)
                msg = t(lang, "worker.feedback_sent")
            else:
                if not text:
                    return t(lang, "worker.note_needed"), "msg warn", no_update, no_update
                data.resolve_ticket(req.user, tid, text)
                msg = t(lang, "worker.resolved")
        except ActionRefused as exc:
            return _refusal(lang, exc), "msg warn", no_update, no_update
        except DataUnavailable as exc:
            return unavailable_text(lang, exc), "msg warn", no_update, no_update
        return msg, "msg ok", time.time(), ""


# -- page builders -------------------------------------------------------------------------------------


C = TypeVar("C", bound=Component)


def _data(component: C, **attrs: str) -> C:
    """Set ``data-*`` attributes (tests and CSS find rows and states by them)."""
    for name, value in attrs.items():
        setattr(component, f"data-{name}", value)
    return component


def _str_set(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, list):
        return {v for v in value if isinstance(v, str)}
    return set()


def _refusal(lang: str, exc: ActionRefused) -> str:
    try:
        text = t(lang, f"refused.{exc.code}")
    except KeyError:
        text = t(lang, "refused.bad_input")
    return f"{text}{'：' if lang == 'zh' else ': '}{exc.detail}" if exc.detail else text


def _notice(text: str, req: Req | None, ident: str) -> html.Div:
    children: list[Any] = [html.P(text, id=ident)]
    if req is not None:
        children.append(html.A(t(req.lang, "err.back_home"), href=HOME[req.user.role]))
    return html.Div(children, className="notice")


def _topbar(req: Req, path: str, board: Dashboard) -> list[Any]:
    lang = req.lang
    links = [html.A(t(lang, label), href=href, className="nav-link" + (" active" if _active(path, href) else ""))
             for kind, href, label in NAV if req.user.role in PAGE_ROLES[kind]]
    other = "en" if lang == "zh" else "zh"
    return [
        html.Div([html.Span("gridtwin", className="brand"), html.Span(board.community().name, className="place")],
                 className="brand-box"),
        html.Nav(links, className="nav"),
        html.Div([
            html.Span(f"{req.user.display_name} · {t(lang, 'role.' + req.user.role.value)}", id="whoami"),
            html.A(t(lang, "nav.lang"), href=f"/lang/{other}?next={quote(path)}", id="lang-switch"),
            html.A(t(lang, "nav.signout"), href="/auth/logout", id="signout"),
        ], className="user-box"),
    ]


def _active(path: str, href: str) -> bool:
    if href == "/":
        return path == "/" or path.startswith(("/building/", "/device/"))
    return path == href or path.startswith(href + "/")


def _login_page(lang: str, query: Mapping[str, list[str]]) -> html.Div:
    notes = []
    if "error" in query:
        if query["error"][0] == "unavailable":
            notes.append(html.P(t(lang, "login.unavailable"), className="msg warn", id="login-error"))
        else:
            notes.append(html.P(t(lang, "login.bad"), className="msg warn", id="login-error"))
    if "expired" in query:
        notes.append(html.P(t(lang, "login.expired"), className="msg warn", id="login-expired"))
    if "signed_out" in query:
        notes.append(html.P(t(lang, "login.signed_out"), className="msg ok"))
    target = safe_next(query.get("next", ["/"])[0])
    other = "en" if lang == "zh" else "zh"
    return html.Div(className="login", children=[
        html.H1(t(lang, "app.title")),
        html.H2(t(lang, "login.title")),
        *notes,
        html.Form(method="POST", action="/auth/login", children=[
            html.Label([t(lang, "login.username"),
                        dcc.Input(id="username", name="username", type="text", autoComplete="username",
                                  required=True, maxLength=128)]),
            html.Label([t(lang, "login.password"),
                        dcc.Input(id="password", name="password", type="password", autoComplete="current-password",
                                  required=True, maxLength=1024)]),
            dcc.Input(type="hidden", name="next", value=target),
            html.Button(t(lang, "login.submit"), type="submit", id="login-submit", className="primary"),
        ]),
        html.A(t(lang, "nav.lang"), href=f"/lang/{other}?next={quote('/login?next=' + target)}", id="lang-switch"),
    ])


def _page(kind: str, arg: str | None, req: Req, board: Dashboard) -> Any:
    lang = req.lang
    if kind == "control":
        if arg is not None and board.community().building(arg) is None:
            return _notice(t(lang, "err.unknown_building", id=arg), req, "unknown-building")
        return _control_page(req, board)
    if kind == "device":
        return _device_page(req, board, arg or "")
    if kind == "tickets":
        return html.Div([html.H2(t(lang, "tickets.title")), html.Div(id="board"),
                         dcc.Interval(id="board-clock", interval=15_000)], className="panel wide")
    if kind == "kpi":
        return html.Div([
            html.H2(t(lang, "kpi.title")),
            html.Div([html.Span(t(lang, "kpi.period")),
                      dcc.RadioItems(id="kpi-period", value="30", inline=True,
                                     options=[{"label": t(lang, "kpi.days", n=n), "value": str(n)}
                                              for n in (7, 30, 90)])], className="toolbar"),
            html.Div(id="kpi-tables"),
        ], className="panel wide")
    if kind == "hotspots":
        return _hotspots_page(req, board)
    if kind == "care":
        return html.Div([html.H2(t(lang, "care.title")), html.Div(id="care-body"),
                         dcc.Interval(id="care-clock", interval=60_000)], className="panel wide")
    if kind == "worker":
        return html.Div([html.H2(t(lang, "worker.title")), html.Div(id="my-tickets"),
                         dcc.Interval(id="worker-clock", interval=30_000)], className="phone")
    if kind == "wticket":
        return _worker_ticket_page(req, arg or "")
    return _notice(t(lang, "err.not_found_page", path=arg or ""), req, "not-found")


# -- control room ----------------------------------------------------------------------------------------


def _control_page(req: Req, board: Dashboard) -> html.Div:
    lang = req.lang
    severity_opts = [{"label": t(lang, f"severity.{s.value}"), "value": s.value} for s in SEVERITY_ORDER]
    return html.Div(className="control", children=[
        html.Section(className="scene-panel", children=[
            html.Div(className="toolbar", children=[
                html.Div(id="scene-title", className="scene-title"),
                html.Div([html.Span(t(lang, "scene.colour_by")),
                          dcc.RadioItems(id="colour-mode", value="alarm", inline=True,
                                         options=[{"label": t(lang, "scene.by_alarm"), "value": "alarm"},
                                                  {"label": t(lang, "scene.by_sla"), "value": "sla"}])],
                         className="mode"),
            ]),
            html.Div(className="scene-wrap", children=[
                dcc.Graph(id="scene", className="scene", config={"displaylogo": False, "scrollZoom": True,
                                                                  "modeBarButtonsToRemove": ["toImage"]}),
                html.Div(id="hover-card", className="hover-card", style={"display": "none"}),
            ]),
            html.Div(id="scene-note", className="muted small"),
            dcc.Store(id="scene-buildings"),
        ]),
        html.Aside(className="side-panel", children=[
            html.Div([html.H2(t(lang, "alarms.title")), html.Span(id="alarm-count", className="badge")],
                     className="panel-head"),
            html.Div(className="filters", children=[
                dcc.Dropdown(id="f-severity", options=severity_opts, multi=True,
                             placeholder=t(lang, "alarms.filter_severity")),
                dcc.Dropdown(id="f-category", options=[], multi=True, placeholder=t(lang, "alarms.filter_category")),
                dcc.Dropdown(id="f-building", options=[], multi=True, placeholder=t(lang, "alarms.filter_building")),
            ]),
            html.Div(id="alarm-list", className="alarm-list"),
            html.Div(className="alarm-actions", children=[
                html.Div(t(lang, "alarms.select_first"), id="alarm-selected", className="small"),
                dcc.Input(id="ack-comment", type="text", placeholder=t(lang, "alarms.comment"), maxLength=MAX_TEXT,
                          className="grow"),
                html.Div(className="buttons", children=[
                    html.Button(t(lang, "alarms.ack"), id="ack-btn", className="primary"),
                    dcc.Dropdown(id="shelve-for", value="1", clearable=False, searchable=False,
                                 options=[{"label": t(lang, f"shelve.{h}h"), "value": str(h)} for h in (1, 8, 24)],
                                 className="shelve-for"),
                    html.Button(t(lang, "alarms.shelve"), id="shelve-btn"),
                    html.Button(t(lang, "alarms.dispatch"), id="dispatch-btn"),
                ]),
                html.Div(id="action-msg", className="msg"),
            ]),
            dcc.Store(id="alarm-selected-key"),
            dcc.Store(id="alarms-bump"),
        ]),
    ])


def _class_labels(lang: str, mode: str) -> dict[str, str]:
    labels = {c: t(lang, f"class.{c}") for c in ("normal", "warning", "minor", "major", "critical", "offline",
                                                  "ground", "shaft")}
    if mode == "sla":
        labels.update({c: t(lang, f"sla_class.{c}") for c in ("normal", "minor", "critical")})
    labels.update(devices=t(lang, "scene.devices"), cars=t(lang, "scene.cars"), beacon=t(lang, "scene.beacon"))
    return labels


def _floors_text(lang: str, b: Any) -> str:
    if b.floors_below:
        return t(lang, "scene.floors_below", above=b.floors_above, below=b.floors_below)
    return t(lang, "scene.floors", above=b.floors_above)


def _scene_figure(req: Req, board: Dashboard, building: str | None, mode: str) -> tuple[Any, Any, Any, Any]:
    lang = req.lang
    data = board.data
    community = board.community()
    scene = board.scene()
    live = data.live()
    alarms = list(data.active_alarms())
    note = ""
    if mode == "sla":
        try:
            classes = an.building_sla_classes(data.tickets(req.user), community, req.now)
        except DataUnavailable as exc:
            classes = an.building_classes(live.rollup, alarms, community, req.now)
            note = unavailable_text(lang, exc)
            mode = "alarm"
    else:
        classes = an.building_classes(live.rollup, alarms, community, req.now)
    labels = _class_labels(lang, mode)
    grids = {g.id: g.name for g in community.grids}
    hover = [t(lang, "scene.hover", name=b.name, floors=_floors_text(lang, b),
               grid=grids.get(community.grid_of(b) or "", t(lang, "scene.no_grid")),
               state=labels[classes.get(b.id, "normal")]) for b in scene.buildings]
    if building is None:
        beacons = _beacons(req, board, alarms)
        fig = scene.overview(classes, labels, beacons=beacons, names={b.id: b.name for b in scene.buildings})
        title: Any = t(lang, "scene.community", name=community.name, buildings=len(community.buildings),
                       devices=len(community.devices))
    else:
        b = community.building(building)
        if b is None:
            raise PreventUpdate
        floor_cls = an.floor_classes(building, live.rollup, alarms, community, req.now)
        levels = an.device_levels(live.rollup, alarms, community, req.now)
        devices, cars = _building_markers(req, board, building, levels, live.elevator_floors, labels)
        fig = scene.exploded(building, floor_cls, labels, devices=devices, cars=cars,
                             floor_names={f: floor_label(lang, f) for f in b.floors})
        title = [dcc.Link(t(lang, "scene.back"), href="/", id="scene-back", className="back"),
                 html.Span(t(lang, "scene.building", name=b.name, floors=_floors_text(lang, b)))]
    return fig, title, hover, note or t(lang, "scene.hint")


def _beacons(req: Req, board: Dashboard, alarms: Sequence[AlarmView]) -> list[Marker]:
    scene = board.scene()
    community = board.community()
    out = []
    for a in alarms:
        if not a.status.active or a.shelved(req.now):
            continue
        building = _alarm_building(a, community)
        pos = scene.device_xyz(a.device) if a.device else None
        if pos is None and building in scene.centres:
            c = scene.centres[building]
            pos = (c[0], c[1], 0.0)
        if pos is None:
            continue
        out.append(Marker(a.device or a.subject, pos[0], pos[1], scene.beacon_z(building),
                          geo.PALETTE[a.severity.value], _alarm_title(a, req, board), "diamond", 9))
        if len(out) >= 200:
            break
    return out


def _building_markers(req: Req, board: Dashboard, building: str, levels: Mapping[str, Level],
                      car_floors: Mapping[str, float], labels: Mapping[str, str]) -> tuple[list[Marker], list[Marker]]:
    lang = req.lang
    community = board.community()
    scene = board.scene()
    elevators = {e.id: e for e in community.elevators if e.building == building}
    devices: list[Marker] = []
    cars: list[Marker] = []
    for d in community.devices:
        if d.building != building:
            continue
        lv = levels.get(d.id, Level.UNKNOWN)
        cls = an.LEVEL_CLASS[lv]
        colour = DEVICE_UNKNOWN if lv is Level.UNKNOWN else geo.PALETTE[cls]
        state = t(lang, "class.unknown") if lv is Level.UNKNOWN else labels.get(cls, cls)
        if d.kind == "elevator" and d.elevator in elevators:
            e = elevators[d.elevator]
            floor = car_floors.get(e.id, float(e.serves[0]))
            z = scene.car_z(building, floor)
            if z is not None:
                cars.append(Marker(d.id, e.shaft[0], e.shaft[1], z, colour,
                                   f"{t(lang, 'scene.car_text', id=e.id, floor=round(floor))} · {state}",
                                   "square", 11))
            continue
        pos = scene.device_xyz(d.id, exploded=building)
        if pos is None:
            continue
        where = floor_label(lang, d.floor) if d.floor is not None else ""
        devices.append(Marker(d.id, pos[0], pos[1], pos[2], colour,
                              f"{d.id} · {kind_label(lang, d.kind)} · {where} · {state}"))
    return devices, cars


def _category(a: AlarmView, community: Community) -> str:
    if a.subject_type == "care_unit":
        return "care"
    if a.device:
        dev = community.device(a.device)
        spec = catalogue.KINDS.get(dev.kind) if dev else None
        if spec is not None:
            return spec.category
    prefix = a.rule.split("_", 1)[0]
    return {"fire": "fire", "panel": "fire", "heat": "fire", "smoke": "fire", "elevator": "elevator",
            "gas": "environment", "co": "environment", "care": "care", "water": "water"}.get(prefix, "other")


def _alarm_building(a: AlarmView, community: Community) -> str | None:
    if a.building:
        return a.building
    dev = community.device(a.device) if a.device else None
    return dev.building if dev else None


def _place(req: Req, board: Dashboard, building: str | None, floor: int | None, device: str | None,
           unit: str | None = None) -> str:
    community = board.community()
    if building is None and device is not None:
        dev = community.device(device)
        if dev is not None:
            building, floor = dev.building, floor if floor is not None else dev.floor
    parts = []
    b = community.building(building) if building else None
    if b is not None:
        parts.append(b.name)
    elif building:
        parts.append(building)
    if floor is not None:
        parts.append(floor_label(req.lang, floor))
    if unit:
        parts.append(unit)
    if device:
        parts.append(device)
    return " · ".join(parts) or t(req.lang, "place.unknown")


def _alarm_title(a: AlarmView, req: Req, board: Dashboard) -> str:
    return f"{rule_label(req.lang, a.rule_name)} · {_place(req, board, a.building, a.floor, a.device)}"


def _alarm_row(a: AlarmView, req: Req, board: Dashboard, selected: bool) -> html.Button:
    lang = req.lang
    tags = [html.Span(t(lang, f"severity.{a.severity.value}"), className=f"sev sev-{a.severity.value}"),
            html.Span(t(lang, f"alarms.status.{a.status.value}"), className=f"status st-{a.status.value}")]
    if a.count > 1:
        tags.append(html.Span(t(lang, "alarms.count_tag", n=a.count), className="tag"))
    if a.shelved(req.now):
        tags.append(html.Span(t(lang, "alarms.shelved_tag"), className="tag"))
    if a.ticket:
        tags.append(html.Span(t(lang, "alarms.ticket_tag", id=a.ticket), className="tag"))
    lines: list[Any] = [
        html.Div(tags, className="tags"),
        html.Div(rule_label(lang, a.rule_name), className="title"),
        html.Div(f"{_place(req, board, a.building, a.floor, a.device)} · {board.local(a.raised_at)}",
                 className="small muted"),
    ]
    if a.acked_by:
        lines.append(html.Div(t(lang, "alarms.acked_by", who=a.acked_by, comment=a.ack_comment or ""),
                              className="small muted"))
    cls = f"alarm-row sev-border-{a.severity.value}" + (" selected" if selected else "")
    return _data(html.Button(lines, id={"type": "alarm-row", "key": a.key}, className=cls, n_clicks=0),
                 key=a.key, status=a.status.value)


# -- tickets -------------------------------------------------------------------------------------------


def _status_label(lang: str, status: str) -> str:
    try:
        return t(lang, f"status.{status}")
    except KeyError:
        return status


def _priority_label(lang: str, priority: str) -> str:
    try:
        return t(lang, f"priority.{priority}")
    except KeyError:
        return priority


def _sla_cell(req: Req, ticket: TicketView) -> html.Span:
    clock = an.sla_clock(ticket, req.now)
    lang = req.lang
    if clock.state == "done":
        return html.Span(t(lang, "tickets.sla.done"), className="sla sla-done")
    if clock.remaining is None:
        return html.Span(t(lang, "tickets.sla.none"), className="sla")
    stage = t(lang, f"tickets.stage.{clock.stage}")
    if clock.remaining.total_seconds() < 0:
        text = f"{stage} · {t(lang, 'tickets.sla.overdue', t=an.format_remaining(-clock.remaining))}"
    else:
        text = f"{stage} · {an.format_remaining(clock.remaining)}"
    return _data(html.Span(text, className=f"sla sla-{clock.state}"), sla=clock.state)


def _ticket_board(req: Req, board: Dashboard) -> Any:
    lang = req.lang
    try:
        tickets = [tk for tk in board.data.tickets(req.user) if tk.open and _may_see(req.user, board, tk)]
    except DataUnavailable as exc:
        return html.P(unavailable_text(lang, exc), className="msg warn", id="tickets-unavailable")
    if not tickets:
        return html.P(t(lang, "tickets.none"), className="muted")
    tickets.sort(key=lambda tk: (-an.sla_clock(tk, req.now).used, tk.created_at))
    head = html.Tr([html.Th(t(lang, f"tickets.col.{c}"))
                    for c in ("id", "title", "priority", "status", "place", "assignee", "sla", "created")])
    rows = [_data(html.Tr([
        html.Td(tk.id), html.Td(tk.title), html.Td(_priority_label(lang, tk.priority)),
        html.Td(_status_label(lang, tk.status)),
        html.Td(_place(req, board, tk.building, tk.floor, tk.device, tk.unit)),
        html.Td(tk.assignee_name or tk.assignee or t(lang, "tickets.unassigned")),
        html.Td(_sla_cell(req, tk)), html.Td(board.local(tk.created_at)),
    ]), ticket=tk.id) for tk in tickets]
    return html.Table([html.Thead(head), html.Tbody(rows)], className="table", id="ticket-table")


def _may_see(user: User, board: Dashboard, ticket: TicketView) -> bool:
    """Defence in depth: the data source filters tickets by user; check the grid here too."""
    if user.sees_everything():
        return True
    grid = ticket.grid
    if grid is None and ticket.building is not None:
        b = board.community().building(ticket.building)
        grid = board.community().grid_of(b) if b else None
    return user.may_see_grid(grid) or (user.worker_id is not None and ticket.assignee == user.worker_id)


def _my_tickets(req: Req, board: Dashboard) -> Any:
    lang = req.lang
    try:
        tickets = [tk for tk in board.data.tickets(req.user) if tk.open and _may_see(req.user, board, tk)]
    except DataUnavailable as exc:
        return html.P(unavailable_text(lang, exc), className="msg warn", id="tickets-unavailable")
    if not tickets:
        return html.P(t(lang, "worker.none"), className="muted", id="no-tickets")
    tickets.sort(key=lambda tk: (-an.sla_clock(tk, req.now).used, tk.created_at))
    return [html.A(href=f"/worker/ticket/{quote(tk.id)}", className="ticket-card", id={"type": "tcard", "id": tk.id},
                   children=[
                       html.Div([html.Span(_priority_label(lang, tk.priority), className=f"prio prio-{tk.priority}"),
                                 html.Span(_status_label(lang, tk.status), className="status"),
                                 _sla_cell(req, tk)], className="tags"),
                       html.Div(tk.title, className="title"),
                       html.Div(_place(req, board, tk.building, tk.floor, tk.device, tk.unit), className="small"),
                   ]) for tk in tickets]


def _worker_ticket_page(req: Req, ticket_id: str) -> html.Div:
    lang = req.lang
    return html.Div(className="phone", children=[
        dcc.Link(t(lang, "worker.back"), href="/worker", className="back"),
        html.Div(id="wt-body"),
        html.Div(className="wt-actions", children=[
            html.Button(t(lang, "worker.accept"), id="wt-accept", className="primary wide"),
            dcc.Textarea(id="wt-note", placeholder=t(lang, "worker.feedback_note"), maxLength=MAX_TEXT,
                         className="wide"),
            dcc.Upload(id="wt-photo", accept="image/jpeg,image/png,image/webp", max_size=MAX_PHOTO_BYTES,
                       children=html.Div(t(lang, "worker.photo")), className="upload"),
            html.Div(id="wt-photo-note", className="small"),
            html.Div([html.Button(t(lang, "worker.feedback"), id="wt-feedback"),
                      html.Button(t(lang, "worker.resolve"), id="wt-resolve", className="primary")],
                     className="buttons"),
            html.Div(id="wt-msg", className="msg"),
        ]),
        dcc.Store(id="wt-bump"),
        dcc.Interval(id="wt-clock", interval=30_000),
        html.Span(ticket_id, id="wt-id", hidden=True),
    ])


def _ticket_body(req: Req, board: Dashboard, ticket_id: str) -> Any:
    lang = req.lang
    if not ID_RE.match(ticket_id):
        return _notice(t(lang, "err.unknown_ticket", id=ticket_id[:60]), req, "unknown-ticket")
    try:
        tk = board.data.ticket(req.user, ticket_id)
    except DataUnavailable as exc:
        return html.P(unavailable_text(lang, exc), className="msg warn", id="tickets-unavailable")
    except ActionRefused:
        tk = None
    if tk is None or not _may_see(req.user, board, tk):
        return _notice(t(lang, "err.unknown_ticket", id=ticket_id), req, "unknown-ticket")
    parts: list[Any] = [
        html.H2(tk.title, id="wt-title"),
        html.Div([html.Span(_priority_label(lang, tk.priority), className=f"prio prio-{tk.priority}"),
                  _data(html.Span(_status_label(lang, tk.status), className="status", id="wt-status"),
                        status=tk.status),
                  _sla_cell(req, tk)], className="tags"),
        html.H3(t(lang, "worker.where")),
        html.P(_place(req, board, tk.building, tk.floor, tk.device, tk.unit)),
    ]
    if tk.description:
        parts += [html.H3(t(lang, "worker.what")), html.P(tk.description)]
    if tk.latest:
        parts += [html.H3(t(lang, "worker.latest")),
                  html.Ul([html.Li(f"{k}: {v:g}") for k, v in sorted(tk.latest.items())])]
    parts.append(html.H3(t(lang, "worker.sop")))
    if tk.sop:
        parts.append(dcc.Checklist(id="wt-sop", options=[{"label": s, "value": str(n)} for n, s in enumerate(tk.sop)],
                                   value=[], className="sop"))
    else:
        parts.append(html.P(t(lang, "worker.no_sop"), className="muted"))
    parts.append(html.H3(t(lang, "worker.snapshot")))
    if tk.has_snapshot:
        parts.append(html.Img(src=f"/media/tickets/{quote(tk.id)}/snapshot.png", className="snapshot",
                              alt=t(lang, "worker.snapshot")))
    else:
        parts.append(html.P(t(lang, "worker.no_snapshot"), className="muted"))
    if tk.history:
        parts += [html.H3(t(lang, "worker.history")),
                  html.Ul([html.Li([f"{board.local(s.at)} · {s.by} · {_status_label(lang, s.action)}"
                                    f"{' · ' + s.note if s.note else ''}",
                                    *([html.Img(src=f"/media/photos/{quote(s.photo_id)}", className="photo")]
                                      if s.photo_id else [])]) for s in tk.history], className="history")]
    return parts


def _photo(contents: Any, filename: Any) -> Photo | None:
    """A ``data:image/...;base64,`` upload as a :class:`Photo`, or None if it is not an acceptable image."""
    if not isinstance(contents, str) or not contents.startswith("data:") or ";base64," not in contents:
        return None
    head, b64 = contents.split(";base64,", 1)
    ctype = head[5:].lower()
    if ctype not in PHOTO_TYPES or len(b64) > MAX_PHOTO_BYTES * 4 // 3 + 8:
        return None
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        return None
    magic = {"image/jpeg": (b"\xff\xd8\xff",), "image/png": (b"\x89PNG\r\n\x1a\n",), "image/webp": (b"RIFF",)}
    if len(raw) > MAX_PHOTO_BYTES or not raw.startswith(magic[ctype]):
        return None
    name = filename if isinstance(filename, str) else ""
    return Photo(raw, ctype, name[:120])


# -- device --------------------------------------------------------------------------------------------


def _device_page(req: Req, board: Dashboard, device_id: str) -> Any:
    lang = req.lang
    community = board.community()
    dev = community.device(device_id)
    if dev is None:
        return _notice(t(lang, "err.unknown_device", id=device_id[:64]), req, "unknown-device")
    spec = catalogue.KINDS[dev.kind]
    try:
        latest = board.data.device_latest(dev.id)
    except DataUnavailable:
        latest = {}
    numeric = list(spec.fields)
    units = {f.name: f.unit for f in spec.fields}
    rows = [html.Tr([html.Td(name), html.Td(f"{v:g} {units.get(name, '')}".strip()),
                     html.Td(board.local(ts, "%Y-%m-%d %H:%M:%S"))]) for name, (v, ts) in sorted(latest.items())]
    back = f"/building/{dev.building}" if dev.building else "/"
    parts: list[Any] = [
        dcc.Link(t(lang, "scene.back"), href=back, className="back"),
        html.H2(t(lang, "device.title", id=dev.id, kind=kind_label(lang, dev.kind)), id="device-title"),
        html.P(t(lang, "device.place", place=_place(req, board, dev.building, dev.floor, None, dev.unit))),
        html.H3(t(lang, "device.latest")),
        html.Table([html.Thead(html.Tr([html.Th(t(lang, "device.field")), html.Th(t(lang, "device.value")),
                                        html.Th(t(lang, "device.time"))])), html.Tbody(rows)], className="table")
        if rows else html.P(t(lang, "device.none"), className="muted"),
        html.H3(t(lang, "device.history")),
    ]
    if not numeric:
        parts.append(html.P(t(lang, "device.no_fields"), className="muted"))
        return html.Div(parts, className="panel wide")
    parts += [
        html.Div([
            dcc.RadioItems(id="dev-range", value="hour", inline=True,
                           options=[{"label": t(lang, f"range.{r}"), "value": r} for r in an.RANGES]),
            dcc.Dropdown(id="dev-field", value=numeric[0].name, clearable=False,
                         options=[{"label": f"{f.name} {f.unit}".strip(), "value": f.name} for f in numeric],
                         className="field-pick"),
        ], className="toolbar"),
        dcc.Graph(id="history", className="history", config={"displaylogo": False}),
        html.Div(id="history-note", className="muted"),
    ]
    return html.Div(parts, className="panel wide")


def _history_figure(points: Sequence[Any], req: Req, board: Dashboard, name: str, unit: str,
                    normal: tuple[float, float] | None) -> dict[str, Any]:
    xs = [board.local(p.bucket, "%Y-%m-%d %H:%M") for p in points]
    traces: list[dict[str, Any]] = [
        {"type": "scatter", "x": xs, "y": [p.max for p in points], "mode": "lines", "line": {"width": 0},
         "showlegend": False, "hoverinfo": "skip"},
        {"type": "scatter", "x": xs, "y": [p.min for p in points], "mode": "lines", "line": {"width": 0},
         "fill": "tonexty", "fillcolor": "rgba(142,164,186,0.3)", "name": t(req.lang, "device.range")},
        {"type": "scatter", "x": xs, "y": [p.avg for p in points], "mode": "lines+markers",
         "line": {"color": "#38BDF8"}, "marker": {"size": 3}, "name": t(req.lang, "device.avg")},
    ]
    shapes = []
    if normal is not None:
        for y in normal:
            shapes.append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": y, "y1": y,
                           "line": {"color": "#F2E35C", "dash": "dot", "width": 1}})
    return {"data": traces, "layout": {
        "paper_bgcolor": "#0F172A", "plot_bgcolor": "#111C33", "font": {"color": "#E2E8F0"},
        "margin": {"l": 50, "r": 10, "t": 10, "b": 40}, "yaxis": {"title": {"text": f"{name} {unit}".strip()},
                                                                   "gridcolor": "#1E293B"},
        "xaxis": {"gridcolor": "#1E293B"}, "shapes": shapes, "legend": {"orientation": "h"}}}


# -- KPIs, hotspots, care --------------------------------------------------------------------------------


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.0f}%"


def _kpi_tables(req: Req, board: Dashboard, days: int) -> Any:
    lang = req.lang
    try:
        rows = list(board.data.kpis(req.now - timedelta(days=days), req.now))
    except DataUnavailable as exc:
        return html.P(unavailable_text(lang, exc), className="msg warn", id="kpi-unavailable")
    community = board.community()
    if not req.user.sees_everything():
        worker_grid = {w.id: g.id for g in community.grids for w in g.workers}
        rows = [r for r in rows if (r.scope == "grid" and req.user.may_see_grid(r.id))
                or (r.scope == "worker" and req.user.may_see_grid(worker_grid.get(r.id)))]
    if not rows:
        return html.P(t(lang, "kpi.none"), className="muted")

    def dur(s: float | None) -> str:
        return "—" if s is None else duration(lang, s)

    def table(scope: str) -> html.Table:
        head = html.Tr([html.Th(t(lang, f"kpi.col.{c}")) for c in
                        ("name", "tickets", "open", "respond", "resolve", "on_time", "satisfaction", "reopen")])
        body = [html.Tr([html.Td(r.name), html.Td(r.tickets), html.Td(r.open), html.Td(dur(r.mean_respond_s)),
                         html.Td(dur(r.mean_resolve_s)), html.Td(_pct(r.on_time_rate)),
                         html.Td("—" if r.satisfaction is None else f"{r.satisfaction:.1f}"),
                         html.Td(_pct(r.reopen_rate))]) for r in rows if r.scope == scope]
        return html.Table([html.Thead(head), html.Tbody(body)], className="table")

    return [html.H3(t(lang, "kpi.workers")), table("worker"), html.H3(t(lang, "kpi.grids")), table("grid")]


def _visible_buildings(user: User, community: Community) -> set[str]:
    return {b.id for b in community.buildings if user.may_see_grid(community.grid_of(b))}


def _hotspots_page(req: Req, board: Dashboard, days: int = 30) -> html.Div:
    lang = req.lang
    community = board.community()
    head = html.H2(t(lang, "hot.title", days=days))
    try:
        rows = list(board.data.hotspots(days))
    except DataUnavailable as exc:
        return html.Div([head, html.P(unavailable_text(lang, exc), className="msg warn")],
                        className="panel wide")
    visible = _visible_buildings(req.user, community)
    rows = [r for r in rows if (r.building is None and req.user.sees_everything()) or r.building in visible]
    if not rows:
        return html.Div([head, html.P(t(lang, "hot.none"), className="muted")], className="panel wide")
    spots = an.hotspots(rows, community)
    names = {b.id: b.name for b in community.buildings}
    rules = {a.rule: a.rule_name for a in _safe_alarms(board)}

    def flag(out: bool) -> Any:
        return html.Span(t(lang, "hot.outlier"), className="outlier") if out else ""

    def tbl(header: list[str], body: list[list[Any]], outs: list[bool]) -> html.Table:
        return html.Table([html.Thead(html.Tr([html.Th(h) for h in header])),
                           html.Tbody([html.Tr([html.Td(c) for c in r], className="hot" if o else "")
                                       for r, o in zip(body, outs, strict=True)])], className="table")

    callout = [names.get(b, b) for b, _n, o in spots.by_building if o]
    callout += [f"{names.get(b, b)} {floor_label(lang, f)}" for b, f, _n, o in spots.by_floor if o]
    return html.Div(className="panel wide", children=[
        head,
        html.P(t(lang, "hot.callout", places="、".join(callout) if lang == "zh" else ", ".join(callout)),
               className="msg warn", id="hot-callout") if callout else "",
        html.H3(t(lang, "hot.by_building")),
        tbl([t(lang, "hot.col.place"), t(lang, "hot.col.count"), ""],
            [[names.get(b, b), n, flag(o)] for b, n, o in spots.by_building], [o for *_x, o in spots.by_building]),
        html.H3(t(lang, "hot.by_floor")),
        tbl([t(lang, "hot.col.place"), t(lang, "hot.col.count"), ""],
            [[f"{names.get(b, b)} {floor_label(lang, f)}", n, flag(o)] for b, f, n, o in spots.by_floor],
            [o for *_x, o in spots.by_floor]),
        html.H3(t(lang, "hot.by_kind")),
        tbl([t(lang, "hot.col.kind"), t(lang, "hot.col.count"), ""],
            [[rule_label(lang, rules.get(r, r)), n, flag(o)] for r, n, o in spots.by_rule],
            [o for *_x, o in spots.by_rule]),
    ])


def _safe_alarms(board: Dashboard) -> Iterable[AlarmView]:
    try:
        return board.data.active_alarms()
    except DataUnavailable:
        return ()


def _care_body(req: Req, board: Dashboard) -> Any:
    lang = req.lang
    community = board.community()
    try:
        units = list(board.data.care_overview())
    except DataUnavailable as exc:
        return html.P(unavailable_text(lang, exc), className="msg warn")
    visible = _visible_buildings(req.user, community)
    units = [u for u in units if u.building in visible]
    if not units:
        return html.P(t(lang, "care.none"), className="muted")
    alerts = {u.unit: an.care_alert(u, req.now) for u in units}
    units.sort(key=lambda u: (not alerts[u.unit], {"red": 0, "yellow": 1, "green": 2}[u.level], u.unit))
    counts = {lvl: sum(1 for u in units if u.level == lvl) for lvl in ("red", "yellow", "green")}
    names = {b.id: b.name for b in community.buildings}

    def last(u: Any) -> str:
        if u.last_activity is None:
            return t(lang, "care.never")
        return t(lang, "care.ago", t=duration(lang, (req.now - u.last_activity).total_seconds()))

    def alert(u: Any) -> Any:
        notes = []
        if u.inactivity_alarm:
            notes.append(html.Span(t(lang, "care.alert_alarm"), className="sev sev-major"))
        elif alerts[u.unit]:
            notes.append(html.Span(t(lang, "care.alert_quiet"), className="sev sev-minor"))
        if u.sensors_offline:
            notes.append(html.Span(t(lang, "care.offline", n=u.sensors_offline), className="tag"))
        return notes or t(lang, "care.ok")

    head = html.Tr([html.Th(t(lang, f"care.col.{c}")) for c in ("unit", "level", "last", "alert")])
    body = [html.Tr([html.Td(f"{names.get(u.building, u.building)} {u.unit}"),
                     html.Td(html.Span(t(lang, f"care.level.{u.level}"), className=f"care care-{u.level}")),
                     html.Td(last(u)), html.Td(alert(u))], className="alert" if alerts[u.unit] else "")
            for u in units]
    return [html.P(t(lang, "care.summary", alerts=sum(alerts.values()), **counts), id="care-summary"),
            html.Table([html.Thead(head), html.Tbody(body)], className="table", id="care-table")]


# -- serving -------------------------------------------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return  # 2 polls a second per browser would drown the console

    def send_response(self, code: int, message: str | None = None) -> None:
        """As the standard one, without the ``Server: Werkzeug/x Python/y`` header (no version to look up)."""
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())


class DashboardServer:
    """The dashboard on a threaded WSGI server in a daemon thread (``shutdown()`` to stop)."""

    def __init__(self, app: Dash, host: str, port: int) -> None:
        self._server: BaseWSGIServer = make_server(host, port, app.server, threaded=True,
                                                   request_handler=_QuietHandler)
        self.server_port: int = self._server.server_port
        self.host = host
        self._thread = threading.Thread(target=self._server.serve_forever, name="gridtwin-dashboard", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.server_port}/"

    def shutdown(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve(app: Dash, *, host: str = "127.0.0.1", port: int = 8050) -> DashboardServer:
    """Serve the dashboard in the background; ``port=0`` picks a free port (see ``server_port``)."""
    return DashboardServer(app, host, port)
