"""What the ticket pages say about a ticket, in the reader's language: its history entries (from the service's
structured record: action, actor, detail; never its English notes), its alarms as "rule · place", its outcome,
and why an action was refused (by refusal code). Pure: reads only the community and the ticket given."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from twin.community import Community
from viz.data import ActionRefused, TicketAlarm, TicketStep, TicketView
from viz.i18n import floor_label, rule_label, t
from viz.report_model import report_title
from viz.shell import Dashboard, Req
from viz.widgets import place_text, priority_label, status_label

# the service's history actors that are no person
_ACTORS = {"system": "tk.by.system", "watchdog": "tk.by.watchdog", "resident": "tk.by.resident"}
# actions whose note is what a person typed (shown as written, after the translated label)
_PERSON_NOTES = frozenset({"accept", "progress", "arrive", "release", "resolve", "cancel", "reassign", "escalate",
                           "reopen", "rate", "verify_pass", "verify_fail"})


def people(community: Community, lang: str = "zh") -> dict[str, str]:
    """Worker and supervisor ids of the community -> the name to show."""
    out: dict[str, str] = {}
    for g in community.grids:
        for w in g.workers:
            out[w.id] = w.name
        out.setdefault(g.supervisor, t(lang, "tk.supervisor_of", grid=g.name))
    return out


def ticket_title(req: Req, board: Dashboard, ticket: TicketView) -> str:
    """The ticket's title: the service writes Chinese ("控制器火警 · 阳光社区 3号楼 1层"); in English an alarm
    ticket is titled from its rule and place instead."""
    if req.lang != "zh" and (report := report_title(req.lang, ticket.title)) is not None:  # a one-click report
        return report
    if req.lang == "zh" or not ticket.rule_name:
        return ticket.title
    community = board.community()
    b = community.building(ticket.building) if ticket.building else None
    place = " ".join([b.name if b else (ticket.building or ""),
                      floor_label(req.lang, ticket.floor) if ticket.floor is not None else ""]).strip()
    return f"{rule_label(req.lang, ticket.rule_name)}{' · ' + place if place else ''}"


def person(lang: str, who: str | None, names: Mapping[str, str]) -> str:
    if not who:
        return t(lang, "tk.hist.control_room")
    key = _ACTORS.get(who)
    return t(lang, key) if key else names.get(who, who)


def alarm_place(req: Req, board: Dashboard, a: TicketAlarm) -> str:
    """Building and floor of an alarm (its device when it has no floor), as the reader's language writes them."""
    community = board.community()
    b = community.building(a.building) if a.building else None
    if b is not None and a.floor is not None:
        return f"{b.name} {floor_label(req.lang, a.floor)}"
    return place_text(req, board, a.building, a.floor, a.device)


def alarm_text(req: Req, board: Dashboard, a: TicketAlarm) -> str:
    return f"{rule_label(req.lang, a.rule_name)} · {alarm_place(req, board, a)}"


def alarm_label(req: Req, board: Dashboard, ticket: TicketView, key: object) -> str:
    """An alarm key of the ticket's incident as "rule label · building floor" (never the raw key)."""
    found = next((a for a in ticket.alarms if a.key == key), None)
    return alarm_text(req, board, found) if found is not None else t(req.lang, "tk.alarm_unknown")


def alarms_label(req: Req, board: Dashboard, ticket: TicketView, keys: list[str]) -> str:
    shown = [alarm_label(req, board, ticket, k) for k in keys[:3]]
    more = f" {t(req.lang, 'tk.more_alarms', n=len(keys) - 3)}" if len(keys) > 3 else ""
    return ("、" if req.lang == "zh" else "; ").join(dict.fromkeys(shown)) + more


def _when(board: Dashboard, value: object) -> str:
    if isinstance(value, str):
        try:
            return board.local(datetime.fromisoformat(value))
        except ValueError:
            return ""
    return ""


def _clock(lang: str, value: object) -> str:
    try:
        return t(lang, f"tk.clock.{value}")
    except KeyError:
        return ""


