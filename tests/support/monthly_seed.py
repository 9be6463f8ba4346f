"""A month of plausible activity in the sample community, written straight into the database: tickets from
alarms (with their alarm events and ticket alarms, some judged false) and from people's reports, ratings, missed
deadlines, care visits (some late, some missing) and patrol check-ins. Close times shorten and satisfaction rises
week by week, as on a platform settling in. For the monthly report's tests and its sample PDF::

    .venv/bin/python -m tests.support.monthly_seed SCHEMA 2026-11   # seeds a schema of $GRIDTWIN_DB_URL
"""

from __future__ import annotations

import random
import sys
from datetime import date, datetime, time, timedelta
from typing import Any

import orjson
import psycopg

from gateway.care.store import CareRegister
from gateway.tickets.rows import TICKET_COLUMNS, ticket_params
from twin import patrols as pt
from twin import tickets as tk
from twin.community import Community
from twin.tickets import Priority, TicketState

# (category, rule or report category, device kind, source) and how often
KINDS = [
    ("fire", "smoke_rising", "smoke_detector", "alarm", 10),
    ("gas", "gas_level1", "gas", "alarm", 4),
    ("elevator", "elevator_door_stuck_open", "elevator", "alarm", 6),
    ("water", "water_leak", "water_leak", "alarm", 5),
    ("fire", "fire_door_open", "fire_door", "alarm", 4),
    ("other", "fire_lane", None, "manual", 8),
    ("environment", "noise", None, "manual", 6),
    ("water", "water_leak", None, "manual", 5),
    ("care", "care_inactivity", "care_door", "alarm", 2),
]
HOT = [("B3", 12), ("B3", 12), ("B3", 12), ("B3", 12), ("B3", 12), ("B7", 1), ("B7", 1), ("B7", 1), ("B7", 1),
       ("B11", -1), ("B11", -1), ("B11", -1), ("B1", 5), ("B1", 5), ("B5", 3), ("B9", 20)]


def _device(c: Community, kind: str, building: str, floor: int) -> tuple[str, str, int]:
    """A device of ``kind`` in the building (its id, building, floor), nearest the floor asked for."""
    found = [d for d in c.devices if d.kind == kind and d.building == building]
    found = found or [d for d in c.devices if d.kind == kind]
    d = min(found, key=lambda d: (d.building != building, abs((d.floor or 0) - floor)))
    return d.id, d.building or building, d.floor if d.floor is not None else floor


