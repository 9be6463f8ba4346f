"""Hotspot test data on the sample community, through the real services where it matters: alarms raised (the
``alarms`` / ``alarm_events`` rows the alarm service writes), some of them ticketed and cancelled as false alarms
(TicketService), and one-click reports (gateway.reports.store.submit). Used by tests/integration/test_hotspots.py
and the hotspots page's screenshots.

What it makes, relative to ``now`` (hours are Shanghai local time):

* 3号楼 1层: 消防通道堵塞 reported 5 times in the day (repeat: tackle the source) + one smoke alarm
* 5号楼 2层: 4 fire pre-alarms of one detector, 3 cancelled as false (false alarms; one device)
* 9号楼 12层: 高空抛物 reported 4 times at night (repeat; night)
* 7号楼 3层: 2 fire-door-open alarms of one door, at night
* 11号楼 (building-wide): 2 hydrant pressure alarms; 4号楼 1层: 2 elevator reports; 2号楼 8层: a resident in need
* 12号楼 6层: one smoke alarm 45 days ago (only in a 90-day period)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from psycopg.types.json import Jsonb

from gateway.reports.store import NewReport, submit
from gateway.settings import Settings
from gateway.storage import Storage
from gateway.tickets.service import TicketService
from twin.alarms import AlarmEvent, AlarmStatus, Dispatch, EventKind, Severity
from twin.community import Community
from twin.people import Role, User

OPERATOR = User("op", "值班员", Role.OPERATOR)
WORKER = User("w1-1", "马刚", Role.WORKER, ("G1",), "w1-1")


@dataclass(frozen=True)
class Seeded:
    alarms: int
    reports: int
    false_alarms: int


def local(now: datetime, c: Community, days_ago: int, hour: int, minute: int = 0) -> datetime:
    """``days_ago`` days before ``now`` at ``hour``:``minute`` local time."""
    day = (now - timedelta(days=days_ago)).astimezone(c.tz)
    return day.replace(hour=hour, minute=minute, second=0, microsecond=0)


def raise_alarm(st: Storage, c: Community, rule: str, subject: str, at: datetime, *, building: str,
                floor: int | None, device: str | None) -> AlarmEvent:
    """What the alarm service stores when ``rule`` raises on ``subject`` at ``at``: the alarm row and its event."""
    key = f"{rule}@{subject}"
    kind = "device" if device else ("floor" if floor is not None else "building")
    st.conn.execute(
        "INSERT INTO alarms (key, community, rule, subject, subject_type, severity, status, dispatch, building, floor, "
        "device, raised_at, last_seen, count, detail) VALUES (%s, %s, %s, %s, %s, 'major', 'active_unack', 'urgent', "
        "%s, %s, %s, %s, %s, 1, 'seed') ON CONFLICT (key) DO UPDATE SET raised_at = excluded.raised_at, "
        "updated_at = now()", (key, c.id, rule, subject, kind, building, floor, device, at, at))
    st.conn.execute(
        "INSERT INTO alarm_events (at, community, key, kind, severity, status, by, detail, event) VALUES "
        "(%s, %s, %s, 'raised', 'major', 'active_unack', NULL, 'seed', %s)",
        (at, c.id, key, Jsonb({"building": building, "floor": floor, "rule": rule, "device": device})))
    return AlarmEvent(EventKind.RAISED, rule, subject, kind, Severity.MAJOR, AlarmStatus.ACTIVE_UNACK, at, at, 1,
                      building, floor, device, "seed", Dispatch.URGENT, received_at=at)


def seed(st: Storage, settings: Settings, c: Community, now: datetime) -> Seeded:
    alarms = reports = false = 0

    def service(at: datetime) -> TicketService:
        return TicketService(st, settings, c, clock=lambda: at)

    def alarm(rule: str, device: str | None, building: str, floor: int | None, at: datetime, *,
              false_alarm: bool = False) -> None:
        nonlocal alarms, false
        subject = device or (f"{building}-F{floor}" if floor is not None else building)
        ev = raise_alarm(st, c, rule, subject, at, building=building, floor=floor, device=device)
        alarms += 1
        if false_alarm:  # ticketed, then cancelled as a false alarm by the operator
            svc = service(at)
            t = svc.on_alarm_event(c, ev)
            assert t is not None
            later = service(at + timedelta(minutes=20))
            later.cancel(OPERATOR, t.id, "误报：探测器积尘，现场核实无烟", code="false_alarm")
            false += 1

    def report(category: str, building: str, floor: int | None, at: datetime, text: str, *,
               resident: bool = False) -> None:
        nonlocal reports
        submit(service(at), c, NewReport(category, building, floor, text=text, contact="13800000000" if resident
                                         else None), reporter=None if resident else WORKER, at=at)
        reports += 1

    for n, (days, hour) in enumerate([(1, 10), (3, 14), (6, 9), (12, 16), (20, 11)]):
        report("fire_lane", "B3", 1, local(now, c, days, hour), f"单元门口电动车堵住消防通道（第 {n + 1} 次）")
    alarm("smoke_rising", "B3-F1-SD1", "B3", 1, local(now, c, 4, 13))
    for days, hour, fa in [(2, 15, True), (5, 11, True), (9, 16, True), (15, 10, False)]:
        alarm("fire_prealarm", "B5-F2-SD1", "B5", 2, local(now, c, days, hour), false_alarm=fa)
    for days, hour in [(2, 23), (4, 1), (8, 2), (16, 22)]:
        report("falling_objects", "B9", 12, local(now, c, days, hour, 30), "楼上扔下杂物", resident=True)
    for days, hour in [(3, 2), (10, 3)]:
        alarm("fire_door_open", "B7-F3-FD", "B7", 3, local(now, c, days, hour))
    for days, hour in [(5, 8), (6, 19)]:
        alarm("hydrant_pressure_low", None, "B11", None, local(now, c, days, hour))
    for days, hour in [(2, 8), (7, 18)]:
        report("elevator_fault", "B4", 1, local(now, c, days, hour), "电梯停在 8 楼不动")
    report("resident_in_need", "B2", 8, local(now, c, 3, 9), "独居老人两天没出门", resident=True)
    alarm("smoke_rising", "B12-F6-SD1", "B12", 6, local(now, c, 45, 12))
    return Seeded(alarms, reports, false)
