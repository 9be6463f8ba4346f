"""Patrols (巡查, seed 4.1): ``/patrols`` (supervisors: the plans with their standards, each grid's checkpoints this
period with last period's misses in red, the workers' on-duty trails over the building footprints), ``/patrol`` (the
worker's phone: due checkpoints, the opt-in position sharing while on duty), ``/patrol/<token>`` (what a checkpoint's
QR code opens: check in) and ``/patrol/at/<checkpoint>`` (check in by the phone's position). Plus
:func:`nearest_section`, the nearest on-duty workers on an urgent ticket's page.

What a user may see is decided by the data source (:mod:`viz.patrol_model`); the rules are in :mod:`twin.patrols`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, cast

from dash import Dash, Input, Output, State, dcc, html
from dash.exceptions import PreventUpdate

from twin.patrols import Checkpoint, CheckpointStatus, Fix, Plan
from twin.people import Role
from viz.data import ActionRefused, DataUnavailable, Position, TicketView
from viz.i18n import t
from viz.patrol_model import PatrolData
from viz.shell import MAX_TEXT, SUPERVISORS, Dashboard, Req, guarded_callbacks, unavailable_text
from viz.ticket_text import people, person
from viz.widgets import refusal_text, with_data

TOKEN_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,140}~[A-Za-z0-9_\-]{1,40}$")
POINT_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,140}$")
SHARE_EVERY_MS = 60_000
TRAIL_COLOURS = ("#38BDF8", "#F472B6", "#A3E635", "#FBBF24", "#C084FC", "#2DD4BF")
STATE_COLOURS = {"missed": "#EF4444", "due": "#F59E0B", "done": "#22C55E"}
GEO_JS = """
function(n, extra) {
    return new Promise(function(resolve) {
        var settled = false;
        function done(v) { if (!settled) { settled = true; v.n = n; if (extra) { v.extra = extra; } resolve(v); } }
        setTimeout(function() { done({error: "timeout"}); }, 15000);
        if (!navigator.geolocation) { done({error: "unavailable"}); return; }
        navigator.geolocation.getCurrentPosition(
            function(p) { done({lat: p.coords.latitude, lon: p.coords.longitude, accuracy: p.coords.accuracy}); },
            function(e) { done({error: e && e.code === 1 ? "denied" : "unavailable"}); },
            {enableHighAccuracy: true, timeout: 12000, maximumAge: 30000});
    });
}"""


def _data(board: Dashboard) -> PatrolData:
    return board.data.patrols()


def plan_name(lang: str, plan: Plan | None, fallback: str) -> str:
    return fallback if plan is None else (plan.name.zh if lang == "zh" else plan.name.en)


def checks_text(lang: str, plan: Plan) -> str:
    return plan.checks.zh if lang == "zh" else plan.checks.en


def every_text(lang: str, plan: Plan) -> str:
    if plan.every_days is not None:
        return t(lang, "pt.every_day") if plan.every_days == 1 else t(lang, "pt.every_days", n=plan.every_days)
    n = plan.every_months or 1
    return t(lang, "pt.every_month") if n == 1 else t(lang, "pt.every_months", n=n)


def _state(s: CheckpointStatus) -> str:
    return "done" if s.state == "done" else "missed" if s.missed else "due"


def _state_tag(lang: str, s: CheckpointStatus) -> html.Span:
    st = _state(s)
    return html.Span(t(lang, f"pt.state.{st}"), className=f"pt-st pt-{st}")


def position_from_geo(geo: Any) -> Position | None:
    """A position the page's geolocation request gave, if it is a valid one."""
    if not isinstance(geo, dict):
        return None
    lat, lon, acc = geo.get("lat"), geo.get("lon"), geo.get("accuracy")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (lat, lon)):
        return None
    accuracy = float(acc) if isinstance(acc, int | float) and not isinstance(acc, bool) and acc >= 0 else None
    return Position(float(cast(float, lat)), float(cast(float, lon)), accuracy)


# -- /patrols (supervisors) --------------------------------------------------------------------------------------


