"""The control room (``/`` and ``/building/<id>``): the 3D community, one building's floors pulled apart,
and the active alarms panel (filter, select, acknowledge, shelve, clear, dispatch; the shelved alarms, with
until when and by whom, each with its unshelve button).

The list draws the worst :data:`PAGE_ROWS` alarms ("more" adds as many again), rows at their natural
height in a scrolling list; every action's answer (success or refusal) replaces the last one and carries
the time it was given."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from dash import ALL, ClientsideFunction, Dash, Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from twin import catalogue
from twin import geometry as geo
from twin.alarms import Severity
from twin.community import Community
from twin.state import Level, Rollup
from viz import analytics as an
from viz.data import ActionRefused, AlarmView, DataUnavailable
from viz.i18n import floor_label, kind_label, rule_label, t
from viz.live import alert_toggles
from viz.pages.device_charts import locale_config
from viz.paths import parse_path
from viz.scene import BAND_COLOUR, DEVICE_UNKNOWN, MARKER_LIFT, RESIDENT_COLOUR, SELECTED, Band, Marker
from viz.shell import ID_RE, MAX_TEXT, OPERATORS, Dashboard, Req, guarded_callbacks, notice, unavailable_text
from viz.widgets import place_text, refusal_text, with_data

log = logging.getLogger(__name__)
SEVERITY_ORDER = (Severity.CRITICAL, Severity.MAJOR, Severity.MINOR, Severity.WARNING)
PAGE_ROWS = 100  # alarm rows drawn at first (worst first); "more" adds as many again
MAX_ROWS = 1000
ACTION_BUTTONS = ("ack-btn", "shelve-btn", "clear-btn", "dispatch-btn")
MAX_BEACONS = 200  # beacons over the overview's roofs, at most
STACK = 4  # beacons stacked over one building (its worst floors; the lowest says how many more)


# -- layout ----------------------------------------------------------------------------------------------

# what the graph shows before its figure arrives: nothing, so the first frame under it shows through
EMPTY_FIGURE = {"data": [], "layout": {"paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)",
                                       "xaxis": {"visible": False}, "yaxis": {"visible": False},
                                       "margin": {"l": 0, "r": 0, "t": 0, "b": 0}}}


def _poster(req: Req, board: Dashboard, building: str | None) -> list[Any]:
    """The scene's first frame, drawn on the server from the figure the scene callback is about to send
    (no filter, nothing selected), under the graph until WebGL has drawn (``viz/assets/poster.js``)."""
    try:
        fig = _scene_figure(req, board, building, "alarm")[0]
    except DataUnavailable:
        return []
    key = board.posters.add(fig)
    return [html.Img(src=f"/media/scene/{key}.png", id="scene-poster", className="scene-poster", alt="")]



def control_page(req: Req, board: Dashboard, building: str | None = None) -> Any:
    """The control room; ``building``: the one whose floors are pulled apart (the scene callback draws it)."""
    lang = req.lang
    if building is not None and board.community().building(building) is None:
        return notice(t(lang, "err.unknown_building", id=building), req, "unknown-building")
    severity_opts = [{"label": t(lang, f"severity.{s.value}"), "value": s.value} for s in SEVERITY_ORDER]
    return html.Div(className="control", children=[
        html.Section(className="scene-panel", children=[
            html.Div(className="toolbar", children=[
                html.Div(id="scene-title", className="scene-title"),
                html.Div([html.Span(t(lang, "scene.colour_by")),
                          dcc.RadioItems(id="colour-mode", value="alarm", inline=True,
                                         options=[{"label": t(lang, "scene.by_alarm"), "value": "alarm"},
                                                  {"label": t(lang, "scene.by_sla"), "value": "sla"}])],
                         className="mode"),
            ]),
            html.Div(className="scene-wrap", children=[
                *_poster(req, board, building),
                dcc.Graph(id="scene", className="scene", figure=EMPTY_FIGURE, config=cast(Any, {
                    "displaylogo": False, "scrollZoom": True, "modeBarButtonsToRemove": ["toImage"],
                    **locale_config(lang)})),  # the mode bar in the reader's language
                html.Div(id="hover-card", className="hover-card", style={"display": "none"}),
            ]),
            html.Div(id="scene-note", className="muted small"),
            dcc.Store(id="scene-buildings"),
        ]),
        html.Aside(className="side-panel", children=[
            html.Div([html.H2(t(lang, "alarms.title")), html.Span(id="alarm-count", className="badge")],
                     className="panel-head"),
            alert_toggles(lang),
            html.Div([html.Span(t(lang, "alarms.legend"), className="muted")]
                     + [html.Span(t(lang, f"severity.{s.value}"), className=f"sev sev-{s.value}")
                        for s in SEVERITY_ORDER], id="sev-legend", className="sev-legend small"),
            html.Div(className="filters", children=[
                dcc.Dropdown(id="f-severity", options=severity_opts, multi=True,
                             placeholder=t(lang, "alarms.filter_severity")),
                dcc.Dropdown(id="f-category", options=[], multi=True, placeholder=t(lang, "alarms.filter_category")),
                dcc.Dropdown(id="f-building", options=[], multi=True, placeholder=t(lang, "alarms.filter_building")),
            ]),
            html.Div(id="alarm-list", className="alarm-list"),
            dcc.Store(id="alarm-limit", data=PAGE_ROWS),
            html.Div(className="alarm-actions", children=[
                html.Div(t(lang, "alarms.select_first"), id="alarm-selected", className="small"),
                dcc.Input(id="ack-comment", type="text", placeholder=t(lang, "alarms.comment"), maxLength=MAX_TEXT,
                          className="grow"),
                html.Div(className="buttons", children=[
                    html.Button(t(lang, "alarms.ack"), id="ack-btn", className="primary"),
                    dcc.Dropdown(id="shelve-for", value="1", clearable=False, searchable=False,
                                 options=[{"label": t(lang, f"shelve.{h}h"), "value": str(h)} for h in (1, 8, 24)],
                                 className="shelve-for"),
                    html.Button(t(lang, "alarms.shelve"), id="shelve-btn"),
                    html.Button(t(lang, "alarms.clear"), id="clear-btn"),
                    html.Button(t(lang, "alarms.dispatch"), id="dispatch-btn"),
                ]),
                html.Div(id="action-msg", className="msg", role="status"),
            ]),
            html.Details(className="shelved-box", open=True, children=[
                html.Summary([t(lang, "alarms.shelved_title"), " ", html.Span(id="shelved-count", className="tag")]),
                html.Div(id="shelved-list", className="shelved-list"),
            ]),
            dcc.Store(id="alarm-selected-key"),
            dcc.Store(id="alarms-bump"),
        ]),
    ])


# -- callbacks -------------------------------------------------------------------------------------------


def register_callbacks(app: Dash, board: Dashboard) -> None:
    """The scene (draw, click through, hover card) and the alarms panel (list, select, act)."""
    _scene_callbacks(app, board)
    _alarm_panel_callbacks(app, board)


def _scene_callbacks(app: Dash, board: Dashboard) -> None:
    guarded = guarded_callbacks(app, board)
    # WebGL at the screen's own pixel density (viz/assets/poster.js), not Plotly's fixed 2: a third to a half of
    # the drawing time on a screen of density 1 with software WebGL, for the first frame and every redraw
    cast(Any, app).clientside_callback(ClientsideFunction("gridtwin_scene", "pixel_ratio"),
                                       Output("scene", "config"), Input("scene", "id"), State("scene", "config"))

    @guarded(Output("scene", "figure"), Output("scene-title", "children"), Output("scene-buildings", "data"),
             Output("scene-note", "children"),
             Input("version", "data"), Input("url", "pathname"), Input("colour-mode", "value"),
             Input("f-severity", "value"), Input("f-category", "value"), Input("f-building", "value"),
             Input("alarm-selected-key", "data"), roles=OPERATORS)
    def draw_scene(req: Req, _v: str | None, path: str | None, mode: Any, sev: Any, cat: Any, bld: Any,
                   selected: Any) -> Any:
        kind, building = parse_path(path)
        if kind != "control":
            raise PreventUpdate
        filters = SceneFilter(frozenset(_str_set(sev)), frozenset(_str_set(cat)), frozenset(_str_set(bld)))
        key = selected if isinstance(selected, str) and ID_RE.match(selected) else None
        return _scene_figure(req, board, building, mode if mode in ("alarm", "sla") else "alarm", filters, key)

    @guarded(Output("url", "pathname"), Input("scene", "clickData"), State("url", "pathname"), roles=OPERATORS)
    def click_scene(req: Req, click: Mapping[str, Any] | None, path: str | None) -> Any:
        points = (click or {}).get("points") or []
        if not points:
            raise PreventUpdate
        cd = points[0].get("customdata")
        scene = board.scene()
        if isinstance(cd, str) and board.community().device(cd) is not None:
            return f"/device/{cd}"
        if isinstance(cd, int | float) and 0 <= int(cd) < len(scene.buildings):
            target = f"/building/{scene.buildings[int(cd)].id}"
            return no_update if target == path else target
        raise PreventUpdate

    cast(Any, app).clientside_callback(
        """function(hover, names) {
            var hide = {"display": "none"};
            if (!hover || !hover.points || !hover.points.length || !names) { return ["", hide]; }
            var cd = hover.points[0].customdata;
            if (typeof cd === "number" && cd >= 0 && cd < names.length) {
                return [names[cd], {"display": "block"}];
            }
            return ["", hide];
        }""",
        Output("hover-card", "children"), Output("hover-card", "style"),
        Input("scene", "hoverData"), State("scene-buildings", "data"),
    )


def _alarm_panel_callbacks(app: Dash, board: Dashboard) -> None:
    data = board.data
    guarded = guarded_callbacks(app, board)

    @guarded(Output("alarm-list", "children"), Output("alarm-count", "children"),
             Output("f-building", "options"), Output("f-category", "options"), Output("alarm-count", "className"),
             Input("version", "data"), Input("alarms-bump", "data"), Input("f-severity", "value"),
             Input("f-category", "value"), Input("f-building", "value"), Input("alarm-selected-key", "data"),
             Input("alarm-limit", "data"), roles=OPERATORS)
    def alarm_list(req: Req, _v: Any, _bump: Any, sev: Any, cat: Any, bld: Any, selected: Any, limit: Any) -> Any:
        alarms = list(data.active_alarms())
        community = board.community()
        sevs, cats, blds = _str_set(sev), _str_set(cat), _str_set(bld)
        shown = [a for a in alarms
                 if (not sevs or a.severity.value in sevs)
                 and (not cats or _category(a, community) in cats)
                 and (not blds or _alarm_building(a, community) in blds)]
        lang = req.lang
        n = min(max(int(limit), PAGE_ROWS), MAX_ROWS) if isinstance(limit, int) else PAGE_ROWS
        rows: list[Any] = [_alarm_row(a, req, board, selected == a.key) for a in shown[:n]]
        if len(shown) > n:
            rows.append(html.Div([
                html.Span(t(lang, "alarms.showing", shown=n, total=len(shown)), className="small muted"),
                html.Button(t(lang, "alarms.more", n=min(PAGE_ROWS, len(shown) - n)), id="alarm-more", n_clicks=0)
                if n < MAX_ROWS else None,
            ], className="alarm-more"))
        b_opts = [{"label": b.name, "value": b.id} for b in community.buildings]
        c_opts = [{"label": t(lang, f"category.{c}"), "value": c}
                  for c in ("fire", "elevator", "environment", "water", "care", "other")]
        count = t(lang, "alarms.count", n=len(shown)) if len(shown) == len(alarms) else f"{len(shown)}/{len(alarms)}"
        worst = next((sv for sv in SEVERITY_ORDER
                      if any(a.severity is sv and a.status.active and not a.shelved(req.now) for a in shown)), None)
        badge = f"badge badge-{worst.value}" if worst is not None else "badge zero"
        return rows or [html.P(t(lang, "alarms.none"), className="muted")], count, b_opts, c_opts, badge

    @guarded(Output("alarm-limit", "data"), Input("alarm-more", "n_clicks"), State("alarm-limit", "data"),
             roles=OPERATORS)
    def more_alarms(_req: Req, clicks: Any, limit: Any) -> Any:
        if not clicks:
            raise PreventUpdate
        n = limit if isinstance(limit, int) else PAGE_ROWS
        return min(n + PAGE_ROWS, MAX_ROWS)

    @guarded(Output("shelved-list", "children"), Output("shelved-count", "children"),
             Input("version", "data"), Input("alarms-bump", "data"), roles=OPERATORS)
    def shelved_list(req: Req, _v: Any, _bump: Any) -> Any:
        shelved = [a for a in data.active_alarms() if a.shelved(req.now)]
        shelved.sort(key=lambda a: (a.shelved_until or req.now, a.key))
        if not shelved:
            return html.P(t(req.lang, "alarms.shelved_none"), className="muted small"), "0"
        return [_shelved_row(a, req, board) for a in shelved[:MAX_ROWS]], str(len(shelved))

    @guarded(Output("alarm-selected-key", "data"), Output("alarm-selected", "children"),
             Input({"type": "alarm-row", "key": ALL}, "n_clicks"), roles=OPERATORS)
    def select_alarm(req: Req, clicks: list[int | None]) -> Any:
        trig = ctx.triggered_id
        if not isinstance(trig, Mapping) or not any(clicks or []):
            raise PreventUpdate
        if not ctx.triggered or not ctx.triggered[0].get("value"):
            raise PreventUpdate
        key = str(trig.get("key", ""))
        alarm = next((a for a in data.active_alarms() if a.key == key), None)
        if alarm is None:
            return None, t(req.lang, "refused.not_found")
        return key, t(req.lang, "alarms.selected", what=_alarm_title(alarm, req, board))

    @guarded(Output("action-msg", "children"), Output("action-msg", "className"), Output("ack-comment", "value"),
             Output("alarms-bump", "data"),
             Input("ack-btn", "n_clicks"), Input("shelve-btn", "n_clicks"), Input("clear-btn", "n_clicks"),
             Input("dispatch-btn", "n_clicks"), Input({"type": "unshelve-btn", "key": ALL}, "n_clicks"),
             State("alarm-selected-key", "data"), State("ack-comment", "value"), State("shelve-for", "value"),
             roles=OPERATORS)
    def alarm_action(req: Req, _a: Any, _s: Any, _c: Any, _d: Any, _u: Any, key: Any, comment: Any,
                     shelve_for: Any) -> Any:
        trig = ctx.triggered_id
        if not ctx.triggered or not ctx.triggered[0].get("value"):
            raise PreventUpdate
        if isinstance(trig, Mapping) and trig.get("type") == "unshelve-btn":
            action, key = "unshelve", trig.get("key")
        elif trig in ACTION_BUTTONS:
            action = str(trig).removesuffix("-btn")
        else:
            raise PreventUpdate
        lang = req.lang

        def said(text: str, cls: str, clear_comment: bool = False) -> Any:
            # every answer carries the time it was given: a repeated refusal reads as new, never as stale
            stamped = t(lang, "alarms.msg_at", time=board.local(req.now, "%H:%M:%S"), msg=text)
            return (stamped, cls, "" if clear_comment else no_update,
                    time.time() if cls == "msg ok" else no_update)

        if not isinstance(key, str) or not ID_RE.match(key):
            return said(t(lang, "alarms.select_first"), "msg warn")
        note = (comment or "").strip()[:MAX_TEXT] if isinstance(comment, str) else ""
        try:
            if action == "ack":
                if not note:
                    return said(t(lang, "alarms.comment_needed"), "msg warn")
                data.acknowledge(req.user, key, note)
                msg = t(lang, "alarms.acked", key=key)
            elif action == "shelve":
                hours = {"1": 1, "8": 8, "24": 24}.get(str(shelve_for), 1)
                until = req.now + timedelta(hours=hours)
                data.shelve(req.user, key, until)
                msg = t(lang, "alarms.shelved_ok", until=board.local(until))
            elif action == "unshelve":
                data.unshelve(req.user, key)
                msg = t(lang, "alarms.unshelved_ok", key=key)
            elif action == "clear":
                data.clear(req.user, key, note)
                msg = t(lang, "alarms.cleared_ok", key=key)
            else:
                ticket = data.dispatch(req.user, key, note)
                msg = t(lang, "alarms.dispatched", ticket=ticket)
        except ActionRefused as exc:
            return said(refusal_text(lang, exc), "msg warn")
        except DataUnavailable as exc:
            return said(unavailable_text(lang, exc), "msg warn")
        except Exception:  # never leave the previous answer on screen as if it were this one's
            log.exception("alarm action %s on %s failed", action, key)
            return said(t(lang, "alarms.failed"), "msg warn")
        return said(msg, "msg ok", clear_comment=True)


# -- the 3D scene ----------------------------------------------------------------------------------------


def _class_labels(lang: str, mode: str) -> dict[str, str]:
    labels = {c: t(lang, f"class.{c}") for c in ("normal", "warning", "minor", "major", "critical", "offline",
                                                  "ground", "shaft")}
    if mode == "sla":
        labels.update({c: t(lang, f"sla_class.{c}") for c in ("normal", "minor", "critical")})
    labels.update(devices=t(lang, "scene.devices"), cars=t(lang, "scene.cars"), beacon=t(lang, "scene.beacon"),
                  selected=t(lang, "scene.selected"), residents=t(lang, "scene.residents"))
    return labels


def _floors_text(lang: str, b: Any) -> str:
    if b.floors_below:
        return t(lang, "scene.floors_below", above=b.floors_above, below=b.floors_below)
    return t(lang, "scene.floors", above=b.floors_above)


@dataclass(frozen=True, slots=True)
class SceneFilter:
    """The alarm panel's filters, which the scene follows: severities, categories, buildings (empty: all)."""

    severities: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()
    buildings: frozenset[str] = frozenset()

    @property
    def active(self) -> bool:
        return bool(self.severities or self.categories or self.buildings)

    def passes(self, a: AlarmView, community: Community) -> bool:
        return ((not self.severities or a.severity.value in self.severities)
                and (not self.categories or _category(a, community) in self.categories)
                and (not self.buildings or _alarm_building(a, community) in self.buildings))


