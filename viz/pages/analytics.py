"""KPIs per worker and grid (``/kpi``); the hotspots page is :mod:`viz.pages.hotspots`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from dash import Dash, Input, Output, dcc, html

from viz.data import DataUnavailable
from viz.i18n import duration, t
from viz.shell import SUPERVISORS, Dashboard, Req, guarded_callbacks, unavailable_text
from viz.ticket_text import people

# -- layouts ---------------------------------------------------------------------------------------------


def kpi_page(req: Req, board: Dashboard, _arg: str | None = None) -> Any:
    """The KPI page; the ``kpi-tables`` callback fills in the chosen period."""
    lang = req.lang
    return html.Div([
        html.H2(t(lang, "kpi.title")),
        html.P(dcc.Link(t(lang, "oc.kpi_link"), href="/outcomes", id="oc-link"), className="oc-link"),  # /outcomes
        html.Div([html.Span(t(lang, "kpi.period")),
                  dcc.RadioItems(id="kpi-period", value="30", inline=True,
                                 options=[{"label": t(lang, "kpi.days", n=n), "value": str(n)}
                                          for n in (7, 30, 90)])], className="toolbar"),
        html.Div(id="kpi-tables"),
    ], className="panel wide")


# -- callbacks -------------------------------------------------------------------------------------------


def register_callbacks(app: Dash, board: Dashboard) -> None:
    """The KPI tables of the chosen period."""
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

