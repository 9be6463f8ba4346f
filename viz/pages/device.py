"""One device (``/device/<id>``): where it is, whether it is heard from, its latest values named as people name
them (with units), its history over a chosen period (1 h, 6 h, 24 h, 7 d or a custom range) with its alarm
periods shaded, a state timeline for devices that report only states and events, and its alarms and events.

The charts and their rules are in :mod:`viz.pages.device_charts`."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from dash import Dash, Input, Output, State, dcc, html
from dash.exceptions import PreventUpdate

from twin import catalogue
from twin.community import Device
from viz.data import DataUnavailable, DeviceTimeline
from viz.i18n import kind_label, rule_label, t
from viz.pages import device_charts as ch
from viz.paths import parse_path
from viz.shell import SUPERVISORS, Dashboard, Req, guarded_callbacks, notice
from viz.widgets import place_text, with_data

LOG_ROWS = 200  # alarm changes and events listed for the chosen period
HIDDEN = {"display": "none"}

# -- layout ----------------------------------------------------------------------------------------------


def device_page(req: Req, board: Dashboard, device_id: str | None = None) -> Any:
    """The device's place, state and latest values; the ``device_history`` callback draws the chart and the log."""
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
    rows = []
    for name, (v, ts) in sorted(latest.items(), key=lambda kv: _field_order(spec, kv[0])):
        f = spec.field(name)
        rows.append(with_data(html.Tr([html.Td(ch.field_label(lang, f) if f else name),
                                       html.Td(ch.value_text(lang, f, v)),
                                       html.Td(board.local(ts, "%Y-%m-%d %H:%M:%S"))]), field=name))
    numeric = ch.numeric_fields(dev.kind)
    building = community.building(dev.building) if dev.building else None
    links: list[Any] = [dcc.Link(t(lang, "dev.back_overview"), href="/", className="back", id="dev-back")]
    if building is not None:
        links.append(dcc.Link(t(lang, "dev.to_building", name=building.name), href=f"/building/{building.id}",
                              id="dev-building"))
    links.append(dcc.Link(t(lang, "dev.to_inventory"), href="/devices", id="dev-inventory"))
    parts: list[Any] = [
        html.Div(links, className="dev-links"),
        html.H2(t(lang, "device.title", id=dev.id, kind=kind_label(lang, dev.kind)), id="device-title"),
        html.P(t(lang, "device.place", place=place_text(req, board, dev.building, dev.floor, None, dev.unit))),
        _status_line(req, board, dev),
        html.H3(t(lang, "device.latest")),
        html.Table([html.Thead(html.Tr([html.Th(t(lang, "device.field")), html.Th(t(lang, "device.value")),
                                        html.Th(t(lang, "device.time"))])), html.Tbody(rows)],
                   className="table", id="dev-latest")
        if rows else html.P(t(lang, "device.none"), className="muted"),
        html.H3(t(lang, "device.history") if numeric else t(lang, "dev.state_timeline")),
    ]
    if not numeric:
        parts.append(html.P(t(lang, "dev.state_note"), className="muted", id="dev-state-note"))
    parts += [
        html.Div([
            dcc.RadioItems(id="dev-range", value="1h", inline=True, className="range-pick",
                           options=[{"label": t(lang, f"dev.range.{r}"), "value": r} for r in (*ch.RANGES, ch.CUSTOM)]),
            html.Label([t(lang, "dev.field_pick"), dcc.Dropdown(
                id="dev-field", value=numeric[0].name if numeric else None, clearable=False, searchable=False,
                options=[{"label": ch.field_label(lang, f), "value": f.name} for f in numeric],
                className="field-pick")], style=None if numeric else HIDDEN),
        ], className="toolbar"),
        html.Div([
            html.Label([t(lang, "dev.from"), dcc.Input(id="dev-from", type="text", debounce=True, maxLength=32,
                                                        value=board.local(req.now - timedelta(days=1), ch.TEXT_FORMAT),
                                                        placeholder="2026-01-31 08:00", className="dev-time")]),
            html.Label([t(lang, "dev.to"), dcc.Input(id="dev-to", type="text", debounce=True, maxLength=32,
                                                      value=board.local(req.now, ch.TEXT_FORMAT),
                                                      placeholder="2026-01-31 20:00", className="dev-time")]),
            html.Span(t(lang, "dev.custom_hint", days=ch.MAX_CUSTOM_DAYS), className="muted small"),
        ], id="dev-custom", className="dev-custom", style=HIDDEN),
        html.Div(id="dev-range-msg", className="warn-text", role="alert"),
        html.Div(id="dev-period", className="muted small"),
        dcc.Graph(id="history", className="history" if numeric else "history states",
                  config=cast(Any, ch.graph_config(lang))),
        html.Div(id="history-note", className="muted"),
        html.H3(t(lang, "dev.log")),
        html.Div(id="dev-log"),
    ]
    return html.Div(parts, className="panel wide device-page")


