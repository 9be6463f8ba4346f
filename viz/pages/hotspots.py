"""Hotspots (``/hotspots``): where device alarms and one-click reports pile up over 7, 30 or 90 days.

The page's callback reads the period's incidents (``DashboardData.hotspot_data``: counts by source, place,
category, local hour and device) and lays out, for all buildings the user may see or the chosen one:

* a 3D heat map: floor slabs coloured by incidents on a sequential scale with a colour bar, hover naming the
  floor, its count and main category (:meth:`viz.scene.Scene.heat`); a chosen building is pulled apart;
* the places ranked worst first, the source split (alarms / reports) and the hint the data gives about the
  cause (rules in :mod:`twin.hotspots`);
* a category x time-of-day heat map and a category x building table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, cast

from dash import Dash, Input, Output, dcc, html

from twin import hotspots as hs
from twin.community import Community
from viz import analytics as an
from viz.data import DataUnavailable
from viz.i18n import floor_label, rule_label, t
from viz.pages.device_charts import locale_config
from viz.scene import Figure
from viz.shell import SUPERVISORS, Dashboard, Req, guarded_callbacks, unavailable_text
from viz.widgets import visible_buildings

TOP_PLACES = 15  # places in the ranked list
TOP_CATEGORIES = 12  # rows of the breakdowns
ZERO_COLOUR = "#475569"  # a floor with no incident (slate, like a quiet building of the control page)
SEQUENTIAL = ("#FFEDA0", "#FED976", "#FEB24C", "#FD8D3C", "#FC4E2A", "#E31A1C", "#B10026")  # ColorBrewer YlOrRd
CAMERA_ZOOM = 0.72  # the heat map's camera distance, of the scene's default
SOURCE_COLOUR = {"sensor": "#38BDF8", "report": "#F59E0B"}


# -- layout ----------------------------------------------------------------------------------------------


def hotspots_page(req: Req, board: Dashboard, _arg: str | None = None) -> html.Div:
    """The page's frame: period and building pickers; the ``hs-body`` callback draws the rest."""
    lang = req.lang
    community = board.community()
    visible = visible_buildings(req.user, community)
    options = [{"label": b.name, "value": b.id} for b in community.buildings if b.id in visible]
    return html.Div(id="hotspots", className="panel wide", children=[
        html.H2(t(lang, "hs.title", days=30), id="hs-title"),
        html.Div(className="toolbar", children=[
            html.Div([html.Span(t(lang, "hs.period")),
                      dcc.RadioItems(id="hs-period", value="30", inline=True,
                                     options=[{"label": t(lang, "hs.days", n=n), "value": str(n)}
                                              for n in hs.PERIODS])], className="mode"),
            html.Div([html.Span(t(lang, "hs.building")),
                      dcc.Dropdown(id="hs-building", options=options, value=None, clearable=True, searchable=False,
                                   placeholder=t(lang, "hs.all_buildings"), className="hs-building")],
                     className="mode"),
        ]),
        html.Div(id="hs-body"),
    ])


# -- callbacks -------------------------------------------------------------------------------------------


def register_callbacks(app: Dash, board: Dashboard) -> None:
    guarded = guarded_callbacks(app, board)

    @guarded(Output("hs-title", "children"), Output("hs-body", "children"),
             Input("hs-period", "value"), Input("hs-building", "value"), roles=SUPERVISORS)
    def hotspots_body(req: Req, period: Any, building: Any) -> Any:
        days = {str(n): n for n in hs.PERIODS}.get(str(period), 30)
        return t(req.lang, "hs.title", days=days), body(req, board, days, building if isinstance(building, str)
                                                        else None)


# -- content ---------------------------------------------------------------------------------------------


def body(req: Req, board: Dashboard, days: int, building: str | None) -> Any:
    """Everything under the pickers for ``days`` and ``building`` (None: every building the user may see)."""
    lang = req.lang
    community = board.community()
    visible = visible_buildings(req.user, community)
    if building is not None and building not in visible:
        building = None  # an id the user may not see (or that does not exist): all of theirs
    try:
        data = board.data.hotspot_data(req.now - timedelta(days=days), req.now)
    except DataUnavailable as exc:
        return html.P(unavailable_text(lang, exc), className="msg warn", id="hs-unavailable")
    groups = [g for g in data.groups
              if (g.building in visible or (g.building is None and req.user.sees_everything()))]
    groups = hs.only_building(groups, building)
    if not groups:
        return html.P(t(lang, "hs.none"), className="muted", id="hs-none")

    def label(cat: str) -> str:
        return data.labels.get(cat, cat)

    spots = hs.rank(groups, label)
    names = {b.id: b.name for b in community.buildings}
    sensor = sum(h.sensor for h in spots)
    reports = sum(h.reports for h in spots)
    summary = html.P(t(lang, "hs.summary", total=sensor + reports, sensor=sensor, reports=reports,
                       places=len(spots)), className="hs-summary", id="hs-summary")
    figure = heat_figure(lang, board, community, spots, building, label)
    graph = dcc.Graph(id="hs-map", figure=figure, className="hs-map",
                      config=cast(Any, {"displaylogo": False, "scrollZoom": True,
                                        "modeBarButtonsToRemove": ["toImage"], **locale_config(lang)}))
    floors = [(b.id, f) for b in community.buildings if b.id in visible and (building is None or b.id == building)
              for f in b.floors]
    return html.Div([
        summary,
        html.Div(className="hs-top", children=[
            html.Section([html.H3(t(lang, "hs.map")), graph, html.P(t(lang, "hs.map.note"), className="muted small")],
                         className="hs-map-box"),
            html.Section([html.H3(t(lang, "hs.ranked")), ranked_table(lang, spots, names, floors, label)],
                         className="hs-rank-box"),
        ]),
        html.H3(t(lang, "hs.breakdown")),
        hour_table(lang, groups, label),
        html.P(t(lang, "hs.breakdown.note"), className="muted small"),
        html.H3(t(lang, "hs.by_building")),
        building_table(lang, groups, names, label),
    ])


