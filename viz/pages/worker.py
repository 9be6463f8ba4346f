"""One ticket (``/worker/ticket/<id>``): where, what, the SOP checklist, the 3D snapshot, the history, and
accept / feedback with a photo / resolve; for operators and supervisors (opened from the board) also
reassign, escalate, cancel and reopen. Every text comes from the catalogue (:mod:`viz.ticket_text`)."""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any
from urllib.parse import quote

from dash import ALL, Dash, Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from twin import catalogue
from viz.data import CLOSE_REASONS, ActionRefused, DataUnavailable, Photo
from viz.i18n import t
from viz.pages.care_register import ticket_section as care_section
from viz.pages.device_charts import field_label, value_text
from viz.pages.verify import verify_panel
from viz.paths import parse_path
from viz.shell import (
    ID_RE,
    MAX_PHOTO_BYTES,
    MAX_TEXT,
    PHOTO_TYPES,
    SUPERVISORS,
    Dashboard,
    Req,
    guarded_callbacks,
    notice,
    unavailable_text,
)
from viz.ticket_text import alarm_text, outcome_text, people, person, refusal, step_text, ticket_title
from viz.widgets import may_see_ticket, place_text, priority_label, sla_cell, status_label, with_data

SUP_ACTIONS = ("reassign", "escalate", "cancel", "reopen")
# which dispatch actions a ticket's state allows (twin.tickets.lifecycle: reopen only once resolved)
_OPEN = frozenset({"accepted", "dispatched", "handling", "escalated", "reopened"})
_ALLOWED = {"reassign": _OPEN, "escalate": _OPEN, "cancel": _OPEN, "reopen": frozenset({"feedback", "evaluated"}),
            "wt-accept": frozenset({"dispatched", "escalated", "reopened"}),
            "wt-feedback": frozenset({"handling", "escalated"}), "wt-resolve": frozenset({"handling", "escalated"})}

# -- layout ----------------------------------------------------------------------------------------------


def worker_ticket_page(req: Req, board: Dashboard, ticket_id: str | None = None) -> html.Div:
    """The frame of one ticket; the ``wt-body`` callback fills in the ticket itself."""
    ticket_id = ticket_id or ""
    lang = req.lang
    staff = req.user.role in SUPERVISORS
    return html.Div(className="phone", children=[
        dcc.Link(t(lang, "tk.back_board"), href="/tickets", className="back", id="wt-back") if staff
        else dcc.Link(t(lang, "worker.back"), href="/worker", className="back", id="wt-back"),
        html.Div(id="wt-body"),
        html.Div(className="wt-actions", children=[
            html.Button(t(lang, "worker.accept"), id="wt-accept", className="primary wide"),
            dcc.Textarea(id="wt-note", placeholder=t(lang, "worker.feedback_note"), maxLength=MAX_TEXT,
                         className="wide"),
            dcc.Upload(id="wt-photo", accept="image/jpeg,image/png,image/webp", max_size=MAX_PHOTO_BYTES,
                       children=html.Div(t(lang, "worker.photo")), className="upload"),
            html.Div(id="wt-photo-note", className="small"),
            dcc.Dropdown(id="wt-reason", placeholder=t(lang, "worker.reason"), clearable=True, className="wide",
                         options=[{"label": t(lang, "worker.reason_none"), "value": ""}]
                         + [{"label": t(lang, f"reason.{r}"), "value": r} for r in CLOSE_REASONS]),
            html.Div([html.Button(t(lang, "worker.feedback"), id="wt-feedback"),
                      html.Button(t(lang, "worker.resolve"), id="wt-resolve", className="primary")],
                     className="buttons"),
            html.Div(id="wt-msg", className="msg"),
        ]),
        *([verify_panel(req), dispatch_panel(req, board)] if staff else []),  # 核查: viz/pages/verify.py
        dcc.Store(id="wt-bump"),
        dcc.Interval(id="wt-clock", interval=30_000),
        html.Span(ticket_id, id="wt-id", hidden=True),
    ])


