"""The sign-in form (``/login``). It posts to ``/auth/login`` (:mod:`viz.security`), a plain Flask route,
so the page has no callbacks."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from dash import Dash, dcc, html

from viz.i18n import t
from viz.paths import safe_next
from viz.shell import Dashboard


def login_page(lang: str, query: Mapping[str, list[str]]) -> html.Div:
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


def register_callbacks(app: Dash, board: Dashboard) -> None:
    """None: signing in, out and switching language are Flask routes (:mod:`viz.security`)."""
