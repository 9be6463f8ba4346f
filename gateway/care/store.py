"""The care register in PostgreSQL (migration 0016): residents, visits, level changes. Does I/O.

:class:`CareRegister` works on one connection for one request (or one tick) and applies the rules of
:mod:`twin.care`: what a user may see (personal data only for the grid's workers and supervisors, and admins;
operators a masked name; others nothing: not found), who may log a visit or change a level, the schedule in the
community's local time. The REST API (:mod:`gateway.care.api`), the dashboard (:mod:`gateway.care.dashboard`) and the
overdue check (:mod:`gateway.care.overdue`) use it.

The register is seeded from the community file's ``care_units`` (:meth:`CareRegister.seed`: a unit not yet in it is
added with the file's level and resident fields); from then on the register is what counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from gateway.storage import fetch_rows, fetch_value, fetch_values
from gateway.tickets.photos import Photo, check_photo, content_type_of
from gateway.tickets.service import Forbidden, TicketNotFound
from twin import care
from twin.community import Community
from twin.people import User
from twin.tickets import OPEN_STATES, InvalidInput

MAX_NOTE = 2000
MAX_REASON = 500
MAX_PHOTO_BYTES = 5 * 1024 * 1024
BACKDATE_DAYS = 14  # a visit may be logged up to this long after it happened
FUTURE_SLACK = timedelta(minutes=5)


class ResidentNotFound(TicketNotFound):
    """No such resident, or not one the user may know of (the same answer: 404)."""


class CareForbidden(Forbidden):
    pass


@dataclass(frozen=True, slots=True)
class ResidentRow:
    id: int
    community: str
    unit: str
    building: str
    floor: int
    grid: str | None
    name: str | None
    category: str | None
    mobility_limited: bool
    phone: str | None
    level: str
    registered_at: datetime
    level_changed_at: datetime | None
    last_visit_at: datetime | None
    version: int
    overdue_ticket: int | None
    overdue_due: date | None


_COLUMNS = ("r.id, r.community, r.unit, r.building, r.floor, r.grid, r.name, r.category, r.mobility_limited, "
            "r.phone, r.level, r.registered_at, r.level_changed_at, r.last_visit_at, r.version")
# the newest ticket raised for an overdue visit of the resident, when it is for the visit due now (checked in Python)
_SELECT = (f"SELECT {_COLUMNS}, (SELECT o.ticket_id FROM care_overdue_tickets o WHERE o.resident_id = r.id "
           "ORDER BY o.due DESC LIMIT 1) AS overdue_ticket, (SELECT o.due FROM care_overdue_tickets o "
           "WHERE o.resident_id = r.id ORDER BY o.due DESC LIMIT 1) AS overdue_due FROM care_residents r")


def clean_text(v: str, limit: int, what: str) -> str:
    """Text a person typed, as stored: stripped, at most ``limit`` characters, no NUL or lone surrogates."""
    v = v.strip()
    if len(v) > limit:
        raise InvalidInput(f"the {what} is longer than {limit} characters")
    if "\x00" in v:
        raise InvalidInput(f"the {what} must not contain NUL characters")
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"the {what} must be valid Unicode") from None
    return v


def visit_history(conn: psycopg.Connection[Any], community: str) -> tuple[dict[int, list[datetime]],
                                                                          dict[int, list[tuple[datetime, str, str]]]]:
    """Every visit time and level change (at, from, to) of the community's residents by resident, oldest first
    (outcome analytics: the schedule replayed)."""
    visits: dict[int, list[datetime]] = {}
    for rid, at in conn.execute("SELECT v.resident_id, v.visited_at FROM care_visits v JOIN care_residents r ON "
                                "r.id = v.resident_id WHERE r.community = %s ORDER BY v.visited_at", (community,)):
        visits.setdefault(int(rid), []).append(at)
    changes: dict[int, list[tuple[datetime, str, str]]] = {}
    for rid, at, f, t in conn.execute(
            "SELECT c.resident_id, c.at, c.from_level, c.to_level FROM care_level_changes c JOIN care_residents r "
            "ON r.id = c.resident_id WHERE r.community = %s ORDER BY c.at, c.id", (community,)):
        changes.setdefault(int(rid), []).append((at, str(f), str(t)))
    return visits, changes


class CareRegister:
    """The register on one connection (one per request or tick; not thread-safe)."""

    def __init__(self, conn: psycopg.Connection[Any], communities: Mapping[str, Community], now: datetime) -> None:
        self.conn = conn
        self.communities = dict(communities)
        self.now = now

    # -- seeding ------------------------------------------------------------------------------------------------

    def seed(self, c: Community) -> int:
        """Add the community file's care units that the register does not hold yet; returns how many."""
        known = set(fetch_values(self.conn, "SELECT unit FROM care_residents WHERE community = %s", (c.id,)))
        rows = []
        for u in c.care_units:
            if u.unit in known:
                continue
            b = c.building(u.building)
            rows.append((c.id, u.unit, u.building, u.floor, c.grid_of(b) if b else None, u.name, u.category,
                         u.mobility_limited, u.phone, u.level, self.now))
        if rows:
            with self.conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO care_residents (community, unit, building, floor, grid, name, category, "
                    "mobility_limited, phone, level, registered_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING", rows)
        return len(rows)

    def seed_all(self) -> int:
        return sum(self.seed(c) for c in self.communities.values())

    # -- reading ------------------------------------------------------------------------------------------------

    def rows(self, *, community: str | None = None, ids: list[int] | None = None,
             building: str | None = None) -> list[ResidentRow]:
        where: list[str] = ["true"]
        args: list[Any] = []
        if community is not None:
            where.append("r.community = %s")
            args.append(community)
        if ids is not None:
            where.append("r.id = ANY(%s)")
            args.append(ids)
        if building is not None:
            where.append("r.building = %s")
            args.append(building)
        return fetch_rows(self.conn, class_row(ResidentRow), _SELECT + " WHERE " + " AND ".join(where)
                          + " ORDER BY r.community, r.building, r.floor, r.unit", args)

    def view(self, user: User, r: ResidentRow) -> care.ResidentView:
        c = self.communities.get(r.community)
        tz = c.tz if c is not None else UTC
        s = care.schedule(r.level, r.registered_at, r.last_visit_at, r.level_changed_at, self.now, tz)
        personal = care.sees_personal(user, r.grid)
        return care.ResidentView(
            id=r.id, community=r.community, unit=r.unit, building=r.building, floor=r.floor, grid=r.grid, level=r.level,
            schedule=s, mobility_limited=r.mobility_limited, personal=personal,
            name=(r.name or "") if personal else care.mask_name(r.name), category=r.category if personal else None,
            phone=r.phone if personal else None, last_visit_at=r.last_visit_at, version=r.version,
            overdue_ticket=r.overdue_ticket if s.overdue and r.overdue_due == s.due else None)

    def residents(self, user: User, *, community: str | None = None, level: str | None = None,
                  grid: str | None = None, overdue_only: bool = False) -> list[care.ResidentView]:
        """The residents ``user`` may see, overdue first, then by level (red first) and due date."""
        if level is not None and level not in care.LEVELS:
            raise InvalidInput(f"unknown level {level!r}; one of {', '.join(care.LEVELS)}")
        out = [self.view(user, r) for r in self.rows(community=community)
               if care.may_see(user, r.grid) and (level is None or r.level == level)
               and (grid is None or r.grid == grid)]
        if overdue_only:
            out = [v for v in out if v.schedule.overdue]
        rank: dict[str, int] = {lvl: i for i, lvl in enumerate(care.LEVELS)}
        return sorted(out, key=lambda v: (not v.schedule.overdue, rank[v.level], v.schedule.due, v.unit))

    def _row(self, user: User, resident_id: int) -> ResidentRow:
        found = self.rows(ids=[resident_id])
        if not found or not care.may_see(user, found[0].grid):
            raise ResidentNotFound(f"no resident {resident_id} in your care register")
        return found[0]

    def resident(self, user: User, resident_id: int) -> care.ResidentView:
        return self.view(user, self._row(user, resident_id))

    def visits(self, user: User, resident_id: int, limit: int = 50) -> list[care.VisitView]:
        """The resident's visits, newest first: the grid's people see notes and checklists, operators when only."""
        r = self._row(user, resident_id)
        personal = care.sees_personal(user, r.grid)
        rows = fetch_rows(self.conn, class_row(care.VisitView),
                          "SELECT id, visited_at, recorded_at, visitor, note, checks, photo IS NOT NULL AS has_photo "
                          "FROM care_visits WHERE resident_id = %s ORDER BY visited_at DESC, id DESC LIMIT %s",
                          (r.id, limit))
        return rows if personal else [replace(v, note="", checks={}, has_photo=False) for v in rows]

    def level_changes(self, user: User, resident_id: int) -> list[care.LevelChangeView]:
        r = self._row(user, resident_id)
        personal = care.sees_personal(user, r.grid)
        rows = self.conn.execute("SELECT at, by_user, from_level, to_level, reason FROM care_level_changes "
                                 "WHERE resident_id = %s ORDER BY at DESC, id DESC", (r.id,)).fetchall()
        return [care.LevelChangeView(at, by, f, t, reason if personal else "") for at, by, f, t, reason in rows]

    def photo(self, user: User, visit_id: int) -> Photo:
        row = self.conn.execute("SELECT r.id, r.grid, v.photo_type, v.photo FROM care_visits v JOIN care_residents r "
                                "ON r.id = v.resident_id WHERE v.id = %s", (visit_id,)).fetchone()
        if row is None or row[3] is None or not care.sees_personal(user, row[1]):
            raise ResidentNotFound(f"no photo of visit {visit_id} for you")
        return Photo(str(row[2]), bytes(row[3]))

    def evacuation(self, user: User, community: str, building: str) -> list[care.ResidentView]:
        """Residents with limited mobility in ``building`` (top floors first), as ``user`` may see them. Everyone
        who can see a fire ticket of the building is shown them (masked unless it is their grid)."""
        rows = [r for r in self.rows(community=community, building=building) if r.mobility_limited]
        return [self.view(user, r) for r in sorted(rows, key=lambda r: (-r.floor, r.unit))]

    def for_unit(self, user: User, community: str, unit: str) -> care.ResidentView | None:
        rid = fetch_value(self.conn, "SELECT id FROM care_residents WHERE community = %s AND unit = %s",
                          (community, unit))
        if rid is None:
            return None
        found = self.rows(ids=[int(rid)])
        return self.view(user, found[0]) if found and care.may_see(user, found[0].grid) else None

    # -- changing -----------------------------------------------------------------------------------------------

    def log_visit(self, user: User, resident_id: int, *, note: str = "", checks: Mapping[str, bool] | None = None,
                  visited_at: datetime | None = None, photo: Photo | None = None) -> care.VisitView:
        """A visit by ``user``: ``visited_at`` (default now) no later than now and at most 14 days back."""
        r = self._row(user, resident_id)
        if not care.may_log_visit(user, r.grid):
            raise CareForbidden("only the workers and supervisors of the resident's grid log visits")
        note = clean_text(note, MAX_NOTE, "note")
        try:
            answers = care.check_answers((checks or {}).items())
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        at = visited_at or self.now
        if at.tzinfo is None:
            raise InvalidInput("the visit's time needs a time zone (e.g. 2026-12-02T10:30+08:00)")
        if at > self.now + FUTURE_SLACK:
            raise InvalidInput("the visit's time is in the future")
        if at < self.now - timedelta(days=BACKDATE_DAYS):
            raise InvalidInput(f"a visit can be logged at most {BACKDATE_DAYS} days after it happened")
        if photo is not None:
            check_photo(photo, MAX_PHOTO_BYTES)
        with self.conn.transaction():
            vid = fetch_value(
                self.conn, "INSERT INTO care_visits (resident_id, visited_at, recorded_at, visitor, note, checks, "
                "photo_type, photo) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (r.id, at, self.now, user.username, note, Jsonb(answers),
                 content_type_of(photo) if photo else None, photo.data if photo else None))
            self.conn.execute("UPDATE care_residents SET last_visit_at = greatest(last_visit_at, %s), "
                              "version = version + 1 WHERE id = %s", (at, r.id))
            self._note_on_overdue_tickets(r.id, int(vid), at, user)
        return care.VisitView(int(vid), at, self.now, user.username, note, answers, photo is not None)

    def _note_on_overdue_tickets(self, resident_id: int, visit_id: int, at: datetime, user: User) -> None:
        """The open overdue-visit tickets of the resident learn of the visit (a ``care_visit`` entry in their
        history: when, by whom; not the visit's notes), so whoever holds one can close it."""
        for tid, state, version in self.conn.execute(
                "SELECT t.id, t.state, t.version FROM care_overdue_tickets o JOIN tickets t ON t.id = o.ticket_id "
                "WHERE o.resident_id = %s AND t.state = ANY(%s)", (resident_id, [s.value for s in OPEN_STATES])):
            self.conn.execute(
                "INSERT INTO ticket_events (ticket_id, at, action, from_state, to_state, actor, note, version, detail) "
                "VALUES (%s, %s, 'care_visit', %s, %s, %s, '', %s, %s)",
                (tid, self.now, state, state, user.username, version,
                 Jsonb({"visit": visit_id, "visited_at": at.isoformat()})))
            self.conn.execute("UPDATE tickets SET updated_at = now() WHERE id = %s", (tid,))  # open pages redraw

    def change_level(self, user: User, resident_id: int, level: str, reason: str, *,
                     version: int | None = None) -> care.ResidentView:
        """A new level with its reason (kept in the history); the visit clock restarts with the new interval."""
        r = self._row(user, resident_id)
        if not care.may_change_level(user, r.grid):
            raise CareForbidden("only the workers and supervisors of the resident's grid change care levels")
        if level not in care.LEVELS:
            raise InvalidInput(f"unknown level {level!r}; one of {', '.join(care.LEVELS)}")
        reason = clean_text(reason, MAX_REASON, "reason")
        if not reason:
            raise InvalidInput("a level change needs a reason")
        if level == r.level:
            raise InvalidInput(f"the resident is already at level {level}")
        if version is not None and version != r.version:
            raise InvalidInput(f"the resident's record changed meanwhile (version {r.version}, not {version}): "
                               "reload it")
        with self.conn.transaction():
            cur = self.conn.execute("UPDATE care_residents SET level = %s, level_changed_at = %s, "
                                    "version = version + 1 WHERE id = %s AND version = %s",
                                    (level, self.now, r.id, r.version))
            if cur.rowcount != 1:
                raise InvalidInput("the resident's record changed meanwhile: reload it")
            self.conn.execute("INSERT INTO care_level_changes (resident_id, at, by_user, from_level, to_level, "
                              "reason) VALUES (%s, %s, %s, %s, %s, %s)",
                              (r.id, self.now, user.username, r.level, level, reason))
        return self.resident(user, r.id)
