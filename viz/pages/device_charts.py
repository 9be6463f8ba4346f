"""What the device page draws, as pure functions of the data: the history chart with its alarm periods shaded,
the state timeline of devices that report only states and events, Plotly's Chinese locale, the time-range
picker's ranges and the validation of a custom range, and relative times ("3 分钟前")."""
# ruff: noqa: E501

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, tzinfo
from typing import Any

import PIL.Image  # noqa: F401  # plotly's JSON encoder imports it lazily: two threads doing that at once break it

from twin import catalogue
from viz.data import AlarmSpan, DeviceEvent, HistoryPoint
from viz.i18n import rule_label, t

# range id -> (span, bucket): about 60-170 points each
RANGES: dict[str, tuple[timedelta, timedelta]] = {
    "1h": (timedelta(hours=1), timedelta(minutes=1)),
    "6h": (timedelta(hours=6), timedelta(minutes=5)),
    "24h": (timedelta(hours=24), timedelta(minutes=15)),
    "7d": (timedelta(days=7), timedelta(hours=1)),
}
CUSTOM = "custom"
MAX_CUSTOM_DAYS = 31  # the raw telemetry is kept 30 days (GRIDTWIN_DB_RETENTION_DAYS); a month covers it
KEPT_DAYS = 31
TEXT_FORMAT = "%Y-%m-%d %H:%M"  # how the custom range's boxes are filled in (ISO "T" and seconds also accepted)
SEVERITY_COLOURS = {"critical": "#e3161b", "major": "#f57c00", "minor": "#f5b800", "warning": "#64748b"}
SEVERITY_FILLS = {"critical": "rgba(227,22,27,0.22)", "major": "rgba(245,124,0,0.22)",
                  "minor": "rgba(245,184,0,0.2)", "warning": "rgba(100,116,139,0.25)"}
PLOT_FMT = "%Y-%m-%d %H:%M:%S"  # naive local time strings: Plotly draws them as they are (the community's clock)

# Plotly's zh-CN locale (the dates and the mode bar), given in the graph's config: no script from the internet.
ZH_LOCALE: dict[str, Any] = {
    "dictionary": {
        "Autoscale": "自动缩放", "Box Select": "矩形选择", "Click to enter Colorscale title": "点击输入色阶的标题",
        "Double-click to zoom back out": "双击返回缩放", "Download plot as a png": "下载图片 (png)",
        "Download plot": "下载图片", "Lasso Select": "套索选择", "Pan": "平移", "Produced with Plotly": "由 Plotly 生成",
        "Reset axes": "重置轴", "Reset view": "重置视图", "Toggle Spike Lines": "切换尖峰线",
        "Toggle show closest data on hover": "切换显示最近的数据", "Show closest data on hover": "显示最近的数据",
        "Compare data on hover": "比较数据", "Zoom": "缩放", "Zoom in": "放大", "Zoom out": "缩小",
        "Snapshot succeeded": "生成快照成功", "Taking snapshot - this may take a few seconds": "正在生成快照，请稍候",
        "Download plot as a PNG": "下载图片 (PNG)", "Download plot as JSON": "下载数据 (JSON)", "Share chart...": "分享图表…",
        "Orbital rotation": "轨道旋转", "Turntable rotation": "转盘旋转", "Reset camera to default": "视角复位",
        "Reset camera to last save": "恢复上次保存的视角", "Reset": "复位", "Reset views": "重置视图",
    },
    "format": {
        "days": ["星期日", "星期一", "星期二", "星期三", "星期四", "星期五", "星期六"],
        "shortDays": ["周日", "周一", "周二", "周三", "周四", "周五", "周六"],
        "months": ["一月", "二月", "三月", "四月", "五月", "六月", "七月", "八月", "九月", "十月", "十一月", "十二月"],
        "shortMonths": ["1月", "2月", "3月", "4月", "5月", "6月", "7月", "8月", "9月", "10月", "11月", "12月"],
        "date": "%Y-%m-%d", "decimal": ".", "thousands": ",",
    },
}


