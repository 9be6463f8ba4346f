"""Which page a path shows: a table from page kind (:func:`viz.paths.parse_path`) to the page's builder,
the router callback that renders it into the frame, and the poll that notices changes and expired
sessions."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, quote

from dash import Dash, Input, Output, State, no_update
from dash.exceptions import PreventUpdate

from viz import live
from viz.data import DataUnavailable
from viz.i18n import t
from viz.pages import (
    analytics,
    assistant,
    audit,
    care,
    care_register,
    control,
    device,
    devices,
    history,
    hotspots,
    incident,
    login,
    outcomes,
    patrols,
    report,
    tickets,
    worker,
)
from viz.paths import parse_path
from viz.shell import PAGE_ROLES, Dashboard, Req, current_lang, notice, topbar, unavailable_text

log = logging.getLogger(__name__)

PageBuilder = Callable[[Req, Dashboard, str | None], Any]

PAGES: Mapping[str, PageBuilder] = {
    "control": control.control_page,
    "device": device.device_page,
    "devices": devices.inventory_page,
    "tickets": tickets.board_page,
    "kpi": analytics.kpi_page,
    "outcomes": outcomes.outcomes_page,  # 成效分析: outcomes against baseline and target
    "hotspots": hotspots.hotspots_page,
    "care": care.care_page,
    "worker": tickets.my_tickets_page,
    "wticket": worker.worker_ticket_page,
    "history": history.history_page,
    "incident": incident.incident_page,
    "audit": audit.audit_page,
    "report": report.report_page,
    "residents": care_register.register_page,
    "resident": care_register.resident_page,
    "patrols": patrols.patrols_page,  # supervisors: plans, status per grid, trails
    "patrol": patrols.patrol_page,  # the worker's phone: due checkpoints, a QR code's check-in
    "assistant": assistant.assistant_page,  # 知识助手: ask, top answers, recent handoffs to a person
}


def render_page(kind: str, arg: str | None, req: Req, board: Dashboard) -> Any:
    """The page of ``kind`` (``arg``: what the path names, e.g. a device id); unknown kinds: a notice."""
    builder = PAGES.get(kind)
    if builder is None:
        return notice(t(req.lang, "err.not_found_page", path=arg or ""), req, "not-found")
    return builder(req, board, arg)


def register_callbacks(app: Dash, board: Dashboard) -> None:
    """The frame's callbacks: the router (top bar and page for the URL), the poll and the live bump."""
    data = board.data
    live.register_callbacks(app)

    @app.callback(Output("topbar", "children"), Output("page", "children"), Output("page-kind", "data"),
                  Input("url", "pathname"), Input("url", "search"), State("page-kind", "data"))
    def route(path: str | None, search: str | None, current: str | None) -> Any:
        kind, arg = parse_path(path)
        query = parse_qs((search or "").lstrip("?"))
        lang = current_lang()
        if kind == "login":
            return [], login.login_page(lang, query), "login"
        try:
            req = board.request()
        except DataUnavailable:
            return [], notice(t(lang, "err.service_down"), None, "unavailable"), "error"
        if req is None:
            return [], login.login_page(lang, {"expired": ["1"], "next": [path or "/"]}), "login"
        try:
            top = topbar(req, path or "/", board)
            if kind == "control" and current == "control":
                return top, no_update, "control"  # building <-> overview: the scene callback redraws
            roles = PAGE_ROLES.get(kind)
            if roles is not None and req.user.role not in roles:
                return top, notice(t(lang, "err.forbidden", role=t(lang, "role." + req.user.role.value)),
                                   req, "forbidden"), "forbidden"
            page = render_page(kind, arg, req, board)
        except DataUnavailable as exc:  # the data source has logged what went wrong
            return [], notice(unavailable_text(lang, exc), req, "unavailable"), "error"
        except Exception:
            log.exception("rendering %s failed", path)
            return [], notice(t(lang, "err.internal"), None, "internal"), "error"
        return top, page, kind

    @app.callback(Output("version", "data"), Output("redirect", "href"), Output("db-version", "data"),
                  Input("poll", "n_intervals"), State("db-version", "data"), State("url", "pathname"),
                  State("url", "search"))
    def poll(_n: int | None, current: str | None, path: str | None, _search: str | None) -> Any:
        # "current": what this poll last read; live.js bumps "version" on pushed changes, so a poll that finds
        # the database where it was redraws nothing even though "version" moved on
        if parse_path(path)[0] == "login":
            raise PreventUpdate
        try:
            signed_in = board.request() is not None
        except DataUnavailable:  # the database is down: keep the screen (and the session) until it is back
            raise PreventUpdate from None
        if not signed_in:
            return no_update, f"/login?expired=1&next={quote(path or '/')}", no_update
        try:
            v = data.version()
        except DataUnavailable:  # the database is down: nothing new to show (the data source logs it)
            raise PreventUpdate from None
        except Exception:
            log.exception("version poll failed")
            raise PreventUpdate from None
        if v == current:
            raise PreventUpdate
        return v, no_update, v
