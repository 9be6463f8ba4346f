"""Hand-offs to partners on the worker's ticket page (issue 15): under each partner's call button, "log the call"
and, once called, "log their arrival", with the times; stored in the ticket's history
(:mod:`gateway.tickets.handoff`) and counted on the KPI page (partners' arrival times)."""

from __future__ import annotations

import time
from typing import Any

from dash import ALL, Dash, Input, Output, State, ctx, html
from dash.exceptions import PreventUpdate

from twin.tickets.handoff import PARTNER_ROLES, Handoff
from viz.data import ActionRefused, DataUnavailable, TicketView
from viz.i18n import duration, t
from viz.paths import parse_path
from viz.shell import ID_RE, Dashboard, Req, guarded_callbacks, unavailable_text
from viz.ticket_text import refusal
from viz.widgets import with_data


def handoff_controls(req: Req, board: Dashboard, tk: TicketView, role: str) -> Any:
    """What is recorded of the partner ``role`` on this ticket, and the button for the next record."""
    if role not in PARTNER_ROLES or not tk.open:
        return None
    lang = req.lang
    last: Handoff | None = next((h for h in reversed(tk.handoffs) if h.role == role), None)
    parts: list[Any] = []
    what = "call"
    if last is not None:
        parts.append(html.Span(t(lang, "wt.handoff.called", time=board.local(last.called_at, "%H:%M")),
                               className="small"))
        if last.arrived_at is None:
            what = "arrived"
        else:
            took = duration(lang, last.arrive_s or 0)
            parts.append(html.Span(t(lang, "wt.handoff.on_site", time=board.local(last.arrived_at, "%H:%M"),
                                     took=took), className="small ok"))
            what = "call"  # called again for another visit
    parts.append(with_data(html.Button(t(lang, f"wt.handoff.{what}"), n_clicks=0, className="handoff-btn",
                                       id={"type": "wt-handoff", "role": role, "what": what}), role=role, what=what))
    return html.Div(parts, className="handoff")


def register_callbacks(app: Dash, board: Dashboard) -> None:
    guarded = guarded_callbacks(app, board)

    @guarded(Output("wt-msg", "children", allow_duplicate=True), Output("wt-msg", "className", allow_duplicate=True),
             Output("wt-bump", "data", allow_duplicate=True),
             Input({"type": "wt-handoff", "role": ALL, "what": ALL}, "n_clicks"), State("url", "pathname"),
             prevent_initial_call=True)
    def record(req: Req, _clicks: Any, path: str | None) -> Any:
        trigger = ctx.triggered_id
        if not isinstance(trigger, dict) or not ctx.triggered[0].get("value"):
            raise PreventUpdate
        role, what = trigger.get("role"), trigger.get("what")
        lang = req.lang
        kind, tid = parse_path(path)
        if kind != "wticket" or tid is None or not ID_RE.match(tid) or role not in PARTNER_ROLES \
                or what not in ("call", "arrived"):
            return t(lang, "refused.bad_input"), "msg warn", time.time()
        try:
            board.data.record_handoff(req.user, tid, str(role), arrived=what == "arrived")
        except ActionRefused as exc:
            return refusal(req, board, exc, "handoff", tid), "msg warn", time.time()
        except DataUnavailable as exc:
            return unavailable_text(lang, exc), "msg warn", time.time()
        return t(lang, f"wt.handoff.done_{what}", partner=t(lang, f"call.{role}")), "msg ok", time.time()
