"""Alarms become tickets: the incident decisions of :meth:`TicketService.on_alarm_event`. Does I/O, on the ticket
service's connection, through its extension API (``db_step``, ``select_tickets``, ``insert_and_dispatch``,
``write_transition``, ``record_event``, ``deliver``).

A raised alarm whose rule dispatches joins the open ticket of its incident, else reopens the incident's recently
resolved ticket, else opens a ticket (one decision at a time per community: an advisory lock); an escalated alarm
tightens its ticket's priority; a repeated one updates its count; a cleared one is noted on every ticket holding
it. The rules (incident keys, correlation, summaries, assignment) are pure, in :mod:`twin.tickets`.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from psycopg.rows import class_row

from gateway.storage import fetch_rows, fetch_values
from gateway.tickets.rows import OPEN_STATES, SELECT_TICKETS, TICKET_ALARM_COLUMNS, TicketAlarmRow
from gateway.tickets.views import rule_names
from twin import tickets as tk
from twin.alarms import AlarmEvent, EventKind, Severity
from twin.community import Community
from twin.tickets import Priority, Ticket, TicketState

if TYPE_CHECKING:
    from gateway.tickets.service import TicketService


def on_alarm_event(svc: TicketService, c: Community, event: AlarmEvent) -> Ticket | None:
    """Act on one alarm event of community ``c``; returns the ticket it opened or changed (None: nothing to do)."""
    if event.kind is EventKind.RAISED:
        return _on_raised(svc, c, event)
    if event.kind is EventKind.ESCALATED:
        return _on_escalated(svc, c, event)
    if event.kind is EventKind.UPDATED:
        with svc.db_step("recording a repeated alarm"):
            svc.conn.execute(
                "UPDATE ticket_alarms a SET count = %s, last_at = greatest(a.last_at, %s), detail = %s "
                "FROM tickets t WHERE t.id = a.ticket_id AND t.community = %s AND a.cleared_at IS NULL "
                "AND a.alarm_key = %s", (event.count, event.at, event.detail, c.id, event.key))
        return None
    if event.kind is EventKind.CLEARED:
        return _on_cleared(svc, c, event)
    return None


def _on_raised(svc: TicketService, c: Community, event: AlarmEvent) -> Ticket | None:
    """A raised alarm that dispatches: it joins the open ticket of its incident (the one holding the same alarm,
    else the one of its incident key that saw an alarm within the group's window), else reopens its
    incident's recently resolved ticket, else opens a ticket. One decision at a time per community."""
    priority = Priority.of(event.dispatch)
    if priority is None or not event.notify:
        return None
    received = tk.received_time(event, svc.clock())
    ik = tk.incident_key(svc.incidents, c, event)
    keys = frozenset({ik.stored})
    action = "alarm_attached"
    with svc.db_step("opening a ticket"), svc.conn.transaction():
        # one incident decision at a time per community (N gateways may see related alarms together)
        svc.conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"gridtwin-tickets:{c.id}",))
        target = _open_incident_ticket(svc, c, event, keys, received, timedelta(seconds=ik.within_s))
        if target is None:
            resolved = _resolved_incident_ticket(svc, c, event, keys, received)
            if resolved is not None:
                target = _reopen_for_alarm(svc, c, resolved, event, received)
                action = "reopened"
        if target is not None:
            _record_alarm(svc, target.id, event)
            t = _attach(svc, c, target, event, ik, keys, received)
        else:
            t = _create_from_alarm(svc, c, event, ik, priority, keys, received)
            _record_alarm(svc, t.id, event)
            action = "created"
    svc.deliver(t, action)
    if action == "created" and svc.render_on_create:
        t = svc.attach_snapshot(t.id) or t
    return t


def _open_incident_ticket(svc: TicketService, c: Community, event: AlarmEvent, keys: frozenset[str],
                          received: datetime, window: timedelta) -> Ticket | None:
    """The open ticket holding this alarm (whenever it last came), else the oldest open ticket of the
    incident key that saw an alarm within ``window``."""
    candidates = svc.select_tickets(
        f"{SELECT_TICKETS} WHERE community = %s AND state = ANY(%s) AND (keys && %s OR id IN "
        "(SELECT ticket_id FROM ticket_alarms WHERE alarm_key = %s)) ORDER BY created_at, id",
        (c.id, OPEN_STATES, list(keys), event.key))
    if not candidates:
        return None
    same_alarm = set(fetch_values(svc.conn, "SELECT ticket_id FROM ticket_alarms WHERE alarm_key = %s "
                                  "AND ticket_id = ANY(%s)", (event.key, [t.id for t in candidates])))
    return next((t for t in candidates if t.id in same_alarm), None) or next(
        (t for t in candidates if tk.correlates(t, keys, received, window)), None)


