"""Incident and alarm history (``/history``): a time range (presets or local dates), text search, category,
severity and state filters, sortable columns, paging in the database, and a CSV export of the current filter
(``/export/history.csv``, :mod:`viz.exports`). Each incident links to its detail page (:mod:`viz.pages.incident`).

Supervisors see the incidents and alarms of their grids only; operators and admins all."""

from __future__ import annotations

from typing import Any

from dash import ALL, Dash, Input, Output, State, ctx, dcc, html, no_update

from viz.data import DataUnavailable
from viz.exports import register_routes
from viz.history_model import (
    ALARM_SORTS,
    ALARM_STATES,
    CATEGORIES,
    INCIDENT_SORTS,
    INCIDENT_STATES,
    SEVERITIES,
    AlarmRow,
    IncidentRow,
    QueryError,
    history_query,
    pages,
)
from viz.history_view import (
    error_text,
    export_href,
    label,
    pager,
    params,
    range_controls,
    size_control,
    step_page,
    who,
)
from viz.i18n import floor_label, rule_label, t
from viz.shell import SUPERVISORS, Dashboard, Req, guarded_callbacks, unavailable_text
from viz.widgets import place_text, priority_label, status_label, with_data

EXPORT_PATH = "/export/history.csv"
INCIDENT_COLS = ("id", "created", "title", "category", "severity", "state", "place", "assignee", "resolved",
                 "alarms")
ALARM_COLS = ("raised", "rule", "severity", "state", "place", "cleared", "acked", "count", "ticket")
TIME = "%Y-%m-%d %H:%M"

# -- layout ----------------------------------------------------------------------------------------------


def _head(lang: str, kind: str, cols: tuple[str, ...], sortable: tuple[str, ...]) -> html.Thead:
    cells = []
    for c in cols:
        text = t(lang, f"hist.col.{c}")
        if c in sortable:
            cells.append(html.Th(html.Button(text, id={"type": "hist-sort", "col": f"{kind}:{c}"},
                                             className="th-sort", n_clicks=0)))
        else:
            cells.append(html.Th(text))
    return html.Thead(html.Tr(cells), id=f"hist-head-{kind}", hidden=kind != "incidents")


def history_page(req: Req, board: Dashboard, _arg: str | None = None) -> Any:
    """The filters, the table and the pager; the ``hist`` callback fills the table."""
    lang = req.lang
    sort_incidents = tuple(c if c != "id" else "created" for c in INCIDENT_SORTS)
    return html.Div(className="panel wide hist", children=[
        html.H2(t(lang, "hist.title")),
        dcc.RadioItems(id="hist-kind", value="incidents", inline=True, className="hist-tabs",
                       options=[{"label": t(lang, f"hist.kind.{k}"), "value": k} for k in ("incidents", "alarms")]),
        html.Div(className="hist-filters", children=[
            *range_controls(lang, "hist"),
            html.Label([t(lang, "hist.search"), dcc.Input(id="hist-q", type="text", debounce=True, maxLength=100,
                                                          className="hist-text")], className="grow"),
            html.Label([t(lang, "hist.category"), dcc.Dropdown(
                id="hist-category", className="hist-pick", placeholder=t(lang, "hist.all"),
                options=[{"label": t(lang, f"hist.cat.{c}"), "value": c} for c in CATEGORIES])]),
            html.Label([t(lang, "hist.severity"), dcc.Dropdown(
                id="hist-severity", className="hist-pick", placeholder=t(lang, "hist.all"),
                options=[{"label": t(lang, f"severity.{s}"), "value": s} for s in SEVERITIES])]),
            html.Label([t(lang, "hist.state"), dcc.Dropdown(id="hist-state", className="hist-pick",
                                                           placeholder=t(lang, "hist.all"),
                                                           options=_state_options(lang, "incidents"))]),
            size_control(lang, "hist"),
        ]),
        html.Div(id="hist-msg", className="msg warn"),
        html.Div(className="table-scroll", children=html.Table(id="hist-table", className="table hist-table", children=[
            _head(lang, "incidents", INCIDENT_COLS, sort_incidents),
            _head(lang, "alarms", ALARM_COLS, ALARM_SORTS),
            html.Tbody(id="hist-body"),
        ])),
        pager(lang, "hist", EXPORT_PATH),
        dcc.Store(id="hist-sort", data={"incidents": ["created", "desc"], "alarms": ["raised", "desc"]}),
        dcc.Store(id="hist-page", data=0),
    ])


