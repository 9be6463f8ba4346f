"""Hand-offs to partners, stored (issue 15): a call to a partner and the partner's arrival are ticket events
(``handoff``, ``partner_arrived``: in the ticket's history, who recorded it and when), folded by
:mod:`twin.tickets.handoff`; the partners' arrival times over a period feed the KPI page. Does I/O, on the ticket
service's connection."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gateway.tickets.fieldwork import lock_open
from twin.contacts import calls_for
from twin.people import User
from twin.tickets import InvalidInput, Ticket, TicketError
from twin.tickets.handoff import HANDOFF, PARTNER_ARRIVED, Handoff, PartnerKpi, arrival_problem, check_role, handoffs
from twin.tickets.handoff import partner_kpis as fold_kpis

if TYPE_CHECKING:
    from gateway.tickets.service import TicketService

ACTIONS = (HANDOFF, PARTNER_ARRIVED)


def current(svc: TicketService, ticket_id: int) -> list[Handoff]:
    rows = svc.conn.execute("SELECT action, detail, actor, at FROM ticket_events WHERE ticket_id = %s "
                            "AND action = ANY(%s) ORDER BY id", (ticket_id, list(ACTIONS))).fetchall()
    return handoffs((str(a), d if isinstance(d, dict) else {}, str(by), at) for a, d, by, at in rows)


def as_json(svc: TicketService, hs: list[Handoff]) -> list[dict[str, Any]]:
    return [{"role": h.role, "name": h.name, "phone": h.phone, "called_at": svc.iso(h.called_at),
             "called_by": h.called_by, "arrived_at": svc.iso(h.arrived_at), "arrived_by": h.arrived_by,
             "arrive_s": h.arrive_s} for h in hs]


def record(svc: TicketService, user: User, ticket_id: int, role: Any, *, arrived: bool = False,
           note: str = "") -> Ticket:
    """Record that ``user`` called partner ``role`` for the ticket (``arrived``: that the partner is on site).
    Whoever may report progress on the ticket may record it, while it is open."""
    role = check_role(role)
    if not isinstance(note, str) or len(note) > 4000 or "\x00" in note:
        raise InvalidInput("note must be text of at most 4000 characters")
    now = svc.clock()
    with svc.db_step(f"recording a hand-off of ticket {ticket_id}"), svc.conn.transaction():
        t = lock_open(svc, user, ticket_id, "hand-offs are")
        if arrived:
            why = arrival_problem(current(svc, t.id), role)
            if why:
                raise TicketError(f"ticket {t.id}: {why}")
            svc.record_event(t, PARTNER_ARRIVED, t.state, user.username, note, at=now, detail={"role": role})
        else:
            c = svc.communities.get(t.community)
            call = next(iter(calls_for(c.contacts, [role])), None) if c is not None else None  # the number dialled
            svc.record_event(t, HANDOFF, t.state, user.username, note, at=now, detail={
                "role": role, "name": call.name if call else None, "phone": call.phone if call else None})
        svc.conn.execute("UPDATE tickets SET updated_at = now() WHERE id = %s", (t.id,))  # open pages redraw
    return t


def partner_kpis(svc: TicketService, start: datetime, end: datetime, user: User | None = None) -> list[PartnerKpi]:
    """Partners' calls and arrival times for the tickets created in [start, end) (a supervisor: their grids)."""
    rows = svc.conn.execute(
        "SELECT e.ticket_id, e.action, e.detail, e.actor, e.at, t.grid FROM ticket_events e "
        "JOIN tickets t ON t.id = e.ticket_id WHERE e.action = ANY(%s) AND t.created_at >= %s AND t.created_at < %s "
        "ORDER BY e.ticket_id, e.id", (list(ACTIONS), start, end)).fetchall()
    seen = [r for r in rows if user is None or user.may_see_grid(r[5])]
    out: list[Handoff] = []
    for _tid, events in itertools.groupby(seen, key=lambda r: r[0]):  # rows come ordered by ticket
        out += handoffs((str(a), d if isinstance(d, dict) else {}, str(by), at) for _t, a, d, by, at, _g in events)
    return fold_kpis(out)
