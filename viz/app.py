"""The control-room dashboard and the grid-worker pages (Dash). Does I/O: HTTP, through ``DashboardData``.

:func:`create_app` builds the Dash app around a :class:`viz.data.DashboardData`. The web server
(``gateway/web/``: uvicorn, one ASGI app with the REST API, Dash mounted) builds the data source and
serves it.

Where things are: the shared request context, roles and page frame in :mod:`viz.shell`; small shared
pieces in :mod:`viz.widgets`; paths in :mod:`viz.paths`; the path -> page table, router and poll in
:mod:`viz.routing`; each page's layout and callbacks in :mod:`viz.pages` (``control``, ``tickets``,
``worker``, ``device``, ``analytics``, ``care``, ``login``); the Flask side (page guard, sign-in,
media, headers, CSP) in :mod:`viz.security`.

Pages (one Dash app, routed by path):

====================  ==========================================  =========================
path                  what                                        roles
====================  ==========================================  =========================
``/``                 3D community + active alarms panel          operator, admin
``/building/<id>``    the same with one building's floors apart   operator, admin
``/device/<id>``      device detail: readings, history, alarms    operator, admin, supervisor
``/devices``          device inventory: search, filter, sort      operator, admin, supervisor
``/tickets``          ticket board with SLA countdowns            operator, admin, supervisor
``/kpi``              KPIs per worker and grid                    operator, admin, supervisor
``/hotspots``         alarms + reports per floor, 3D heat, hints  operator, admin, supervisor
``/care``             care homes red/yellow/green, inactivity     operator, admin, supervisor
``/history``          incidents and alarms over time, CSV export  operator, admin, supervisor
``/incident/<id>``    one incident: alarms, readings, ticket      operator, admin, supervisor
``/audit``            who did what, sign-ins, CSV export          operator, admin
``/worker``           my tickets (phone)                          everyone signed in
``/worker/ticket/<id>`` one ticket: SOP, snapshot, accept/feedback/resolve  everyone signed in
``/login``            sign-in form                                anyone
====================  ==========================================  =========================

Security: the session is an HttpOnly, SameSite=Lax cookie holding the token the data source issued
(the REST API accepts the same token), marked Secure behind TLS (``secure_cookies``, or per request
when a proxy sends ``X-Forwarded-Proto: https``). A Flask hook sends page requests without a valid
session to the sign-in page and refuses pages a role may not open; *every* callback resolves the user
again from the cookie and checks the role before touching data (a forged callback request gets
nothing: HTTP 204). Changes are pushed (``/api/v1/stream``, see :mod:`viz.live`); the slow poll
notices an expired session and sends the browser to the sign-in page. Unexpected errors in a callback
are logged and swallowed, so a browser never sees a stack trace.

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

from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

import flask
from dash import Dash, dcc, html

from viz import routing, security
from viz.data import DashboardData
from viz.i18n import DEFAULT_LANG, t
from viz.live import SLOW_POLL_MS, bump_button
from viz.pages import PAGE_MODULES
from viz.paths import parse_path, safe_next
from viz.shell import (
    CHINA,
    LANG_COOKIE,
    MAX_PHOTO_BYTES,
    SESSION_COOKIE,
    USER_CACHE_S,
    CallbackTimings,
    Dashboard,
    localise_index,
)

__all__ = [
    "CHINA", "LANG_COOKIE", "MAX_PHOTO_BYTES", "SESSION_COOKIE", "USER_CACHE_S", "CallbackTimings",
    "callback_timings", "create_app", "parse_path", "safe_next",
]


def create_app(data: DashboardData, *, poll_ms: int = SLOW_POLL_MS, tz: tzinfo = CHINA, secure_cookies: bool = False,
               clock: Callable[[], datetime] | None = None) -> Dash:
    """The dashboard as a Dash app; ``app.server`` is its Flask (WSGI) app.

    ``data``: the data source (see :class:`viz.data.DashboardData`). ``poll_ms``: how often browsers
    ask whether anything changed while the live stream pushes changes (``viz/assets/live.js`` makes it
    :data:`viz.live.FAST_POLL_MS` while the stream is down). ``secure_cookies``: mark cookies Secure (behind HTTPS).
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
    localise_index(app)  # <title> and <html lang> in the request's language
    app.layout = html.Div(id="root", children=[
        dcc.Location(id="url", refresh="callback-nav"),
        dcc.Location(id="redirect", refresh=True),
        dcc.Store(id="version"),
        dcc.Store(id="db-version"),  # what the poll last read from the database (live.js bumps "version")
        bump_button(),
        dcc.Store(id="page-kind"),
        dcc.Interval(id="poll", interval=poll_ms),
        html.Header(id="topbar", className="topbar"),
        html.Main(id="page", className="page"),
    ])
    server.extensions["gridtwin_dashboard"] = dash_board
    security.register_routes(server, dash_board)
    routing.register_callbacks(app, dash_board)
    for page in PAGE_MODULES:
        page.register_callbacks(app, dash_board)
    security.protect(app, server)  # last: the CSP hashes Dash's inline scripts, known once all are registered
    return app


def callback_timings(app: Dash) -> CallbackTimings:
    board: Dashboard = app.server.extensions["gridtwin_dashboard"]
    return board.timings
