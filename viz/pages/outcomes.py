"""Outcomes (``/outcomes``, 成效分析; supervisors, operators, admins): each outcome of :mod:`twin.outcomes` over the
chosen period against the community file's baseline and target: a "vs target" row (met or not), a trend chart per
metric (Plotly: the baseline grey and dashed, the target green) and the figures per grid and per worker, with false
alarms per device kind and the places where incidents repeated. A supervisor sees their grids only (the data
source decides); the KPI page links here."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from typing import Any, cast

from dash import Dash, Input, Output, dcc, html

from twin.community import Community
from twin.outcomes import LOWER_IS_BETTER, METRICS, Outcomes, OutcomeTargets, Values
from viz.data import DataUnavailable
from viz.i18n import kind_label, t
from viz.pages.device_charts import locale_config
from viz.shell import SUPERVISORS, Dashboard, Req, guarded_callbacks, unavailable_text
from viz.ticket_text import people

PERIODS = (30, 84, 182, 365)  # days, up to today
DEFAULT_PERIOD = 84
BUCKETS = ("day", "week", "month")
MAX_DAY_BUCKETS = 120
CHARTED = (*METRICS, "reports_per_worker")  # a chart each; the last has no target
TABLE_COLUMNS = ("tickets", "close_days", "satisfaction", "response_sla", "resolution_sla", "care_on_time",
                 "patrols_done", "false_alarm_rate", "repeat_rate", "reports")
SHARES = frozenset(METRICS) - {"close_days"}
COLOURS = {"line": "#38BDF8", "baseline": "#94A3B8", "target": "#22C55E"}


# -- layout -----------------------------------------------------------------------------------------------------


def outcomes_page(req: Req, board: Dashboard, _arg: str | None = None) -> Any:
    """The page; the ``oc-body`` callback fills in the chosen period and bucket."""
    lang = req.lang
    return html.Div(id="outcomes", className="panel wide outcomes", children=[
        html.H2(t(lang, "oc.title")),
        html.P(t(lang, "oc.lead"), className="muted small"),
        html.Div(className="toolbar", children=[
            html.Div([html.Span(t(lang, "oc.period")),
                      dcc.RadioItems(id="oc-period", value=str(DEFAULT_PERIOD), inline=True,
                                     options=[{"label": t(lang, f"oc.period.{n}"), "value": str(n)}
                                              for n in PERIODS])], className="mode"),
            html.Div([html.Span(t(lang, "oc.bucket")),
                      dcc.RadioItems(id="oc-bucket", value="week", inline=True,
                                     options=[{"label": t(lang, f"oc.bucket.{b}"), "value": b}
                                              for b in BUCKETS])], className="mode"),
        ]),
        dcc.Loading(html.Div(id="oc-body"), type="dot"),
    ])


def kpi_link(lang: str) -> Any:
    """The KPI page's link here."""
    return html.P(dcc.Link(t(lang, "oc.kpi_link"), href="/outcomes", id="oc-link"), className="oc-link")


def register_callbacks(app: Dash, board: Dashboard) -> None:
    guarded = guarded_callbacks(app, board)

    @guarded(Output("oc-body", "children"), Input("oc-period", "value"), Input("oc-bucket", "value"),
             roles=SUPERVISORS)
    def outcomes_body(req: Req, period: Any, bucket: Any) -> Any:
        days = int(period) if str(period) in {str(n) for n in PERIODS} else DEFAULT_PERIOD
        return body(req, board, days, str(bucket) if bucket in BUCKETS else "week")


# -- content ----------------------------------------------------------------------------------------------------


def period(today: date, days: int, community: Community) -> tuple[datetime, datetime]:
    """The last ``days`` local days up to and including ``today``, as an aware interval."""
    tz = community.tz
    end = datetime.combine(today + timedelta(days=1), time(0), tz)
    return end - timedelta(days=days), end


