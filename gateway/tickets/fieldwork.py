"""The worker on site, stored (issue 15): the SOP checklist's ticks and unticks (``ticket_events`` with action
``sop_check``, so they are in the ticket's history: who ticked which step when). The pure rules are in
:mod:`twin.tickets.fieldwork`; the arrival's position is stored with the ticket by :meth:`TicketService.arrive`
(migration 0014). Does I/O, on the service's connection."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.storage import fetch_rows
from gateway.tickets.rows import SELECT_TICKETS, TICKET_ROW
from twin import tickets as tk
from twin.knowledge import Document
from twin.people import User
from twin.tickets import InvalidInput, SopCheck, Ticket, TicketError

if TYPE_CHECKING:
    from gateway.tickets.service import TicketService


def sop_of(svc: TicketService, t: Ticket) -> Document | None:
    """The ticket's checklist: the SOP of its (worst alarm's) rule, else of its category."""
    return svc.knowledge.sop_for(t.rule, t.category)


def sop_checks(svc: TicketService, t: Ticket) -> dict[int, SopCheck]:
    """Step -> its last tick or untick in the ticket's current cycle, on its current checklist."""
    doc = sop_of(svc, t)
    if doc is None:
        return {}
    rows = svc.conn.execute("SELECT detail, actor, at FROM ticket_events WHERE ticket_id = %s AND action = %s "
                            "ORDER BY id", (t.id, tk.SOP_CHECK)).fetchall()
    return tk.sop_checks(((d if isinstance(d, dict) else {}, str(by), at) for d, by, at in rows), doc.id,
                         since=t.clock_start)


def checks_json(svc: TicketService, t: Ticket) -> list[dict[str, Any]]:
    """The ticks of the ticket's checklist now, for its view (``sop.checks``)."""
    return [{"step": c.step, "done": c.done, "by": c.by, "at": svc.iso(c.at)}
            for c in sorted(sop_checks(svc, t).values(), key=lambda c: c.step)]


def lock_open(svc: TicketService, user: User, ticket_id: int, what: str) -> Ticket:
    """The ticket, row-locked for the caller's transaction (two records of one ticket at once, a double tap or two
    phones: the second sees the first), if ``user`` may report progress on it and it is open; else the error
    (``what``: the thing that is closed with it, for the message)."""
    from gateway.tickets.service import Forbidden, TicketNotFound  # the service imports this module

    found = fetch_rows(svc.conn, TICKET_ROW, f"{SELECT_TICKETS} WHERE id = %s FOR UPDATE", (ticket_id,))
    if not found:
        raise TicketNotFound(f"no ticket {ticket_id}")
    t = found[0]
    problem = tk.permission_problem(user, t, "progress")
    if problem:
        raise Forbidden(problem)
    if not t.open:
        raise TicketError(f"ticket {t.id} is {t.state.value} ({t.state.label_zh}): {what} closed")
    return t


def check_sop(svc: TicketService, user: User, ticket_id: int, step: Any, done: Any) -> Ticket:
    """Tick (``done``) or untick step ``step`` (0-based) of the ticket's SOP checklist, as ``user``; recorded in
    its history. Whoever may report progress on it may tick, while it is open. Ticking a ticked step (or unticking
    an unticked one) changes nothing and records nothing."""
    if not isinstance(done, bool):
        raise InvalidInput(f"done must be true or false, not {done!r}"[:200])
    now = svc.clock()
    with svc.db_step(f"ticking the checklist of ticket {ticket_id}"), svc.conn.transaction():
        t = lock_open(svc, user, ticket_id, "its checklist is")
        doc = sop_of(svc, t)
        if doc is None:
            raise InvalidInput(f"ticket {t.id} has no SOP checklist to tick")
        n = tk.check_step(len(doc.steps), step)
        last = sop_checks(svc, t).get(n)
        if (last.done if last else False) == done:
            return t
        svc.record_event(t, tk.SOP_CHECK, t.state, user.username, "", at=now,
                         detail={"sop": doc.id, "step": n, "done": done, "text": doc.steps[n]})
        # the dashboard's digest (count, versions, updated_at) changes: open pages show the tick
        svc.conn.execute("UPDATE tickets SET updated_at = now() WHERE id = %s", (t.id,))
    return t