def patrols_page(req: Req, board: Dashboard, _arg: str | None = None) -> Any:
    if req.user.role not in SUPERVISORS:  # a worker: their own patrols
        return _my_page(req, board)
    lang = req.lang
    return html.Div([html.H2(t(lang, "pt.title")), html.P(t(lang, "pt.lead"), className="small muted"),
                     html.Div(id="pt-body"), dcc.Interval(id="pt-clock", interval=60_000)],
                    className="panel wide patrols")


def _plans_table(lang: str, data: PatrolData) -> Any:
    head = html.Tr([html.Th(t(lang, f"pt.col.{c}")) for c in ("plan", "every", "standard")])
    rows = [html.Tr([html.Td(plan_name(lang, p, p.id)), html.Td(every_text(lang, p), className="pt-every"),
                     html.Td([html.B(p.standard), " ", checks_text(lang, p)], className="small")])
            for p in data.plans().plans]
    return html.Details([html.Summary(t(lang, "pt.plans")),
                         html.Div(html.Table([html.Thead(head), html.Tbody(rows)], className="table", id="pt-plans"),
                                  className="table-scroll")], className="pt-plans")


def _tag(req: Req, board: Dashboard, s: CheckpointStatus, names: dict[str, str], short: str = "") -> Any:
    """A checkpoint's state as a tag (its last check-in as the tooltip); ``short`` prefixes it (an elevator's id)."""
    lang = req.lang
    st = _state(s)
    title = "" if s.last is None else t(lang, "pt.last", at=board.local(s.last.at),
                                         who=person(lang, s.last.worker, names))
    if s.last is not None and s.last.result == "problem":
        title += f" · {t(lang, 'pt.result.problem')}"
    text = t(lang, f"pt.state.{st}")
    if s.missed and s.state == "done":
        text += f" · {t(lang, 'pt.state.missed')}"
    return with_data(html.Span(f"{short} {text}" if short else text, className=f"pt-st pt-{st}",
                               title=title or None), checkpoint=s.checkpoint.id, state=st)


def _status_table(req: Req, board: Dashboard, rows: Sequence[CheckpointStatus], data: PatrolData) -> Any:
    """One row per building, one column per plan; a cell holds the state of each of its checkpoints (a building's
    elevators: one each). Rows with a miss first."""
    lang = req.lang
    c = board.community()
    names = people(c, lang)
    plans = data.plans().plans
    grids = {g.id: g.name for g in c.grids}
    cells: dict[tuple[str, str], list[CheckpointStatus]] = {}
    for s in rows:
        cells.setdefault((s.checkpoint.building, s.checkpoint.plan), []).append(s)
    buildings = [b for b in c.buildings if any((b.id, p.id) in cells for p in plans)]

    def worst(b: str) -> int:
        states = [_state(s) for p in plans for s in cells.get((b, p.id), [])]
        return 0 if "missed" in states else 1 if "due" in states else 2

    head = html.Tr([html.Th(t(lang, "pt.col.point")), *[html.Th(plan_name(lang, p, p.id)) for p in plans]])
    body = []
    for b in sorted(buildings, key=lambda b: (worst(b.id), c.grid_of(b) or "", c.buildings.index(b))):
        tds: list[Any] = [html.Td([html.B(b.name), html.Span(f" {grids.get(c.grid_of(b) or '', '')}",
                                                             className="small muted")], className="pt-point")]
        for p in plans:
            mine = cells.get((b.id, p.id), [])
            short = len(mine) > 1 or p.per == "elevator"
            tds.append(html.Td([_tag(req, board, s, names, s.checkpoint.subject.removeprefix(f"{b.id}-") if short
                                     else "") for s in mine], className="pt-cell"))
        body.append(with_data(html.Tr(tds, className="pt-row-missed" if worst(b.id) == 0 else None),
                              building=b.id))
    return html.Div(html.Table([html.Thead(head), html.Tbody(body)], className="table", id="pt-table"),
                    className="table-scroll")


def _recent(req: Req, board: Dashboard, rows: Sequence[CheckpointStatus], data: PatrolData) -> Any:
    """The newest check-ins of this period (problems marked)."""
    lang = req.lang
    names = people(board.community(), lang)
    last = sorted((s for s in rows if s.last is not None), key=lambda s: s.last.at if s.last else req.now,
                  reverse=True)[:8]
    if not last:
        return []
    items = []
    for s in last:
        assert s.last is not None
        cp = s.checkpoint
        text = (f"{board.local(s.last.at)} · {cp.label} · {plan_name(lang, data.plans().plan(cp.plan), cp.plan)} · "
                f"{person(lang, s.last.worker, names)} · {t(lang, f'pt.result.{s.last.result}')}")
        items.append(html.Li(text, className="pt-problem" if s.last.result == "problem" else None))
    return [html.H3(t(lang, "pt.recent")), html.Ul(items, id="pt-recent", className="small")]