def locale_config(lang: str) -> dict[str, Any]:
    """The part of a ``dcc.Graph`` config that puts Plotly's own words (mode bar, dates) in ``lang``."""
    return {} if lang == "en" else {"locale": "zh-CN", "locales": {"zh-CN": ZH_LOCALE}}


def graph_config(lang: str) -> dict[str, Any]:
    """``dcc.Graph`` config: Chinese axes, hover and mode bar in Chinese mode."""
    return {"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"], **locale_config(lang)}


def _xaxis(lang: str, since: datetime, until: datetime, tz: tzinfo) -> dict[str, Any]:
    """A date axis over [since, until) in local time, ticks and hover written the way the language writes dates."""
    zh = lang != "en"
    day = 86_400_000
    stops = [
        {"dtickrange": [None, 60_000], "value": "%H:%M:%S"},
        {"dtickrange": [60_000, day], "value": "%H:%M<br>%m月%d日" if zh else "%H:%M<br>%b %d"},
        {"dtickrange": [day, None], "value": "%m月%d日" if zh else "%b %d"},
    ]
    return {"type": "date", "gridcolor": "#1E293B", "tickformatstops": stops,
            "hoverformat": "%Y年%m月%d日 %H:%M" if zh else "%Y-%m-%d %H:%M",
            "range": [since.astimezone(tz).strftime(PLOT_FMT), until.astimezone(tz).strftime(PLOT_FMT)]}


def _layout(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"paper_bgcolor": "#0F172A", "plot_bgcolor": "#111C33", "font": {"color": "#E2E8F0"},
                            "margin": {"l": 56, "r": 12, "t": 34, "b": 48}, "legend": {"orientation": "h", "y": -0.2},
                            "hovermode": "x unified"}
    base.update(extra)
    return base


def _span_shapes(spans: Sequence[AlarmSpan], until: datetime, tz: tzinfo) -> list[dict[str, Any]]:
    return [{"type": "rect", "xref": "x", "yref": "paper", "y0": 0, "y1": 1, "layer": "below", "line": {"width": 0},
             "x0": sp.start.astimezone(tz).strftime(PLOT_FMT),
             "x1": (sp.end or until).astimezone(tz).strftime(PLOT_FMT),
             "fillcolor": SEVERITY_FILLS.get(sp.severity, SEVERITY_FILLS["warning"])} for sp in spans]


def history_figure(points: Sequence[HistoryPoint], spans: Sequence[AlarmSpan], *, lang: str, tz: tzinfo,
                   since: datetime, until: datetime, label: str, unit: str,
                   normal: tuple[float, float] | None) -> dict[str, Any]:
    """min-max band and average of one field, its normal range dotted, the device's alarm periods shaded."""
    xs = [p.bucket.astimezone(tz).strftime(PLOT_FMT) for p in points]
    u = f" {unit}" if unit else ""
    traces: list[dict[str, Any]] = [
        {"type": "scatter", "x": xs, "y": [p.max for p in points], "mode": "lines", "line": {"width": 0},
         "showlegend": False, "name": t(lang, "dev.hover_max"), "hovertemplate": f"%{{y:.4g}}{u}"},
        {"type": "scatter", "x": xs, "y": [p.min for p in points], "mode": "lines", "line": {"width": 0},
         "fill": "tonexty", "fillcolor": "rgba(142,164,186,0.3)", "name": t(lang, "device.range"),
         "hovertemplate": f"%{{y:.4g}}{u}"},
        {"type": "scatter", "x": xs, "y": [p.avg for p in points], "mode": "lines+markers",
         "line": {"color": "#38BDF8"}, "marker": {"size": 3}, "name": t(lang, "device.avg"),
         "hovertemplate": f"%{{y:.4g}}{u}"},
    ]
    shapes = _span_shapes(spans, until, tz)
    if normal is not None:
        shapes += [{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": y, "y1": y,
                    "line": {"color": "#F2E35C", "dash": "dot", "width": 1}} for y in normal]
    if spans:  # a legend entry that says what the shading is
        worst = min(spans, key=lambda sp: list(SEVERITY_COLOURS).index(sp.severity)
                    if sp.severity in SEVERITY_COLOURS else 9)
        traces.append({"type": "scatter", "x": [None], "y": [None], "mode": "markers", "hoverinfo": "skip",
                       "marker": {"symbol": "square", "size": 12,
                                  "color": SEVERITY_COLOURS.get(worst.severity, "#64748b")},
                       "name": t(lang, "dev.alarm_period")})
    annotations = [{"xref": "x", "yref": "paper", "x": sp.start.astimezone(tz).strftime(PLOT_FMT), "y": 1,
                    "yanchor": "bottom", "xanchor": "left", "showarrow": False, "font": {"size": 11,
                                                                                          "color": "#F8FAFC"},
                    "text": rule_label(lang, sp.rule_name)} for sp in spans[-4:]]
    return {"data": traces, "layout": _layout(
        xaxis=_xaxis(lang, since, until, tz), shapes=shapes, annotations=annotations,
        yaxis={"title": {"text": f"{label}{' (' + unit + ')' if unit else ''}"}, "gridcolor": "#1E293B"})}


