"""Overdue care visits become tickets for the unit's grid worker (seed 3.2). Does I/O.

:func:`raise_overdue` runs with the ticket service's SLA watchdog (:meth:`gateway.tickets.service.TicketService.tick`,
every ``tickets.watchdog_interval_s`` in each gateway's dispatch worker). It seeds the register from the community
files (units not in it yet), then opens one ticket per overdue visit: a visit is the resident and the local date it
was due by, and ``care_overdue_tickets`` holds one row per visit (its primary key), written in the ticket's own
transaction. So a restart, or N gateways ticking together, never raise a second ticket for the same visit: the
second insert fails and its ticket is rolled back with it. Once the worker logs the visit, the next one is due one
interval later and gets its own ticket if it too is missed.

The ticket names the unit, floor and level but not the resident (operators see tickets; the name is personal data).
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime
from typing import TYPE_CHECKING

import psycopg

from gateway.care.store import CareRegister, ResidentRow
from gateway.storage import StorageError, fetch_values
from twin import care
from twin import tickets as tk
from twin.community import Community
from twin.tickets import Priority

if TYPE_CHECKING:
    from gateway.tickets.service import TicketService

log = logging.getLogger(__name__)
LEVEL_ZH = {"red": "红色", "yellow": "黄色", "green": "绿色"}
INTERVAL_ZH = {"red": "每周", "yellow": "每两周", "green": "每月"}


def raise_overdue(svc: TicketService, now: datetime | None = None) -> list[int]:
    """Seed the register, then open a ticket for each overdue visit that has none; returns the new tickets' ids."""
    now = now or svc.clock()
    conn = svc.conn
    try:
        reg = CareRegister(conn, svc.communities, now)
        with conn.transaction():
            reg.seed_all()
        rows = reg.rows()
        raised = set(map(tuple, conn.execute("SELECT resident_id, due FROM care_overdue_tickets").fetchall())) \
            if rows else set()
    except psycopg.Error as exc:
        raise StorageError(f"checking care visits failed: {exc}") from exc
    opened: list[int] = []
    for r in rows:
        c = svc.communities.get(r.community)
        if c is None:
            continue
        s = care.schedule(r.level, r.registered_at, r.last_visit_at, r.level_changed_at, now, c.tz)
        if not s.overdue or (r.id, s.due) in raised:
            continue
        try:
            ticket_id = _open(svc, c, r, s, now)
        except StorageError:
            raise
        except Exception:  # a bug on one resident must not stop the watchdog (nor the dispatch worker)
            log.exception("care: the overdue visit of resident %s could not be raised", r.id)
            continue
        if ticket_id is not None:
            opened.append(ticket_id)
    return opened


def _open(svc: TicketService, c: Community, r: ResidentRow, s: care.Schedule, now: datetime) -> int | None:
    title = f"关爱探访逾期 · {r.unit}（{LEVEL_ZH[r.level]}，应于 {s.due.isoformat()} 前探访）"
    description = (f"{r.unit}（{r.floor}层）的关爱对象为{LEVEL_ZH[r.level]}等级，应{INTERVAL_ZH[r.level]}探访一次；"
                   f"本次探访应于 {s.due.isoformat()} 前完成，已逾期。请尽快上门探访并在关爱台账中登记。 / "
                   f"The {r.level} care visit of {r.unit} was due by {s.due.isoformat()} and is overdue: visit and "
                   "log it in the care register.")
    t = tk.new_ticket(community=c.id, title=title, category="care", priority=Priority.GENERAL, source="manual",
                      at=now, policy=svc.policy, rate_token=secrets.token_urlsafe(18), building=r.building,
                      floor=r.floor, unit=r.unit, description=description, reporter="system")

    def record(opened: tk.Ticket) -> None:
        svc.conn.execute("INSERT INTO care_overdue_tickets (resident_id, due, ticket_id, raised_at) "
                         "VALUES (%s, %s, %s, %s)", (r.id, s.due, opened.id, now))

    context = {"care_visit": {"resident": r.id, "due": s.due.isoformat()}}
    try:  # as TicketService.create_manual: one incident decision at a time per community, then deliver
        with svc.db_step("raising an overdue care visit"), svc.conn.transaction():
            svc.conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"gridtwin-tickets:{c.id}",))
            opened = svc.insert_and_dispatch(c, t, context)
            record(opened)
    except StorageError as exc:
        if isinstance(exc.__cause__, psycopg.errors.UniqueViolation):
            return None  # another gateway raised it meanwhile: its ticket stands, ours was rolled back
        raise
    svc.deliver(opened, "created")
    log.info("care visit of %s (resident %s) overdue since %s: ticket %s", r.unit, r.id, s.due, opened.id)
    return opened.id


def overdue_tickets(conn: psycopg.Connection[object], resident_id: int) -> list[int]:
    """Tickets raised for the resident's overdue visits, newest first."""
    return fetch_values(conn, "SELECT ticket_id FROM care_overdue_tickets WHERE resident_id = %s ORDER BY due DESC",
                        (resident_id,))