def _summary(lang: str, board: Dashboard, rows: Sequence[CheckpointStatus]) -> Any:
    grids = {g.id: g.name for g in board.community().grids}
    items = []
    for gid in sorted({s.checkpoint.grid or "" for s in rows}):
        mine = [s for s in rows if (s.checkpoint.grid or "") == gid]
        missed = sum(s.missed for s in mine)
        items.append(with_data(html.Li(t(lang, "pt.grid_summary", grid=grids.get(gid, gid or "-"),
                                         due=sum(s.state == "due" for s in mine),
                                         done=sum(s.state == "done" for s in mine), missed=missed),
                                       className="pt-missed-grid" if missed else None), grid=gid))
    return html.Ul(items, id="pt-summary", className="pt-summary")


def trail_figure(lang: str, board: Dashboard, rows: Sequence[CheckpointStatus], fixes: Sequence[Fix]) -> dict[str, Any]:
    """Building footprints, checkpoints coloured by state (worst per building) and each worker's trail, in local
    metres."""
    c = board.community()
    names = people(c, lang)
    traces: list[dict[str, Any]] = []
    for b in c.buildings:
        xs = [p[0] for p in b.footprint] + [b.footprint[0][0]]
        ys = [p[1] for p in b.footprint] + [b.footprint[0][1]]
        traces.append({"type": "scatter", "x": xs, "y": ys, "mode": "lines", "fill": "toself", "hoverinfo": "text",
                       "text": b.name, "line": {"color": "#64748B", "width": 1}, "fillcolor": "rgba(100,116,139,.25)",
                       "showlegend": False})
    worst: dict[str, tuple[int, Checkpoint]] = {}
    rank = {"missed": 0, "due": 1, "done": 2}
    for s in rows:
        r = rank[_state(s)]
        if s.checkpoint.building not in worst or r < worst[s.checkpoint.building][0]:
            worst[s.checkpoint.building] = (r, s.checkpoint)
    inv = {v: k for k, v in rank.items()}
    marks = [(inv[r], cp) for r, cp in worst.values()]
    traces.append({"type": "scatter", "mode": "markers", "name": t(lang, "pt.map.points"),
                   "x": [cp.x for _s, cp in marks], "y": [cp.y for _s, cp in marks],
                   "text": [f"{cp.label}: {t(lang, f'pt.state.{s}')}" for s, cp in marks], "hoverinfo": "text",
                   "marker": {"size": 11, "color": [STATE_COLOURS[s] for s, _cp in marks],
                              "line": {"color": "#0F172A", "width": 1}}})
    by_worker: dict[str, list[Fix]] = {}
    for f in fixes:
        by_worker.setdefault(f.worker_id or f.worker, []).append(f)
    for i, (wid, fs) in enumerate(sorted(by_worker.items())):
        colour = TRAIL_COLOURS[i % len(TRAIL_COLOURS)]
        traces.append({"type": "scatter", "mode": "lines+markers", "name": person(lang, wid, names),
                       "x": [f.x for f in fs], "y": [f.y for f in fs], "hoverinfo": "text",
                       "text": [board.local(f.at, "%H:%M") for f in fs], "line": {"color": colour, "width": 2},
                       "marker": {"size": [5] * (len(fs) - 1) + [12], "color": colour}})
    layout = {"paper_bgcolor": "#0F172A", "plot_bgcolor": "#111C33", "font": {"color": "#E2E8F0"}, "height": 460,
              "margin": {"l": 48, "r": 8, "t": 8, "b": 40}, "legend": {"orientation": "h", "y": -0.12},
              "xaxis": {"title": {"text": t(lang, "pt.map.x")}, "gridcolor": "#1E293B", "zeroline": False},
              "yaxis": {"title": {"text": t(lang, "pt.map.y")}, "gridcolor": "#1E293B", "zeroline": False,
                        "scaleanchor": "x", "scaleratio": 1}}
    return {"data": traces, "layout": layout}


