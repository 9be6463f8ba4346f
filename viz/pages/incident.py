"""One incident (``/incident/<ticket id>``): what and where, the timeline of its alarms (raised, acknowledged,
shelved, cleared, by whom), the involved devices' readings from shortly before it started to shortly after it
ended, its ticket with state and history, and every comment. Built when the page opens (no callbacks): a closed
incident does not change, an open one is redrawn on the next visit.

Who may see it: operators and admins all incidents, a supervisor those of their grids (the ticket service
checks, as for the ticket board)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from dash import Dash, dcc, html

from twin import catalogue
from viz.data import ActionRefused, DataUnavailable, HistoryPoint, TicketView
from viz.history_model import AlarmStep
from viz.history_view import label, person_note, who
from viz.i18n import duration, rule_label, t
from viz.pages.device_charts import field_label, locale_config
from viz.shell import Dashboard, Req, notice, unavailable_text
from viz.ticket_text import ticket_title
from viz.widgets import place_text, priority_label, status_label, with_data

BEFORE = timedelta(minutes=30)  # readings from this long before the first alarm
AFTER = timedelta(minutes=30)  # ... to this long after the incident ended
MAX_SPAN = timedelta(days=2)  # a long incident's chart shows its first two days
MAX_DEVICES = 4
TIME = "%Y-%m-%d %H:%M:%S"
COLOURS = ("#38BDF8", "#F59E0B", "#A78BFA", "#34D399")


def incident_page(req: Req, board: Dashboard, arg: str | None = None) -> Any:
    lang = req.lang
    text = (arg or "")[:40]
    if not text.isdigit() or len(text) > 18:
        return notice(t(lang, "inc.unknown", id=text), req, "unknown-incident")
    try:
        ticket = board.data.ticket(req.user, text)
    except ActionRefused:
        ticket = None
    except DataUnavailable as exc:
        return notice(unavailable_text(lang, exc), req, "unavailable")
    if ticket is None:
        return notice(t(lang, "inc.unknown", id=text), req, "unknown-incident")
    hist = board.data.history()
    window = hist.incident_window(int(text))
    steps = hist.incident_steps(int(text))
    names = hist.people()
    opened = window[0] if window else ticket.created_at
    closed = ticket.resolved_at if not ticket.open else None
    return html.Div(className="panel wide incident", id="incident", children=[
        dcc.Link(t(lang, "inc.back"), href="/history", className="back"),
        html.H2(t(lang, "inc.title", id=ticket.id, title=ticket_title(req, board, ticket)), id="incident-title"),
        _summary(req, board, ticket, opened, closed, names),
        html.H3(t(lang, "inc.timeline")),
        _timeline(req, board, steps, names),
        html.H3(t(lang, "inc.readings")),
        _readings(req, board, ticket, steps, opened, window[1] if window else req.now),
        html.H3(t(lang, "inc.ticket")),
        _ticket_history(req, board, ticket, names),
        html.H3(t(lang, "inc.comments")),
        _comments(req, board, ticket, steps, names),
    ])


def _summary(req: Req, board: Dashboard, tk: TicketView, opened: datetime, closed: datetime | None,
             names: Mapping[str, str]) -> html.Table:
    lang = req.lang
    end = closed or req.now
    rows = [
        (t(lang, "hist.col.state"), html.Span(status_label(lang, tk.status), className="status", id="incident-state")),
        (t(lang, "hist.col.priority"), priority_label(lang, tk.priority)),
        (t(lang, "hist.col.category"), label(lang, "hist.cat.", tk.category or "other")),
        (t(lang, "hist.col.place"), place_text(req, board, tk.building, tk.floor, tk.device, tk.unit)),
        (t(lang, "hist.col.assignee"), who(lang, tk.assignee, names) if tk.assignee
         else t(lang, "tickets.unassigned")),
        (t(lang, "inc.opened"), board.local(opened, TIME)),
        (t(lang, "inc.closed"), board.local(closed, TIME) if closed else t(lang, "inc.still_open")),
        (t(lang, "inc.duration"), duration(lang, (end - opened).total_seconds())),
    ]
    return html.Table(html.Tbody([html.Tr([html.Th(k), html.Td(cast(Any, v))]) for k, v in rows]),
                      className="table kv")


def _timeline(req: Req, board: Dashboard, steps: Sequence[AlarmStep], names: Mapping[str, str]) -> Any:
    lang = req.lang
    if not steps:
        return html.P(t(lang, "inc.timeline_none"), className="muted")
    items = []
    for s in steps:
        what = label(lang, "inc.kind.", s.kind)
        rule = rule_label(lang, s.rule_name or s.rule)
        actor = who(lang, s.by, names)
        items.append(with_data(html.Li([
            html.Span(board.local(s.at, TIME), className="nowrap muted"),
            html.Span(what, className=f"tag step-{s.kind}"),
            html.Span(label(lang, "severity.", s.severity), className=f"sev sev-{s.severity}"),
            html.Span(f"{rule}{' · ' + s.device if s.device else ''}"),
            html.Span(actor, className="who"),
        ], className="step"), kind=s.kind))
    return html.Ol(items, className="timeline", id="incident-timeline")


def _devices(tk: TicketView, steps: Sequence[AlarmStep]) -> list[str]:
    out: list[str] = []
    for d in [a.device for a in tk.alarms] + [s.device for s in steps] + [tk.device]:
        if d and d not in out:
            out.append(d)
    return out


def _readings(req: Req, board: Dashboard, tk: TicketView, steps: Sequence[AlarmStep], opened: datetime,
              ended: datetime) -> Any:
    lang = req.lang
    since = opened - BEFORE
    until = min(ended + AFTER, req.now, since + MAX_SPAN)
    if until <= since:
        until = since + BEFORE
    span = until - since
    bucket = max(timedelta(seconds=10), span / 150)
    charts: list[Any] = []
    community = board.community()
    for device in _devices(tk, steps):
        if len(charts) >= MAX_DEVICES:
            break
        dev = community.device(device)
        spec = catalogue.KINDS.get(dev.kind) if dev else None
        if dev is None or spec is None or not spec.fields:
            continue
        field = spec.fields[0]
        try:
            points = board.data.device_history(dev.id, field.name, since, until, bucket)
        except DataUnavailable:
            points = []
        if not points:
            continue
        marks = [s.at for s in steps if s.device == device and s.kind in ("raised", "cleared")]
        title = f"{dev.id} {field_label(lang, field)}"
        figure = _figure(req, board, points, title, COLOURS[len(charts) % len(COLOURS)], marks)
        config = cast(Any, {"displaylogo": False, "displayModeBar": False, **locale_config(lang)})
        charts.append(with_data(dcc.Graph(figure=figure, config=config, className="inc-chart"), device=dev.id))
    if not charts:
        return html.P(t(lang, "inc.readings_none"), className="muted", id="incident-no-readings")
    note = t(lang, "inc.readings_note", before=duration(lang, BEFORE.total_seconds()),
             after=duration(lang, AFTER.total_seconds()))
    return html.Div([html.P(note, className="small muted"), html.Div(charts, className="inc-charts")],
                    id="incident-readings")


def _figure(req: Req, board: Dashboard, points: Sequence[HistoryPoint], title: str, colour: str,
            marks: Sequence[datetime]) -> dict[str, Any]:
    xs = [board.local(p.bucket, "%Y-%m-%d %H:%M:%S") for p in points]
    shapes = [{"type": "line", "xref": "x", "yref": "paper", "x0": board.local(m, "%Y-%m-%d %H:%M:%S"),
               "x1": board.local(m, "%Y-%m-%d %H:%M:%S"), "y0": 0, "y1": 1,
               "line": {"color": "#E3161B", "dash": "dot", "width": 1}} for m in marks]
    return {"data": [{"type": "scatter", "x": xs, "y": [p.avg for p in points], "mode": "lines",
                      "line": {"color": colour}, "name": title}],
            "layout": {"title": {"text": title, "font": {"size": 13}}, "height": 220,
                       "paper_bgcolor": "#0F172A", "plot_bgcolor": "#111C33", "font": {"color": "#E2E8F0"},
                       "margin": {"l": 45, "r": 10, "t": 30, "b": 35}, "shapes": shapes,
                       "xaxis": {"gridcolor": "#1E293B", "type": "date", "tickformat": "%H:%M:%S",
                                 "hoverformat": "%Y-%m-%d %H:%M:%S"}, "yaxis": {"gridcolor": "#1E293B"},
                       "showlegend": False}}


def _ticket_history(req: Req, board: Dashboard, tk: TicketView, names: Mapping[str, str]) -> Any:
    lang = req.lang
    items = [html.Li([html.Span(board.local(s.at, TIME), className="nowrap muted"),
                      html.Span(label(lang, "audit.action.", s.action), className="tag"),
                      html.Span(who(lang, s.by, names), className="who"),
                      html.Span(person_note(s.by, s.note), className="note") if person_note(s.by, s.note) else None],
                     className="step")
             for s in sorted(tk.history, key=lambda s: s.at)]  # oldest first, as the alarm timeline above
    return html.Div([
        html.P([html.Span(status_label(lang, tk.status), className="status"), " ",
                dcc.Link(t(lang, "inc.ticket_link"), href=f"/worker/ticket/{tk.id}", id="incident-ticket-link")]),
        html.Ol(items, className="timeline", id="incident-ticket-history"),
    ])


def _comments(req: Req, board: Dashboard, tk: TicketView, steps: Sequence[AlarmStep],
              names: Mapping[str, str]) -> Any:
    lang = req.lang
    found: list[tuple[datetime, str, str]] = []
    for s in steps:
        if s.kind in ("acknowledged", "cleared") and person_note(s.by, s.detail):
            found.append((s.at, who(lang, s.by, names), s.detail))
    for h in tk.history:
        if person_note(h.by, h.note):
            found.append((h.at, who(lang, h.by, names), h.note))
    if not found:
        return html.P(t(lang, "inc.comments_none"), className="muted")
    found.sort(key=lambda x: x[0])
    return html.Ul([html.Li([html.Span(board.local(at, TIME), className="nowrap muted"), html.Span(by, className="who"),
                             html.Span(text, className="note")], className="step") for at, by, text in found],
                   className="timeline", id="incident-comments")


def register_callbacks(app: Dash, board: Dashboard) -> None:
    """None: the page is drawn when it opens."""
    del app, board
