"""The device inventory (``/devices``): every device of the community in one table, searched (id, name, place),
filtered (kind, building, online/offline, in alarm, silent for longer than X), sorted by any column and paged.

One read per redraw: the data source's :meth:`~viz.data.DashboardData.device_inventory` (one query, cached
briefly) and the active alarms it already holds; filtering, sorting and paging happen here, in memory."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from dash import Dash, Input, Output, State, ctx, dcc, html

from twin import catalogue
from twin.community import Community
from viz.data import AlarmView, DeviceSeen
from viz.i18n import floor_label, kind_label, t
from viz.pages.device import _online
from viz.pages.device_charts import ago
from viz.shell import SUPERVISORS, Dashboard, Req, guarded_callbacks
from viz.widgets import with_data

PAGE_SIZE = 50
REFRESH_MS = 30_000  # redraw the open page this often (not on every alarm change: a redraw reads every device)
MAX_QUERY = 100
COLUMNS = ("id", "kind", "place", "state", "alarm", "seen")
SILENT = {"1h": timedelta(hours=1), "6h": timedelta(hours=6), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
STATES = ("online", "offline", "never")
ALARMS = ("yes", "no")
SEVERITY_ORDER = {"critical": 0, "major": 1, "minor": 2, "warning": 3}
ANY = "all"
_DIGITS = re.compile(r"(\d+)")


@dataclass(frozen=True, slots=True)
class Row:
    """One device as the inventory shows it."""

    id: str
    kind: str
    building: str | None
    building_name: str
    floor: int | None
    unit: str | None
    place: str
    state: str  # online | offline | never
    alarm: str | None  # the worst severity of its active alarms
    last_seen: datetime | None
    search: str  # lower-case text the search box matches: id, kind names, place


def inventory_rows(community: Community, seen: Sequence[DeviceSeen], alarms: Sequence[AlarmView], now: datetime,
                   lang: str) -> list[Row]:
    """Join the registry, the last-heard times and the active alarms into the inventory's rows."""
    by_id: Mapping[str, DeviceSeen] = {s.device: s for s in seen}
    worst: dict[str, str] = {}
    for a in alarms:
        if a.device and a.status.active:
            cur = worst.get(a.device)
            sev = a.severity.value
            if cur is None or SEVERITY_ORDER.get(sev, 9) < SEVERITY_ORDER.get(cur, 9):
                worst[a.device] = sev
    buildings = {b.id: b.name for b in community.buildings}
    rows = []
    for d in community.devices:
        s = by_id.get(d.id)
        last = s.last_seen if s else None
        state = "never" if last is None else ("online" if _online(d.kind, s.status if s else None, last, now)
                                              else "offline")
        bname = buildings.get(d.building or "", d.building or "")
        place = " · ".join(p for p in (bname, floor_label(lang, d.floor) if d.floor is not None else "", d.unit or "")
                           if p)
        spec = catalogue.KINDS.get(d.kind)
        names = f"{spec.label_zh} {spec.label_en}" if spec else d.kind
        rows.append(Row(d.id, d.kind, d.building, bname, d.floor, d.unit, place, state, worst.get(d.id), last,
                        f"{d.id} {d.kind} {names} {place} {d.building or ''}".lower()))
    return rows


def select(rows: Sequence[Row], *, query: str = "", kind: str = ANY, building: str = ANY, state: str = ANY,
           alarm: str = ANY, silent: str = ANY, now: datetime) -> list[Row]:
    """The rows matching every filter (the search words each match somewhere, case-insensitively)."""
    words = query.lower().split()
    older = now - SILENT[silent] if silent in SILENT else None
    out = []
    for r in rows:
        if kind not in (ANY, r.kind) or building not in (ANY, r.building) or state not in (ANY, r.state):
            continue
        if (alarm == "yes" and r.alarm is None) or (alarm == "no" and r.alarm):
            continue
        if older is not None and r.last_seen is not None and r.last_seen >= older:
            continue
        if words and not all(w in r.search for w in words):
            continue
        out.append(r)
    return out