def _body(req: Req, board: Dashboard) -> Any:
    lang = req.lang
    data = _data(board)
    try:
        rows = list(data.status(req.user))
        fixes = list(data.trails(req.user, 12))
    except (DataUnavailable, ActionRefused) as exc:
        return html.P(unavailable_text(lang, exc) if isinstance(exc, DataUnavailable) else refusal_text(lang, exc),
                      className="msg warn")
    if not rows:
        return html.P(t(lang, "pt.none"), className="muted", id="pt-none")
    config = cast(Any, {"displaylogo": False, "displayModeBar": False, "responsive": True})
    return [_summary(lang, board, rows), _plans_table(lang, data), _status_table(req, board, rows, data),
            *_recent(req, board, rows, data), html.H3(t(lang, "pt.map")),
            *([] if fixes else [html.P(t(lang, "pt.map_none"), className="small muted", id="pt-map-none")]),
            dcc.Graph(id="pt-map", figure=trail_figure(lang, board, rows, fixes), config=config),
            html.P(t(lang, "pt.privacy"), className="small muted", id="pt-privacy")]


# -- /patrol, /patrol/<token>, /patrol/at/<checkpoint> (the worker's phone) ---------------------------------------


def patrol_page(req: Req, board: Dashboard, arg: str | None = None) -> Any:
    if arg is None:
        return _my_page(req, board)
    if arg.startswith("at/") and POINT_RE.match(arg[3:]):
        cp = next((p for p in _data(board).checkpoints() if p.id == arg[3:]), None)
        return _checkin_page(req, board, cp, {"checkpoint": arg[3:]})
    if TOKEN_RE.match(arg):
        try:
            cp = _data(board).by_token(arg)
        except DataUnavailable as exc:
            return html.Div(html.P(unavailable_text(req.lang, exc), className="msg warn"), className="phone")
        return _checkin_page(req, board, cp, {"token": arg})
    return _checkin_page(req, board, None, {})


def _my_page(req: Req, board: Dashboard) -> Any:
    lang = req.lang
    c = board.community()
    worker = next((w for g in c.grids for w in g.workers if w.id == req.user.worker_id), None)
    parts: list[Any] = [html.H2(t(lang, "pt.mine")), html.P(t(lang, "pt.mine_lead"), className="small muted")]
    if req.user.role is Role.WORKER and worker is not None:
        parts += [html.Div([
            html.P(t(lang, "pt.shift", start=worker.on_duty[0].strftime("%H:%M"),
                     end=worker.on_duty[1].strftime("%H:%M")), className="small"),
            dcc.Checklist(id="pt-share", options=[{"label": t(lang, "pt.share"), "value": "on"}], value=[],
                          persistence=True, persistence_type="local", className="pt-share"),
            html.P(t(lang, "pt.share_note"), className="small muted"),
            html.Div(id="pt-share-msg", className="msg small")], className="wt-actions", id="pt-share-box"),
            dcc.Interval(id="pt-tick", interval=SHARE_EVERY_MS), dcc.Store(id="pt-fix")]
    try:
        rows = list(_data(board).status(req.user))
    except DataUnavailable as exc:
        return html.Div([*parts, html.P(unavailable_text(lang, exc), className="msg warn")], className="phone")
    if not rows:
        return html.Div([*parts, html.P(t(lang, "pt.none"), className="muted", id="pt-none")], className="phone")
    plans = _data(board).plans()
    c = board.community()
    due = [s for s in rows if s.state == "due"]
    by_building: dict[str, list[CheckpointStatus]] = {}
    for s in rows:
        by_building.setdefault(s.checkpoint.building, []).append(s)
    order = {b.id: i for i, b in enumerate(c.buildings)}

    def card(b: str, items: list[CheckpointStatus]) -> Any:
        building = c.building(b)
        lines = []
        for s in sorted(items, key=lambda s: (s.state == "done", not s.missed, s.checkpoint.id)):
            cp = s.checkpoint
            what = plan_name(lang, plans.plan(cp.plan), cp.plan)
            if cp.subject != b:
                what += f" {cp.subject}"
            lines.append(with_data(html.Li([
                html.Span(what, className="pt-what"), _state_tag(lang, s),
                dcc.Link(t(lang, "pt.check_here"), href=f"/patrol/at/{cp.id}", className="pt-here")
                if s.state == "due" else html.Span()], className=f"pt-line pt-row-{_state(s)}"),
                checkpoint=cp.id, state=_state(s)))
        missed = any(s.missed and s.state == "due" for s in items)
        return with_data(html.Li([html.B(building.name if building else b), html.Ul(lines, className="pt-lines")],
                                 className="pt-card" + (" pt-row-missed" if missed else "")), building=b)

    open_first = sorted(by_building.items(), key=lambda kv: (all(s.state == "done" for s in kv[1]),
                                                             order.get(kv[0], 0)))
    parts.append(html.H3(t(lang, "pt.due_list", n=len(due)) if due else t(lang, "pt.all_done"), id="pt-due-head"))
    parts.append(html.Ul([card(b, items) for b, items in open_first], className="pt-cards", id="pt-due"))
    return html.Div(parts, className="phone patrol")