def _field_order(spec: catalogue.DeviceKind, name: str) -> int:
    names = [f.name for f in spec.fields]
    return names.index(name) if name in names else len(names)


def _status_line(req: Req, board: Dashboard, dev: Device) -> Any:
    """在线/离线 and when it was last heard from, from the inventory read (one query, cached briefly)."""
    lang = req.lang
    try:
        seen = next((s for s in board.data.device_inventory() if s.device == dev.id), None)
    except DataUnavailable:
        return html.P(id="dev-status")
    if seen is None or seen.last_seen is None:
        return html.P(t(lang, "dev.status_never"), id="dev-status", className="muted")
    online = _online(dev.kind, seen.status, seen.last_seen, req.now)
    state = html.Span(t(lang, "dev.online" if online else "dev.offline"), className="on" if online else "off")
    text = t(lang, "dev.status_line", state="\0", ago=ch.ago(lang, req.now, seen.last_seen),
             at=board.local(seen.last_seen, "%Y-%m-%d %H:%M:%S"))
    before, after = text.split("\0", 1)
    return with_data(html.P([before, state, after], id="dev-status"), online="1" if online else "0")


def _online(kind: str, status: str | None, last_seen: datetime | None, now: datetime) -> bool:
    """Online: heard from within its kind's silence allowance, and its last status was not ``offline``."""
    if last_seen is None or status == "offline":
        return False
    spec = catalogue.KINDS.get(kind)
    return spec is None or now - last_seen <= timedelta(seconds=spec.silence_s)


# -- callbacks -------------------------------------------------------------------------------------------


