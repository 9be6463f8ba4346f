"""What every page shares: the request context (:class:`Dashboard`, :class:`Req`), cookies and roles,
guarded callbacks, and the frame around a page (top bar, notices).

Does I/O only through the data source the :class:`Dashboard` holds and Flask's current request.
"""

from __future__ import annotations

import logging
import re
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any
from urllib.parse import quote

import flask
from dash import Dash, html
from dash.exceptions import PreventUpdate

from twin.community import Community
from twin.people import Role, User
from viz.data import DashboardData, DatabaseDown, DataUnavailable
from viz.i18n import DEFAULT_LANG, norm_lang, person_label, t
from viz.live import live_indicator
from viz.poster import Posters
from viz.scene import Scene

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
    "control": OPERATORS, "device": SUPERVISORS, "devices": SUPERVISORS, "tickets": SUPERVISORS, "kpi": SUPERVISORS,
    "hotspots": SUPERVISORS, "care": SUPERVISORS, "worker": EVERYONE, "wticket": EVERYONE,
    "history": SUPERVISORS, "incident": SUPERVISORS, "audit": OPERATORS, "report": EVERYONE,
    "residents": EVERYONE, "resident": EVERYONE,  # the care register: the data source masks what a role may not see
    "patrols": EVERYONE, "patrol": EVERYONE,  # patrols: supervisors' overview (a worker gets their phone page)
    "outcomes": SUPERVISORS,  # 成效分析 (linked from /kpi)
    "assistant": SUPERVISORS,  # 知识助手 (workers have the knowledge box on the ticket page)
}
HOME: Mapping[Role, str] = {Role.WORKER: "/worker", Role.SUPERVISOR: "/tickets", Role.OPERATOR: "/",
                            Role.ADMIN: "/"}
# The top bar's pages, most used first: a role's first NAV_SHOWN are links, the rest sit under "更多" (More)
NAV: tuple[tuple[str, str, str], ...] = (
    ("control", "/", "nav.control"), ("tickets", "/tickets", "nav.tickets"), ("history", "/history", "nav.history"),
    ("devices", "/devices", "nav.devices"), ("care", "/care", "nav.care"),
    ("residents", "/residents", "nav.residents"),  # the care register (关爱台账)
    ("worker", "/worker", "nav.worker"),
    ("patrols", "/patrols", "nav.patrols"),  # 巡查: supervisors' overview, a worker's own patrols
    ("report", "/report", "nav.report"), ("assistant", "/assistant", "nav.assistant"),  # 知识助手
    ("kpi", "/kpi", "nav.kpi"), ("hotspots", "/hotspots", "nav.hotspots"),
    ("audit", "/audit", "nav.audit"),
)
NAV_SHOWN = 6


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
        self.posters = Posters()  # the 3D scene's first frames, drawn on the server (viz.poster)
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


# -- callbacks -----------------------------------------------------------------------------------------


def guarded_callbacks(app: Dash, board: Dashboard) -> Callable[..., Callable[[Callable[..., Any]], None]]:
    """A decorator factory ``guarded(*deps, roles=...)`` for the callbacks of ``app``: each runs only for a
    signed-in user with one of ``roles`` (default: everyone).

    The wrapped function gets a :class:`Req` first. No user or wrong role: nothing is returned
    (HTTP 204), whatever the inputs say. Unexpected errors are logged, never sent to the browser.
    """

    def guarded(*deps: Any, roles: frozenset[Role] = EVERYONE, **kw: Any) -> Callable[[Callable[..., Any]], None]:
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
                except DataUnavailable:  # the database is down: keep what the screen shows (the source logs it)
                    raise PreventUpdate from None
                except Exception:
                    log.exception("dashboard callback %s failed", fn.__name__)
                    raise PreventUpdate from None

            run.__name__ = fn.__name__
            app.callback(*deps, **kw)(run)

        return deco

    return guarded


# -- the frame around a page -----------------------------------------------------------------------------


def notice(text: str, req: Req | None, ident: str) -> html.Div:
    children: list[Any] = [html.P(text, id=ident)]
    if req is not None:
        children.append(html.A(t(req.lang, "err.back_home"), href=HOME[req.user.role]))
    return html.Div(children, className="notice")


def topbar(req: Req, path: str, board: Dashboard) -> list[Any]:
    lang = req.lang
    mine = [(href, label) for kind, href, label in NAV if req.user.role in PAGE_ROLES[kind]]
    links: list[Any] = [html.A(t(lang, label), href=href, className="nav-link" + (" active" if _active(path, href)
                                                                                    else "")) for href, label in mine]
    if len(links) > NAV_SHOWN + 1:  # a crowded bar (operators): the rest in a menu, so the bar stays one line
        rest = links[NAV_SHOWN:]
        here = any(_active(path, href) for href, _label in mine[NAV_SHOWN:])
        links = [*links[:NAV_SHOWN], html.Details([
            html.Summary(t(lang, "nav.more"), className="nav-link" + (" active" if here else "")),
            html.Div(rest, className="nav-menu")], className="nav-more", id="nav-more")]
    other = "en" if lang == "zh" else "zh"
    return [
        html.Div([html.Span("gridtwin", className="brand"), html.Span(board.community().name, className="place")],
                 className="brand-box"),
        html.Nav(links, className="nav"),
        html.Div([
            live_indicator(lang, board.tz),
            html.Span(whoami(req), id="whoami"),
            html.A(t(lang, "nav.lang"), href=f"/lang/{other}?next={quote(path)}", id="lang-switch"),
            html.A(t(lang, "nav.signout"), href="/auth/logout", id="signout"),
        ], className="user-box"),
    ]


def whoami(req: Req) -> str:
    """``name · role``. Accounts named after a role (the demo's 值班员, 网格长 s-1) read in the user's
    language: the role word is translated, and not said twice."""
    name, role = person_label(req.lang, req.user.display_name), t(req.lang, "role." + req.user.role.value)
    return role if name == role else f"{name} · {role}"


def localise_index(app: Dash) -> None:
    """The page's ``<title>`` and ``<html lang>`` in the language of the request (the cookie)."""
    plain: Callable[..., str] = app.interpolate_index

    def interpolate_index(**kw: Any) -> str:
        lang = current_lang()
        kw["title"] = t(lang, "app.title")
        page: str = plain(**kw)
        return page.replace("<html>", f'<html lang="{"en" if lang == "en" else "zh-CN"}">', 1)

    app.interpolate_index = interpolate_index  # type: ignore[method-assign,assignment]


def _active(path: str, href: str) -> bool:
    if href == "/":
        return path == "/" or path.startswith(("/building/", "/device/"))
    return path == href or path.startswith(href + "/")