def _checkin_page(req: Req, board: Dashboard, cp: Checkpoint | None, target: dict[str, str]) -> Any:
    lang = req.lang
    back = dcc.Link(t(lang, "pt.back"), href="/patrol", className="back")
    if cp is None:
        return html.Div([back, html.P(t(lang, "pt.bad_token"), className="msg warn", id="pt-bad-token")],
                        className="phone notice")
    plans = _data(board).plans()
    plan = plans.plan(cp.plan)
    how = t(lang, "pt.how.qr") if "token" in target else t(lang, "pt.how.position", m=f"{plans.radius_m:g}")
    return html.Div([
        back, html.H2(t(lang, "pt.checkin")),
        html.H3(cp.label, id="pt-point"),
        html.P(plan_name(lang, plan, cp.plan), className="pt-plan-name"),
        html.P(f"{plan.standard} · {checks_text(lang, plan)}" if plan else "", className="small muted"),
        html.P(how, className="small", id="pt-how"),
        html.Div([
            html.Label(t(lang, "pt.result")),
            dcc.RadioItems(id="pt-result", value="ok", className="pt-result",
                           options=[{"label": t(lang, "pt.ok"), "value": "ok"},
                                    {"label": t(lang, "pt.problem"), "value": "problem"}]),
            dcc.Textarea(id="pt-note", placeholder=t(lang, "pt.note"), maxLength=500, className="wide"),
            html.Button(t(lang, "pt.submit"), id="pt-submit", n_clicks=0),
            html.Div(id="pt-msg", className="msg")], className="wt-actions"),
        dcc.Store(id="pt-target", data=target), dcc.Store(id="pt-go"),
        dcc.Store(id="pt-locating", data=t(lang, "pt.locating"))], className="phone pt-checkin", id="pt-checkin")


# -- an urgent ticket's page: the nearest on-duty workers --------------------------------------------------------


def nearest_section(req: Req, board: Dashboard, tk: TicketView) -> list[Any]:
    """For supervisors and operators, on an open urgent ticket with a building: the on-duty workers sharing their
    position, nearest first (at most three)."""
    if req.user.role not in SUPERVISORS or tk.priority != "urgent" or not tk.open or not tk.building:
        return []
    lang = req.lang
    try:
        found = list(_data(board).nearest(req.user, tk.building))[:3]
    except (DataUnavailable, ActionRefused):
        return []
    names = people(board.community(), lang)
    body: Any = html.Ul([html.Li(t(lang, "pt.nearest_item", name=person(lang, f.worker_id or f.worker, names),
                                   m=f"{d:.0f}", at=board.local(f.at, "%H:%M"))) for d, f in found],
                        id="pt-nearest") if found else html.P(t(lang, "pt.nearest_none"), className="small muted",
                                                              id="pt-nearest")
    return [html.H3(t(lang, "pt.nearest")), body]


# -- callbacks -----------------------------------------------------------------------------------------------------