def register_callbacks(app: Dash, board: Dashboard) -> None:
    """The chart and the alarm/event log, redrawn when the range, the custom period or the field changes."""
    data = board.data
    guarded = guarded_callbacks(app, board)

    @guarded(Output("history", "figure"), Output("history-note", "children"), Output("dev-log", "children"),
             Output("dev-custom", "style"), Output("dev-range-msg", "children"), Output("dev-period", "children"),
             Input("dev-range", "value"), Input("dev-field", "value"), Input("dev-from", "value"),
             Input("dev-to", "value"), State("url", "pathname"), roles=SUPERVISORS)
    def device_history(req: Req, rng: Any, fld: Any, start: Any, end: Any, path: str | None) -> Any:
        kind, dev_id = parse_path(path)
        dev = board.community().device(dev_id or "") if kind == "device" else None
        spec = catalogue.KINDS.get(dev.kind) if dev else None
        if dev is None or spec is None:
            raise PreventUpdate
        lang = req.lang
        custom_style = None if rng == ch.CUSTOM else HIDDEN
        if rng == ch.CUSTOM:
            got = ch.custom_range(lang, board.tz, req.now, start, end)
            if isinstance(got, str):
                blank = {"data": [], "layout": {"paper_bgcolor": "#0F172A", "plot_bgcolor": "#111C33",
                                                "xaxis": {"visible": False}, "yaxis": {"visible": False}}}
                return blank, "", [], custom_style, got, ""
            since, until = got
            bucket = ch.bucket_for(until - since)
        else:
            span, bucket = ch.RANGES.get(str(rng), ch.RANGES["1h"])
            until = req.now
            since = until - span
        period = t(lang, "dev.period", since=board.local(since, "%Y-%m-%d %H:%M"),
                   until=board.local(until, "%Y-%m-%d %H:%M"))
        timeline = data.device_timeline(dev.id, since, until, LOG_ROWS)
        numeric = ch.numeric_fields(dev.kind)
        f = spec.field(fld) if isinstance(fld, str) else None
        if numeric and (f is None or f.type is catalogue.FieldType.BOOL):
            f = numeric[0]
        if f is not None:
            points = data.device_history(dev.id, f.name, since, until, bucket)
            fig = ch.history_figure(points, timeline.spans, lang=lang, tz=board.tz, since=since, until=until,
                                    label=ch.field_label(lang, f, unit=False), unit=f.unit, normal=f.normal)
            note = "" if points else t(lang, "device.no_history")
        else:
            fig = ch.state_figure(timeline.events, timeline.spans, dev.kind, lang=lang, tz=board.tz, since=since,
                                  until=until)
            note = "" if timeline.events or timeline.spans else t(lang, "dev.no_states")
        return fig, note, _log(req, board, dev, timeline), custom_style, "", period


def _log(req: Req, board: Dashboard, dev: Device, timeline: DeviceTimeline) -> Any:
    """Alarm changes and device events of the period, newest first, in one table."""
    lang = req.lang
    spec = catalogue.KINDS.get(dev.kind)
    rows: list[tuple[datetime, Any]] = []
    for a in timeline.alarm_events:
        what = f"{rule_label(lang, a.rule_name)} · {_label(lang, 'dev.akind.', a.kind)}"
        sev = _label(lang, "severity.", a.severity)
        rows.append((a.at, with_data(html.Tr([
            html.Td(board.local(a.at, "%m-%d %H:%M:%S")), html.Td(html.Span(t(lang, "dev.log.alarm"),
                                                                            className=f"sev sev-{a.severity}")),
            html.Td(f"{what}（{sev}）" if lang != "en" else f"{what} ({sev})"), html.Td(a.by or "")],
            className=f"log-alarm log-{a.kind}"), kind=a.kind)))
    for e in timeline.events:
        ev = spec.event(e.code) if spec else None
        name = (ev.label_en if lang == "en" else ev.label_zh) if ev else e.code
        rows.append((e.at, with_data(html.Tr([
            html.Td(board.local(e.at, "%m-%d %H:%M:%S")), html.Td(html.Span(t(lang, "dev.log.event"), className="tag")),
            html.Td(f"{name} · {_label(lang, 'dev.estate.', e.state)}"), html.Td("")], className="log-event"),
            kind=e.state)))
    if not rows:
        return html.P(t(lang, "dev.log_none"), className="muted", id="dev-log-none")
    rows.sort(key=lambda r: r[0], reverse=True)
    head = html.Thead(html.Tr([html.Th(t(lang, k)) for k in ("dev.log.time", "dev.log.type", "dev.log.what",
                                                               "dev.log.by")]))
    out: list[Any] = [html.Table([head, html.Tbody([r[1] for r in rows[:LOG_ROWS]])], className="table log",
                                 id="dev-log-table")]
    if timeline.truncated or len(rows) > LOG_ROWS:
        out.append(html.P(t(lang, "dev.log_more", n=LOG_ROWS), className="muted small"))
    return out


def _label(lang: str, prefix: str, value: str) -> str:
    try:
        return t(lang, prefix + value)
    except KeyError:
        return value