def state_figure(events: Sequence[DeviceEvent], spans: Sequence[AlarmSpan], kind: str, *, lang: str, tz: tzinfo,
                 since: datetime, until: datetime) -> dict[str, Any]:
    """A Gantt-like timeline: one row per event code (bars while a latching event was active, marks for one-off
    events) and one per alarm (bars while it was active)."""
    spec = catalogue.KINDS.get(kind)
    rows: list[tuple[str, str, datetime, datetime | None, str]] = []  # (row label, severity, start, end, colour)
    marks: dict[str, list[datetime]] = {}
    for code, evs in _by_code(events).items():
        ev_spec = spec.event(code) if spec else None
        label = (ev_spec.label_en if lang == "en" else ev_spec.label_zh) if ev_spec else code
        if (ev_spec is not None and not ev_spec.latching) or all(e.state == "pulse" for e in evs):
            marks[label] = [e.at for e in evs]
            continue
        start: datetime | None = None
        for e in sorted(evs, key=lambda e: e.at):
            if e.state == "active" and start is None:
                start = e.at
            elif e.state == "cleared":
                rows.append((label, "", start or since, e.at, "#38BDF8"))
                start = None
        if start is not None:
            rows.append((label, "", start, None, "#38BDF8"))
    for sp in spans:
        rows.append((rule_label(lang, sp.rule_name), sp.severity, sp.start, sp.end,
                     SEVERITY_COLOURS.get(sp.severity, "#64748b")))
    traces: list[dict[str, Any]] = []
    for label, _sev, start, end, colour in rows:
        stop = end or until
        traces.append({"type": "bar", "orientation": "h", "y": [short(label)],
                       "base": [start.astimezone(tz).strftime(PLOT_FMT)],
                       "x": [max(1000.0, (stop - start).total_seconds() * 1000)], "marker": {"color": colour},
                       "showlegend": False, "name": label, "hovertemplate": "%{base}<extra>%{fullData.name}</extra>"})
    for label, ats in marks.items():
        traces.append({"type": "scatter", "mode": "markers", "y": [short(label)] * len(ats),
                       "x": [a.astimezone(tz).strftime(PLOT_FMT) for a in ats], "showlegend": False, "name": label,
                       "marker": {"symbol": "diamond", "size": 10, "color": "#F2E35C"},
                       "hovertemplate": "%{x}<extra>%{fullData.name}</extra>"})
    n = len({r[0] for r in rows} | set(marks))
    return {"data": traces, "layout": _layout(
        xaxis=_xaxis(lang, since, until, tz), barmode="overlay", hovermode="closest", height=max(180, 70 + 44 * n),
        yaxis={"type": "category", "gridcolor": "#1E293B", "automargin": True}, showlegend=False)}


