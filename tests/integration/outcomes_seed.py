"""A few weeks of handling for the sample community, through the real services on a moving clock: manual tickets
and alarm tickets (some false alarms) accepted, resolved and rated, one-click reports, care visits and patrol
check-ins, each a little better week by week. For the outcome tests and the dashboard's screenshots::

    .venv/bin/python -m tests.integration.outcomes_seed DB_URL SCHEMA [DAYS]
"""

from __future__ import annotations

import random
import secrets
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gateway import settings as settings_mod
from gateway.care.store import CareRegister
from gateway.patrols.store import Patrols
from gateway.reports.store import NewReport, submit
from gateway.settings import Settings
from gateway.storage import Storage
from gateway.tickets.service import TicketService
from twin import care
from twin import tickets as tk
from twin.community import Community, parse
from twin.people import Role, User

ROOT = Path(__file__).resolve().parents[2]
ADMIN = User("admin", "admin", Role.ADMIN)
REPORT_CATEGORIES = ("water_leak", "corridor_light", "noise", "elevator_fault")
ALARM_KINDS = ("smoke_detector", "gas_detector", "door_contact", "water_leak")


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


@dataclass(frozen=True)
class Seeded:
    tickets: int
    visits: int
    checkins: int


def sample_community() -> Community:
    return parse((ROOT / "twin" / "sample_community.yaml").read_text(encoding="utf-8"))


def _worker(c: Community, grid: str) -> User:
    g = next(g for g in c.grids if g.id == grid)
    w = g.workers[0]
    return User(w.id, w.name, Role.WORKER, (g.id,), w.id)


def seed(storage: Storage, settings: Settings, c: Community, start: datetime, days: int, *,
         rng_seed: int = 7, per_day: int = 3) -> Seeded:
    """``days`` of handling from ``start`` (aware; 08:00 local is a good start). Handling improves linearly from the
    first day to the last (responses and resolutions faster, more good ratings, fewer false alarms, care visits and
    patrols more often on time)."""
    rng = random.Random(rng_seed)
    clock = Clock(start)
    svc = TicketService(storage, settings, c, clock=clock, render_on_create=False)
    conn = storage.conn
    conn.execute("UPDATE schema_version SET applied_at = %s WHERE version = 17", (start,))  # patrols recorded since
    CareRegister(conn, {c.id: c}, start).seed(c)
    kinds = {k: [d for d in c.devices if d.kind == k] for k in ALARM_KINDS}
    kinds = {k: v for k, v in kinds.items() if v}
    pending: list[tuple[datetime, str, int, Any]] = []  # (when, action, ticket id, arg)
    n_tickets = n_visits = n_checkins = 0
    tz = c.tz

    def at(when: datetime) -> datetime:
        clock.now = when
        return when

    for day in range(days):
        better = day / max(days - 1, 1)  # 0 on the first day, 1 on the last
        base = datetime.combine((start.astimezone(tz) + timedelta(days=day)).date(), datetime.min.time(), tz)
        created: list[tuple[datetime, int, bool]] = []
        for _ in range(per_day):
            when = at(base + timedelta(hours=8 + rng.random() * 10))
            b = rng.choice(c.buildings[:6])
            floor = rng.choice([f for f in b.floors if f > 0][:4])
            if rng.random() < 0.25:
                t, _token = submit(svc, c, NewReport(rng.choice(REPORT_CATEGORIES), b.id, floor, None, "居民反映问题"),
                                   reporter=None)
            else:
                t = svc.create_manual(ADMIN, community=c.id, title="居民来电", building=b.id, floor=floor)
            created.append((when, t.id, False))
        if kinds and day % 2 == 0:
            when = at(base + timedelta(hours=7 + rng.random() * 12))
            d = rng.choice(kinds[rng.choice(sorted(kinds))])
            t = tk.new_ticket(community=c.id, title=f"{d.kind} alarm", category="other", priority=tk.Priority.URGENT,
                              source="alarm", at=when, policy=svc.policy, rate_token=secrets.token_urlsafe(18),
                              building=d.building, floor=d.floor, device=d.id)
            t = svc.open_ticket(c, t, {}, lambda _t: None)
            created.append((when, t.id, rng.random() < 0.35 - 0.3 * better))
        for when, tid, false_alarm in created:
            if false_alarm:
                pending.append((when + timedelta(hours=0.5 + rng.random()), "cancel", tid, None))
                continue
            respond = timedelta(hours=rng.expovariate(1 / (8 - 6 * better)))
            resolve = respond + timedelta(days=rng.expovariate(1 / (4.5 - 3.2 * better)))
            pending.append((when + respond, "accept", tid, None))
            pending.append((when + resolve, "resolve", tid, None))
            if rng.random() < 0.8:
                good = rng.random() < 0.65 + 0.3 * better
                pending.append((when + resolve + timedelta(hours=3), "rate", tid,
                                rng.choice([4, 5]) if good else rng.choice([2, 3])))
        # the day's care visits and patrol rounds, in the afternoon
        at(base + timedelta(hours=15))
        reg = CareRegister(conn, {c.id: c}, clock.now)
        for r in reg.rows(community=c.id):
            s = care.schedule(r.level, r.registered_at, r.last_visit_at, r.level_changed_at, clock.now, tz)
            if s.status in ("due_today", "due_soon", "overdue") and rng.random() < 0.35 + 0.6 * better:
                reg.log_visit(ADMIN, r.id, note="走访")
                n_visits += 1
        patrols = Patrols(svc, c)
        for cp in patrols.points:
            plan = patrols.plans.plan(cp.plan)
            assert plan is not None and cp.grid is not None
            chance = 0.7 + 0.28 * better if plan.every_days == 1 else 0.2
            if rng.random() < chance:
                patrols.check_in(_worker(c, cp.grid), token=patrols.token(cp.id))
                n_checkins += 1
        # actions due by the end of the day
        end = base + timedelta(days=1)
        pending.sort(key=lambda p: p[0])
        while pending and pending[0][0] < end:
            when, action, tid, arg = pending.pop(0)
            at(when)
            t = svc.get(tid)
            if action == "cancel":
                svc.cancel(ADMIN, tid, "误报：现场核实无异常", code="false_alarm")
            elif action == "accept":
                svc.accept(ADMIN, tid)
            elif action == "resolve":
                svc.resolve(ADMIN, tid, "已处理")
            elif action == "rate" and t.state is tk.TicketState.FEEDBACK:
                svc.rate(t.rate_token, int(arg))
        n_tickets += len(created)
        svc.tick(clock.now)
    return Seeded(n_tickets, n_visits, n_checkins)


def main(argv: list[str]) -> int:
    url, schema = argv[0], argv[1]
    days = int(argv[2]) if len(argv) > 2 else 56
    settings = settings_mod.load(env={}, db={"url": url, "schema": schema})
    c = sample_community()
    storage = Storage.connect(url, schema=schema)
    storage.migrate()
    storage.load_community(c)
    today = datetime.now(UTC).astimezone(c.tz).date()
    start = datetime.combine(today - timedelta(days=days), datetime.min.time(), c.tz) + timedelta(hours=8)
    got = seed(storage, settings, c, start, days)
    storage.close()
    print(f"seeded {got.tickets} tickets, {got.visits} care visits, {got.checkins} check-ins into {schema}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
