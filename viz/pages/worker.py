"""One ticket (``/worker/ticket/<id>``), phone first: the progress (受理 → 到场 → 反馈 → 办结) and the one next action
on top (:mod:`viz.pages.worker_steps`), the other actions folded under it (feedback with a photo, resolve with a
reason), the SOP's call buttons, then where, what, the readings, the SOP checklist (ticks saved as they are made),
the 3D snapshot and the history; 到场 sends the phone's position if the browser gives it. For operators and
supervisors (opened from the board) also reassign, escalate, cancel and reopen. Every text comes from the
catalogue (:mod:`viz.ticket_text`)."""

from __future__ import annotations

import time
from typing import Any, NamedTuple, cast
from urllib.parse import quote

from dash import ALL, Dash, Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from twin import catalogue
from viz.data import CLOSE_REASONS, ActionRefused, DataUnavailable, TicketView
from viz.i18n import t
from viz.pages.assistant import knowledge_box
from viz.pages.care_register import ticket_section as care_section
from viz.pages.device_charts import field_label, value_text
from viz.pages.patrols import nearest_section
from viz.pages.verify import verify_panel
from viz.pages.worker_steps import call_buttons, history_item, next_step, position_from_browser, stepper
from viz.paths import parse_path
from viz.shell import (
    ID_RE,
    MAX_PHOTO_BYTES,
    MAX_TEXT,
    SUPERVISORS,
    Dashboard,
    Req,
    guarded_callbacks,
    notice,
    unavailable_text,
)
from viz.ticket_text import alarm_text, outcome_text, people, person, refusal, ticket_title
from viz.widgets import (
    may_see_ticket,
    photo_from_upload,
    place_text,
    priority_label,
    sla_cell,
    status_label,
    with_data,
)

SUP_ACTIONS = ("reassign", "escalate", "cancel", "reopen")
# which dispatch actions a ticket's state allows (twin.tickets.lifecycle: reopen only once resolved)
_OPEN = frozenset({"accepted", "dispatched", "handling", "escalated", "reopened"})
_ALLOWED = {"reassign": _OPEN, "escalate": _OPEN, "cancel": _OPEN, "reopen": frozenset({"feedback", "evaluated"}),
            "wt-accept": frozenset({"dispatched", "escalated", "reopened"}),
            "wt-arrive": frozenset({"dispatched", "handling", "escalated", "reopened"}),
            "wt-feedback": frozenset({"handling", "escalated"}), "wt-resolve": frozenset({"handling", "escalated"})}

# -- layout ----------------------------------------------------------------------------------------------