def short(label: str, width: int = 22) -> str:
    """``label`` cut to about ``width`` columns (a Chinese character takes two), "…" where it was cut: row names
    of the timeline must leave a phone's chart room to draw."""
    used = 0
    for i, c in enumerate(label):
        used += 2 if ord(c) > 0x2E80 else 1
        if used > width:
            return label[:i].rstrip() + "…"
    return label


def _by_code(events: Sequence[DeviceEvent]) -> dict[str, list[DeviceEvent]]:
    out: dict[str, list[DeviceEvent]] = {}
    for e in events:
        out.setdefault(e.code, []).append(e)
    return out


def custom_range(lang: str, tz: tzinfo, now: datetime, start: Any, end: Any) -> tuple[datetime, datetime] | str:
    """The period a person typed (community local time) as aware datetimes, or what is wrong with it."""
    if not isinstance(start, str) or not isinstance(end, str) or not start.strip() or not end.strip():
        return t(lang, "dev.err.incomplete")
    try:
        since = _parse_local(start, tz)
        until = _parse_local(end, tz)
    except ValueError:
        return t(lang, "dev.err.format")
    if since >= until:
        return t(lang, "dev.err.order")
    if until - since > timedelta(days=MAX_CUSTOM_DAYS):
        return t(lang, "dev.err.too_long", days=MAX_CUSTOM_DAYS)
    if since > now:
        return t(lang, "dev.err.future")
    if until < now - timedelta(days=KEPT_DAYS):
        return t(lang, "dev.err.too_old", days=KEPT_DAYS)
    return since, min(until, now + timedelta(minutes=1))


def _parse_local(text: str, tz: tzinfo) -> datetime:
    text = text.strip()[:32]
    for fmt in (TEXT_FORMAT, TEXT_FORMAT + ":%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y/%m/%d %H:%M"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=tz)
        except ValueError:
            continue
    raise ValueError(text)


def bucket_for(span: timedelta) -> timedelta:
    """About 120 buckets over ``span``, whole minutes, at least one."""
    return timedelta(minutes=max(1, round(span.total_seconds() / 60 / 120)))


def ago(lang: str, now: datetime, ts: datetime | None) -> str:
    """How long ago ``ts`` was, the way people say it: 刚刚, 3 分钟前, 5 小时前, 2 天前."""
    if ts is None:
        return t(lang, "ago.never")
    s = (now - ts).total_seconds()
    if s < 60:
        return t(lang, "ago.now")
    if s < 3600:
        return t(lang, "ago.minutes", n=int(s // 60))
    if s < 86400:
        return t(lang, "ago.hours", n=int(s // 3600))
    return t(lang, "ago.days", n=int(s // 86400))


def field_label(lang: str, f: catalogue.TelemetryField, *, unit: bool = True) -> str:
    """A field's name in ``lang``, its unit after it: 烟雾减光率 (%/m)."""
    name = f.label_en if lang == "en" else f.label_zh
    return f"{name} ({f.unit})" if unit and f.unit else name


def value_text(lang: str, f: catalogue.TelemetryField | None, value: float) -> str:
    """A reading as people read it: yes/no for true/false fields, whole numbers for counts, the unit after."""
    if f is not None and f.type is catalogue.FieldType.BOOL:
        return t(lang, "dev.yes") if value else t(lang, "dev.no")
    if f is not None and f.type is catalogue.FieldType.INT:
        return f"{int(value)}{(' ' + f.unit) if f.unit else ''}"
    return f"{value:.4g}{(' ' + f.unit) if f and f.unit else ''}"


def numeric_fields(kind: str) -> list[catalogue.TelemetryField]:
    """The fields a chart can show (numbers, not true/false states)."""
    spec = catalogue.KINDS.get(kind)
    return [f for f in spec.fields if f.type is not catalogue.FieldType.BOOL] if spec else []