def body(req: Req, board: Dashboard, days: int, bucket: str) -> Any:
    lang = req.lang
    community = board.community()
    note: list[Any] = []
    if bucket == "day" and days > MAX_DAY_BUCKETS:
        bucket = "week"
        note.append(html.P(t(lang, "oc.day_too_long"), className="msg", id="oc-day-note"))
    start, end = period(req.now.astimezone(community.tz).date(), days, community)
    try:
        o = board.data.outcomes(req.user, start, end, bucket)
    except DataUnavailable as exc:
        return html.P(unavailable_text(lang, exc), className="msg warn", id="oc-unavailable")
    targets = community.targets
    grid_names = {g.id: g.name for g in community.grids}
    scope = "" if req.user.sees_everything() else t(lang, "oc.scope.grids", grids=", ".join(
        grid_names.get(g, g) for g in req.user.grids) or "—")
    last = (end - timedelta(days=1)).date()
    head = html.P([t(lang, "oc.range", start=start.date().isoformat(), end=last.isoformat(), tz=community.timezone),
                   html.Span(" · " + scope if scope else "")], className="muted small", id="oc-range")
    if not o.values.get("tickets") and all(o.values.get(m) is None for m in METRICS):
        return html.Div([*note, head, html.P(t(lang, "oc.none"), className="muted", id="oc-none")])
    names = people(community, lang)
    config = cast(Any, {"displayModeBar": False, **locale_config(lang)})  # small charts: the bar hid the titles
    charts = [html.Div(dcc.Graph(id=f"oc-chart-{m}", figure=trend_figure(lang, o, targets, m), config=config,
                                 className="oc-graph"), className="oc-chart") for m in CHARTED]
    return html.Div([
        *note, head,
        html.H3(t(lang, "oc.vs_target")),
        summary_row(lang, o.values, targets),
        html.H3(t(lang, "oc.trends")),
        html.Div(charts, className="oc-charts"),
        html.H3(t(lang, "oc.by_grid")),
        scope_table(lang, "grid", {g: (grid_names.get(g, g), v) for g, v in o.by_grid.items()}, targets),
        html.H3(t(lang, "oc.by_worker")),
        scope_table(lang, "worker", {w: (names.get(w, w), v) for w, v in o.by_worker.items()}, targets),
        html.P(t(lang, "oc.by_worker.note"), className="muted small"),
        html.Div(className="oc-pair", children=[
            html.Section([html.H3(t(lang, "oc.false_alarms")), false_alarm_table(lang, o)]),
            html.Section([html.H3(t(lang, "oc.repeats")), repeats_table(lang, o)]),
        ]),
    ])


def fmt(lang: str, metric: str, v: float | None) -> str:
    """A figure as shown: shares in %, days with one decimal, counts whole."""
    if v is None:
        return "—"
    if metric in SHARES:
        return f"{v * 100:.0f}%"
    if metric == "close_days":
        return t(lang, "oc.days", v=f"{v:.1f}")
    if metric in ("tickets", "reports", "rated", "care_due", "patrol_rounds", "alarm_tickets"):
        return f"{v:.0f}"
    return f"{v:.2f}".rstrip("0").rstrip(".")


def met_class(targets: OutcomeTargets, metric: str, v: float | None) -> str:
    if metric not in METRICS:
        return ""
    met = targets.met(cast(Any, metric), v)
    return "" if met is None else ("met" if met else "not-met")


def summary_row(lang: str, values: Values, targets: OutcomeTargets) -> Any:
    """One card per metric: the value, coloured met / not met, with the target and the baseline."""
    cards = []
    for m in METRICS:
        goal = getattr(targets, m)
        v = values.get(m)
        cls = met_class(targets, m, v)
        verdict = t(lang, "oc.no_data") if not cls else t(lang, "oc.met" if cls == "met" else "oc.not_met")
        rule = "oc.goal.lower" if m in LOWER_IS_BETTER else "oc.goal.higher"
        lines = [html.Div(t(lang, f"oc.m.{m}"), className="oc-card-label"),
                 html.Div(fmt(lang, m, v), className="oc-card-value"),
                 html.Div(verdict, className="oc-card-verdict"),
                 html.Div(t(lang, rule, v=fmt(lang, m, goal.target)), className="oc-card-goal small")]
        if goal.baseline is not None:
            lines.append(html.Div(t(lang, "oc.was", v=fmt(lang, m, goal.baseline)), className="oc-card-goal small"))
        cards.append(html.Div(lines, className=f"oc-card {cls or 'no-data'}", id=f"oc-card-{m}"))
    return html.Div(cards, className="oc-cards", id="oc-summary")