def _state_options(lang: str, kind: str) -> list[dict[str, str]]:
    states = INCIDENT_STATES if kind == "incidents" else ALARM_STATES
    return [{"label": t(lang, f"hist.state.{s}") if s in ("open", "closed", "active", "cleared")
             else status_label(lang, s), "value": s} for s in states]


# -- callbacks -------------------------------------------------------------------------------------------


def register_callbacks(app: Dash, board: Dashboard) -> None:
    """The table's one callback (filters, sorting, paging) and the CSV routes (:mod:`viz.exports`)."""
    register_routes(app.server, board)
    guarded = guarded_callbacks(app, board)
    sort_in = {"type": "hist-sort", "col": ALL}

    @guarded(Output("hist-body", "children"), Output("hist-pager", "children"), Output("hist-export", "href"),
             Output("hist-msg", "children"), Output("hist-sort", "data"), Output("hist-page", "data"),
             Output("hist-head-incidents", "hidden"), Output("hist-head-alarms", "hidden"),
             Output(sort_in, "className"), Output("hist-state", "options"), Output("hist-state", "value"),
             Output("hist-prev", "disabled"), Output("hist-next", "disabled"),
             Input("hist-kind", "value"), Input("hist-range", "value"), Input("hist-start", "value"),
             Input("hist-end", "value"), Input("hist-q", "value"), Input("hist-category", "value"),
             Input("hist-severity", "value"), Input("hist-state", "value"), Input("hist-size", "value"),
             Input(sort_in, "n_clicks"), Input("hist-prev", "n_clicks"), Input("hist-next", "n_clicks"),
             State("hist-sort", "data"), State("hist-page", "data"), roles=SUPERVISORS)
    def hist(req: Req, kind: Any, rng: Any, start: Any, end: Any, text: Any, category: Any, severity: Any,
             state: Any, size: Any, _sorts: Any, _prev: Any, _next: Any, sort: Any, page: Any) -> Any:
        lang = req.lang
        kind = "alarms" if kind == "alarms" else "incidents"
        trigger = ctx.triggered_id
        sort = sort if isinstance(sort, dict) else {}
        state_opts: Any = no_update
        if trigger == "hist-kind":
            state, state_opts = None, _state_options(lang, kind)
        if isinstance(trigger, dict) and trigger.get("type") == "hist-sort":
            k, _, col = str(trigger.get("col", "")).partition(":")
            cur = sort.get(k) or ["", "desc"]
            sort[k] = [col, "asc" if cur[0] == col and cur[1] == "desc" else "desc"]
        col, direction = (sort.get(kind) or ["", "desc"])[:2]
        page_n = step_page(trigger, page)
        values = {"kind": kind, "range": rng, "start": start, "end": end, "q": text, "category": category,
                  "severity": severity, "state": state, "sort": col, "dir": direction, "page": page_n, "size": size}
        sort_classes = [_sort_class(o["id"]["col"], kind, col, direction) for o in ctx.outputs_list[8]]
        heads = (kind != "incidents", kind != "alarms")
        grids = None if req.user.sees_everything() else tuple(req.user.grids)
        try:
            q = history_query(params(values), req.now, board.tz, grids)
        except QueryError as exc:
            return ([], "", no_update, error_text(lang, exc), sort, page_n, *heads, sort_classes, state_opts,
                    state if state_opts is not no_update else no_update, True, True)
        try:
            hist_data = board.data.history()
            got = hist_data.incidents(q) if kind == "incidents" else hist_data.alarm_history(q)
            names = hist_data.people()
        except DataUnavailable as exc:
            return ([], "", no_update, unavailable_text(lang, exc), sort, page_n, *heads, sort_classes, state_opts,
                    state if state_opts is not no_update else no_update, True, True)
        n_pages = pages(got.total, q.size)
        if not got.rows:
            body: Any = [html.Tr(html.Td(t(lang, "hist.none"), colSpan=len(INCIDENT_COLS), className="muted",
                                         id="hist-none"))]
        elif kind == "incidents":
            body = [_incident_row(req, board, r, names) for r in got.rows if isinstance(r, IncidentRow)]
        else:
            body = [_alarm_row(req, board, r, names) for r in got.rows if isinstance(r, AlarmRow)]
        pager_text = t(lang, "hist.pager", page=min(q.page + 1, n_pages), pages=n_pages, total=got.total)
        return (body, pager_text, export_href(EXPORT_PATH, values), "", sort, q.page, *heads, sort_classes,
                state_opts, state if state_opts is not no_update else no_update, q.page <= 0,
                q.page + 1 >= n_pages)