def step_text(req: Req, board: Dashboard, ticket: TicketView, step: TicketStep, names: Mapping[str, str]) -> str:
    """One history entry: "time · who · what happened" in the reader's language."""
    lang = req.lang
    d = step.detail
    action = step.action
    what: str
    if action == "create":
        what = t(lang, "tk.hist.create.manual" if d.get("source") == "manual" else "tk.hist.create.alarm")
    elif action == "dispatch":
        who = d.get("assignee")
        if isinstance(who, str) and who:
            try:
                role = t(lang, f"tk.arole.{d.get('role')}")
            except KeyError:
                role = t(lang, "tk.arole.manual")
            what = t(lang, "tk.hist.dispatch", name=person(lang, who, names), role=role)
        else:
            what = t(lang, "tk.hist.dispatch_none")
    elif action == "attach":
        what = t(lang, "tk.hist.attach", alarm=alarm_label(req, board, ticket, d.get("alarm")))
    elif action == "upgrade":
        what = t(lang, "tk.hist.upgrade", priority=priority_label(lang, str(d.get("priority") or ticket.priority)))
    elif action == "priority":
        what = t(lang, "tk.hist.priority", priority=priority_label(lang, "urgent"))
    elif action == "alarm_escalated":
        try:
            severity = t(lang, f"severity.{d.get('severity')}")
        except KeyError:
            severity = str(d.get("severity") or "")
        what = t(lang, "tk.hist.alarm_escalated", severity=severity,
                 alarm=alarm_label(req, board, ticket, d.get("alarm")))
    elif action == "alarm_cleared":
        what = t(lang, "tk.hist.alarm_cleared", alarm=alarm_label(req, board, ticket, d.get("alarm")))
    elif action == "reopen" and step.by == "system":
        what = t(lang, "tk.hist.reopen_alarm", alarm=alarm_label(req, board, ticket, d.get("alarm")))
    elif action == "escalate" and step.by == "watchdog":
        to = d.get("escalated_to")
        name = person(lang, to if isinstance(to, str) else None, names)
        what = t(lang, "tk.hist.escalate_sla", clock=_clock(lang, d.get("clock")),
                 deadline=_when(board, d.get("deadline")), name=name)
    elif action == "warn":
        what = t(lang, "tk.hist.warn", clock=_clock(lang, d.get("clock")), deadline=_when(board, d.get("deadline")))
    elif action == "escalate":
        what = t(lang, "tk.hist.escalate", name=person(lang, ticket.escalated_to, names))
    elif action == "reassign":
        who = d.get("assignee")
        what = t(lang, "tk.hist.reassign", name=person(lang, who if isinstance(who, str) else None, names))
    elif action == "rate":
        what = t(lang, "tk.hist.rate", n=d.get("rating", "?"))
    elif action in ("handoff", "partner_arrived"):  # a partner called, or on site (twin/tickets/handoff.py)
        try:
            partner = t(lang, f"call.{d.get('role')}")
        except KeyError:
            partner = str(d.get("role") or "")
        what = t(lang, f"tk.hist.{action}", partner=partner)
    elif action == "care_visit":  # the resident of an overdue-visit ticket was visited (gateway/care/store.py)
        what = t(lang, "tk.hist.care_visit", time=_when(board, d.get("visited_at")))
    elif action in ("verify_pass", "verify_fail"):  # a one-click report's check (核查)
        what = t(lang, f"report.hist.{action}")
    elif action == "progress" and d.get("plan"):
        what = t(lang, "tk.hist.plan")
    elif action in ("accept", "progress", "arrive", "release", "resolve", "cancel", "reopen", "snapshot"):
        what = t(lang, f"tk.hist.{action}")
    else:
        what = t(lang, "tk.hist.other", state=status_label(lang, ticket.status))
    reason = d.get("reason")
    if action in ("resolve", "cancel") and isinstance(reason, str) and reason:
        what += f" · {t(lang, 'tk.reason', r=reason_label(lang, reason))}"
    parts = [board.local(step.at), person(lang, step.by, names), what]
    typed = (action in _PERSON_NOTES and step.by not in _ACTORS) or action == "rate" or (
        action == "create" and d.get("source") == "manual")
    if typed and step.note:
        parts.append(step.note)
    return " · ".join(p for p in parts if p)


def reason_label(lang: str, reason: str) -> str:
    try:
        return t(lang, f"reason.{reason}").split("（")[0].split(" (")[0]
    except KeyError:
        return reason


def outcome_text(lang: str, ticket: TicketView, board: Dashboard) -> str:
    """A closed ticket's outcome: resolved or cancelled, why, when, and the resident's rating if any."""
    parts = [status_label(lang, ticket.status)]
    if ticket.close_reason:
        parts.append(t(lang, "tk.reason", r=reason_label(lang, ticket.close_reason)))
    if ticket.status == "cancelled" and ticket.cancel_reason:
        parts.append(ticket.cancel_reason)
    if ticket.rating is not None:
        parts.append(t(lang, "tk.rating", n=ticket.rating))
    when = ticket.closed_at or ticket.resolved_at
    if when is not None:
        parts.append(t(lang, "tk.closed_at", at=board.local(when)))
    return " · ".join(parts)


def refusal(req: Req, board: Dashboard, exc: ActionRefused, verb: str, ticket_id: str) -> str:
    """Why an action on a ticket was refused, by refusal code, in the reader's language (the service's English
    detail is not shown; the alarm keys of ``alarms_active`` become their labels)."""
    lang = req.lang
    verb_text = t(lang, f"tk.verb.{verb}")
    if exc.code in ("illegal_transition", "alarms_active", "not_found"):
        try:
            ticket = board.data.ticket(req.user, ticket_id)
        except ActionRefused:
            ticket = None
        if ticket is None:
            return t(lang, "tk.refused.not_found", id=ticket_id[:40])
        if exc.code == "illegal_transition":
            return t(lang, "tk.refused.state", state=status_label(lang, ticket.status), verb=verb_text)
        if exc.code == "alarms_active":
            keys = [k.strip() for k in exc.detail.split(",") if k.strip()]
            return t(lang, "tk.refused.alarms_active", alarms=alarms_label(req, board, ticket, keys), verb=verb_text)
    if exc.code == "forbidden":
        return t(lang, "tk.refused.forbidden")
    if exc.code == "not_found":
        return t(lang, "tk.refused.not_found", id=ticket_id[:40])
    try:
        return t(lang, f"refused.{exc.code}")
    except KeyError:
        return t(lang, "refused.bad_input")
