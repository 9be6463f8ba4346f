"""Patrol check-ins and the on-duty position trail in PostgreSQL (migration 0017). Does I/O.

:class:`Patrols` works on one ticket service's connection for one request and applies the rules of
:mod:`twin.patrols` and docs/patrols.md: who may check in where (the checkpoint grid's workers and supervisors),
who may post a position (a worker, their own, only on duty, only on the estate), who sees what (supervisors their
grids' workers, a worker their own trail, operators and admins everything) and how long positions are kept
(:data:`twin.patrols.RETENTION`, deleted on insert and by the ticket service's tick: :func:`purge_positions`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import class_row

from gateway.storage import fetch_rows, fetch_value
from gateway.tickets.service import Forbidden, TicketService
from twin import patrols as pt
from twin import tickets as tk
from twin.community import Community, Grid, Worker, centroid
from twin.people import Role, User
from twin.tickets import InvalidInput

MAX_NOTE = 500
PROBLEM_CATEGORY = {"fire_door": "fire", "fire_lane": "fire", "extinguisher": "fire", "elevator": "elevator"}


class PatrolForbidden(Forbidden):
    pass


@dataclass(frozen=True, slots=True)
class CheckinRow:
    id: int
    checkpoint: str
    plan: str
    grid: str | None
    worker: str
    at: datetime
    how: str
    result: str
    note: str
    distance_m: float | None
    ticket_id: int | None

    def as_checkin(self) -> pt.CheckIn:
        return pt.CheckIn(self.checkpoint, self.at, self.worker, "ok" if self.result == "ok" else "problem",
                          "qr" if self.how == "qr" else "position", self.note, self.ticket_id)


@dataclass(frozen=True, slots=True)
class PositionRow:
    worker: str
    worker_id: str | None
    at: datetime
    x: float
    y: float
    accuracy_m: float | None

    def fix(self) -> pt.Fix:
        return pt.Fix(self.worker, self.worker_id, self.at, self.x, self.y, self.accuracy_m)


_CHECKIN = ("id, checkpoint, plan, grid, worker, at, how, result, note, distance_m, ticket_id")


def purge_positions(conn: psycopg.Connection[Any], now: datetime) -> int:
    """Delete positions older than the retention period; how many went."""
    cur = conn.execute("DELETE FROM worker_positions WHERE at < %s", (now - pt.RETENTION,))
    return cur.rowcount or 0


def signing_key(conn: psycopg.Connection[Any]) -> bytes:
    """The key that signs checkpoint tokens, made once per database (every gateway signs alike)."""
    conn.execute("INSERT INTO patrol_keys (id, secret) VALUES (1, %s) ON CONFLICT (id) DO NOTHING",
                 (secrets.token_bytes(32),))
    return bytes(fetch_value(conn, "SELECT secret FROM patrol_keys WHERE id = 1"))


def patrols_started(conn: psycopg.Connection[Any]) -> datetime | None:
    """When patrols began to be recorded here: migration 0017's time (earlier periods cannot be missed)."""
    at: datetime | None = fetch_value(conn, "SELECT applied_at FROM schema_version WHERE version = 17")
    return at


def checkins_between(conn: psycopg.Connection[Any], community: str, since: datetime,
                     until: datetime) -> list[CheckinRow]:
    """Every check-in of ``community`` in ``[since, until)``, oldest first (outcome analytics)."""
    return fetch_rows(conn, class_row(CheckinRow), f"SELECT {_CHECKIN} FROM patrol_checkins WHERE community = %s "
                      "AND at >= %s AND at < %s ORDER BY at, id", (community, since, until))


def worker_grids(c: Community, worker_id: str | None) -> list[Grid]:
    return [g for g in c.grids if worker_id is not None and any(w.id == worker_id for w in g.workers)]


def worker_of(c: Community, worker_id: str | None) -> Worker | None:
    return next((w for g in worker_grids(c, worker_id) for w in g.workers if w.id == worker_id), None)


