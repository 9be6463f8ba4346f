"""One device (``/device/<id>``): where it is, its latest values, and its history as min/avg/max bands
over an hour, a day or a week."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dash import Dash, Input, Output, State, dcc, html
from dash.exceptions import PreventUpdate

from twin import catalogue
from viz import analytics as an
from viz.data import DataUnavailable
from viz.i18n import kind_label, t
from viz.paths import parse_path
from viz.shell import OPERATORS, Dashboard, Req, guarded_callbacks, notice
from viz.widgets import place_text

# -- layout ----------------------------------------------------------------------------------------------


def device_page(req: Req, board: Dashboard, device_id: str | None = None) -> Any:
    """The device's place and latest values; the ``history`` callback draws the chart."""
    device_id = device_id or ""
    lang = req.lang
    community = board.community()
    dev = community.device(device_id)
    if dev is None:
        return notice(t(lang, "err.unknown_device", id=device_id[:64]), req, "unknown-device")
    spec = catalogue.KINDS[dev.kind]
    try:
        latest = board.data.device_latest(dev.id)
    except DataUnavailable:
        latest = {}
    numeric = list(spec.fields)
    units = {f.name: f.unit for f in spec.fields}
    rows = [html.Tr([html.Td(name), html.Td(f"{v:g} {units.get(name, '')}".strip()),
                     html.Td(board.local(ts, "%Y-%m-%d %H:%M:%S"))]) for name, (v, ts) in sorted(latest.items())]
    back = f"/building/{dev.building}" if dev.building else "/"
    parts: list[Any] = [
        dcc.Link(t(lang, "scene.back"), href=back, className="back"),
        html.H2(t(lang, "device.title", id=dev.id, kind=kind_label(lang, dev.kind)), id="device-title"),
        html.P(t(lang, "device.place", place=place_text(req, board, dev.building, dev.floor, None, dev.unit))),
        html.H3(t(lang, "device.latest")),
        html.Table([html.Thead(html.Tr([html.Th(t(lang, "device.field")), html.Th(t(lang, "device.value")),
                                        html.Th(t(lang, "device.time"))])), html.Tbody(rows)], className="table")
        if rows else html.P(t(lang, "device.none"), className="muted"),
        html.H3(t(lang, "device.history")),
    ]
    if not numeric:
        parts.append(html.P(t(lang, "device.no_fields"), className="muted"))
        return html.Div(parts, className="panel wide")
    parts += [
        html.Div([
            dcc.RadioItems(id="dev-range", value="hour", inline=True,
                           options=[{"label": t(lang, f"range.{r}"), "value": r} for r in an.RANGES]),
            dcc.Dropdown(id="dev-field", value=numeric[0].name, clearable=False,
                         options=[{"label": f"{f.name} {f.unit}".strip(), "value": f.name} for f in numeric],
                         className="field-pick"),
        ], className="toolbar"),
        dcc.Graph(id="history", className="history", config={"displaylogo": False}),
        html.Div(id="history-note", className="muted"),
    ]
    return html.Div(parts, className="panel wide")


# -- callbacks -------------------------------------------------------------------------------------------


def register_callbacks(app: Dash, board: Dashboard) -> None:
    """The history chart, redrawn when the range or the field changes."""
    data = board.data
    guarded = guarded_callbacks(app, board)

    @guarded(Output("history", "figure"), Output("history-note", "children"),
             Input("dev-range", "value"), Input("dev-field", "value"), State("url", "pathname"), roles=OPERATORS)
    def device_history(req: Req, rng: Any, fld: Any, path: str | None) -> Any:
        kind, dev_id = parse_path(path)
        dev = board.community().device(dev_id or "") if kind == "device" else None
        spec = catalogue.KINDS.get(dev.kind) if dev else None
        if dev is None or spec is None or not isinstance(fld, str) or spec.field(fld) is None:
            raise PreventUpdate
        span, bucket = an.RANGES.get(str(rng), an.RANGES["hour"])
        until = req.now
        points = data.device_history(dev.id, fld, until - span, until, bucket)
        f = spec.field(fld)
        unit = f.unit if f else ""
        note = "" if points else t(req.lang, "device.no_history")
        return _history_figure(points, req, board, fld, unit, f.normal if f else None), note


def _history_figure(points: Sequence[Any], req: Req, board: Dashboard, name: str, unit: str,
                    normal: tuple[float, float] | None) -> dict[str, Any]:
    xs = [board.local(p.bucket, "%Y-%m-%d %H:%M") for p in points]
    traces: list[dict[str, Any]] = [
        {"type": "scatter", "x": xs, "y": [p.max for p in points], "mode": "lines", "line": {"width": 0},
         "showlegend": False, "hoverinfo": "skip"},
        {"type": "scatter", "x": xs, "y": [p.min for p in points], "mode": "lines", "line": {"width": 0},
         "fill": "tonexty", "fillcolor": "rgba(142,164,186,0.3)", "name": t(req.lang, "device.range")},
        {"type": "scatter", "x": xs, "y": [p.avg for p in points], "mode": "lines+markers",
         "line": {"color": "#38BDF8"}, "marker": {"size": 3}, "name": t(req.lang, "device.avg")},
    ]
    shapes = []
    if normal is not None:
        for y in normal:
            shapes.append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": y, "y1": y,
                           "line": {"color": "#F2E35C", "dash": "dot", "width": 1}})
    return {"data": traces, "layout": {
        "paper_bgcolor": "#0F172A", "plot_bgcolor": "#111C33", "font": {"color": "#E2E8F0"},
        "margin": {"l": 50, "r": 10, "t": 10, "b": 40}, "yaxis": {"title": {"text": f"{name} {unit}".strip()},
                                                                   "gridcolor": "#1E293B"},
        "xaxis": {"gridcolor": "#1E293B"}, "shapes": shapes, "legend": {"orientation": "h"}}}
