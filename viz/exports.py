"""CSV downloads of the history and audit pages' current filter (Flask routes beside the dashboard):
``/export/history.csv`` (incidents or alarms, ``kind=``) and ``/export/audit.csv``, with the pages' parameters.

Behind the same session and role check as the pages: no session is sent to the sign-in page by the page guard
(:mod:`viz.security`), a role that may not open the page gets 403, a bad parameter 400 with the reason in the
person's language (plain text), the database down 503. The file is UTF-8 with a BOM (Excel opens Chinese
correctly), times in the community's local time, users by name, and cells that a spreadsheet would run as a
formula (= + - @) start with a quote (:func:`viz.history_model.safe_cell`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

import flask

from twin.people import Role
from viz.data import DataUnavailable
from viz.history_model import (
    MAX_EXPORT_ROWS,
    AlarmRow,
    AuditEntry,
    AuditQuery,
    HistoryQuery,
    IncidentRow,
    QueryError,
    audit_query,
    csv_text,
    for_export,
    history_query,
)
from viz.history_view import error_text, label, who
from viz.i18n import rule_label, t
from viz.shell import OPERATORS, SESSION_COOKIE, SUPERVISORS, UNAVAILABLE_RETRY_S, Dashboard, Req, current_lang
from viz.widgets import place_text, priority_label, status_label

TIME = "%Y-%m-%d %H:%M:%S"


def _text(status: int, body: str, headers: Mapping[str, str] | None = None) -> flask.Response:
    return flask.Response(body + "\n", status=status, mimetype="text/plain", headers=dict(headers or {}))


def register_routes(server: flask.Flask, board: Dashboard) -> None:
    """The two CSV routes (called once by the history page's ``register_callbacks``)."""

    def asker(roles: frozenset[Role]) -> Req | flask.Response:
        lang = current_lang()
        try:
            user = board.user_for(flask.request.cookies.get(SESSION_COOKIE))
        except DataUnavailable:
            return _text(503, t(lang, "err.service_down"), {"Retry-After": str(UNAVAILABLE_RETRY_S)})
        if user is None:
            return _text(401, t(lang, "hist.err.signed_out"))
        if user.role not in roles:
            return _text(403, t(lang, "hist.err.forbidden"))
        return Req(user, lang, board.clock())

    def send(req: Req, name: str, text: str) -> flask.Response:
        stamp = board.local(req.now, "%Y%m%d-%H%M")
        filename = f"{name}-{stamp}.csv"
        return flask.Response(text.encode("utf-8"), mimetype="text/csv", headers={
            "Content-Disposition": f"attachment; filename=\"export-{stamp}.csv\"; filename*=UTF-8''{quote(filename)}",
            "Cache-Control": "no-store"})

    @server.get("/export/history.csv")
    def _history_csv() -> flask.Response:
        req = asker(SUPERVISORS)
        if isinstance(req, flask.Response):
            return req
        grids = None if req.user.sees_everything() else tuple(req.user.grids)
        try:
            q = for_export(history_query(flask.request.args, req.now, board.tz, grids))
        except QueryError as exc:
            return _text(400, error_text(req.lang, exc))
        assert isinstance(q, HistoryQuery)
        try:
            hist = board.data.history()
            got = hist.incidents(q) if q.kind == "incidents" else hist.alarm_history(q)
            names = hist.people()
        except DataUnavailable:
            return _text(503, t(req.lang, "err.service_down"), {"Retry-After": str(UNAVAILABLE_RETRY_S)})
        lang = req.lang
        cols: tuple[str, ...]
        if q.kind == "incidents":
            cols = ("id", "created", "title", "category", "severity", "priority", "state", "place", "assignee",
                    "resolved", "alarms")
            rows: Iterable[list[Any]] = (_incident(req, board, r, names) for r in got.rows
                                         if isinstance(r, IncidentRow))
        else:
            cols = ("raised", "rule", "severity", "state", "place", "device", "cleared", "acked", "count", "ticket")
            rows = (_alarm(req, board, r, names) for r in got.rows if isinstance(r, AlarmRow))
        text = csv_text([t(lang, f"hist.col.{c}") for c in cols], rows, _cut(lang, got.total))
        return send(req, t(lang, f"hist.file.{q.kind}"), text)

    @server.get("/export/audit.csv")
    def _audit_csv() -> flask.Response:
        req = asker(OPERATORS)
        if isinstance(req, flask.Response):
            return req
        try:
            q = for_export(audit_query(flask.request.args, req.now, board.tz))
        except QueryError as exc:
            return _text(400, error_text(req.lang, exc))
        assert isinstance(q, AuditQuery)
        try:
            hist = board.data.history()
            got = hist.audit(q)
            names = hist.people()
        except DataUnavailable:
            return _text(503, t(req.lang, "err.service_down"), {"Retry-After": str(UNAVAILABLE_RETRY_S)})
        lang = req.lang
        from viz.pages.audit import COLS, detail_text, target_text

        rows = ([board.local(e.at, TIME), who(lang, e.user, names), label(lang, "audit.action.", e.action),
                 target_text(lang, e), detail_text(lang, e)] for e in got.rows if isinstance(e, AuditEntry))
        text = csv_text([t(lang, f"audit.col.{c}") for c in COLS], rows, _cut(lang, got.total))
        return send(req, t(lang, "hist.file.audit"), text)


def _cut(lang: str, total: int) -> Any:
    return lambda: t(lang, "hist.truncated", n=MAX_EXPORT_ROWS) if total > MAX_EXPORT_ROWS else None


def _local(board: Dashboard, dt: datetime | None) -> str:
    return board.local(dt, TIME)


def _incident(req: Req, board: Dashboard, r: IncidentRow, names: Mapping[str, str]) -> list[Any]:
    lang = req.lang
    return [r.id, _local(board, r.created_at), r.title, label(lang, "hist.cat.", r.category),
            label(lang, "severity.", r.severity) if r.severity else "", priority_label(lang, r.priority),
            status_label(lang, r.state), place_text(req, board, r.building, r.floor, r.device),
            who(lang, r.assignee, names) if r.assignee else "", _local(board, r.resolved_at), r.alarms]


def _alarm(req: Req, board: Dashboard, r: AlarmRow, names: Mapping[str, str]) -> list[Any]:
    lang = req.lang
    return [_local(board, r.raised_at), rule_label(lang, r.rule_name or r.rule), label(lang, "severity.", r.severity),
            t(lang, f"hist.state.{r.state}"), place_text(req, board, r.building, r.floor, None), r.device or "",
            _local(board, r.cleared_at), who(lang, r.acked_by, names) if r.acked_by else "", r.count,
            r.ticket if r.ticket is not None else ""]