def _resolved_incident_ticket(svc: TicketService, c: Community, event: AlarmEvent, keys: frozenset[str],
                              received: datetime) -> Ticket | None:
    """The newest ticket of this incident (its key or this alarm) resolved within the reopen window."""
    if svc.incidents.reopen_within <= 0:
        return None
    found = svc.select_tickets(
        f"{SELECT_TICKETS} WHERE community = %s AND state = ANY(%s) AND resolved_at >= %s AND (keys && %s OR id IN "
        "(SELECT ticket_id FROM ticket_alarms WHERE alarm_key = %s)) ORDER BY resolved_at DESC, id DESC LIMIT 1",
        (c.id, [TicketState.FEEDBACK.value, TicketState.EVALUATED.value],
         received - timedelta(seconds=svc.incidents.reopen_within), list(keys), event.key))
    return found[0] if found else None


def _reopen_for_alarm(svc: TicketService, c: Community, t: Ticket, event: AlarmEvent, received: datetime) -> Ticket:
    """The incident alarmed again after its ticket was resolved: reopen it (fresh clocks) and dispatch it to
    whoever is on duty now, its previous worker first."""
    name = rule_names().get(event.rule, event.rule)
    after = svc.write_transition(t, tk.reopen(t, received, svc.policy), "reopen", "system",
                                 f"同一事件再次报警，工单重开 / the incident alarmed again: {name} ({event.subject}): "
                                 f"{event.detail}", at=received,
                                 detail={"alarm": event.key, "resolved_at": svc.iso(t.resolved_at),
                                         "previous_assignee": t.assignee})
    a = tk.assign(c, after.building, received, offset=svc.offset, load=svc.workload(c),
                  category=after.category, partners=svc.cfg.partners, prefer=t.assignee)
    if a.assignee is not None:
        after = svc.write_transition(after, tk.dispatch(after, a), "dispatch", "system", a.reason, at=received,
                                     detail={"assignee": a.assignee, "role": a.role, "collaborator": a.collaborator})
    return after


def _attach(svc: TicketService, c: Community, target: Ticket, event: AlarmEvent, ik: tk.IncidentKey,
            keys: frozenset[str], received: datetime) -> Ticket:
    """The alarm (already recorded on ``target``) joins its ticket; the incident's title, rule, priority and
    life-safety clocks follow its worst alarm, and the history says what changed."""
    key = tk.stored_key(svc.incidents, target.keys) or ik
    s = tk.summarize(svc.incidents, c, key, _incident_alarms(svc, target.id), rule_names())
    before = target
    after = tk.attach_alarm(target, event, svc.policy, keys, at=received,
                            title=s.title if target.source == "alarm" else None, worst=s.worst.rule)
    t = svc.write_transition(before, after, "attach", "system", f"{event.rule}: {event.detail}", at=received,
                             detail={"alarm": event.key, "severity": event.severity.value, "devices": len(s.devices)})
    note = tk.upgrade_note(before, t, svc.iso)
    if note:
        svc.record_event(t, "upgrade", before.state, "system", note, at=received,
                         detail={"title": t.title, "rule": t.rule, "priority": t.priority.value,
                                 "respond_by": svc.iso(t.respond_by), "arrive_by": svc.iso(t.arrive_by),
                                 "release_by": svc.iso(t.release_by), "resolve_by": svc.iso(t.resolve_by)})
    return t


def _incident_alarms(svc: TicketService, ticket_id: int) -> list[tk.IncidentAlarm]:
    rows = fetch_rows(svc.conn, class_row(TicketAlarmRow),
                      f"SELECT {TICKET_ALARM_COLUMNS} FROM ticket_alarms WHERE ticket_id = %s "
                      "ORDER BY first_at, alarm_key", (ticket_id,))
    return [tk.IncidentAlarm(r.alarm_key, r.rule, Severity(r.severity), r.subject, r.device, r.building, r.floor,
                             r.first_at, r.count, r.cleared_at) for r in rows]