def _capped(rollup: Rollup) -> Rollup:
    """The live roll-up with every level above normal taken down to normal: while the panel filters the
    alarms, the colours come from the alarms that pass, not from live states no filter can see."""
    def cap(levels: Mapping[Any, Level]) -> dict[Any, Level]:
        return {k: min(v, Level.NORMAL) for k, v in levels.items()}
    return Rollup(devices=cap(rollup.devices), floors=cap(rollup.floors), buildings=cap(rollup.buildings),
                  grids=cap(rollup.grids), community=min(rollup.community, Level.NORMAL))


def _scene_figure(req: Req, board: Dashboard, building: str | None, mode: str,
                  filters: SceneFilter = SceneFilter(), selected: str | None = None) -> tuple[Any, Any, Any, Any]:
    lang = req.lang
    data = board.data
    community = board.community()
    scene = board.scene()
    live = data.live()
    everything = list(data.active_alarms())
    alarms = [a for a in everything if filters.passes(a, community)]
    rollup = _capped(live.rollup) if filters.active else live.rollup
    note = ""
    if mode == "sla":
        try:
            classes = an.building_sla_classes(data.tickets(req.user), community, req.now)
        except DataUnavailable as exc:
            classes = an.building_classes(rollup, alarms, community, req.now)
            note = unavailable_text(lang, exc)
            mode = "alarm"
    else:
        classes = an.building_classes(rollup, alarms, community, req.now)
    labels = _class_labels(lang, mode)
    grids = {g.id: g.name for g in community.grids}
    hover = [t(lang, "scene.hover", name=b.name, floors=_floors_text(lang, b),
               grid=grids.get(community.grid_of(b) or "", t(lang, "scene.no_grid")),
               state=labels[classes.get(b.id, "normal")]) for b in scene.buildings]
    chosen = next((a for a in alarms if a.key == selected and a.status.active and not a.shelved(req.now)), None)
    if building is None:
        beacons, bands, rings = _beacons(req, board, alarms, chosen)
        fig = scene.overview(classes, labels, beacons=beacons, names={b.id: b.name for b in scene.buildings},
                             bands=bands, selected=rings)
        title: Any = t(lang, "scene.community", name=community.name, buildings=len(community.buildings),
                       devices=len(community.devices))
    else:
        b = community.building(building)
        if b is None:
            raise PreventUpdate
        floor_cls = an.floor_classes(building, rollup, alarms, community, req.now)
        levels = an.device_levels(rollup, alarms, community, req.now)
        devices, cars = _building_markers(req, board, building, levels, live.elevator_floors, labels)
        rings, ring_floor = _selected_in_building(req, board, building, chosen)
        fig = scene.exploded(building, floor_cls, labels, devices=devices, cars=cars,
                             floor_names={f: floor_label(lang, f) for f in b.floors}, selected=rings,
                             selected_floor=ring_floor, residents=_resident_markers(req, board, building))
        title = [dcc.Link(t(lang, "scene.back"), href="/", id="scene-back", className="back"),
                 html.Span(t(lang, "scene.building", name=b.name, floors=_floors_text(lang, b)))]
    if filters.active and not note:
        live_count = sum(1 for a in everything if a.status.active and not a.shelved(req.now))
        shown = sum(1 for a in alarms if a.status.active and not a.shelved(req.now))
        note = t(lang, "scene.filtered", shown=shown, total=live_count)
    return fig, title, hover, note or t(lang, "scene.hint")


