"""The care register (关爱台账, seed 3.2): ``/residents`` (the list: level, next visit due, overdue first, filters by
level and grid), ``/residents/<id>`` (a resident: schedule, visit history, level changes, the level-change form) and
``/residents/<id>/visit`` (the phone form a worker logs a visit with). Plus :func:`ticket_section`, the care part of
a ticket's page: on a fire ticket the residents with limited mobility in the building (evacuate them first), on a
care ticket the link to the resident's record.

What a user sees is decided by the data source (:mod:`viz.care_model`): names masked for operators, other grids'
residents not found.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from dash import Dash, Input, Output, State, dcc, html
from dash.exceptions import PreventUpdate

from twin import care
from viz.care_model import CareRegisterData, ResidentView
from viz.data import ActionRefused, DataUnavailable, TicketView
from viz.i18n import t
from viz.shell import MAX_PHOTO_BYTES, MAX_TEXT, Dashboard, Req, guarded_callbacks, unavailable_text
from viz.ticket_text import people, person
from viz.widgets import photo_from_upload, with_data


def _register(board: Dashboard) -> CareRegisterData:
    return board.data.care_register()


def _level(lang: str, level: str) -> html.Span:
    return html.Span(t(lang, f"careg.level.{level}"), className=f"care care-{level}")


def _status(lang: str, r: ResidentView) -> html.Span:
    s = r.schedule
    return html.Span(t(lang, f"careg.status.{s.status}", n=s.days_overdue), className=f"careg-st careg-{s.status}")


def _home(lang: str, board: Dashboard, r: ResidentView) -> str:
    b = board.community().building(r.building)
    return t(lang, "careg.home", building=b.name if b else r.building, unit=r.unit, floor=r.floor)


def _name(lang: str, r: ResidentView) -> str:
    return r.name or t(lang, "careg.unnamed")


def _rid(arg: str | None) -> tuple[int | None, bool]:
    """(resident id, visit form?) of the path's argument ``12`` or ``12/visit``."""
    parts = (arg or "").split("/")
    if not parts[0].isdigit() or len(parts[0]) > 18 or len(parts) > 2 or (len(parts) == 2 and parts[1] != "visit"):
        return None, False
    return int(parts[0]), len(parts) == 2


# -- /residents ----------------------------------------------------------------------------------------------


def register_page(req: Req, board: Dashboard, _arg: str | None = None) -> Any:
    lang = req.lang
    grids = [g for g in board.community().grids if req.user.may_see_grid(g.id)]
    level_opts = [{"label": t(lang, "careg.filter.all"), "value": ""}] + [
        {"label": t(lang, f"careg.level.{lvl}"), "value": lvl} for lvl in care.LEVELS]
    grid_opts = [{"label": t(lang, "careg.filter.all"), "value": ""}] + [
        {"label": g.name, "value": g.id} for g in grids]
    filters = [html.Label([t(lang, "careg.filter.level"),
                           dcc.Dropdown(id="careg-level", options=level_opts, value="", clearable=False)]),
               html.Label([t(lang, "careg.filter.grid"),  # one grid (a worker's): nothing to choose
                           dcc.Dropdown(id="careg-grid", options=grid_opts, value="", clearable=False)],
                          style=None if len(grids) > 1 else {"display": "none"})]
    return html.Div([
        html.H2(t(lang, "careg.title")), html.P(t(lang, "careg.lead"), className="small muted"),
        html.Div(filters, className="filters careg-filters"),
        html.Div(id="careg-body"), dcc.Interval(id="careg-clock", interval=60_000)], className="panel wide careg")