def _sort_class(col_id: str, kind: str, col: str, direction: str) -> str:
    k, _, c = col_id.partition(":")
    if k == kind and c == col:
        return f"th-sort sorted-{direction}"
    return "th-sort"


# -- rows ------------------------------------------------------------------------------------------------


def _sev(lang: str, severity: str) -> Any:
    if not severity:
        return "—"
    return html.Span(label(lang, "severity.", severity), className=f"sev sev-{severity}")


def incident_title(lang: str, r: IncidentRow) -> str:
    """The service titles tickets in Chinese; in English an alarm's incident is its rule's name and floor."""
    if lang == "zh" or not r.rule_name:
        return r.title
    return rule_label(lang, r.rule_name) + (f" · {floor_label(lang, r.floor)}" if r.floor is not None else "")


def _incident_row(req: Req, board: Dashboard, r: IncidentRow, names: dict[str, str] | Any) -> html.Tr:
    lang = req.lang
    href = f"/incident/{r.id}"
    return with_data(html.Tr([
        html.Td(dcc.Link(str(r.id), href=href)),
        html.Td(board.local(r.created_at, TIME), className="nowrap"),
        html.Td(dcc.Link(incident_title(lang, r), href=href, className="inc-link")),
        html.Td(label(lang, "hist.cat.", r.category)),
        html.Td(_sev(lang, r.severity)),
        html.Td(html.Span(status_label(lang, r.state), className="status")),
        html.Td(place_text(req, board, r.building, r.floor, r.device)),
        html.Td(who(lang, r.assignee, names) if r.assignee else t(lang, "tickets.unassigned")),
        html.Td(board.local(r.resolved_at, TIME) or "—", className="nowrap"),
        html.Td(str(r.alarms)),
    ]), incident=str(r.id), priority=priority_label(lang, r.priority))


def _alarm_row(req: Req, board: Dashboard, r: AlarmRow, names: dict[str, str] | Any) -> html.Tr:
    lang = req.lang
    name = rule_label(lang, r.rule_name or r.rule)
    return with_data(html.Tr([
        html.Td(board.local(r.raised_at, TIME), className="nowrap"),
        html.Td(name),
        html.Td(_sev(lang, r.severity)),
        html.Td(html.Span(t(lang, f"hist.state.{r.state}"), className=f"status st-{r.state}")),
        html.Td(place_text(req, board, r.building, r.floor, r.device)),
        html.Td(board.local(r.cleared_at, TIME) or "—", className="nowrap"),
        html.Td(who(lang, r.acked_by, names) if r.acked_by else "—"),
        html.Td(str(r.count)),
        html.Td(dcc.Link(t(lang, "audit.target.ticket", id=r.ticket), href=f"/incident/{r.ticket}")
                if r.ticket is not None else "—"),
    ]), key=r.key, state=r.state)