def _alarm_place(a: AlarmView, community: Community) -> tuple[str | None, int | None]:
    """(building, floor) an alarm is on: its own, else its device's."""
    building = _alarm_building(a, community)
    floor = a.floor
    if floor is None and a.device:
        dev = community.device(a.device)
        floor = dev.floor if dev is not None else None
    return building, floor


def _beacons(req: Req, board: Dashboard, alarms: Sequence[AlarmView], chosen: AlarmView | None = None,
             ) -> tuple[list[Marker], list[Band], list[Marker]]:
    """The overview's alarm markers: per building, one beacon per affected floor stacked over the roof,
    the worst highest (drawn in front of the others), each labelled with its floor (the top one with the
    building's name too); an outline around each of those floors; a ring on the selected alarm's beacon."""
    lang = req.lang
    scene = board.scene()
    community = board.community()
    by_place: dict[str, dict[int | None, list[AlarmView]]] = {}
    for a in alarms:
        if not a.status.active or a.shelved(req.now):
            continue
        building, floor = _alarm_place(a, community)
        if building is None or building not in scene.index:
            continue
        by_place.setdefault(building, {}).setdefault(floor, []).append(a)
    beacons: list[Marker] = []
    bands: list[Band] = []
    rings: list[Marker] = []
    chosen_place = _alarm_place(chosen, community) if chosen is not None else None
    for building, floors in by_place.items():
        if len(beacons) >= MAX_BEACONS:
            break
        b = community.building(building)
        name = b.name if b is not None else building
        ordered = sorted(floors.items(), key=lambda kv: (-max(a.severity.rank for a in kv[1]),
                                                          kv[0] if kv[0] is not None else -999))
        shown = ordered[:STACK]
        cx, cy = scene.centres[building]
        for i, (floor, items) in enumerate(shown):
            items.sort(key=lambda a: -a.severity.rank)
            worst = items[0]
            slot = len(shown) - 1 - i
            where = floor_label(lang, floor) if floor is not None else ""
            label = f"{name} {where}".strip() if i == 0 else where
            if i == len(shown) - 1 and len(ordered) > len(shown):
                label = f"{label} {t(lang, 'scene.more_floors', n=len(ordered) - len(shown))}".strip()
            if chosen is not None and chosen_place == (building, floor):
                label = f"{label} · {rule_label(lang, chosen.rule_name)}"
                rings.append(Marker(chosen.key, cx, cy, scene.beacon_z(building, slot), SELECTED,
                                    _alarm_title(chosen, req, board), "circle-open", 26))
            hover = "<br>".join(_alarm_title(a, req, board) for a in items[:6])
            if len(items) > 6:
                hover += "<br>" + t(lang, "scene.more_alarms", n=len(items) - 6)
            beacons.append(Marker(worst.device or worst.subject, cx, cy, scene.beacon_z(building, slot),
                                  geo.PALETTE[worst.severity.value], hover, "diamond", 11 if slot == len(shown) - 1
                                  else 9, label=label, building=building))
            if floor is not None:
                bands.append(Band(building, floor, SELECTED if chosen_place == (building, floor) else BAND_COLOUR))
    return beacons, bands, rings


