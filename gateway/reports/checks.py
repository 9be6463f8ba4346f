"""The stored report of a ticket (``ticket_reports``, migration 0015) and where its supervisor's check (核查)
stands. Does I/O (one connection); imported by the ticket service, so it imports nothing of it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row

from twin.tickets import Ticket
from twin.tickets.reports import Verification, rate_problem, verification


@dataclass(frozen=True, slots=True)
class ReportRow:
    ticket_id: int
    community: str
    kind: str  # staff | resident
    category: str  # twin/report_categories.yaml id
    verify: bool
    reporter: str
    created_at: datetime


REPORT_COLUMNS = "ticket_id, community, kind, category, verify, reporter, created_at"


def report_of(conn: psycopg.Connection[Any], ticket_id: int) -> ReportRow | None:
    with conn.cursor(row_factory=class_row(ReportRow)) as cur:
        return cur.execute(f"SELECT {REPORT_COLUMNS} FROM ticket_reports WHERE ticket_id = %s",
                           (ticket_id,)).fetchone()


def actions_of(conn: psycopg.Connection[Any], ticket_id: int) -> list[str]:
    return [str(r[0]) for r in conn.execute("SELECT action FROM ticket_events WHERE ticket_id = %s ORDER BY id",
                                            (ticket_id,)).fetchall()]


def check_of(conn: psycopg.Connection[Any], t: Ticket, report: ReportRow | None = None) -> Verification:
    """Where the check of ``t`` stands (:class:`Verification.NONE` for tickets that are no report)."""
    report = report or report_of(conn, t.id)
    if report is None or not report.verify:
        return Verification.NONE
    return verification(True, t, actions_of(conn, t.id))


def report_rate_problem(conn: psycopg.Connection[Any], t: Ticket) -> str | None:
    """Why ``t`` cannot be rated yet because its check is pending (None: it can)."""
    return rate_problem(check_of(conn, t))