def trend_figure(lang: str, o: Outcomes, targets: OutcomeTargets, metric: str) -> dict[str, Any]:
    """The metric per bucket (gaps where there is nothing to measure) with the baseline (grey, dashed) and the
    target (green) as horizontal lines across the period."""
    xs = [s.strftime("%Y-%m-%d") for s, _ in o.series]
    scale = 100.0 if metric in SHARES else 1.0
    ys = [None if v.get(metric) is None else round(cast(float, v[metric]) * scale, 2) for _, v in o.series]
    unit = "%" if metric in SHARES else (t(lang, "oc.days", v="").strip() if metric == "close_days" else "")
    traces: list[dict[str, Any]] = [{
        "type": "scatter", "mode": "lines+markers", "x": xs, "y": ys, "name": t(lang, "oc.actual"),
        "line": {"color": COLOURS["line"], "width": 2}, "connectgaps": False,
        "hovertemplate": f"%{{x}}: %{{y:.4g}}{unit}<extra></extra>"}]
    if metric in METRICS and xs:
        goal = getattr(targets, metric)
        span = [xs[0], xs[-1]] if len(xs) > 1 else [xs[0], xs[0]]
        if goal.baseline is not None:
            traces.append({"type": "scatter", "mode": "lines", "x": span, "y": [goal.baseline * scale] * 2,
                           "name": t(lang, "oc.baseline"), "hoverinfo": "skip",
                           "line": {"color": COLOURS["baseline"], "dash": "dash", "width": 1.5}})
        traces.append({"type": "scatter", "mode": "lines", "x": span, "y": [goal.target * scale] * 2,
                       "name": t(lang, "oc.target"), "hoverinfo": "skip",
                       "line": {"color": COLOURS["target"], "width": 2}})
    yaxis: dict[str, Any] = {"gridcolor": "#1E293B", "zeroline": False, "ticksuffix": "%" if scale == 100 else "",
                             "rangemode": "tozero"}
    if scale == 100:
        yaxis["range"] = [0, 105]
    return {"data": traces, "layout": {
        "title": {"text": t(lang, f"oc.m.{metric}"), "font": {"size": 14}, "x": 0.01},
        "paper_bgcolor": "#0F172A", "plot_bgcolor": "#111C33", "font": {"color": "#E2E8F0", "size": 11},
        "margin": {"l": 44, "r": 10, "t": 34, "b": 30}, "height": 240, "showlegend": True,
        "legend": {"orientation": "h", "y": -0.18, "x": 0, "font": {"size": 10}},
        "xaxis": {"gridcolor": "#1E293B", "type": "date", "tickformat": "%m-%d"}, "yaxis": yaxis,
        "hovermode": "x"}}


def scope_table(lang: str, scope: str, rows: dict[str, tuple[str, Values]], targets: OutcomeTargets) -> Any:
    """Per grid or per worker: the main figures, each cell coloured met / not met against the target."""
    head = html.Tr([html.Th(t(lang, "oc.col.name"))] + [html.Th(t(lang, f"oc.m.{c}"), className="num")
                                                       for c in TABLE_COLUMNS])
    body = [html.Tr([html.Td(name)] + [html.Td(fmt(lang, c, v.get(c)), className=("num " + met_class(
        targets, c, v.get(c))).strip()) for c in TABLE_COLUMNS]) for _key, (name, v) in rows.items()]
    return html.Div(html.Table([html.Thead(head), html.Tbody(body)], className="table oc-table",
                               id=f"oc-{scope}-table"), className="table-scroll")


def false_alarm_table(lang: str, o: Outcomes) -> Any:
    if not o.false_alarms_by_kind:
        return html.P(t(lang, "oc.no_alarms"), className="muted small")
    head = html.Tr([html.Th(t(lang, f"oc.col.{c}"), className="num" if c != "kind" else "")
                    for c in ("kind", "alarms", "false", "rate")])
    body = [html.Tr([html.Td(kind_label(lang, k)), html.Td(n, className="num"), html.Td(f, className="num"),
                     html.Td(f"{f / n * 100:.0f}%" if n else "—", className="num")])
            for k, (n, f) in sorted(o.false_alarms_by_kind.items(), key=lambda kv: (-kv[1][1], kv[0]))]
    return html.Div(html.Table([html.Thead(head), html.Tbody(body)], className="table", id="oc-false-alarms"),
                    className="table-scroll")


def repeats_table(lang: str, o: Outcomes, top: int = 10) -> Any:
    rows: Sequence[tuple[str, int]] = o.repeats[:top]
    if not rows:
        return html.P(t(lang, "oc.no_repeats"), className="muted small")
    head = html.Tr([html.Th(t(lang, "oc.col.place")), html.Th(t(lang, "oc.col.incidents"), className="num")])
    body = [html.Tr([html.Td(p), html.Td(n, className="num")]) for p, n in rows]
    return html.Div(html.Table([html.Thead(head), html.Tbody(body)], className="table", id="oc-repeats"),
                    className="table-scroll")