def _register_body(req: Req, board: Dashboard, level: str, grid: str) -> Any:
    lang = req.lang
    try:
        rows = list(_register(board).residents(req.user, level=level or None, grid=grid or None))
    except DataUnavailable as exc:
        return html.P(unavailable_text(lang, exc), className="msg warn")
    if not rows:
        return html.P(t(lang, "careg.none"), className="muted", id="careg-none")
    overdue = sum(r.schedule.overdue for r in rows)
    soon = sum(r.schedule.status in ("due_today", "due_soon") for r in rows)
    head = html.Tr([html.Th(t(lang, f"careg.col.{c}")) for c in ("resident", "home", "level", "due", "last")])

    colon = "：" if lang == "zh" else ": "

    def row(r: ResidentView) -> html.Tr:
        link = f"/residents/{r.id}"
        last = board.local(r.last_visit_at) if r.last_visit_at else t(lang, "careg.never")
        return with_data(html.Tr([
            html.Td(dcc.Link(_name(lang, r), href=link), className="careg-name"),
            html.Td(dcc.Link(_home(lang, board, r), href=link), className="careg-home"),
            html.Td(_level(lang, r.level), className="careg-lvl"),
            with_data(html.Td([html.Span(t(lang, "careg.due_by", date=r.schedule.due.strftime("%m-%d"))), " ",
                               _status(lang, r)], className="careg-due"), label=t(lang, "careg.col.due") + colon),
            with_data(html.Td(last, className="careg-last"), label=t(lang, "careg.col.last") + colon)],
            className="careg-overdue" if r.schedule.overdue else None), unit=r.unit)

    out: list[Any] = [html.P(t(lang, "careg.summary", n=len(rows), overdue=overdue, soon=soon), id="careg-summary")]
    if not rows[0].personal and not any(r.personal for r in rows):
        out.append(html.P(t(lang, "careg.masked_note"), className="small muted", id="careg-masked"))
    out.append(html.Div(html.Table([html.Thead(head), html.Tbody([row(r) for r in rows])], className="table",
                                   id="careg-table"), className="table-scroll"))
    return out


# -- /residents/<id> and /residents/<id>/visit ---------------------------------------------------------------


def resident_page(req: Req, board: Dashboard, arg: str | None = None) -> Any:
    lang = req.lang
    rid, form = _rid(arg)
    back = dcc.Link(t(lang, "careg.back"), href="/residents", className="back")
    try:
        r = _register(board).resident(req.user, rid) if rid is not None else None
    except DataUnavailable as exc:
        return html.Div([back, html.P(unavailable_text(lang, exc), className="msg warn")], className="phone")
    if r is None:
        return html.Div([back, html.P(t(lang, "careg.not_found"), id="careg-not-found")], className="phone notice")
    if form and not r.personal:  # operators: the register masked, no visits to log
        return html.Div([back, html.P(t(lang, "careg.refused.care_forbidden"), id="careg-forbidden")],
                        className="phone notice")
    if form:
        return _visit_form(req, r)
    return html.Div([back, *_resident_body(req, board, r)], className="phone careg-resident", id="careg-resident")