def dispatch_panel(req: Req, board: Dashboard) -> html.Div:
    """Operators' and supervisors' actions: reassign (to a worker of their grids), escalate, cancel, reopen.
    Which buttons are enabled follows the ticket's state (the body callback); the callback checks the role."""
    lang = req.lang
    community = board.community()
    options = [{"label": t(lang, "tk.sup.worker_option", name=w.name, grid=g.name), "value": w.id}
               for g in community.grids if req.user.may_see_grid(g.id) for w in g.workers]
    return html.Div(className="wt-actions wt-sup", id="wt-sup", children=[
        html.H3(t(lang, "tk.sup.title")),
        dcc.Dropdown(id={"type": "wt-sup-in", "name": "assignee"}, options=options, clearable=True,
                     className="wide sup-assignee",
                     placeholder=t(lang, "tk.sup.assignee")),
        dcc.Textarea(id={"type": "wt-sup-in", "name": "reason"}, placeholder=t(lang, "tk.sup.reason"),
                     maxLength=MAX_TEXT, className="wide sup-reason"),
        dcc.Dropdown(id={"type": "wt-sup-in", "name": "code"}, clearable=True, className="wide sup-code",
                     placeholder=t(lang, "tk.sup.code"),
                     options=[{"label": t(lang, f"reason.{r}"), "value": r} for r in CLOSE_REASONS]),
        html.Div([html.Button(t(lang, f"tk.sup.{a}"), id={"type": "wt-sup-act", "action": a}, n_clicks=0,
                              disabled=True, className=f"sup-{a}" + (" danger" if a == "cancel" else ""))
                  for a in SUP_ACTIONS], className="buttons"),
        html.Div(id={"type": "wt-sup-msg", "n": 0}, className="msg"),
    ])


def _dispatch(req: Req, board: Dashboard, action: str, path: str | None, form: dict[str, Any]) -> tuple[str, bool]:
    """Validate the form and do a dispatch action through the data source; (message, succeeded)."""
    lang = req.lang
    kind, tid = parse_path(path)
    if kind != "wticket" or tid is None or not ID_RE.match(tid):
        return t(lang, "refused.bad_input"), False
    reason = form.get("reason")
    text = reason.strip()[:MAX_TEXT] if isinstance(reason, str) else ""
    if not text:
        return t(lang, "tk.sup.need_reason"), False
    names = people(board.community(), lang)
    data = board.data
    try:
        if action == "reassign":
            who = form.get("assignee")
            if not isinstance(who, str) or not who:
                return t(lang, "tk.sup.need_worker"), False
            if who not in names:
                return t(lang, "tk.sup.bad_worker"), False
            current = data.ticket(req.user, tid)
            if current is not None and current.assignee == who:
                return t(lang, "tk.sup.same_worker", name=names[who]), False
            data.reassign_ticket(req.user, tid, who, text)
            return t(lang, "tk.sup.done.reassign", name=person(lang, who, names)), True
        if action == "escalate":
            data.escalate_ticket(req.user, tid, text)
        elif action == "cancel":
            code = form.get("code")
            data.cancel_ticket(req.user, tid, text, code if code in CLOSE_REASONS else None)
        else:
            data.reopen_ticket(req.user, tid, text)
    except ActionRefused as exc:
        return refusal(req, board, exc, action, tid), False
    except DataUnavailable as exc:
        return unavailable_text(lang, exc), False
    return t(lang, f"tk.sup.done.{action}"), True


# -- callbacks -------------------------------------------------------------------------------------------