def _selected_in_building(req: Req, board: Dashboard, building: str, chosen: AlarmView | None,
                          ) -> tuple[list[Marker], int | None]:
    """The selected alarm in the exploded building: a ring on its device (or its floor), its floor."""
    if chosen is None:
        return [], None
    community = board.community()
    scene = board.scene()
    where, floor = _alarm_place(chosen, community)
    if where != building:
        return [], None
    pos = scene.device_xyz(chosen.device, exploded=building) if chosen.device else None
    b = community.building(building)
    if pos is None and b is not None and floor is not None and floor in b.floors:
        cx, cy = scene.centres[building]
        pos = (cx, cy, geo.floor_span(b, floor, exploded=True).top + MARKER_LIFT)
    if pos is None:
        return [], floor
    return [Marker(chosen.key, pos[0], pos[1], pos[2], SELECTED, _alarm_title(chosen, req, board), "circle-open",
                   24, label=rule_label(req.lang, chosen.rule_name))], floor


def _building_markers(req: Req, board: Dashboard, building: str, levels: Mapping[str, Level],
                      car_floors: Mapping[str, float], labels: Mapping[str, str]) -> tuple[list[Marker], list[Marker]]:
    lang = req.lang
    community = board.community()
    scene = board.scene()
    elevators = {e.id: e for e in community.elevators if e.building == building}
    devices: list[Marker] = []
    cars: list[Marker] = []
    for d in community.devices:
        if d.building != building:
            continue
        lv = levels.get(d.id, Level.UNKNOWN)
        cls = an.LEVEL_CLASS[lv]
        colour = DEVICE_UNKNOWN if lv is Level.UNKNOWN else geo.PALETTE[cls]
        state = t(lang, "class.unknown") if lv is Level.UNKNOWN else labels.get(cls, cls)
        if d.kind == "elevator" and d.elevator in elevators:
            e = elevators[d.elevator]
            floor = car_floors.get(e.id, float(e.serves[0]))
            z = scene.car_z(building, floor)
            if z is not None:
                cars.append(Marker(d.id, e.shaft[0], e.shaft[1], z, colour,
                                   f"{t(lang, 'scene.car_text', id=e.id, floor=round(floor))} · {state}",
                                   "square", 11))
            continue
        pos = scene.device_xyz(d.id, exploded=building)
        if pos is None:
            continue
        where = floor_label(lang, d.floor) if d.floor is not None else ""
        devices.append(Marker(d.id, pos[0], pos[1], pos[2], colour,
                              f"{d.id} · {kind_label(lang, d.kind)} · {where} · {state}",
                              size=9 if lv >= Level.MINOR else 6))
    return devices, cars


