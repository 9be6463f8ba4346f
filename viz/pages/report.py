"""One-click report (``/report``, 一键上报) for signed-in staff on a phone: what no sensor sees (a blocked fire lane,
a broken corridor light, objects thrown from height, a resident in need) with its category, the building and floor
picked from the lists, an optional photo and a note; it becomes a ticket through the same dispatch, SLA and rating
loop as an alarm's. Supervisors and operators also see the resolved reports waiting for their check (核查).

Categories come from ``twin/report_categories.yaml`` through the data source (``DashboardData.reports()``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from dash import Dash, Input, Output, State, dcc, html, no_update
from dash.exceptions import PreventUpdate

from viz.data import ActionRefused, DataUnavailable
from viz.i18n import floor_label, t
from viz.pages.verify import refused_text
from viz.report_model import StaffReport, report_title
from viz.shell import ID_RE, MAX_PHOTO_BYTES, MAX_TEXT, SUPERVISORS, Dashboard, Req, guarded_callbacks, unavailable_text
from viz.widgets import photo_from_upload

MAX_UNIT = 32


def report_page(req: Req, board: Dashboard, _arg: str | None = None) -> html.Div:
    """The report form; supervisors and operators get the list of reports to check above it."""
    lang = req.lang
    cats = board.data.reports().categories()
    community = board.community()
    options = [{"label": html.Span([c.label(lang)] + (
        [html.Span(t(lang, "report.verify_tag"), className="small muted rp-verify-tag")] if c.verify else [])),
        "value": c.id} for c in cats]
    checks = [html.Div(id="rp-checks", className="wt-actions")] if req.user.role in SUPERVISORS else []
    return html.Div(className="phone rp-page", children=[
        html.H2(t(lang, "report.title")),
        html.P(t(lang, "report.lead"), className="small muted"),
        *checks,
        html.Div(className="wt-actions rp-form", children=[
            html.Label(t(lang, "report.category"), htmlFor="rp-category", className="rp-label"),
            dcc.RadioItems(id="rp-category", options=options, className="rp-cats", inputClassName="rp-cat-input"),
            html.Label(t(lang, "report.building"), htmlFor="rp-building", className="rp-label"),
            dcc.Dropdown(id="rp-building", clearable=False, searchable=False, className="wide",
                         options=[{"label": b.name, "value": b.id} for b in community.buildings]),
            html.Label(t(lang, "report.floor"), htmlFor="rp-floor", className="rp-label"),
            dcc.Dropdown(id="rp-floor", clearable=True, searchable=False, className="wide",
                         placeholder=t(lang, "report.any_floor")),
            html.Label(t(lang, "report.unit"), htmlFor="rp-unit", className="rp-label"),
            dcc.Input(id="rp-unit", maxLength=MAX_UNIT, className="wide"),
            html.Label(t(lang, "report.text"), htmlFor="rp-text", className="rp-label"),
            dcc.Textarea(id="rp-text", maxLength=MAX_TEXT, className="wide", placeholder=t(lang, "report.text_hint")),
            dcc.Upload(id="rp-photo", accept="image/jpeg,image/png,image/webp", max_size=MAX_PHOTO_BYTES,
                       children=html.Div(t(lang, "report.photo")), className="upload"),
            html.Div(id="rp-photo-note", className="small"),
            html.Button(t(lang, "report.submit"), id="rp-submit", className="primary wide"),
            html.Div(id="rp-msg", className="msg", role="status"),
        ]),
    ])


def register_callbacks(app: Dash, board: Dashboard) -> None:
    guarded = guarded_callbacks(app, board)

    @guarded(Output("rp-floor", "options"), Output("rp-floor", "value"), Input("rp-building", "value"))
    def floors(req: Req, building: Any) -> Any:
        b = board.community().building(building) if isinstance(building, str) and ID_RE.match(building) else None
        if b is None:
            return [], None
        return [{"label": floor_label(req.lang, f), "value": f} for f in b.floors], None

    @guarded(Output("rp-photo-note", "children"), Input("rp-photo", "contents"), State("rp-photo", "filename"))
    def photo_note(req: Req, contents: Any, filename: Any) -> Any:
        if not contents:
            raise PreventUpdate
        if photo_from_upload(contents, filename) is None:
            return html.Span(t(req.lang, "worker.photo_bad", mb=MAX_PHOTO_BYTES // (1024 * 1024)), className="warn")
        return t(req.lang, "worker.photo_ready", name=str(filename or "")[:60])

    @guarded(Output("rp-msg", "children"), Output("rp-text", "value"), Output("rp-photo", "contents"),
             Output("rp-photo-note", "children", allow_duplicate=True),
             Input("rp-submit", "n_clicks"), State("rp-category", "value"), State("rp-building", "value"),
             State("rp-floor", "value"), State("rp-unit", "value"), State("rp-text", "value"),
             State("rp-photo", "contents"), State("rp-photo", "filename"), prevent_initial_call=True)
    def send(req: Req, clicks: Any, category: Any, building: Any, floor: Any, unit: Any, text: Any, contents: Any,
             filename: Any) -> Any:
        if not clicks:
            raise PreventUpdate
        lang = req.lang
        problem = _problem(lang, category, building, text)
        if problem:
            return html.Span(problem, className="warn", id="rp-error"), no_update, no_update, no_update
        photo = photo_from_upload(contents, filename) if contents else None
        if contents and photo is None:
            return (html.Span(t(lang, "worker.photo_bad", mb=MAX_PHOTO_BYTES // (1024 * 1024)), className="warn",
                              id="rp-error"), no_update, no_update, no_update)
        report = StaffReport(str(category), str(building), floor if isinstance(floor, int) else None,
                             unit if isinstance(unit, str) else "", str(text), photo)
        try:
            ticket_id = board.data.reports().submit(req.user, report)
        except ActionRefused as exc:
            return html.Span(refused_text(lang, exc), className="warn", id="rp-error"), no_update, no_update, no_update
        except DataUnavailable as exc:
            return (html.Span(unavailable_text(lang, exc), className="warn", id="rp-error"), no_update, no_update,
                    no_update)
        sent = html.Span([t(lang, "report.sent", id=ticket_id), " ",
                          dcc.Link(t(lang, "report.open_ticket"), href=f"/worker/ticket/{quote(ticket_id)}",
                                   id="rp-ticket-link")], className="ok", id="rp-sent")
        return sent, "", None, ""

    @guarded(Output("rp-checks", "children"), Input("version", "data"), Input("url", "pathname"), roles=SUPERVISORS)
    def checks(req: Req, _v: Any, _path: Any) -> Any:
        lang = req.lang
        try:
            items = board.data.reports().pending_checks(req.user)
        except DataUnavailable as exc:
            return html.P(unavailable_text(lang, exc), className="msg warn")
        community = board.community()
        rows: list[Any] = []
        for it in items:
            b = community.building(it.building) if it.building else None
            place = " ".join(x for x in ((b.name if b else it.building or ""),
                                         floor_label(lang, it.floor) if it.floor is not None else "") if x)
            title = report_title(lang, it.title) or it.title
            rows.append(dcc.Link([html.Div(f"#{it.ticket_id} {title}", className="title"),
                                  html.Div(f"{place} · {board.local(it.resolved_at)}", className="small")],
                                 href=f"/worker/ticket/{quote(it.ticket_id)}", className="ticket-card rp-check"))
        return [html.H3(t(lang, "verify.list")),
                *(rows or [html.P(t(lang, "verify.none"), className="small muted", id="rp-no-checks")])]


def _problem(lang: str, category: Any, building: Any, text: Any) -> str | None:
    if not isinstance(category, str) or not category:
        return t(lang, "report.need_category")
    if not isinstance(building, str) or not building:
        return t(lang, "report.need_building")
    if not isinstance(text, str) or not text.strip():
        return t(lang, "report.need_text")
    return None