def _resident_body(req: Req, board: Dashboard, r: ResidentView) -> list[Any]:
    lang = req.lang
    reg = _register(board)
    s = r.schedule
    tags: list[Any] = [_level(lang, r.level), html.Span(t(lang, f"careg.every.{r.level}"), className="tag")]
    if r.category:
        tags.append(html.Span(t(lang, f"careg.cat.{r.category}"), className="tag"))
    if r.mobility_limited:
        tags.append(html.Span(t(lang, "careg.mobility"), className="tag careg-mob"))
    parts: list[Any] = [html.H2(_name(lang, r), id="careg-name"), html.P(_home(lang, board, r)),
                        html.Div(tags, className="tags")]
    if r.phone:
        parts.append(html.P([t(lang, "careg.phone"), ": ", html.A(r.phone, href="tel:" + "".join(
            ch for ch in r.phone if ch.isdigit() or ch == "+"))]))
    if not r.personal:
        parts.append(html.P(t(lang, "careg.masked_note"), className="small muted"))
    sched: list[Any] = [
        html.P([t(lang, "careg.due_by", date=s.due.isoformat()), " ", _status(lang, r)], id="careg-due"),
        html.P(t(lang, "careg.planned", dates=" · ".join(d.strftime("%m-%d") for d in care.next_dates(r.level, s.due))),
               className="small muted")]
    if r.overdue_ticket:
        sched.append(dcc.Link(t(lang, "careg.ticket", id=r.overdue_ticket), href=f"/worker/ticket/{r.overdue_ticket}"))
    parts += [html.H3(t(lang, "careg.schedule")), *sched]
    if r.personal:
        parts.append(dcc.Link(html.Button(t(lang, "careg.log_visit"), id="careg-log"),
                              href=f"/residents/{r.id}/visit", className="careg-log"))
    visits = list(reg.visits(req.user, r.id))
    names = people(board.community(), lang)
    parts.append(html.H3(t(lang, "careg.visits")))
    if not visits:
        parts.append(html.P(t(lang, "careg.no_visits"), className="muted"))
    else:
        items = []
        for v in visits:
            answers = [f"{t(lang, f'careg.check.{c}')}: {t(lang, 'careg.check.' + ('yes' if v.checks[c] else 'no'))}"
                       for c in care.CHECKS if c in v.checks]
            items.append(html.Li([html.Div(t(lang, "careg.visit_by", at=board.local(v.visited_at, "%Y-%m-%d %H:%M"),
                                                who=person(lang, v.visitor, names)), className="small muted"),
                                  *([html.Div(v.note)] if v.note else []),
                                  *([html.Div("；".join(answers) if lang == "zh" else "; ".join(answers),
                                              className="small")] if answers else []),
                                  *([html.Span(t(lang, "careg.has_photo"), className="tag")] if v.has_photo else [])]))
        parts.append(html.Ul(items, className="ticket-history", id="careg-visits"))
    changes = list(reg.level_changes(req.user, r.id))
    parts.append(html.H3(t(lang, "careg.levels")))
    if not changes:
        parts.append(html.P(t(lang, "careg.no_levels"), className="muted"))
    else:
        parts.append(html.Ul([html.Li([t(lang, "careg.level_change", at=board.local(c.at, "%Y-%m-%d %H:%M"),
                                         who=person(lang, c.by, names),
                                         from_=t(lang, f"careg.level.{c.from_level}"),
                                         to=t(lang, f"careg.level.{c.to_level}")),
                                       *([html.Div(c.reason, className="small")] if c.reason else [])])
                              for c in changes], className="ticket-history", id="careg-levels"))
    if r.personal:
        parts.append(html.Details([
            html.Summary(t(lang, "careg.change_level")),
            dcc.Dropdown(id="careg-new-level", placeholder=t(lang, "careg.new_level"), clearable=False,
                         options=[{"label": t(lang, f"careg.level.{lvl}"), "value": lvl} for lvl in care.LEVELS
                                  if lvl != r.level]),
            dcc.Textarea(id="careg-reason", placeholder=t(lang, "careg.reason"), maxLength=500, className="wide"),
            html.Button(t(lang, "careg.save_level"), id="careg-save-level"),
            html.Div(id="careg-level-msg", className="msg")], className="wt-actions", id="careg-level-form"))
    parts.append(dcc.Store(id="careg-rid", data=r.id))
    return parts