def register_callbacks(app: Dash, board: Dashboard) -> None:
    guarded = guarded_callbacks(app, board)

    @guarded(Output("pt-body", "children"), Input("pt-clock", "n_intervals"), Input("version", "data"),
             roles=SUPERVISORS)
    def patrols_body(req: Req, _n: Any, _v: Any) -> Any:
        return _body(req, board)

    # sharing: every minute while the toggle is on and the page open, the browser is asked for the position
    cast(Any, app).clientside_callback(
        """function(n, share) {
            if (!share || share.indexOf("on") < 0) { return window.dash_clientside.no_update; }
            return (""" + GEO_JS + """)(n || 0, null);
        }""",
        Output("pt-fix", "data"), Input("pt-tick", "n_intervals"), Input("pt-share", "value"),
    )

    @guarded(Output("pt-share-msg", "children"), Output("pt-share-msg", "className"), Input("pt-fix", "data"),
             prevent_initial_call=True)
    def shared(req: Req, geo: Any) -> Any:
        lang = req.lang
        if isinstance(geo, dict) and isinstance(geo.get("error"), str):
            err = geo["error"] if geo["error"] in ("denied", "unavailable", "timeout") else "unavailable"
            return t(lang, f"pt.geo.{err}"), "msg small warn"
        where = position_from_geo(geo)
        if where is None:
            raise PreventUpdate
        try:
            _data(board).post_position(req.user, where)
        except ActionRefused as exc:
            return refusal_text(lang, exc), "msg small warn"
        except DataUnavailable as exc:
            return unavailable_text(lang, exc), "msg small warn"
        return t(lang, "pt.shared_at", at=board.local(req.now, "%H:%M")), "msg small ok"

    # check in: by position the browser is asked first; by QR code straight on
    cast(Any, app).clientside_callback(
        """function(n, target) {
            if (!n) { return window.dash_clientside.no_update; }
            if (!target || !target.checkpoint) { return {qr: true, n: n}; }
            return (""" + GEO_JS + """)(n, null);
        }""",
        Output("pt-go", "data"), Input("pt-submit", "n_clicks"), State("pt-target", "data"),
        prevent_initial_call=True,
    )
    cast(Any, app).clientside_callback(
        """function(n, text, target) {
            return (n && target && target.checkpoint) ? [text, "msg"] : window.dash_clientside.no_update;
        }""",
        Output("pt-msg", "children", allow_duplicate=True), Output("pt-msg", "className", allow_duplicate=True),
        Input("pt-submit", "n_clicks"), State("pt-locating", "data"), State("pt-target", "data"),
        prevent_initial_call=True,
    )

    @guarded(Output("pt-msg", "children", allow_duplicate=True), Output("pt-msg", "className", allow_duplicate=True),
             Output("pt-submit", "disabled"), Input("pt-go", "data"), State("pt-target", "data"),
             State("pt-result", "value"), State("pt-note", "value"), prevent_initial_call=True)
    def check_in(req: Req, go: Any, target: Any, result: Any, note: Any) -> Any:
        lang = req.lang
        if not isinstance(go, dict) or not isinstance(target, dict):
            raise PreventUpdate
        text = note.strip()[:MAX_TEXT] if isinstance(note, str) else ""
        if result == "problem" and not text:
            return t(lang, "pt.note_needed"), "msg warn", False
        token = target.get("token") if isinstance(target.get("token"), str) else None
        point = target.get("checkpoint") if isinstance(target.get("checkpoint"), str) else None
        where: Position | None = None
        if token is None:
            if isinstance(go.get("error"), str):
                err = go["error"] if go["error"] in ("denied", "unavailable", "timeout") else "unavailable"
                return t(lang, f"pt.geo.{err}"), "msg warn", False
            where = position_from_geo(go)
            if where is None:
                raise PreventUpdate
        try:
            done = _data(board).check_in(req.user, token=token, checkpoint=point, position=where,
                                         result="problem" if result == "problem" else "ok", note=text)
        except ActionRefused as exc:
            return t(lang, "pt.refused", why=refusal_text(lang, exc)), "msg warn", False
        except DataUnavailable as exc:
            return unavailable_text(lang, exc), "msg warn", False
        msg = t(lang, "pt.done_ticket", id=done.ticket) if done.ticket else t(lang, "pt.done",
                                                                               point=done.checkpoint.label)
        return [msg, " ", dcc.Link(t(lang, "pt.back"), href="/patrol")], "msg ok", True
