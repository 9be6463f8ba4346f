"""KPIs per worker and grid (``/kpi``) and incident hotspots per building, floor and kind (``/hotspots``).

The arithmetic (outliers, SLA clocks) is in :mod:`viz.analytics`; this module lays it out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from dash import Dash, Input, Output, dcc, html

from viz import analytics as an
from viz.data import AlarmView, DataUnavailable
from viz.i18n import duration, floor_label, rule_label, t
from viz.shell import SUPERVISORS, Dashboard, Req, guarded_callbacks, unavailable_text
from viz.ticket_text import people
from viz.widgets import visible_buildings

# -- layouts ---------------------------------------------------------------------------------------------


def kpi_page(req: Req, board: Dashboard, _arg: str | None = None) -> Any:
    """The KPI page; the ``kpi-tables`` callback fills in the chosen period."""
    lang = req.lang
    return html.Div([
        html.H2(t(lang, "kpi.title")),
        html.Div([html.Span(t(lang, "kpi.period")),
                  dcc.RadioItems(id="kpi-period", value="30", inline=True,
                                 options=[{"label": t(lang, "kpi.days", n=n), "value": str(n)}
                                          for n in (7, 30, 90)])], className="toolbar"),
        html.Div(id="kpi-tables"),
    ], className="panel wide")


def hotspots_page(req: Req, board: Dashboard, _arg: str | None = None, days: int = 30) -> html.Div:
    """Incidents of the last ``days`` per building, floor and kind, outliers called out."""
    lang = req.lang
    community = board.community()
    head = html.H2(t(lang, "hot.title", days=days))
    try:
        rows = list(board.data.hotspots(days))
    except DataUnavailable as exc:
        return html.Div([head, html.P(unavailable_text(lang, exc), className="msg warn")],
                        className="panel wide")
    visible = visible_buildings(req.user, community)
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


# -- callbacks -------------------------------------------------------------------------------------------


def register_callbacks(app: Dash, board: Dashboard) -> None:
    """The KPI tables of the chosen period (the hotspots page has no callback: it is drawn once)."""
    guarded = guarded_callbacks(app, board)

    @guarded(Output("kpi-tables", "children"), Input("kpi-period", "value"), roles=SUPERVISORS)
    def kpi_tables(req: Req, period: Any) -> Any:
        days = {"7": 7, "30": 30, "90": 90}.get(str(period), 30)
        return _kpi_tables(req, board, days)


# -- content ---------------------------------------------------------------------------------------------


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

    names = people(community, lang)  # a supervisor is named in the reader's language, not as the service wrote it

    def table(scope: str) -> html.Div:
        head = html.Tr([html.Th(t(lang, f"kpi.col.{c}")) for c in
                        ("name", "tickets", "open", "respond", "resolve", "on_time", "satisfaction", "reopen")])
        body = [html.Tr([html.Td(names.get(r.id, r.name) if scope == "worker" else r.name), html.Td(r.tickets),
                         html.Td(r.open), html.Td(dur(r.mean_respond_s)),
                         html.Td(dur(r.mean_resolve_s)), html.Td(_pct(r.on_time_rate)),
                         html.Td("—" if r.satisfaction is None else f"{r.satisfaction:.1f}"),
                         html.Td(_pct(r.reopen_rate))]) for r in rows if r.scope == scope]
        return html.Div(html.Table([html.Thead(head), html.Tbody(body)], className="table kpi-table"),
                        className="table-scroll")  # a phone scrolls the columns sideways

    return [html.H3(t(lang, "kpi.workers")), table("worker"), html.H3(t(lang, "kpi.grids")), table("grid"),
            *_partner_table(req, board, days, dur)]


def _partner_table(req: Req, board: Dashboard, days: int, dur: Callable[[float | None], str]) -> list[Any]:
    """Partners called (96333, the gas company, 119...) over the period: calls, arrivals, how long they took."""
    lang = req.lang
    try:
        rows = list(board.data.partner_kpis(req.user, req.now - timedelta(days=days), req.now))
    except DataUnavailable:
        return []
    if not rows:
        return []
    head = html.Tr([html.Th(t(lang, f"kpi.partner.{c}")) for c in ("name", "calls", "arrived", "median", "max")])
    body = [html.Tr([html.Td(t(lang, f"call.{r.role}")), html.Td(r.calls), html.Td(r.arrived),
                     html.Td(dur(r.median_arrive_s)), html.Td(dur(r.max_arrive_s))]) for r in rows]
    return [html.H3(t(lang, "kpi.partners")),
            html.Div(html.Table([html.Thead(head), html.Tbody(body)], className="table kpi-table", id="partner-kpis"),
                     className="table-scroll")]


def _safe_alarms(board: Dashboard) -> Iterable[AlarmView]:
    try:
        return board.data.active_alarms()
    except DataUnavailable:
        return ()