def _visit_form(req: Req, r: ResidentView) -> Any:
    lang = req.lang
    now = req.now.astimezone(r.schedule.overdue_at.tzinfo).strftime("%Y-%m-%d %H:%M")
    return html.Div(className="phone careg-visit", id="careg-visit", children=[
        dcc.Link(t(lang, "careg.back_resident"), href=f"/residents/{r.id}", className="back"),
        html.H2(t(lang, "careg.visit.title")),
        html.P([html.Strong(_name(lang, r)), f" · {r.unit} · ", _level(lang, r.level)]),
        html.Div(className="wt-actions", children=[
            html.Label([t(lang, "careg.visit.when"),
                        dcc.Input(id="careg-when", type="text", value=now, maxLength=16, className="wide",
                                  inputMode="numeric")]),
            html.Div(t(lang, "careg.visit.when_hint"), className="small muted"),
            html.Div(t(lang, "careg.visit.checks"), className="small"),
            dcc.Checklist(id="careg-checks", className="sop", value=[],
                          options=[{"label": t(lang, f"careg.check.{c}"), "value": c} for c in care.CHECKS]),
            html.Label([t(lang, "careg.visit.note"),
                        dcc.Textarea(id="careg-note", placeholder=t(lang, "careg.visit.note_hint"), maxLength=MAX_TEXT,
                                     className="wide")]),
            dcc.Upload(id="careg-photo", accept="image/jpeg,image/png,image/webp", max_size=MAX_PHOTO_BYTES,
                       children=html.Div(t(lang, "careg.visit.photo")), className="upload"),
            html.Div(id="careg-photo-note", className="small"),
            html.Button(t(lang, "careg.visit.submit"), id="careg-submit", n_clicks=0),
            html.Div(id="careg-visit-msg", className="msg")]),
        dcc.Store(id="careg-visit-rid", data=r.id)])


def _refused(lang: str, exc: ActionRefused) -> str:
    text = t(lang, f"careg.refused.{exc.code}") if exc.code.startswith("care_") else exc.code
    return text + (exc.detail if exc.code == "care_invalid" and lang == "en" else "")


# -- the care part of a ticket's page -----------------------------------------------------------------------------


def ticket_section(req: Req, board: Dashboard, tk: TicketView) -> list[Any]:
    """What the care register adds to a ticket's page: on a fire ticket, the residents with limited mobility of its
    building (top floors first; names masked as the viewer's rights require); on a care ticket, the link to the
    resident's record. Empty when there is nothing to add or the register cannot be read."""
    lang = req.lang
    reg = _register(board)
    try:
        if tk.category == "fire" and tk.building:
            people = list(reg.evacuation(req.user, tk.building))
            items: list[Any] = []
            for r in people:
                line: list[Any] = [t(lang, "careg.evac.item", floor=r.floor, unit=r.unit, name=_name(lang, r))]
                if r.personal:
                    line += [" ", dcc.Link("→", href=f"/residents/{r.id}")]
                items.append(html.Li(line))
            body: Any = html.Ul(items, className="careg-evac") if people else html.P(t(lang, "careg.evac.none"),
                                                                                     className="muted")
            return [html.Section([html.H3(t(lang, "careg.evac.title")), body], id="careg-evac")]
        if tk.category == "care" and tk.unit:
            found = reg.for_unit(req.user, tk.unit)
            if found is not None:
                return [html.P(dcc.Link(t(lang, "careg.resident_link", name=_name(lang, found), unit=found.unit),
                                        href=f"/residents/{found.id}"), id="careg-link")]
    except (DataUnavailable, ActionRefused):
        return []
    return []


# -- callbacks ----------------------------------------------------------------------------------------------------