def _resident_markers(req: Req, board: Dashboard, building: str) -> list[Marker]:
    """Residents with limited mobility in the building (the fire SOP evacuates them first), on their floors.
    Names as the care register lets this user see them (masked outside the grid); none when it is unreadable."""
    try:
        people = board.data.care_register().evacuation(req.user, building)
    except (DataUnavailable, ActionRefused):
        return []
    scene = board.scene()
    slots: dict[int, int] = {}
    out: list[Marker] = []
    for p in people:
        slot = slots[p.floor] = slots.get(p.floor, -1) + 1
        pos = scene.resident_xyz(building, p.floor, slot)
        if pos is None:
            continue
        who = " ".join(x for x in (p.unit, p.name) if x)
        out.append(Marker(f"resident:{p.id}", *pos, RESIDENT_COLOUR,
                          t(req.lang, "scene.resident_text", who=who, floor=floor_label(req.lang, p.floor)),
                          "diamond", 13, label=p.unit))
    return out


# -- the alarms panel -------------------------------------------------------------------------------------


def _str_set(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, list):
        return {v for v in value if isinstance(v, str)}
    return set()


def _category(a: AlarmView, community: Community) -> str:
    if a.subject_type == "care_unit":
        return "care"
    if a.device:
        dev = community.device(a.device)
        spec = catalogue.KINDS.get(dev.kind) if dev else None
        if spec is not None:
            return spec.category
    prefix = a.rule.split("_", 1)[0]
    return {"fire": "fire", "panel": "fire", "heat": "fire", "smoke": "fire", "elevator": "elevator",
            "gas": "environment", "co": "environment", "care": "care", "water": "water"}.get(prefix, "other")


