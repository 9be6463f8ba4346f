"""The supervisor's check (核查) of a resolved one-click report, on the ticket page (``/worker/ticket/<id>``) of
supervisors and operators: pass closes it as usual, fail sends it back to the worker with the reason. Shown only
for reports whose category is checked (``verify: true`` in ``twin/report_categories.yaml``)."""

from __future__ import annotations

from typing import Any

from dash import Dash, Input, Output, State, ctx, dcc, html
from dash.exceptions import PreventUpdate

from viz.data import ActionRefused, DataUnavailable
from viz.i18n import t
from viz.shell import ID_RE, MAX_TEXT, SUPERVISORS, Dashboard, Req, guarded_callbacks, unavailable_text


def verify_panel(req: Req) -> html.Div:
    """Hidden until the ticket is known to be a checked report (the ``vf-state`` callback)."""
    lang = req.lang
    return html.Div(id="vf-panel", className="wt-actions vf-panel gone", children=[
        html.H3(t(lang, "verify.title")),
        html.P(id="vf-status", className="small"),
        dcc.Textarea(id="vf-reason", placeholder=t(lang, "verify.reason"), maxLength=MAX_TEXT, className="wide"),
        html.Div([html.Button(t(lang, "verify.pass"), id="vf-pass", className="primary", disabled=True),
                  html.Button(t(lang, "verify.fail"), id="vf-fail", className="danger", disabled=True)],
                 className="buttons"),
        html.Div(id="vf-msg", className="msg", role="status"),
        dcc.Store(id="vf-bump"),
    ])


def register_callbacks(app: Dash, board: Dashboard) -> None:
    guarded = guarded_callbacks(app, board)

    @guarded(Output("vf-panel", "className"), Output("vf-status", "children"), Output("vf-pass", "disabled"),
             Output("vf-fail", "disabled"), Input("version", "data"), Input("vf-bump", "data"),
             Input("wt-id", "children"), roles=SUPERVISORS)
    def state(req: Req, _v: Any, _b: Any, ticket_id: Any) -> Any:
        if not isinstance(ticket_id, str) or not ID_RE.match(ticket_id):
            raise PreventUpdate
        try:
            check = board.data.reports().check(req.user, ticket_id)
        except DataUnavailable:
            raise PreventUpdate from None
        if check is None or check == "closed":
            return "wt-actions vf-panel gone", "", True, True
        key = {"pending": "verify.pending", "passed": "verify.passed"}.get(check, "verify.awaiting")
        pending = check == "pending"
        return f"wt-actions vf-panel vf-{check}", t(req.lang, key), not pending, not pending

    @guarded(Output("vf-msg", "children"), Output("vf-bump", "data"), Output("vf-reason", "value"),
             Input("vf-pass", "n_clicks"), Input("vf-fail", "n_clicks"), State("vf-reason", "value"),
             State("wt-id", "children"), roles=SUPERVISORS, prevent_initial_call=True)
    def act(req: Req, _p: Any, _f: Any, reason: Any, ticket_id: Any) -> Any:
        lang = req.lang
        passed = ctx.triggered_id == "vf-pass"
        if ctx.triggered_id not in ("vf-pass", "vf-fail") or not isinstance(ticket_id, str):
            raise PreventUpdate
        text = reason.strip() if isinstance(reason, str) else ""
        if not passed and not text:
            return html.Span(t(lang, "verify.need_reason"), className="warn", id="vf-error"), None, reason
        try:
            board.data.reports().verify(req.user, ticket_id, passed, text[:MAX_TEXT])
        except ActionRefused as exc:
            return html.Span(refused_text(lang, exc), className="warn", id="vf-error"), None, reason
        except DataUnavailable as exc:
            return html.Span(unavailable_text(lang, exc), className="warn", id="vf-error"), None, reason
        done = t(lang, "verify.done_pass" if passed else "verify.done_fail")
        return html.Span(done, className="ok", id="vf-done"), done + str(req.now.timestamp()), ""


def refused_text(lang: str, exc: ActionRefused) -> str:
    """Why the data source refused, by its code, in the reader's language (the service's English detail is not
    shown)."""
    try:
        return t(lang, f"refused.{exc.code}")
    except KeyError:
        return t(lang, "refused.bad_input")