def worker_ticket_page(req: Req, board: Dashboard, ticket_id: str | None = None) -> html.Div:
    """The frame of one ticket; the ``wt-body`` callback fills in the ticket itself. On top: the title, its tags and
    the stepper (``wt-head``), then the one next action (受理 / 到场, or the report form opened on 反馈 / 办结), the
    call buttons, and below the details; the other actions stay in the collapsed form."""
    ticket_id = ticket_id or ""
    lang = req.lang
    staff = req.user.role in SUPERVISORS
    return html.Div(className="phone wt-page", children=[
        dcc.Link(t(lang, "tk.back_board"), href="/tickets", className="back", id="wt-back") if staff
        else dcc.Link(t(lang, "worker.back"), href="/worker", className="back", id="wt-back"),
        html.Div(id="wt-head"),
        html.Div(id="wt-panel", className="wt-actions wt-next", children=[
            html.Button(t(lang, "wt.next.accept"), id="wt-accept", className="gone", disabled=True),
            html.Button(t(lang, "wt.next.arrive"), id="wt-arrive", className="gone", disabled=True),
            html.Div(t(lang, "wt.arrive_hint"), id="wt-arrive-hint", className="small muted gone"),
            html.Details(id="wt-more", className="wt-more", open=False, children=[
                html.Summary(t(lang, "wt.more"), id="wt-more-summary"),
                dcc.Textarea(id="wt-note", placeholder=t(lang, "worker.feedback_note"), maxLength=MAX_TEXT,
                             className="wide"),
                dcc.Upload(id="wt-photo", accept="image/jpeg,image/png,image/webp", max_size=MAX_PHOTO_BYTES,
                           children=html.Div(t(lang, "worker.photo")), className="upload"),
                html.Div(id="wt-photo-note", className="small"),
                dcc.Dropdown(id="wt-reason", placeholder=t(lang, "worker.reason"), clearable=True, className="wide",
                             options=[{"label": t(lang, "worker.reason_none"), "value": ""}]
                             + [{"label": t(lang, f"reason.{r}"), "value": r} for r in CLOSE_REASONS]),
                html.Div([html.Button(t(lang, "worker.feedback"), id="wt-feedback", disabled=True),
                          html.Button(t(lang, "worker.resolve"), id="wt-resolve", disabled=True)],
                         className="buttons"),
            ]),
            html.Div(id="wt-msg", className="msg", role="status"),
        ]),
        html.Div(id="wt-calls"),
        knowledge_box(req),  # 知识库, folded: below the next action (viz/pages/assistant.py)
        html.Div(id="wt-body"),
        html.Div(id="wt-sop-box"),  # redrawn only when the stored ticks differ from the boxes (a tick in flight stays)
        html.Div(id="wt-tail"),
        *([verify_panel(req), dispatch_panel(req, board)] if staff else []),  # 核查: viz/pages/verify.py
        dcc.Store(id="wt-bump"),
        dcc.Store(id="wt-geo"),  # what the browser's geolocation said at 到场 (a clientside callback asks it)
        dcc.Store(id="wt-arrive-text", data=t(lang, "wt.locating")),
        dcc.Store(id="wt-next"),  # the next step shown: the report form opens when it becomes 反馈 or 办结
        dcc.Store(id="wt-sop-drawn"),  # the checklist drawn: SOP, language, open
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

    @guarded(Output("wt-head", "children"), Output("wt-body", "children"), Output("wt-sop-box", "children"),
             Output("wt-tail", "children"), Output("wt-calls", "children"),
             Output({"type": "wt-sup-act", "action": ALL}, "disabled"),
             Output("wt-accept", "disabled"), Output("wt-arrive", "disabled"), Output("wt-feedback", "disabled"),
             Output("wt-resolve", "disabled"), Output("wt-accept", "className"), Output("wt-arrive", "className"),
             Output("wt-arrive-hint", "className"), Output("wt-feedback", "className"),
             Output("wt-resolve", "className"), Output("wt-more", "open"), Output("wt-more", "className"),
             Output("wt-next", "data"), Output("wt-sop-drawn", "data"),
             Input("version", "data"), Input("wt-bump", "data"), Input("wt-clock", "n_intervals"),
             State("url", "pathname"), State("wt-next", "data"), State("wt-sop-drawn", "data"),
             State({"type": "wt-sop-step", "n": ALL}, "value"))
    def worker_ticket(req: Req, _v: Any, _b: Any, _n: Any, path: str | None, shown: Any, drawn: Any,
                      boxes: Any) -> Any:
        kind, tid = parse_path(path)
        if kind != "wticket" or tid is None:
            raise PreventUpdate
        page = _ticket_body(req, board, tid)
        tk = page.ticket
        status = tk.status if tk is not None else None
        nxt = next_step(tk) if tk is not None else None
        # the checklist is drawn anew only when it differs from the boxes on the page: redrawing it would drop a
        # tick the worker just made whose save is still on its way
        sop_key = [tk.sop_id, req.lang, tk.open] if tk is not None else None
        ticks = sorted(n for n, v in enumerate(boxes if isinstance(boxes, list) else []) if v and "done" in v)
        same = tk is not None and drawn == sop_key and ticks == sorted(tk.sop_done)
        actions = [o["id"]["action"] for o in ctx.outputs_list[5]]

        def off(a: str) -> bool:
            return status is None or status not in _ALLOWED.get(a, ())

        def big(step: str) -> str:
            return "primary wide next-btn" if nxt == step else "gone"

        arrive_off = tk is None or tk.arrived_at is not None or off("wt-arrive")
        # the form opens when the next step needs it; otherwise it stays as the worker left it
        form_open = nxt in ("feedback", "resolve") if nxt != shown else no_update
        return (page.head, page.body, no_update if same else page.sop, page.tail, page.calls,
                [off(a) for a in actions], off("wt-accept"), arrive_off, off("wt-feedback"),
                off("wt-resolve"), big("accept"), big("arrive"),
                "small muted" if nxt == "arrive" else "gone",
                "primary next-btn" if nxt == "feedback" else "", "primary next-btn" if nxt == "resolve" else "",
                form_open, "wt-more" if not (off("wt-feedback") and off("wt-resolve")) else "wt-more gone", nxt,
                sop_key)

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

    # 到场: the browser is asked for the phone's position only now, when the worker presses the button; whatever it
    # answers (a position, denied, none, no answer within 15 s) goes to wt-geo and the arrival is recorded
    cast(Any, app).clientside_callback(
        """function(n) {
            if (!n) { return window.dash_clientside.no_update; }
            return new Promise(function(resolve) {
                var settled = false;
                function done(v) { if (!settled) { settled = true; v.n = n; resolve(v); } }
                setTimeout(function() { done({error: "timeout"}); }, 15000);
                if (!navigator.geolocation) { done({error: "unavailable"}); return; }
                navigator.geolocation.getCurrentPosition(
                    function(p) { done({lat: p.coords.latitude, lon: p.coords.longitude,
                                        accuracy: p.coords.accuracy}); },
                    function(e) { done({error: e && e.code === 1 ? "denied" : "unavailable"}); },
                    {enableHighAccuracy: true, timeout: 12000, maximumAge: 60000});
            });
        }""",
        Output("wt-geo", "data"), Input("wt-arrive", "n_clicks"), prevent_initial_call=True,
    )
    cast(Any, app).clientside_callback(
        """function(n, text) { return n ? [text, "msg", true] : window.dash_clientside.no_update; }""",
        Output("wt-msg", "children", allow_duplicate=True), Output("wt-msg", "className", allow_duplicate=True),
        Output("wt-arrive", "disabled", allow_duplicate=True),
        Input("wt-arrive", "n_clicks"), State("wt-arrive-text", "data"), prevent_initial_call=True,
    )

    @guarded(Output("wt-msg", "children", allow_duplicate=True), Output("wt-msg", "className", allow_duplicate=True),
             Output("wt-bump", "data", allow_duplicate=True),
             Input("wt-geo", "data"), State("url", "pathname"), prevent_initial_call=True)
    def arrived(req: Req, geo: Any, path: str | None) -> Any:
        if not isinstance(geo, dict):
            raise PreventUpdate
        kind, tid = parse_path(path)
        lang = req.lang
        if kind != "wticket" or tid is None or not ID_RE.match(tid):
            return t(lang, "refused.bad_input"), "msg warn", no_update
        where = position_from_browser(geo)
        try:
            data.arrive_ticket(req.user, tid, where)
        except ActionRefused as exc:
            return refusal(req, board, exc, "arrive", tid), "msg warn", time.time()
        except DataUnavailable as exc:
            return unavailable_text(lang, exc), "msg warn", time.time()
        if where is None:
            msg = t(lang, "wt.arrived_no_pos")
        elif where.accuracy_m is None:
            msg = t(lang, "wt.arrived_at")
        else:
            msg = t(lang, "wt.arrived", acc=round(where.accuracy_m))
        return msg, "msg ok", time.time()

    # the SOP checklist: each step's tick (or untick) is saved as the worker makes it, and kept in the history
    @guarded(Output("wt-msg", "children", allow_duplicate=True), Output("wt-msg", "className", allow_duplicate=True),
             Output("wt-bump", "data", allow_duplicate=True),
             Input({"type": "wt-sop-step", "n": ALL}, "value"), State("url", "pathname"), prevent_initial_call=True)
    def sop_ticked(req: Req, _values: Any, path: str | None) -> Any:
        step = ctx.triggered_id
        kind, tid = parse_path(path)
        # one box at a time, by the worker's hand (a refresh draws them all: nothing to save then)
        if (kind != "wticket" or tid is None or not ID_RE.match(tid) or len(ctx.triggered) != 1
                or not isinstance(step, dict) or not isinstance(step.get("n"), int)):
            raise PreventUpdate
        value = ctx.triggered[0].get("value")
        try:
            data.check_sop_step(req.user, tid, int(step["n"]), isinstance(value, list) and "done" in value)
        except ActionRefused as exc:
            return refusal(req, board, exc, "check", tid), "msg warn", time.time()
        except DataUnavailable as exc:
            return unavailable_text(req.lang, exc), "msg warn", time.time()
        return no_update, no_update, time.time()


# -- content ---------------------------------------------------------------------------------------------


class TicketPage(NamedTuple):
    """The parts of the page the body callback fills in; ``ticket`` None: there is no ticket to show."""

    head: Any  # title, tags, stepper
    body: Any = ()  # who, outcome, where, what, alarms, readings
    sop: Any = ()  # the checklist
    tail: Any = ()  # snapshot, history
    calls: Any = ()
    ticket: TicketView | None = None


def _ticket_body(req: Req, board: Dashboard, ticket_id: str) -> TicketPage:
    """The ticket's parts, in the reader's language."""
    lang = req.lang
    if not ID_RE.match(ticket_id):
        return TicketPage(notice(t(lang, "err.unknown_ticket", id=ticket_id[:60]), req, "unknown-ticket"))
    try:
        tk = board.data.ticket(req.user, ticket_id)
    except DataUnavailable as exc:
        return TicketPage(html.P(unavailable_text(lang, exc), className="msg warn", id="tickets-unavailable"))
    except ActionRefused:
        tk = None
    if tk is None or not may_see_ticket(req.user, board, tk):
        return TicketPage(notice(t(lang, "err.unknown_ticket", id=ticket_id), req, "unknown-ticket"))
    names = people(board.community(), lang)
    head = [
        html.H2([html.Span(f"#{tk.id} ", className="muted"), ticket_title(req, board, tk)], id="wt-title"),
        html.Div([html.Span(priority_label(lang, tk.priority), className=f"prio prio-{tk.priority}"),
                  with_data(html.Span(status_label(lang, tk.status), className="status", id="wt-status"),
                            status=tk.status),
                  sla_cell(req, tk),
                  *([html.Span(t(lang, "worker.life_safety"), className="tag life-safety")] if tk.life_safety
                    else [])], className="tags"),
        stepper(req, board, tk),
    ]
    parts: list[Any] = [
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
              html.P(place_text(req, board, tk.building, tk.floor, tk.device, tk.unit), id="wt-where")]
    parts += care_section(req, board, tk)  # fire: who to evacuate first; care: the resident's record
    parts += nearest_section(req, board, tk)  # urgent: the nearest on-duty workers (viz/pages/patrols.py)
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
                  html.Ul([html.Li(reading_text(lang, board, k, v)) for k, v in sorted(tk.latest.items())],
                          id="wt-latest")]
    checklist: list[Any] = [html.H3(t(lang, "worker.sop"))]
    sop = tk.sop_en if lang == "en" and len(tk.sop_en) == len(tk.sop) else tk.sop
    if sop:
        checklist += [*([html.P(t(lang, "wt.sop_hint"), className="small muted")] if tk.open else []),
                      html.Div([dcc.Checklist(id={"type": "wt-sop-step", "n": n},
                                          options=[{"label": s, "value": "done", "disabled": not tk.open}],
                                          value=["done"] if n in tk.sop_done else [])
                            for n, s in enumerate(sop)], className="sop", id="wt-sop")]
    else:
        checklist.append(html.P(t(lang, "worker.no_sop"), className="muted"))
    tail: list[Any] = [html.H3(t(lang, "worker.snapshot"))]
    if tk.has_snapshot:
        tail.append(html.Img(src=f"/media/tickets/{quote(tk.id)}/snapshot.png", className="snapshot",
                              alt=t(lang, "worker.snapshot")))
    else:
        tail.append(html.P(t(lang, "worker.no_snapshot"), className="muted"))
    if tk.history:
        tail += [html.H3(t(lang, "worker.history")),
                  html.Ul([history_item(req, board, tk, s, names) for s in tk.history], className="ticket-history",
                          id="wt-history")]
    return TicketPage(head, parts, checklist, tail, call_buttons(req, board, tk), tk)


def reading_text(lang: str, board: Dashboard, key: str, value: float) -> str:
    """A latest reading (``key``: "device field") with the field's name and unit, e.g.
    ``B2-B1-GAS 可燃气体浓度: 60 %LEL``."""
    device, _, name = key.rpartition(" ")
    dev = board.community().device(device) if device else None
    spec = catalogue.KINDS.get(dev.kind) if dev is not None else None
    f = next((x for x in spec.fields if x.name == name), None) if spec is not None else None
    if f is None:
        return f"{key}: {value:g}"
    if name == "direction" and value in (-1, 0, 1):  # a lift's travel: down, standing, up
        return f"{device} {field_label(lang, f, unit=False)}: {t(lang, f'wt.direction.{int(value)}')}"
    return f"{device} {field_label(lang, f, unit=False)}: {value_text(lang, f, value)}"