def _alarm_building(a: AlarmView, community: Community) -> str | None:
    if a.building:
        return a.building
    dev = community.device(a.device) if a.device else None
    return dev.building if dev else None


def _alarm_title(a: AlarmView, req: Req, board: Dashboard) -> str:
    return f"{rule_label(req.lang, a.rule_name)} · {place_text(req, board, a.building, a.floor, a.device)}"


def _alarm_row(a: AlarmView, req: Req, board: Dashboard, selected: bool) -> html.Button:
    lang = req.lang
    tags: list[Any] = [html.Span(t(lang, f"severity.{a.severity.value}"), className=f"sev sev-{a.severity.value}"),
                       html.Span(t(lang, f"alarms.status.{a.status.value}"), className=f"status st-{a.status.value}")]
    if a.count > 1:
        tags.append(html.Span(t(lang, "alarms.count_tag", n=a.count), className="tag"))
    if a.shelved(req.now):
        tags.append(html.Span(t(lang, "alarms.shelved_tag"), className="tag"))
    if a.ticket:
        tags.append(dcc.Link(t(lang, "alarms.ticket_tag", id=a.ticket), href=f"/worker/ticket/{a.ticket}",
                             className="tag ticket-link"))  # opens the ticket (tickets' owner: viz/pages/worker.py)
    lines: list[Any] = [
        html.Div(tags, className="tags"),
        html.Div(rule_label(lang, a.rule_name), className="title"),
        html.Div(f"{place_text(req, board, a.building, a.floor, a.device)} · {board.local(a.raised_at)}",
                 className="small muted"),
    ]
    if a.acked_by:
        lines.append(html.Div(t(lang, "alarms.acked_by", who=a.acked_by, comment=a.ack_comment or ""),
                              className="small muted"))
    cls = f"alarm-row sev-border-{a.severity.value}" + (" selected" if selected else "")
    if a.severity is Severity.CRITICAL and a.status.value == "active_unack" and not a.shelved(req.now):
        cls += " flash"  # a new critical alarm flashes until someone acknowledges it (viz/assets/live.css)
    return with_data(html.Button(lines, id={"type": "alarm-row", "key": a.key}, className=cls, n_clicks=0),
                 key=a.key, status=a.status.value)


def _shelved_row(a: AlarmView, req: Req, board: Dashboard) -> html.Div:
    lang = req.lang
    return with_data(html.Div(className=f"shelved-row sev-border-{a.severity.value}", children=[
        html.Div([
            html.Div([html.Span(t(lang, f"severity.{a.severity.value}"), className=f"sev sev-{a.severity.value}"),
                      html.Span(rule_label(lang, a.rule_name), className="title")], className="tags"),
            html.Div(place_text(req, board, a.building, a.floor, a.device), className="small muted"),
            html.Div(t(lang, "alarms.shelved_until_by", until=board.local(a.shelved_until),
                       who=a.shelved_by or t(lang, "alarms.someone")), className="small until"),
        ], className="grow"),
        html.Button(t(lang, "alarms.unshelve"), id={"type": "unshelve-btn", "key": a.key}, n_clicks=0,
                    className="unshelve"),
    ]), key=a.key)
