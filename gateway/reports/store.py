"""One-click reports through the dispatch service: a report becomes a ticket (same dispatch, SLA and rating loop
as an alarm's), a resident follows it by an unguessable token, a supervisor checks (核查) a resolved one. Does I/O.

Every input is validated before anything is stored (a refused report leaves no row, no photo); the ticket, the
report row and its photo are written in one transaction.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.reports.checks import REPORT_COLUMNS, ReportRow, check_of, report_of
from gateway.tickets.photos import Photo, check_photo
from gateway.tickets.rows import SELECT_TICKETS
from gateway.tickets.service import Forbidden, TicketNotFound, TicketService
from twin import tickets as tk
from twin.community import Community
from twin.people import User
from twin.tickets import InvalidInput, Ticket, TicketState
from twin.tickets.reports import (
    VERIFY_FAIL,
    VERIFY_PASS,
    ReportCategories,
    ReportCategory,
    Verification,
    default_categories,
    mask_name,
    public_steps,
    verify_fail,
    verify_pass,
    verify_problem,
)
from viz.i18n import t as text

MAX_TEXT = 1000
MAX_UNIT = 32
PHONE_RE = re.compile(r"^\+?[0-9][0-9 \-]{4,19}$")
TOKEN_RE = re.compile(r"^[A-Za-z0-9_\-]{32}$")  # secrets.token_urlsafe(24)
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_CATEGORIES: ReportCategories | None = None


def categories() -> ReportCategories:
    """The shipped categories, loaded once."""
    global _CATEGORIES  # noqa: PLW0603 - a cache of a shipped file
    if _CATEGORIES is None:
        _CATEGORIES = default_categories()
    return _CATEGORIES


def track_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii", "replace")).digest()


@dataclass(frozen=True, slots=True)
class NewReport:
    """A report as submitted (unchecked): the category id, the place, what was seen, optional phone and photo."""

    category: str
    building: str
    floor: int | None = None
    unit: str | None = None
    text: str = ""
    contact: str | None = None
    photo: Photo | None = None


def _clean_text(text: str, field: str, limit: int, *, required: bool = False) -> str:
    text = text.strip()
    if "\x00" in text or any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
        raise InvalidInput(f"{field} holds characters that cannot be stored")
    if required and not text:
        raise InvalidInput(f"{field} is required: say what you saw")
    if len(text) > limit:
        raise InvalidInput(f"{field} is longer than {limit} characters")
    return text


def check_report(c: Community, cats: ReportCategories, r: NewReport, *, resident: bool,
                 photo_max_bytes: int) -> tuple[ReportCategory, NewReport]:
    """The report's category and the report with its fields cleaned; :class:`InvalidInput` (or a photo's
    ``PhotoRejected``) names the first problem."""
    cat = cats.need(r.category, resident=resident)
    if not ID_RE.match(r.building or "") or c.building(r.building) is None:
        raise InvalidInput(f"community {c.id} has no building {r.building[:64]!r}")
    b = c.building(r.building)
    assert b is not None
    if r.floor is not None and r.floor not in b.floors:
        raise InvalidInput(f"{b.name} has no floor {r.floor} (floors {b.floors[0]}..{b.floors[-1]}, no floor 0)")
    unit = _clean_text(r.unit or "", "unit", MAX_UNIT) or None
    text = _clean_text(r.text, "description", MAX_TEXT, required=True)
    contact = (r.contact or "").strip() or None
    if contact is not None and not PHONE_RE.match(contact):
        raise InvalidInput("the phone number is not valid (digits, spaces, - and a leading +; 5-20 characters)")
    if r.photo is not None:
        check_photo(r.photo, photo_max_bytes)
    return cat, NewReport(cat.id, b.id, r.floor, unit, text, contact, r.photo)


def submit(svc: TicketService, c: Community, report: NewReport, *, reporter: User | None,
           cats: ReportCategories | None = None, at: datetime | None = None,
           context: dict[str, Any] | None = None) -> tuple[Ticket, str | None]:
    """Validate and store a report: the ticket (dispatched to the building's grid worker) and, for a resident
    (``reporter`` None), the tracking token to hand back (only its hash is stored). ``context``: more of what the
    ticket came from (kept with it; e.g. the assistant's answer a handoff carries)."""
    cats = cats or categories()
    resident = reporter is None
    cat, r = check_report(c, cats, report, resident=resident, photo_max_bytes=svc.cfg.photo_max_bytes)
    now = at or svc.clock()
    who = "resident" if reporter is None else reporter.username
    keys = tk.place_keys(svc.incidents, c, cat.category, building=r.building, floor=r.floor,
                         unit=r.unit) if cat.collect else frozenset()
    title = text("zh", f"report.ticket.{'resident' if resident else 'staff'}", label=cat.zh)  # 消防通道堵塞（居民上报）
    t = tk.new_ticket(community=c.id, title=title,
                      category=cat.category, priority=cat.priority, source="manual", at=now, policy=svc.policy,
                      rate_token=secrets.token_urlsafe(18), building=r.building, floor=r.floor, unit=r.unit,
                      description=r.text, reporter=who, contact=r.contact, keys=keys)
    token = secrets.token_urlsafe(24) if resident else None

    def then(t: Ticket) -> None:
        svc.conn.execute(
            f"INSERT INTO ticket_reports ({REPORT_COLUMNS}, track_hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (t.id, c.id, "resident" if resident else "staff", cat.id, cat.verify, who, now,
             track_hash(token) if token else None))
        if r.photo is not None:
            photo_id = svc.store_photo(t.id, r.photo, "report", who, now)
            svc.conn.execute("UPDATE ticket_events SET photo_id = %s WHERE ticket_id = %s AND action = 'create'",
                             (photo_id, t.id))

    about: dict[str, Any] = {**(context or {}), "reported_by": who,
                             "report": {"category": cat.id, "kind": "resident" if resident else "staff",
                                        "verify": cat.verify}}
    return svc.open_ticket(c, t, about, then), token


def by_track_token(svc: TicketService, token: str) -> tuple[Ticket, ReportRow]:
    """The resident's report of a tracking token; :class:`TicketNotFound` for any token that is not one."""
    if not TOKEN_RE.match(token):
        raise TicketNotFound("no report for this link")
    with svc.db_step("reading a report"):
        found = svc.select_tickets(f"{SELECT_TICKETS} WHERE id = (SELECT ticket_id FROM ticket_reports "
                                   "WHERE track_hash = %s)", (track_hash(token),))
        report = report_of(svc.conn, found[0].id) if found else None
    if not found or report is None:
        raise TicketNotFound("no report for this link")
    return found[0], report


def check_state(svc: TicketService, t: Ticket) -> Verification:
    with svc.db_step("reading a report's check"):
        return check_of(svc.conn, t)


def verify(svc: TicketService, user: User, ticket_id: int, passed: bool, reason: str = "", *,
           version: int | None = None) -> Ticket:
    """核查 by the grid supervisor (or an operator): pass closes it as usual, fail sends it back to the worker
    with ``reason``."""
    reason = reason.strip()

    def fn(t: Ticket, _now: datetime) -> Ticket:
        problem = verify_problem(user, t)
        if problem:
            raise Forbidden(problem)
        status = check_of(svc.conn, t)
        return verify_pass(t, status) if passed else verify_fail(t, status, reason)

    action = VERIFY_PASS if passed else VERIFY_FAIL
    note = reason or ("核查通过 / checked: resolved" if passed else "")
    return svc.act(user, ticket_id, action, fn, note, version=version, detail={"passed": passed})


def pending_checks(svc: TicketService, user: User, limit: int = 100) -> list[Ticket]:
    """Resolved reports waiting for ``user``'s check (their grids'; operators: all), oldest first."""
    with svc.db_step("listing reports to check"):
        found = svc.select_tickets(
            f"{SELECT_TICKETS} WHERE state = %s AND id IN (SELECT ticket_id FROM ticket_reports WHERE verify) "
            "ORDER BY resolved_at, id LIMIT %s", (TicketState.FEEDBACK.value, 4 * limit))
        out = [t for t in found if verify_problem(user, t) is None
               and check_of(svc.conn, t) is Verification.PENDING]
    return out[:limit]


# -- what the resident sees ------------------------------------------------------------------------------


def public_view(svc: TicketService, t: Ticket, report: ReportRow) -> dict[str, Any]:
    """The tracking page's facts: the category, the place, the steps (what and when, a worker's name masked),
    the result, and whether the rating form shows. No other ticket, no internal notes, no phone numbers."""
    c = svc.communities.get(t.community)
    with svc.db_step("reading a report's progress"):
        events = svc.conn.execute("SELECT at, action, note, detail FROM ticket_events WHERE ticket_id = %s "
                                  "ORDER BY id", (t.id,)).fetchall()
        status = check_of(svc.conn, t, report)
    workers = {w.id: w.name for g in c.grids for w in g.workers} if c is not None else {}
    supervisors = {g.supervisor for g in c.grids} if c is not None else set()
    shown = set(public_steps(e[1] for e in events))
    steps: list[dict[str, Any]] = []
    for at, action, note, detail in events:
        if action not in shown:
            continue
        step: dict[str, Any] = {"at": at.astimezone(svc.tz), "action": action}
        if action in ("dispatch", "reassign"):
            who = (detail or {}).get("assignee") or t.assignee
            step["worker"] = mask_name(workers.get(who or "", ""))  # 孙*: a worker's family name only
            step["supervisor"] = who in supervisors and who not in workers
        if action == "resolve":
            step["note"] = note  # the result is for the resident to read (as on the rating page); other notes are not
        steps.append(step)
    b = c.building(t.building) if c is not None and t.building else None
    cat = categories().get(report.category)
    return {"category": cat, "community": c.name if c else t.community, "building": b.name if b else t.building,
            "floor": t.floor, "unit": t.unit, "state": t.state.value, "check": status.value, "steps": steps,
            "created_at": t.created_at.astimezone(svc.tz), "rating": t.rating, "rating_comment": t.rating_comment,
            "can_rate": t.state is TicketState.FEEDBACK and status is not Verification.PENDING,
            "rate_token": t.rate_token, "description": t.description}