def register_callbacks(app: Dash, board: Dashboard) -> None:
    guarded = guarded_callbacks(app, board)

    @guarded(Output("careg-body", "children"), Input("careg-level", "value"), Input("careg-grid", "value"),
             Input("version", "data"), Input("careg-clock", "n_intervals"))
    def register_body(req: Req, level: Any, grid: Any, _v: Any, _n: Any) -> Any:
        return _register_body(req, board, _choice(level, care.LEVELS), _choice(grid, _grids(req, board)))

    @guarded(Output("careg-level-msg", "children"), Output("careg-level-msg", "className"),
             Input("careg-save-level", "n_clicks"), State("careg-rid", "data"), State("careg-new-level", "value"),
             State("careg-reason", "value"), prevent_initial_call=True)
    def save_level(req: Req, clicks: Any, rid: Any, level: Any, reason: Any) -> Any:
        lang = req.lang
        if not clicks or not isinstance(rid, int):
            raise PreventUpdate
        if level not in care.LEVELS:
            return t(lang, "careg.need_level"), "msg warn"
        if not isinstance(reason, str) or not reason.strip():
            return t(lang, "careg.need_reason"), "msg warn"
        try:
            _register(board).change_level(req.user, rid, level, reason.strip()[:500])
        except ActionRefused as exc:
            return _refused(lang, exc), "msg warn"
        return t(lang, "careg.level_saved", level=t(lang, f"careg.level.{level}")), "msg ok"

    @guarded(Output("careg-photo-note", "children"), Input("careg-photo", "contents"),
             State("careg-photo", "filename"), prevent_initial_call=True)
    def photo_ready(req: Req, contents: Any, filename: Any) -> Any:
        if contents is None:
            raise PreventUpdate
        p = photo_from_upload(contents, filename)
        return t(req.lang, "careg.visit.photo_bad") if p is None else t(req.lang, "careg.visit.photo_ok",
                                                                          name=p.filename or "photo")

    @guarded(Output("careg-visit-msg", "children"), Output("careg-visit-msg", "className"),
             Output("careg-submit", "disabled"),
             Input("careg-submit", "n_clicks"), State("careg-visit-rid", "data"), State("careg-when", "value"),
             State("careg-checks", "value"), State("careg-note", "value"), State("careg-photo", "contents"),
             State("careg-photo", "filename"), prevent_initial_call=True)
    def log_visit(req: Req, clicks: Any, rid: Any, when: Any, checks: Any, note: Any, contents: Any,
                  filename: Any) -> Any:
        lang = req.lang
        if not clicks or not isinstance(rid, int):
            raise PreventUpdate
        ticked = {c for c in (checks if isinstance(checks, list) else []) if c in care.CHECKS}
        text = note.strip()[:MAX_TEXT] if isinstance(note, str) else ""
        if not ticked and not text:
            return t(lang, "careg.visit.empty"), "msg warn", False
        at = _local_time(when, board)
        if at is None or at > req.now + timedelta(minutes=5) or at < req.now - timedelta(days=14):
            return t(lang, "careg.visit.bad_time"), "msg warn", False
        photo = photo_from_upload(contents, filename) if contents else None
        if contents and photo is None:
            return t(lang, "careg.visit.photo_bad"), "msg warn", False
        reg = _register(board)
        try:
            reg.log_visit(req.user, rid, note=text, checks={c: c in ticked for c in care.CHECKS}, visited_at=at,
                          photo=photo)
            r = reg.resident(req.user, rid)
        except ActionRefused as exc:
            return _refused(lang, exc), "msg warn", False
        due = r.schedule.due.isoformat() if r is not None else ""
        saved: list[Any] = [t(lang, "careg.visit.saved", date=due), " ",
                            dcc.Link(t(lang, "careg.back_resident"), href=f"/residents/{rid}")]
        return saved, "msg ok", True  # logged once: no second visit by a double tap


def _grids(req: Req, board: Dashboard) -> tuple[str, ...]:
    return tuple(g.id for g in board.community().grids if req.user.may_see_grid(g.id))


def _choice(value: Any, allowed: tuple[str, ...]) -> str:
    return value if isinstance(value, str) and value in allowed else ""


def _local_time(value: Any, board: Dashboard) -> datetime | None:
    """The time field's value (``2026-12-02 10:30``) in the community's time zone; None if malformed."""
    if not isinstance(value, str) or len(value) > 25:
        return None
    try:
        naive = datetime.fromisoformat(value)
    except ValueError:
        return None
    if naive.tzinfo is not None:
        return None
    return naive.replace(tzinfo=board.community().tz)