class Patrols:
    def __init__(self, svc: TicketService, community: Community, plans: pt.Plans | None = None) -> None:
        self.svc = svc
        self.conn = svc.conn
        self.c = community
        self.plans = plans or pt.default_plans()
        self.points = pt.checkpoints(community, self.plans)
        self.by_id = {p.id: p for p in self.points}

    def now(self) -> datetime:
        return self.svc.clock()

    # -- what a user sees -------------------------------------------------------------------------------------

    def visible(self, user: User, grid: str | None = None) -> list[pt.Checkpoint]:
        if grid is not None and not user.may_see_grid(grid):
            raise PatrolForbidden(f"grid {grid} is not one of yours")
        return [p for p in self.points if user.may_see_grid(p.grid) and (grid is None or p.grid == grid)]

    def status(self, user: User, grid: str | None = None) -> list[pt.CheckpointStatus]:
        points = self.visible(user, grid)
        now = self.now()
        rows = self.checkins(user, since=pt.window(self.plans, now, self.c.tz), grid=grid)
        return pt.status(points, self.plans, [r.as_checkin() for r in rows], now, self.c.tz, self.started())

    def started(self) -> datetime | None:
        """When patrols began to be recorded here: migration 0017's time (earlier periods cannot be missed)."""
        at: datetime | None = fetch_value(self.conn, "SELECT applied_at FROM schema_version WHERE version = 17")
        return at

    def checkins(self, user: User, *, since: datetime, grid: str | None = None, limit: int = 5000) -> list[CheckinRow]:
        ids = [p.id for p in self.visible(user, grid)]
        return fetch_rows(self.conn, class_row(CheckinRow),
                          f"SELECT {_CHECKIN} FROM patrol_checkins WHERE community = %s AND checkpoint = ANY(%s) "
                          "AND at >= %s ORDER BY at DESC LIMIT %s", (self.c.id, ids, since, limit))

    def token(self, checkpoint: str) -> str:
        return pt.token(signing_key(self.conn), self.c.id, checkpoint)

    # -- check-ins --------------------------------------------------------------------------------------------

    def check_in(self, user: User, *, token: str | None = None, checkpoint: str | None = None,
                 position: tuple[float, float, float | None] | None = None, result: pt.Result = "ok", note: str = "",
                 at: datetime | None = None) -> CheckinRow:
        """Store a check-in: by a QR ``token``, or at ``checkpoint`` with the phone's ``position`` (lat, lon,
        accuracy) within the plans' radius. A ``problem`` (with a note) also raises a ticket to the grid."""
        now = self.now()
        when = pt.check_time(at, now, pt.MAX_CHECKIN_AGE, "at")
        note = note.strip()
        if len(note) > MAX_NOTE:
            raise InvalidInput(f"note: at most {MAX_NOTE} characters")
        if result == "problem" and not note:
            raise InvalidInput("a problem needs a note saying what is wrong")
        dist: float | None = None
        if token is not None:
            cp = pt.read_token(signing_key(self.conn), self.c.id, token, self.by_id)
            how = "qr"
        elif checkpoint is not None and position is not None:
            known = self.by_id.get(checkpoint)
            if known is None:
                raise InvalidInput(f"no checkpoint {checkpoint!r} in community {self.c.id}")
            cp = known
            lat, lon, acc = position
            x, y = pt.check_fix(lat, lon, acc, self.c.origin)
            dist = pt.distance((x, y), (cp.x, cp.y))
            if not pt.within(self.plans, [cp], x, y, acc):
                raise InvalidInput(f"you are {dist:.0f} m from {cp.label}: come within {self.plans.radius_m:g} m "
                                   "or scan its QR code")
            how = "position"
        else:
            raise InvalidInput("send the QR code's token, or a checkpoint with the phone's position")
        self._may_patrol(user, cp)
        ticket_id = self._raise(user, cp, note, now) if result == "problem" else None
        row = self.conn.execute(
            "INSERT INTO patrol_checkins (community, plan, checkpoint, grid, worker, at, recorded_at, how, result, "
            "note, distance_m, ticket_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (self.c.id, cp.plan, cp.id, cp.grid, user.username, when, now, how, result, note, dist, ticket_id),
        ).fetchone()
        assert row is not None
        return CheckinRow(int(row[0]), cp.id, cp.plan, cp.grid, user.username, when, how, result, note, dist,
                          ticket_id)

    def _may_patrol(self, user: User, cp: pt.Checkpoint) -> None:
        if user.role not in (Role.WORKER, Role.SUPERVISOR) or cp.grid not in user.grids:
            raise PatrolForbidden(f"only the workers and supervisors of grid {cp.grid} check in at {cp.id}")

    def _raise(self, user: User, cp: pt.Checkpoint, note: str, now: datetime) -> int:
        plan = self.plans.plan(cp.plan)
        assert plan is not None
        category = PROBLEM_CATEGORY.get(cp.plan, "other")
        t = tk.new_ticket(community=self.c.id, title=f"巡查发现问题：{plan.name.zh}（{cp.label}）", category=category,
                          priority=tk.Priority.GENERAL, source="manual", at=now, policy=self.svc.policy,
                          rate_token=secrets.token_urlsafe(18), building=cp.building, description=note,
                          reporter=user.username,
                          keys=tk.place_keys(self.svc.incidents, self.c, category, building=cp.building))
        done = self.svc.open_ticket(self.c, t, {"reported_by": user.username, "patrol": {"checkpoint": cp.id}},
                                    lambda _t: None)
        return done.id

    # -- positions --------------------------------------------------------------------------------------------

    def post_position(self, user: User, lat: float, lon: float, accuracy_m: float | None,
                      at: datetime | None = None) -> PositionRow:
        """Store the worker's own position (on duty, on the estate); older positions past retention go."""
        worker = worker_of(self.c, user.worker_id) if user.role is Role.WORKER else None
        if worker is None:
            raise PatrolForbidden("only a grid worker of this community posts a position (their own)")
        now = self.now()
        when = pt.check_time(at, now, pt.MAX_POSITION_AGE, "at")
        x, y = pt.check_fix(lat, lon, accuracy_m, self.c.origin)
        if not pt.on_duty(worker.on_duty, when.astimezone(self.c.tz)):
            raise PatrolForbidden(f"off duty (shift {worker.on_duty[0]:%H:%M}-{worker.on_duty[1]:%H:%M}): positions "
                                  "are kept only on duty")
        purge_positions(self.conn, now)
        self.conn.execute("INSERT INTO worker_positions (community, worker, worker_id, at, recorded_at, x, y, "
                          "accuracy_m) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                          (self.c.id, user.username, worker.id, when, now, x, y, accuracy_m))
        return PositionRow(user.username, worker.id, when, x, y, accuracy_m)

    def _worker_ids(self, user: User, grid: str | None) -> list[str]:
        if grid is not None and not user.may_see_grid(grid):
            raise PatrolForbidden(f"grid {grid} is not one of yours")
        if user.role is Role.WORKER:
            return [user.worker_id] if user.worker_id else []
        return [w.id for g in self.c.grids if user.may_see_grid(g.id) and (grid is None or g.id == grid)
                for w in g.workers]

    def trails(self, user: User, *, hours: float = 12, grid: str | None = None) -> list[PositionRow]:
        """Positions of the workers the user may see (a worker: their own), oldest first."""
        ids = self._worker_ids(user, grid)
        since = self.now() - timedelta(hours=hours)
        return fetch_rows(self.conn, class_row(PositionRow),
                          "SELECT worker, worker_id, at, x, y, accuracy_m FROM worker_positions WHERE community = %s "
                          "AND worker_id = ANY(%s) AND at >= %s ORDER BY at LIMIT 20000", (self.c.id, ids, since))

    def nearest(self, user: User, building: str) -> list[tuple[float, pt.Fix]]:
        """On-duty workers with a fresh position, nearest to ``building`` first (an urgent ticket's panel)."""
        b = self.c.building(building)
        if b is None:
            raise InvalidInput(f"community {self.c.id} has no building {building!r}")
        if user.role not in (Role.SUPERVISOR, Role.OPERATOR, Role.ADMIN):
            raise PatrolForbidden("only supervisors and operators see where workers are")
        now = self.now()
        ids = self._worker_ids(user, None)
        rows = fetch_rows(self.conn, class_row(PositionRow),
                          "SELECT DISTINCT ON (worker_id) worker, worker_id, at, x, y, accuracy_m "
                          "FROM worker_positions WHERE community = %s AND worker_id = ANY(%s) AND at >= %s "
                          "ORDER BY worker_id, at DESC",
                          (self.c.id, ids, now - pt.FRESH_POSITION))
        local = now.astimezone(self.c.tz)
        fixes = [r.fix() for r in rows
                 if (w := worker_of(self.c, r.worker_id)) is not None and pt.on_duty(w.on_duty, local)]
        cx, cy = centroid(b.footprint)
        return pt.nearest(fixes, cx, cy, now)