def register_callbacks(app: Dash, board: Dashboard) -> None:
    """The ticket body, the photo check, and the worker's actions."""
    data = board.data
    guarded = guarded_callbacks(app, board)

    @guarded(Output("wt-body", "children"), Output({"type": "wt-sup-act", "action": ALL}, "disabled"),
             Output("wt-accept", "disabled"), Output("wt-feedback", "disabled"), Output("wt-resolve", "disabled"),
             Input("version", "data"), Input("wt-bump", "data"), Input("wt-clock", "n_intervals"),
             State("url", "pathname"))
    def worker_ticket(req: Req, _v: Any, _b: Any, _n: Any, path: str | None) -> Any:
        kind, tid = parse_path(path)
        if kind != "wticket" or tid is None:
            raise PreventUpdate
        body, status = _ticket_body(req, board, tid)
        actions = [o["id"]["action"] for o in ctx.outputs_list[1]]

        def off(a: str) -> bool:
            return status is None or status not in _ALLOWED.get(a, ())

        return body, [off(a) for a in actions], off("wt-accept"), off("wt-feedback"), off("wt-resolve")

    msg = {"type": "wt-sup-msg", "n": ALL}

    @guarded(Output(msg, "children"), Output(msg, "className"),
             Output({"type": "wt-sup-in", "name": ALL}, "value"), Output("wt-bump", "data", allow_duplicate=True),
             Input({"type": "wt-sup-act", "action": ALL}, "n_clicks"),
             State({"type": "wt-sup-in", "name": ALL}, "value"),
             State("url", "pathname"), roles=SUPERVISORS, prevent_initial_call=True)
    def dispatch_action(req: Req, _clicks: Any, values: Any, path: str | None) -> Any:
        trigger = ctx.triggered_id
        if (req.user.role not in SUPERVISORS or not isinstance(trigger, dict)
                or trigger.get("action") not in SUP_ACTIONS or not ctx.triggered[0].get("value")):
            raise PreventUpdate
        names = [o["id"]["name"] for o in ctx.states_list[0]]
        form = dict(zip(names, values if isinstance(values, list) else [], strict=False))
        n_msg = len(ctx.outputs_list[0])
        msg, ok = _dispatch(req, board, str(trigger["action"]), path, form)
        cls = "msg ok" if ok else "msg warn"
        cleared = ["" if n == "reason" and ok else no_update for n in names]
        return [msg] * n_msg, [cls] * n_msg, cleared, time.time() if ok else no_update

    @guarded(Output("wt-photo-note", "children"), Input("wt-photo", "contents"), State("wt-photo", "filename"))
    def photo_ready(req: Req, contents: Any, filename: Any) -> Any:
        if not contents:
            raise PreventUpdate
        photo = photo_from_upload(contents, filename)
        if photo is None:
            return html.Span(t(req.lang, "worker.photo_bad", mb=MAX_PHOTO_BYTES // 2**20), className="msg warn")
        return t(req.lang, "worker.photo_ready", name=photo.filename or "photo")

    @guarded(Output("wt-msg", "children"), Output("wt-msg", "className"), Output("wt-bump", "data"),
             Output("wt-note", "value"),
             Input("wt-accept", "n_clicks"), Input("wt-feedback", "n_clicks"), Input("wt-resolve", "n_clicks"),
             State("url", "pathname"), State("wt-note", "value"), State("wt-photo", "contents"),
             State("wt-photo", "filename"), State("wt-reason", "value"))
    def worker_action(req: Req, _a: Any, _f: Any, _r: Any, path: str | None, note: Any, contents: Any,
                      filename: Any, reason: Any = None) -> Any:
        action = ctx.triggered_id
        if action not in ("wt-accept", "wt-feedback", "wt-resolve") or not ctx.triggered[0].get("value"):
            raise PreventUpdate
        kind, tid = parse_path(path)
        lang = req.lang
        if kind != "wticket" or tid is None or not ID_RE.match(tid):
            return t(lang, "refused.bad_input"), "msg warn", no_update, no_update
        text = note.strip()[:MAX_TEXT] if isinstance(note, str) else ""
        try:
            if action == "wt-accept":
                data.accept_ticket(req.user, tid)
                msg = t(lang, "worker.accepted")
            elif action == "wt-feedback":
                photo = photo_from_upload(contents, filename) if contents else None
                if contents and photo is None:
                    return (t(lang, "worker.photo_bad", mb=MAX_PHOTO_BYTES // 2**20), "msg warn", no_update,
                            no_update)
                if not text and photo is None:
                    return t(lang, "worker.note_needed"), "msg warn", no_update, no_update
                data.ticket_feedback(req.user, tid, text, photo)
                msg = t(lang, "worker.feedback_sent")
            else:
                if not text:
                    return t(lang, "worker.note_needed"), "msg warn", no_update, no_update
                data.resolve_ticket(req.user, tid, text, reason if reason in CLOSE_REASONS else None)
                msg = t(lang, "worker.resolved")
        except ActionRefused as exc:
            verb = {"wt-accept": "accept", "wt-feedback": "feedback"}.get(action, "resolve")
            return refusal(req, board, exc, verb, tid), "msg warn", no_update, no_update
        except DataUnavailable as exc:
            return unavailable_text(lang, exc), "msg warn", no_update, no_update
        return msg, "msg ok", time.time(), ""


# -- content ---------------------------------------------------------------------------------------------


def _ticket_body(req: Req, board: Dashboard, ticket_id: str) -> tuple[Any, str | None]:
    """The ticket's content and its state (None: no ticket to show)."""
    lang = req.lang
    if not ID_RE.match(ticket_id):
        return notice(t(lang, "err.unknown_ticket", id=ticket_id[:60]), req, "unknown-ticket"), None
    try:
        tk = board.data.ticket(req.user, ticket_id)
    except DataUnavailable as exc:
        return html.P(unavailable_text(lang, exc), className="msg warn", id="tickets-unavailable"), None
    except ActionRefused:
        tk = None
    if tk is None or not may_see_ticket(req.user, board, tk):
        return notice(t(lang, "err.unknown_ticket", id=ticket_id), req, "unknown-ticket"), None
    names = people(board.community(), lang)
    parts: list[Any] = [
        html.H2([html.Span(f"#{tk.id} ", className="muted"), ticket_title(req, board, tk)], id="wt-title"),
        html.Div([html.Span(priority_label(lang, tk.priority), className=f"prio prio-{tk.priority}"),
                  with_data(html.Span(status_label(lang, tk.status), className="status", id="wt-status"),
                        status=tk.status),
                  sla_cell(req, tk)], className="tags"),
        html.P(t(lang, "tk.assignee", name=person(lang, tk.assignee, names) if tk.assignee
                 else t(lang, "tickets.unassigned")), className="small", id="wt-assignee"),
    ]
    if tk.escalated_to:
        parts.append(html.P(t(lang, "tk.escalated_to", name=person(lang, tk.escalated_to, names)), className="small"))
    if not tk.open:
        parts += [html.H3(t(lang, "tk.outcome")),
                  with_data(html.P(outcome_text(lang, tk, board), id="wt-outcome"), outcome=tk.status)]
        if tk.rating_comment:
            parts.append(html.P(tk.rating_comment, className="small"))
    parts += [html.H3(t(lang, "worker.where")),
              html.P(place_text(req, board, tk.building, tk.floor, tk.device, tk.unit))]
    parts += care_section(req, board, tk)  # fire: who to evacuate first; care: the resident's record
    if tk.description and not tk.alarms:  # a report's own words; an alarm's is the device's raw detail
        parts += [html.H3(t(lang, "worker.what")), html.P(tk.description)]
    if tk.alarms:
        parts += [html.H3(t(lang, "worker.alarms")),
                  html.Ul([html.Li(f"{board.local(a.first_at)} · {alarm_text(req, board, a)}"
                                   f"{f' ×{a.count}' if a.count > 1 else ''}"
                                   f" · {t(lang, 'worker.alarm_active' if a.active else 'worker.alarm_cleared')}"
                                   f"{' · ' + t(lang, 'worker.life_safety') if a.life_safety else ''}",
                                   className="alarm-active" if a.active and a.life_safety else None)
                           for a in tk.alarms], className="alarms", id="wt-alarms")]
    if tk.latest:
        parts += [html.H3(t(lang, "worker.latest")),
                  html.Ul([html.Li(reading_text(lang, board, k, v)) for k, v in sorted(tk.latest.items())])]
    parts.append(html.H3(t(lang, "worker.sop")))
    sop = tk.sop_en if lang == "en" and len(tk.sop_en) == len(tk.sop) else tk.sop
    if sop:
        parts.append(dcc.Checklist(id="wt-sop", options=[{"label": s, "value": str(n)} for n, s in enumerate(sop)],
                                   value=[], className="sop"))
    else:
        parts.append(html.P(t(lang, "worker.no_sop"), className="muted"))
    parts.append(html.H3(t(lang, "worker.snapshot")))
    if tk.has_snapshot:
        parts.append(html.Img(src=f"/media/tickets/{quote(tk.id)}/snapshot.png", className="snapshot",
                              alt=t(lang, "worker.snapshot")))
    else:
        parts.append(html.P(t(lang, "worker.no_snapshot"), className="muted"))
    if tk.history:
        parts += [html.H3(t(lang, "worker.history")),
                  html.Ul([with_data(html.Li([step_text(req, board, tk, s, names),
                                              *([html.Img(src=f"/media/photos/{quote(s.photo_id)}", className="photo")]
                                                if s.photo_id else [])]), action=s.action)
                           for s in tk.history], className="ticket-history", id="wt-history")]
    return parts, tk.status


def reading_text(lang: str, board: Dashboard, key: str, value: float) -> str:
    """A latest reading (``key``: "device field") with the field's name and unit, e.g.
    ``B2-B1-GAS 可燃气体浓度: 60 %LEL``."""
    device, _, name = key.rpartition(" ")
    dev = board.community().device(device) if device else None
    spec = catalogue.KINDS.get(dev.kind) if dev is not None else None
    f = next((x for x in spec.fields if x.name == name), None) if spec is not None else None
    if f is None:
        return f"{key}: {value:g}"
    return f"{device} {field_label(lang, f, unit=False)}: {value_text(lang, f, value)}"


def photo_from_upload(contents: Any, filename: Any) -> Photo | None:
    """A ``data:image/...;base64,`` upload as a :class:`Photo`, or None if it is not an acceptable image."""
    if not isinstance(contents, str) or not contents.startswith("data:") or ";base64," not in contents:
        return None
    head, b64 = contents.split(";base64,", 1)
    ctype = head[5:].lower()
    if ctype not in PHOTO_TYPES or len(b64) > MAX_PHOTO_BYTES * 4 // 3 + 8:
        return None
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        return None
    magic = {"image/jpeg": (b"\xff\xd8\xff",), "image/png": (b"\x89PNG\r\n\x1a\n",), "image/webp": (b"RIFF",)}
    if len(raw) > MAX_PHOTO_BYTES or not raw.startswith(magic[ctype]):
        return None
    name = filename if isinstance(filename, str) else ""
    return Photo(raw, ctype, name[:120])
