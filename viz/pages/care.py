"""Care homes of elderly residents (``/care``): red / yellow / green per unit, quiet units and inactivity
alarms first."""

from __future__ import annotations

from typing import Any

from dash import Dash, Input, Output, dcc, html

from viz import analytics as an
from viz.data import DataUnavailable
from viz.i18n import duration, t
from viz.shell import SUPERVISORS, Dashboard, Req, guarded_callbacks, unavailable_text
from viz.widgets import visible_buildings

# -- layout ----------------------------------------------------------------------------------------------


def care_page(req: Req, board: Dashboard, _arg: str | None = None) -> Any:
    """The care page; the ``care-body`` callback fills it and refreshes it every minute."""
    lang = req.lang
    return html.Div([html.H2(t(lang, "care.title")), html.Div(id="care-body"),
                     dcc.Interval(id="care-clock", interval=60_000)], className="panel wide")


# -- callbacks -------------------------------------------------------------------------------------------


def register_callbacks(app: Dash, board: Dashboard) -> None:
    """The care table, redrawn when anything changes and every minute."""
    guarded = guarded_callbacks(app, board)

    @guarded(Output("care-body", "children"), Input("version", "data"), Input("care-clock", "n_intervals"),
             roles=SUPERVISORS)
    def care(req: Req, _v: Any, _n: Any) -> Any:
        return _care_body(req, board)


# -- content ---------------------------------------------------------------------------------------------


def _care_body(req: Req, board: Dashboard) -> Any:
    lang = req.lang
    community = board.community()
    try:
        units = list(board.data.care_overview())
        records = {r.unit: r.id for r in board.data.care_register().residents(req.user)}  # the care register
    except DataUnavailable as exc:
        return html.P(unavailable_text(lang, exc), className="msg warn")
    visible = visible_buildings(req.user, community)
    units = [u for u in units if u.building in visible]
    if not units:
        return html.P(t(lang, "care.none"), className="muted")
    alerts = {u.unit: an.care_alert(u, req.now) for u in units}
    units.sort(key=lambda u: (not alerts[u.unit], {"red": 0, "yellow": 1, "green": 2}[u.level], u.unit))
    counts = {lvl: sum(1 for u in units if u.level == lvl) for lvl in ("red", "yellow", "green")}
    names = {b.id: b.name for b in community.buildings}

    def last(u: Any) -> str:
        if u.last_activity is None:
            return t(lang, "care.never")
        return t(lang, "care.ago", t=duration(lang, (req.now - u.last_activity).total_seconds()))

    def alert(u: Any) -> Any:
        notes = []
        if u.inactivity_alarm:
            notes.append(html.Span(t(lang, "care.alert_alarm"), className="sev sev-major"))
        elif alerts[u.unit]:
            notes.append(html.Span(t(lang, "care.alert_quiet"), className="sev sev-minor"))
        if u.sensors_offline:
            notes.append(html.Span(t(lang, "care.offline", n=u.sensors_offline), className="tag"))
        return notes or t(lang, "care.ok")

    head = html.Tr([html.Th(t(lang, f"care.col.{c}")) for c in ("unit", "level", "last", "alert")])
    def home(u: Any) -> Any:  # the unit, linked to its resident's record in the care register when there is one
        text = f"{names.get(u.building, u.building)} {u.unit}"
        return dcc.Link(text, href=f"/residents/{records[u.unit]}") if u.unit in records else text

    body = [html.Tr([html.Td(home(u)),
                     html.Td(html.Span(t(lang, f"care.level.{u.level}"), className=f"care care-{u.level}")),
                     html.Td(last(u)), html.Td(alert(u))], className="alert" if alerts[u.unit] else "")
            for u in units]
    return [html.P(t(lang, "care.summary", alerts=sum(alerts.values()), **counts), id="care-summary"),
            html.Div(html.Table([html.Thead(head), html.Tbody(body)], className="table", id="care-table"),
                     className="table-scroll")]  # a phone scrolls the columns sideways