def seed(conn: psycopg.Connection[Any], c: Community, year: int, month: int, *, tickets: int = 60,
         rng_seed: int = 7) -> dict[str, int]:
    """Writes a month of activity for ``c`` (already loaded, schema migrated); returns what it wrote."""
    rng = random.Random(rng_seed)
    tz = c.tz
    first = date(year, month, 1)
    nxt = date(year + month // 12, month % 12 + 1, 1)
    days = (nxt - first).days
    policy = tk.SlaPolicy()
    workers = {g.id: [w.id for w in g.workers] for g in c.grids}
    weights = [k[-1] for k in KINDS]
    n_alarm = n_report = n_false = 0
    for i in range(tickets):
        cat, rule, kind, source, _ = rng.choices(KINDS, weights)[0]
        building, floor = rng.choice(HOT) if rng.random() < 0.55 else (
            rng.choice(c.buildings).id, rng.choice([1, 2, 3, 5, 8, 11]))
        b = c.building(building)
        assert b is not None
        floor = floor if floor in b.floors else b.floors[-1]
        device = None
        if kind is not None:
            device, building, floor = _device(c, kind, building, floor)
        day = rng.randrange(days)
        created = datetime.combine(first + timedelta(days=day), time(rng.randrange(7, 22), rng.randrange(60)), tz)
        priority = Priority.URGENT if cat in ("fire", "gas", "elevator") else Priority.GENERAL
        d = policy.deadlines(priority, None, created)
        grid = c.grid_of(b)
        worker = rng.choice(workers.get(grid or "", ["w1-1"]))
        week = day // 7  # later weeks: faster and better
        respond_h = rng.uniform(0.1, 1.5) if priority is Priority.URGENT else rng.uniform(1, 20)
        if rng.random() < 0.12:
            respond_h *= 4  # a late response now and then
        if priority is Priority.URGENT:  # resolve within 24 h, less often late as the month goes on
            close_days = max(0.03, rng.gauss(0.75 - 0.1 * week, 0.3))
        else:  # within 72 h
            close_days = max(0.1, rng.gauss(3.0 - 0.45 * week, 0.8))
        resolved = created + timedelta(days=close_days)
        still_open = day >= days - 3 and rng.random() < 0.5
        rating = None if still_open or rng.random() < 0.25 else min(5, max(1, round(rng.gauss(3.6 + 0.3 * week, 0.8))))
        state = (TicketState.HANDLING if still_open else
                 TicketState.EVALUATED if rating is not None else TicketState.FEEDBACK)
        responded = created + timedelta(hours=respond_h)
        false = source == "alarm" and not still_open and rng.random() < (0.45 if kind == "smoke_detector" else 0.08)
        breaches = (responded > d.respond_by) + (not still_open and d.resolve_by is not None
                                                 and resolved > d.resolve_by)
        t = tk.Ticket(
            id=0, community=c.id, title=f"{rule} {building}", category=cat, priority=priority, state=state,
            source="alarm" if source == "alarm" else "manual", created_at=created, clock_start=created,
            respond_by=d.respond_by, resolve_by=d.resolve_by, rate_token=f"seed-{i}-{rng.random()}",
            rule=rule if source == "alarm" else None, building=building, floor=floor, device=device, grid=grid,
            assignee=worker, assignee_role="on_duty", responded_at=responded, accepted_at=responded,
            resolved_at=None if still_open else resolved,
            closed_at=None if still_open or rating is None else resolved + timedelta(hours=6),
            breaches=breaches, rating=rating, rated_at=None if rating is None else resolved + timedelta(hours=5),
            reporter="system" if source == "alarm" else "resident",
            close_reason="false_alarm" if false else None)
        cols = ", ".join(TICKET_COLUMNS)
        marks = ", ".join(["%s"] * len(TICKET_COLUMNS))
        tid = conn.execute(f"INSERT INTO tickets ({cols}) VALUES ({marks}) RETURNING id",
                           ticket_params(t)).fetchone()[0]  # type: ignore[index]
        if source == "alarm":
            n_alarm += 1
            n_false += false
            key = f"{rule}:{device}:{tid}"
            event = {"building": building, "floor": floor, "rule": rule, "device": device}
            conn.execute("INSERT INTO alarm_events (at, community, key, kind, severity, detail, event) "
                         "VALUES (%s, %s, %s, 'raised', 'major', %s, %s)",
                         (created, c.id, key, rule, orjson.dumps(event).decode()))
            conn.execute("INSERT INTO ticket_alarms (ticket_id, alarm_key, rule, severity, subject, device, building, "
                         "floor, detail, first_at, last_at, close_reason) VALUES (%s, %s, %s, 'major', %s, %s, %s, %s, "
                         "'', %s, %s, %s)", (tid, key, rule, device, device, building, floor, created, created,
                                             "false_alarm" if false else None if still_open else "other"))
        else:
            n_report += 1
            conn.execute("INSERT INTO ticket_reports (ticket_id, community, kind, category, reporter, created_at) "
                         "VALUES (%s, %s, 'resident', %s, 'resident', %s)", (tid, c.id, rule, created))
    return {"tickets": tickets, "alarms": n_alarm, "reports": n_report, "false": n_false,
            "care_visits": _care(conn, c, first, nxt, rng), "checkins": _patrols(conn, c, first, nxt, rng)}


def _care(conn: psycopg.Connection[Any], c: Community, first: date, nxt: date, rng: random.Random) -> int:
    """Residents registered a month before; visits kept on time mostly, a few late, a few skipped."""
    tz = c.tz
    registered = datetime.combine(first - timedelta(days=35), time(9), tz)
    CareRegister(conn, {c.id: c}, registered).seed(c)
    conn.execute("UPDATE care_residents SET registered_at = %s WHERE community = %s", (registered, c.id))
    # patrols (and so missed rounds) are recorded from well before the month on
    conn.execute("UPDATE schema_version SET applied_at = %s WHERE version = 17", (registered,))
    rows = conn.execute("SELECT id, level FROM care_residents WHERE community = %s ORDER BY id", (c.id,)).fetchall()
    n = 0
    for rid, level in rows:
        skip_after = rng.random() < 0.15  # this resident is not visited any more this month
        anchor = registered
        while True:
            due = pt.local_start(_add(level, anchor.astimezone(tz).date()), tz) + timedelta(hours=10)
            late = rng.random() < 0.12
            at = due + timedelta(days=rng.randrange(1, 4)) if late else due - timedelta(days=rng.randrange(0, 3))
            if at >= pt.local_start(nxt, tz) or (skip_after and at >= pt.local_start(first, tz)):
                break
            conn.execute("INSERT INTO care_visits (resident_id, visited_at, recorded_at, visitor) "
                         "VALUES (%s, %s, %s, 'w1-1')", (rid, at, at))
            conn.execute("UPDATE care_residents SET last_visit_at = %s WHERE id = %s", (at, rid))
            anchor = at
            n += 1
    return n


def _add(level: str, d: date) -> date:
    from twin.care import add_interval

    return add_interval(level, d)


def _patrols(conn: psycopg.Connection[Any], c: Community, first: date, nxt: date, rng: random.Random) -> int:
    """A check-in in most periods of every checkpoint that touch the month (elevator reminders less often)."""
    plans = pt.default_plans()
    tz = c.tz
    rows: list[tuple[Any, ...]] = []
    for cp in pt.checkpoints(c, plans):
        plan = plans.plan(cp.plan)
        assert plan is not None
        day = first - timedelta(days=20)
        while day < nxt:
            s, e = pt.period_of(plan, plans.anchor, day)
            if rng.random() < (0.8 if cp.plan == "elevator" else 0.93):
                span = max(1, (min(e, nxt) - s).days)
                at = datetime.combine(s + timedelta(days=rng.randrange(span)), time(rng.randrange(8, 18)), tz)
                if at < pt.local_start(nxt, tz):
                    rows.append((c.id, cp.plan, cp.id, cp.grid, at, at))
            day = e
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO patrol_checkins (community, plan, checkpoint, grid, worker, at, recorded_at, how, "
                        "result) VALUES (%s, %s, %s, %s, 'w1-1', %s, %s, 'qr', 'ok')", rows)
    return len(rows)


def main(argv: list[str]) -> int:
    import os

    from gateway.cli_base import sample_community_path
    from gateway.storage import Storage
    from twin.community import parse

    schema, month = argv
    year, mon = (int(x) for x in month.split("-"))
    c = parse(sample_community_path().read_text(encoding="utf-8"))
    st = Storage.connect(os.environ.get("GRIDTWIN_DB_URL", "postgresql://postgres@127.0.0.1:5432/test"),
                         schema=schema)
    st.migrate()
    st.load_community(c)
    print(seed(st.conn, c, year, mon))
    st.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
