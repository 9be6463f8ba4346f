"""The audit log (``/audit``): who acknowledged, shelved, unshelved or cleared alarms, who opened, dispatched,
accepted, reassigned, escalated, cancelled or resolved tickets, who signed in (and failed to), from the stored
events; a time range, user and action filters, paging in the database and a CSV export (``/export/audit.csv``).
Operators and admins only (it lists every account's sign-ins)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dash import Dash, Input, Output, State, ctx, dcc, html, no_update

from viz.data import DataUnavailable
from viz.history_model import AUDIT_ACTIONS, AuditEntry, QueryError, audit_query, pages
from viz.history_view import (
    error_text,
    export_href,
    label,
    pager,
    params,
    person_note,
    range_controls,
    size_control,
    step_page,
    who,
)
from viz.i18n import rule_label, t
from viz.shell import OPERATORS, Dashboard, Req, guarded_callbacks, unavailable_text
from viz.widgets import with_data

EXPORT_PATH = "/export/audit.csv"
COLS = ("at", "user", "action", "target", "detail")
TIME = "%Y-%m-%d %H:%M:%S"


def audit_page(req: Req, board: Dashboard, _arg: str | None = None) -> Any:
    lang = req.lang
    return html.Div(className="panel wide hist", children=[
        html.H2(t(lang, "audit.title")),
        html.Div(className="hist-filters", children=[
            *range_controls(lang, "audit"),
            html.Label([t(lang, "audit.user"), dcc.Input(id="audit-user", type="text", debounce=True, maxLength=100,
                                                         className="hist-text")], className="grow"),
            html.Label([t(lang, "audit.action"), dcc.Dropdown(
                id="audit-action", className="hist-pick wide-pick", placeholder=t(lang, "hist.all"),
                options=[{"label": t(lang, f"audit.action.{a}"), "value": a} for a in AUDIT_ACTIONS])]),
            size_control(lang, "audit"),
        ]),
        html.Div(id="audit-msg", className="msg warn"),
        html.Div(className="table-scroll", children=html.Table(id="audit-table", className="table hist-table",
                                                               children=[
            html.Thead(html.Tr([html.Th(t(lang, f"audit.col.{c}")) for c in COLS])),
            html.Tbody(id="audit-body"),
        ])),
        pager(lang, "audit", EXPORT_PATH),
        dcc.Store(id="audit-page", data=0),
    ])


def register_callbacks(app: Dash, board: Dashboard) -> None:
    guarded = guarded_callbacks(app, board)

    @guarded(Output("audit-body", "children"), Output("audit-pager", "children"), Output("audit-export", "href"),
             Output("audit-msg", "children"), Output("audit-page", "data"), Output("audit-prev", "disabled"),
             Output("audit-next", "disabled"),
             Input("audit-range", "value"), Input("audit-start", "value"), Input("audit-end", "value"),
             Input("audit-user", "value"), Input("audit-action", "value"), Input("audit-size", "value"),
             Input("audit-prev", "n_clicks"), Input("audit-next", "n_clicks"), Input("version", "data"),
             State("audit-page", "data"), roles=OPERATORS)
    def audit(req: Req, rng: Any, start: Any, end: Any, user: Any, action: Any, size: Any, _p: Any, _n: Any,
              _v: Any, page: Any) -> Any:
        lang = req.lang
        trigger = ctx.triggered_id
        page_n = page if trigger == "version" and isinstance(page, int) else step_page(trigger, page)
        values = {"range": rng, "start": start, "end": end, "user": user, "action": action, "page": page_n,
                  "size": size}
        try:
            q = audit_query(params(values), req.now, board.tz)
        except QueryError as exc:
            return [], "", no_update, error_text(lang, exc), page_n, True, True
        try:
            hist = board.data.history()
            got = hist.audit(q)
            names = hist.people()
        except DataUnavailable as exc:
            return [], "", no_update, unavailable_text(lang, exc), page_n, True, True
        n_pages = pages(got.total, q.size)
        body: Any = [_row(req, board, e, names) for e in got.rows] or [
            html.Tr(html.Td(t(lang, "hist.none"), colSpan=len(COLS), className="muted", id="audit-none"))]
        return (body, t(lang, "hist.pager", page=min(q.page + 1, n_pages), pages=n_pages, total=got.total),
                export_href(EXPORT_PATH, values), "", q.page, q.page <= 0, q.page + 1 >= n_pages)


def target_text(lang: str, e: AuditEntry) -> str:
    if e.source == "ticket" and e.ticket is not None:
        return t(lang, "audit.target.ticket", id=e.ticket)
    if e.source == "alarm":
        _rule, _, subject = e.target.partition("@")
        return f"{rule_label(lang, e.target_name)} · {subject}" if e.target_name and subject else e.target
    return e.target


def detail_text(lang: str, e: AuditEntry) -> str:
    if e.source == "sign_in":
        via, _, client = e.detail.partition(" ")
        return f"{label(lang, 'audit.via.', via)} {client}".strip()
    if e.source == "alarm" and e.action == "shelved":
        return ""  # the alarm service's own words (English); the action says it
    return person_note(e.user, e.detail)


def _row(req: Req, board: Dashboard, e: AuditEntry, names: Mapping[str, str]) -> html.Tr:
    lang = req.lang
    target: Any = target_text(lang, e)
    if e.source == "ticket" and e.ticket is not None:
        target = dcc.Link(target, href=f"/incident/{e.ticket}")
    return with_data(html.Tr([
        html.Td(board.local(e.at, TIME), className="nowrap"),
        html.Td(who(lang, e.user, names)),
        html.Td(html.Span(label(lang, "audit.action.", e.action), className=f"tag act-{e.action}")),
        html.Td(target, className="target"),
        html.Td(detail_text(lang, e), className="note"),
    ]), action=e.action, user=e.user)