def place_text(lang: str, names: Mapping[str, str], building: str | None, floor: int | None) -> str:
    if building is None:
        return t(lang, "hs.community_wide")
    name = names.get(building, building)
    if floor is not None:
        return f"{name} {floor_label(lang, floor)}"
    return f"{name}{'' if lang == 'zh' else ' '}{t(lang, 'hs.whole_building')}"


def category_text(lang: str, label: hs.Labeller, category: str | None) -> str:
    return "—" if category is None else rule_label(lang, label(category))


def colour_scale(cmax: float) -> list[tuple[float, str]]:
    """Plotly colour scale over [0, cmax] for whole counts: 0 in :data:`ZERO_COLOUR`, 1 .. cmax from the pale to
    the dark end of :data:`SEQUENTIAL` (so a floor with one incident is already visibly coloured)."""
    if cmax <= 1:
        return [(0.0, ZERO_COLOUR), (0.5, ZERO_COLOUR), (1.0, SEQUENTIAL[len(SEQUENTIAL) // 2])]
    lo = 1.0 / cmax
    steps = len(SEQUENTIAL) - 1
    return [(0.0, ZERO_COLOUR), (lo / 2, ZERO_COLOUR),
            *[(lo + (1.0 - lo) * n / steps, c) for n, c in enumerate(SEQUENTIAL)]]


def heat_figure(lang: str, board: Dashboard, community: Community, spots: Sequence[hs.Hotspot],
                building: str | None, label: hs.Labeller) -> Figure:
    """The 3D heat map: every floor coloured by its incidents (a chosen building alone, its floors apart)."""
    names = {b.id: b.name for b in community.buildings}
    by_floor = hs.floor_counts(spots)
    whole = {h.building: h for h in spots if h.building is not None and h.floor is None}
    hover: dict[tuple[str, int], str] = {}
    for b in community.buildings:
        if building is not None and b.id != building:
            continue
        extra = whole.get(b.id)
        tail = ("<br>" + place_text(lang, names, b.id, None) + f" {extra.count}") if extra else ""
        for f in b.floors:
            place = place_text(lang, names, b.id, f)
            h = by_floor.get((b.id, f))
            hover[(b.id, f)] = (t(lang, "hs.hover", place=place, count=h.count, sensor=h.sensor, reports=h.reports,
                                  top=category_text(lang, label, h.top_category)) if h is not None
                                else t(lang, "hs.hover.none", place=place)) + tail
    values = {k: float(h.count) for k, h in by_floor.items()}
    cmax = max(values.values(), default=1.0)
    notes = ({f: f"{floor_label(lang, f)} · {h.count}" for (b, f), h in by_floor.items() if b == building}
             if building is not None else None)
    fig = board.scene().heat(values, hover, colorscale=colour_scale(cmax), cmax=cmax, title=t(lang, "hs.scale"),
                             building=building, notes=notes)
    for key, sub in fig["layout"].items():  # closer than the control page's camera: the floors are what counts
        if key.startswith("scene") and isinstance(sub, dict) and "camera" in sub:
            sub["camera"] = {"eye": {k: v * CAMERA_ZOOM for k, v in sub["camera"]["eye"].items()}}
    return fig


def _split(h: hs.Hotspot) -> html.Div:
    """Alarms / reports of a place: the two numbers over a two-colour bar."""
    total = max(h.count, 1)
    return html.Div(className="hs-split", children=[
        html.Span(f"{h.sensor} / {h.reports}"),
        html.Div(className="hs-bar", children=[
            html.Span(style={"width": f"{100 * h.sensor / total:.0f}%", "background": SOURCE_COLOUR["sensor"]}),
            html.Span(style={"width": f"{100 * h.reports / total:.0f}%", "background": SOURCE_COLOUR["report"]}),
        ]),
    ])


def ranked_table(lang: str, spots: Sequence[hs.Hotspot], names: Mapping[str, str],
                 floors: Sequence[tuple[str, int]], label: hs.Labeller) -> html.Div:
    """The places worst first: count, source split, main category, the hints (or a dash when none fired)."""
    counts = {(h.building, h.floor): h.count for h in spots if h.building is not None and h.floor is not None}
    standout = an.outliers(counts, floors)
    rows = []
    for n, h in enumerate(spots[:TOP_PLACES], start=1):
        out = (h.building, h.floor) in standout
        hint: Any = ([html.Div(x.text(lang)) for x in h.hints] if h.hints
                     else html.Span(t(lang, "hs.no_hint"), className="muted"))
        place: list[Any] = [place_text(lang, names, h.building, h.floor)]
        if out:
            place.append(html.Span(" ⚠ " + t(lang, "hs.outlier"), className="outlier"))
        rows.append(html.Tr([html.Td(n), html.Td(place), html.Td(h.count), html.Td(_split(h)),
                             html.Td(f"{category_text(lang, label, h.top_category)} ×{h.top_count}"),
                             html.Td(hint, className="hs-hint")], className="hot" if out else ""))
    split = html.Th([html.Span(t(lang, "hs.col.sensor"), style={"color": SOURCE_COLOUR["sensor"]}), " / ",
                     html.Span(t(lang, "hs.col.reports"), style={"color": SOURCE_COLOUR["report"]})])
    head = html.Tr([html.Th(t(lang, f"hs.col.{c}")) for c in ("rank", "place", "count")]
                   + [split] + [html.Th(t(lang, f"hs.col.{c}")) for c in ("top", "hint")])
    more = len(spots) - TOP_PLACES
    return html.Div([
        html.Div(html.Table([html.Thead(head), html.Tbody(rows)], className="table hs-rank", id="hs-ranked"),
                 className="table-scroll"),
        html.P(t(lang, "hs.more", n=more), className="muted small") if more > 0 else "",
    ])


def _row_label(lang: str, label: hs.Labeller, key: tuple[hs.Source, str]) -> str:
    source, cat = key
    return f"{category_text(lang, label, cat)}（{t(lang, 'hs.source.' + source)}）" if lang == "zh" else \
        f"{category_text(lang, label, cat)} ({t(lang, 'hs.source.' + source)})"


def cell_colour(value: int, vmax: int) -> str:
    """Background of a count in the breakdown tables: the step of :data:`SEQUENTIAL` for ``value`` of ``vmax``
    (1 the palest, ``vmax`` the darkest); no colour for 0."""
    if value <= 0:
        return ""
    if vmax <= 1:
        return SEQUENTIAL[len(SEQUENTIAL) // 2]
    step = round((min(value, vmax) - 1) / (vmax - 1) * (len(SEQUENTIAL) - 1))
    return SEQUENTIAL[step]


def _cell(value: int, vmax: int) -> html.Td:
    colour = cell_colour(value, vmax)
    dark = colour in SEQUENTIAL[4:]  # white text on the dark reds, dark text on the pale ones
    style = {"background": colour, "color": "#F8FAFC" if dark else "#0F172A"} if colour else {}
    return html.Td(value or "", className="num", style=style)


def hour_table(lang: str, groups: Sequence[hs.IncidentGroup], label: hs.Labeller) -> html.Div:
    """Category (rows, most incidents first) x hour-of-day bucket (columns): a table coloured as a heat map."""
    rows = list(hs.by_hour(groups).items())[:TOP_CATEGORIES]
    vmax = max((max(v) for _k, v in rows), default=1)
    head = html.Tr([html.Th(t(lang, "hs.col.category")), *[html.Th(f"{a:02d}–{b:02d}", className="num")
                                                           for a, b in hs.buckets()]])
    body = [html.Tr([html.Td(_row_label(lang, label, key)), *[_cell(v, vmax) for v in counts]])
            for key, counts in rows]
    return html.Div(html.Table([html.Thead(head), html.Tbody(body)], className="table hs-matrix hs-hours",
                               id="hs-hours"), className="table-scroll")


def building_table(lang: str, groups: Sequence[hs.IncidentGroup], names: Mapping[str, str],
                   label: hs.Labeller) -> html.Div:
    """Category (rows) x building (columns, most incidents first), with totals."""
    rows = list(hs.by_building(groups).items())[:TOP_CATEGORIES]
    totals: dict[str | None, int] = {}
    for g in groups:
        totals[g.building] = totals.get(g.building, 0) + g.count
    cols = sorted(totals, key=lambda b: (-totals[b], b or ""))

    def col_name(b: str | None) -> str:
        return t(lang, "hs.community_wide") if b is None else names.get(b, b)

    head = html.Tr([html.Th(t(lang, "hs.col.category")), *[html.Th(col_name(b), className="num") for b in cols],
                    html.Th(t(lang, "hs.col.total"), className="num")])
    vmax = max((n for _k, c in rows for n in c.values()), default=1)
    body = [html.Tr([html.Td(_row_label(lang, label, key)), *[_cell(c.get(b, 0), vmax) for b in cols],
                     html.Td(sum(c.values()), className="num total")]) for key, c in rows]
    return html.Div(html.Table([html.Thead(head), html.Tbody(body)], className="table hs-matrix", id="hs-matrix"),
                    className="table-scroll")
