"""The dashboard's Flask side: the page guard, security headers and CSP, sign-in / sign-out / language
routes, media (ticket snapshots, photos) for signed-in users, and the small server-rendered pages for
refusals (403, 429, 503).

Every response carries nosniff, ``X-Frame-Options: DENY`` and a Referrer-Policy; HTML pages a
Content-Security-Policy. Pages a role may not open are refused here, before Dash runs; callbacks check
again (:func:`viz.shell.guarded_callbacks`).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import flask
from dash import Dash
from dash.exceptions import DependencyException
from werkzeug.exceptions import ClientDisconnected
from werkzeug.wrappers import Response as HttpResponse

from twin.people import User
from viz.data import ActionRefused, DataUnavailable, SignInRefused
from viz.i18n import duration, norm_lang, t
from viz.paths import bad_path, parse_path, safe_next
from viz.shell import (
    HOME,
    ID_RE,
    LANG_COOKIE,
    OPERATORS,
    PAGE_ROLES,
    PHOTO_TYPES,
    SESSION_COOKIE,
    UNAVAILABLE_RETRY_S,
    Dashboard,
    behind_tls,
    current_lang,
)

POSTER_KEY_RE = re.compile(r"^[0-9a-f]{32}$")  # viz.poster.Posters keys
SERVICE_WORKER = Path(__file__).parent / "static" / "sw.js"
OPEN_PATHS = ("/sw.js", "/login", "/auth/", "/lang/", "/assets/", "/_dash", "/_favicon", "/_reload", "/favicon.ico")


def register_routes(server: flask.Flask, board: Dashboard) -> None:
    """The page guard, the headers of every response, and the sign-in, language and media routes."""
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
            try:
                body = flask.request.get_json(silent=True)
            except ClientDisconnected:  # the tab went away mid-request (navigation): nothing to time it by
                body = None
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

    @server.get("/sw.js")
    def _service_worker() -> flask.Response:
        """The service worker that shows phone notifications (Web Push), for the whole site's scope."""
        return flask.Response(SERVICE_WORKER.read_bytes(), mimetype="text/javascript",
                              headers={"Service-Worker-Allowed": "/", "Cache-Control": "no-cache"})

    @server.get("/media/scene/<key>.png")
    def _scene_poster(key: str) -> flask.Response:
        user = media_user()
        if user is None or user.role not in OPERATORS or not POSTER_KEY_RE.match(key):
            return flask.Response(status=404)
        png = board.posters.png(key)
        if png is None:
            return flask.Response(status=404)
        # the key is the picture's content hash: the same key is always the same picture
        return flask.Response(png, mimetype="image/png", headers={"Cache-Control": "private, max-age=3600"})

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


def protect(app: Dash, server: flask.Flask) -> None:
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
        spec = known[body["output"]]
        if len(body["inputs"]) != len(spec.get("inputs", [])) \
                or len(body.get("state", [])) != len(spec.get("state", [])):
            return flask.Response("malformed callback request: wrong number of inputs or states", status=400,
                                  mimetype="text/plain")
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