def natural(text: str) -> tuple[tuple[int, int | str], ...]:
    """A key that orders numbers inside names by value: B1-F2 before B1-F10, 2号楼 before 10号楼."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in _DIGITS.split(text) if p)


def sort_rows(rows: list[Row], col: str, desc: bool, lang: str) -> list[Row]:
    """Sorted by ``col``, ties by id (numbers in names by value); never-heard devices are the oldest."""
    state_rank = {"offline": 0, "never": 1, "online": 2}
    keys: dict[str, Any] = {
        "id": lambda r: natural(r.id),
        "kind": lambda r: kind_label(lang, r.kind),
        "place": lambda r: (natural(r.building_name), r.floor if r.floor is not None else -99, natural(r.unit or "")),
        "state": lambda r: state_rank[r.state],
        "alarm": lambda r: -SEVERITY_ORDER.get(r.alarm, 9) if r.alarm else -99,
        "seen": lambda r: r.last_seen.timestamp() if r.last_seen else float("-inf"),
    }
    by_id = sorted(rows, key=lambda r: natural(r.id), reverse=desc and col == "id")
    return sorted(by_id, key=keys.get(col, keys["id"]), reverse=desc)  # stable: ties stay in id order


# -- layout ----------------------------------------------------------------------------------------------


def inventory_page(req: Req, board: Dashboard, _arg: str | None = None) -> Any:
    """The filter bar, the table frame and the pager; ``inventory`` fills them."""
    lang = req.lang
    community = board.community()
    kinds = sorted({d.kind for d in community.devices}, key=lambda k: kind_label(lang, k))
    anyone = {"label": t(lang, "inv.any"), "value": ANY}

    def pick(ident: str, label: str, options: list[dict[str, str]]) -> Any:
        return html.Label([t(lang, label), dcc.Dropdown(id=ident, value=ANY, clearable=False, className="inv-pick",
                                                        options=[anyone, *options])])

    filters = html.Div([
        dcc.Input(id="inv-q", type="search", placeholder=t(lang, "inv.search"), debounce=0.3, maxLength=MAX_QUERY,
                  className="inv-q"),
        pick("inv-kind", "inv.kind", [{"label": kind_label(lang, k), "value": k} for k in kinds]),
        pick("inv-building", "inv.building", [{"label": b.name, "value": b.id} for b in community.buildings]),
        pick("inv-state", "inv.state", [{"label": t(lang, f"inv.only_{s}"), "value": s} for s in STATES]),
        pick("inv-alarm", "inv.alarm", [{"label": t(lang, "inv.in_alarm"), "value": "yes"},
                                        {"label": t(lang, "inv.no_alarm"), "value": "no"}]),
        html.Label([t(lang, "inv.silent"), dcc.Dropdown(
            id="inv-silent", value=ANY, clearable=False, className="inv-pick",
            options=[{"label": t(lang, "inv.silent.any"), "value": ANY},
                     *({"label": t(lang, f"inv.silent.{k}"), "value": k} for k in SILENT)])]),
    ], className="inv-filters")
    head = html.Thead(html.Tr([html.Th(html.Button(t(lang, f"inv.col.{c}"), id=f"inv-sort-{c}", className="sort",
                                                   title=t(lang, "inv.sort_hint"))) for c in COLUMNS]))
    return html.Div([
        html.H2(t(lang, "inv.title")),
        filters,
        html.Div(id="inv-msg", className="warn-text", role="alert"),
        html.Div(html.Table([head, html.Tbody(id="inv-body")], className="table inv-table", id="inv-table"),
                 className="table-scroll"),
        html.Div([html.Button(t(lang, "inv.prev"), id="inv-prev"), html.Span(id="inv-count", className="muted"),
                  html.Button(t(lang, "inv.next"), id="inv-next")], className="inv-pager"),
        dcc.Store(id="inv-sort", data={"col": "id", "desc": False}),
        dcc.Store(id="inv-page", data=0),
        dcc.Interval(id="inv-tick", interval=REFRESH_MS),  # "3 分钟前" and the alarm column stay current
    ], className="panel wide inventory")


# -- callbacks -------------------------------------------------------------------------------------------


def register_callbacks(app: Dash, board: Dashboard) -> None:
    """One callback: filters, sort clicks, the pager and a slow timer all redraw the table."""
    data = board.data
    guarded = guarded_callbacks(app, board)

    @guarded(Output("inv-body", "children"), Output("inv-count", "children"), Output("inv-sort", "data"),
             Output("inv-page", "data"), Output("inv-msg", "children"),
             *(Output(f"inv-sort-{c}", "className") for c in COLUMNS),
             Input("inv-q", "value"), Input("inv-kind", "value"), Input("inv-building", "value"),
             Input("inv-state", "value"), Input("inv-alarm", "value"), Input("inv-silent", "value"),
             *(Input(f"inv-sort-{c}", "n_clicks") for c in COLUMNS), Input("inv-prev", "n_clicks"),
             Input("inv-next", "n_clicks"), Input("inv-tick", "n_intervals"), State("inv-sort", "data"),
             State("inv-page", "data"), roles=SUPERVISORS)
    def inventory(req: Req, q: Any, kind: Any, building: Any, state: Any, alarm: Any, silent: Any, *rest: Any) -> Any:
        sort, page = rest[-2], rest[-1]
        lang = req.lang
        community = board.community()
        msg = ""
        query = q if isinstance(q, str) else ""
        if len(query) > MAX_QUERY:
            query, msg = query[:MAX_QUERY], t(lang, "inv.too_long", n=MAX_QUERY)
        kinds = {d.kind for d in community.devices}
        buildings = {b.id for b in community.buildings}
        kind = kind if kind in kinds else ANY
        building = building if building in buildings else ANY
        state = state if state in STATES else ANY
        alarm = alarm if alarm in ALARMS else ANY
        silent = silent if silent in SILENT else ANY
        col = str(sort.get("col")) if isinstance(sort, dict) and sort.get("col") in COLUMNS else "id"
        desc = bool(sort.get("desc")) if isinstance(sort, dict) else False
        page = page if isinstance(page, int) and page >= 0 else 0
        trig = ctx.triggered_id if isinstance(ctx.triggered_id, str) else ""
        if trig.startswith("inv-sort-"):
            clicked = trig.removeprefix("inv-sort-")
            desc = not desc if clicked == col else clicked == "seen"  # newest first is what people want first
            col, page = clicked, 0
        elif trig == "inv-prev":
            page = max(0, page - 1)
        elif trig == "inv-next":
            page += 1
        elif trig not in ("inv-tick", ""):
            page = 0
        rows = inventory_rows(community, data.device_inventory(), data.active_alarms(), req.now, lang)
        chosen = sort_rows(select(rows, query=query, kind=kind, building=building, state=state, alarm=alarm,
                                  silent=silent, now=req.now), col, desc, lang)
        pages = max(1, -(-len(chosen) // PAGE_SIZE))
        page = min(page, pages - 1)
        shown = chosen[page * PAGE_SIZE:(page + 1) * PAGE_SIZE]
        body = [_row(req, board, r) for r in shown] or [html.Tr(html.Td(t(lang, "inv.none"), colSpan=len(COLUMNS),
                                                                        className="muted", id="inv-none"))]
        heads = [f"sort{' sorted ' + ('desc' if desc else 'asc') if c == col else ''}" for c in COLUMNS]
        count = t(lang, "inv.count", n=len(chosen), page=page + 1, pages=pages)
        return (body, count, {"col": col, "desc": desc}, page, msg, *heads)


def _row(req: Req, board: Dashboard, r: Row) -> Any:
    lang = req.lang
    state_text = {"online": "dev.online", "offline": "dev.offline", "never": "dev.never"}[r.state]
    alarm = (html.Span(t(lang, f"severity.{r.alarm}"), className=f"sev sev-{r.alarm}") if r.alarm
             else html.Span("—", className="muted"))
    return with_data(html.Tr([
        html.Td(dcc.Link(r.id, href=f"/device/{r.id}", className="inv-link")),
        html.Td(kind_label(lang, r.kind)),
        html.Td(r.place or html.Span("—", className="muted")),
        html.Td(html.Span(t(lang, state_text), className=f"st-{r.state}")),
        html.Td(alarm),
        html.Td(html.Span(ago(lang, req.now, r.last_seen),
                          title=board.local(r.last_seen, "%Y-%m-%d %H:%M:%S") if r.last_seen else "")),
    ], className="alert" if r.alarm else ""), device=r.id, state=r.state)