def _create_from_alarm(svc: TicketService, c: Community, event: AlarmEvent, ik: tk.IncidentKey, priority: Priority,
                       keys: frozenset[str], received: datetime) -> Ticket:
    dev = c.device(event.device) if event.device else None
    unit = dev.unit if dev and dev.unit else (event.subject if event.subject_type == "care_unit" else None)
    s = tk.summarize(svc.incidents, c, ik, [tk.IncidentAlarm.of(event, received)], rule_names())
    t = tk.new_ticket(community=c.id, title=s.title, category=s.category,
                      priority=priority, source="alarm", at=received, policy=svc.policy,
                      rate_token=secrets.token_urlsafe(18), rule=event.rule, building=event.building,
                      floor=event.floor, unit=unit, device=event.device, description=event.detail, keys=keys,
                      occurred_at=event.occurred_at or event.at)
    return svc.insert_and_dispatch(c, t, {"alarm": event.to_json(), "incident": ik.key})


def _on_escalated(svc: TicketService, c: Community, event: AlarmEvent) -> Ticket | None:
    with svc.db_step("escalating a ticket"), svc.conn.transaction():
        found = svc.select_tickets(
            f"{SELECT_TICKETS} WHERE community = %s AND state = ANY(%s) AND id IN (SELECT ticket_id "
            "FROM ticket_alarms WHERE alarm_key = %s) ORDER BY created_at LIMIT 1", (c.id, OPEN_STATES, event.key))
        if not found:
            return None
        before = found[0]
        svc.conn.execute("UPDATE ticket_alarms SET severity = %s WHERE ticket_id = %s AND alarm_key = %s",
                         (event.severity.value, before.id, event.key))
        if event.severity.rank < Severity.MAJOR.rank or before.priority is Priority.URGENT:
            svc.record_event(before, "alarm_escalated", before.state, "system", event.detail,
                             detail={"alarm": event.key, "severity": event.severity.value})
            return None
        received = tk.received_time(event, svc.clock())
        t = svc.write_transition(before, tk.tighten(before, Priority.URGENT, before.rule, received, svc.policy),
                                 "priority", "system",
                                 f"alarm {event.key} escalated to {event.severity.value}: "
                                 f"{before.priority.value} -> urgent", detail={"alarm": event.key})
    svc.deliver(t, "priority_raised")
    return t


def _on_cleared(svc: TicketService, c: Community, event: AlarmEvent) -> Ticket | None:
    """The alarm cleared: noted on every ticket holding it uncleared (open or resolved), so a ticket knows which
    of its life-safety alarms are still active."""
    with svc.db_step("recording a cleared alarm"), svc.conn.transaction():
        found = svc.select_tickets(
            f"{SELECT_TICKETS} WHERE community = %s AND id IN (SELECT ticket_id FROM ticket_alarms "
            "WHERE alarm_key = %s AND cleared_at IS NULL) ORDER BY created_at, id", (c.id, event.key))
        if not found:
            return None
        svc.conn.execute("UPDATE ticket_alarms SET cleared_at = %s WHERE ticket_id = ANY(%s) AND alarm_key = %s "
                         "AND cleared_at IS NULL", (event.at, [t.id for t in found], event.key))
        for t in found:
            svc.record_event(t, "alarm_cleared", t.state, event.by or "system", event.detail,
                             detail={"alarm": event.key})
    for t in found:
        if t.open:
            svc.deliver(t, "alarm_cleared")
    return next((t for t in found if t.open), found[0])


def _record_alarm(svc: TicketService, ticket_id: int, e: AlarmEvent) -> None:
    svc.conn.execute(
        "INSERT INTO ticket_alarms (ticket_id, alarm_key, rule, severity, subject, device, building, floor, "
        "detail, first_at, last_at, count, life_safety) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (ticket_id, alarm_key) DO UPDATE SET "
        "last_at = greatest(ticket_alarms.last_at, excluded.last_at), count = ticket_alarms.count + 1, "
        "severity = excluded.severity, detail = excluded.detail, cleared_at = NULL, "
        "life_safety = excluded.life_safety",
        (ticket_id, e.key, e.rule, e.severity.value, e.subject, e.device, e.building, e.floor, e.detail, e.at,
         e.at, max(1, e.count), svc.incidents.is_life_safety(e.rule)))
