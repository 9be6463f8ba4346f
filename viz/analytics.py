"""What the panels compute from the data they are given: colour classes, SLA clocks, hotspot outliers,
care alerts, history bucket sizes. Pure functions of their inputs (the clock is passed in).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, TypeVar

from twin.community import Community
from twin.state import Level, Rollup
from viz.data import AlarmView, CareUnitView, TicketView

K = TypeVar("K", bound=Hashable)

LEVEL_CLASS: Mapping[Level, str] = {
    Level.UNKNOWN: "normal", Level.NORMAL: "normal", Level.WARNING: "warning", Level.OFFLINE: "offline",
    Level.MINOR: "minor", Level.MAJOR: "major", Level.CRITICAL: "critical",
}
SLA_WARN_AT = 0.75  # share of the time to a deadline after which the clock turns amber (issue 7: watchdog at 75%)
SLA_WARN_LEFT = timedelta(minutes=5)  # ... and amber whenever less than this is left, whatever the target
CARE_QUIET_AFTER = timedelta(hours=12)  # display hint: a care unit with no activity this long is flagged


# -- colour classes ------------------------------------------------------------------------------------


def alarm_levels(alarms: Iterable[AlarmView], community: Community, now: datetime
                 ) -> tuple[dict[str, Level], dict[tuple[str, int], Level], dict[str, Level]]:
    """Worst level of active, unshelved alarms per building, per floor and per device.

    An alarm without a floor (a building or care-unit subject, or a device without a floor) paints
    its whole building.
    """
    buildings: dict[str, Level] = {}
    floors: dict[tuple[str, int], Level] = {}
    devices: dict[str, Level] = {}
    for a in alarms:
        if not a.status.active or a.shelved(now):
            continue
        lv = a.severity.level
        building, floor = a.building, a.floor
        if a.device is not None:
            devices[a.device] = max(devices.get(a.device, Level.UNKNOWN), lv)
            dev = community.device(a.device)
            if dev is not None:
                building = building or dev.building
                floor = floor if floor is not None else dev.floor
        if building is None:
            continue
        buildings[building] = max(buildings.get(building, Level.UNKNOWN), lv)
        if floor is not None:
            floors[(building, floor)] = max(floors.get((building, floor), Level.UNKNOWN), lv)
    return buildings, floors, devices


def building_classes(rollup: Rollup, alarms: Iterable[AlarmView], community: Community, now: datetime
                     ) -> dict[str, str]:
    """Colour class of each building: the worse of its live roll-up and its active alarms."""
    by_alarm, _floors, _devices = alarm_levels(alarms, community, now)
    out = {}
    for b in community.buildings:
        lv = max(rollup.buildings.get(b.id, Level.UNKNOWN), by_alarm.get(b.id, Level.UNKNOWN))
        out[b.id] = LEVEL_CLASS[lv]
    return out


def floor_classes(building: str, rollup: Rollup, alarms: Iterable[AlarmView], community: Community,
                  now: datetime) -> dict[int, str]:
    """Colour class of each floor of one building (a whole-building alarm paints every floor)."""
    b = community.building(building)
    if b is None:
        return {}
    by_building, by_floor, _devices = alarm_levels(alarms, community, now)
    whole = by_building.get(building, Level.UNKNOWN) if not any(k[0] == building for k in by_floor) else None
    out = {}
    for f in b.floors:
        lv = max(rollup.floors.get((building, f), Level.UNKNOWN), by_floor.get((building, f), Level.UNKNOWN),
                 whole or Level.UNKNOWN)
        out[f] = LEVEL_CLASS[lv]
    return out


def device_levels(rollup: Rollup, alarms: Iterable[AlarmView], community: Community, now: datetime
                  ) -> dict[str, Level]:
    _b, _f, by_device = alarm_levels(alarms, community, now)
    return {d: max(lv, by_device.get(d, Level.UNKNOWN)) for d, lv in rollup.devices.items()}


# -- SLA clocks ----------------------------------------------------------------------------------------

SlaState = Literal["ok", "warning", "breached", "done"]


@dataclass(frozen=True, slots=True)
class SlaClock:
    """The deadline a ticket is running against now, how much of its time is used, and its colour."""

    stage: Literal["respond", "resolve", "none"]
    deadline: datetime | None
    remaining: timedelta | None
    used: float  # share of the time between creation and the deadline that has passed
    state: SlaState


def sla_clock(ticket: TicketView, now: datetime) -> SlaClock:
    """``warning`` from 75% of the time to the current deadline or when less than 5 min are left (whichever
    comes first: a clock that started late, or a short target, still turns amber), ``breached`` at and after it."""
    if not ticket.open:
        return SlaClock("none", None, None, 0.0, "done")
    if ticket.responded_at is None and ticket.respond_by is not None:
        stage: Literal["respond", "resolve", "none"] = "respond"
        deadline = ticket.respond_by
    elif ticket.resolve_by is not None:
        stage, deadline = "resolve", ticket.resolve_by
    else:
        return SlaClock("none", None, None, 0.0, "ok")
    start = ticket.clock_start or ticket.created_at
    total = (deadline - start).total_seconds()
    used = 1.0 if total <= 0 else (now - start).total_seconds() / total
    state: SlaState = ("breached" if now >= deadline
                       else "warning" if used >= SLA_WARN_AT or deadline - now < SLA_WARN_LEFT else "ok")
    return SlaClock(stage, deadline, deadline - now, max(0.0, used), state)


SLA_CLASS: Mapping[SlaState, str] = {"ok": "normal", "warning": "minor", "breached": "critical", "done": "normal"}
_SLA_RANK: Mapping[SlaState, int] = {"done": 0, "ok": 1, "warning": 2, "breached": 3}


def building_sla_classes(tickets: Iterable[TicketView], community: Community, now: datetime) -> dict[str, str]:
    """Colour class of each building by the worst SLA clock of its open tickets."""
    worst: dict[str, SlaState] = {}
    for t in tickets:
        building = t.building
        if building is None and t.device is not None:
            dev = community.device(t.device)
            building = dev.building if dev else None
        if building is None:
            continue
        st = sla_clock(t, now).state
        if _SLA_RANK[st] > _SLA_RANK[worst.get(building, "done")]:
            worst[building] = st
    return {b.id: SLA_CLASS[worst.get(b.id, "done")] for b in community.buildings}


def format_remaining(remaining: timedelta) -> str:
    """``-0:05`` style clock: hours:minutes, negative when overdue (language-neutral)."""
    s = int(remaining.total_seconds())
    sign = "-" if s < 0 else ""
    s = abs(s)
    d, rest = divmod(s, 86400)
    h, rest = divmod(rest, 3600)
    m = rest // 60
    return f"{sign}{d}d {h:02d}:{m:02d}" if d else f"{sign}{h}:{m:02d}"


# -- hotspots ------------------------------------------------------------------------------------------


def outliers(counts: Mapping[K, int], population: Iterable[K] = (), *, min_count: int = 3, z: float = 2.0) -> set[K]:
    """Places whose count stands out: at least ``min_count`` and above mean + ``z`` standard deviations.

    ``population`` lists places with no incidents too (they count as zeros), so one building with
    five alarms in a quiet community is called out while ten buildings with five each are not.
    """
    keys = set(counts) | set(population)
    if not keys:
        return set()
    values = [counts.get(k, 0) for k in keys]
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return {k for k in keys if counts.get(k, 0) >= min_count and counts.get(k, 0) > mean + z * sd}


# -- care ----------------------------------------------------------------------------------------------


def care_alert(unit: CareUnitView, now: datetime, quiet_after: timedelta = CARE_QUIET_AFTER) -> bool:
    """Whether a care unit needs a look: an open inactivity alarm, or no activity for ``quiet_after``."""
    if unit.inactivity_alarm:
        return True
    return unit.last_activity is None or now - unit.last_activity > quiet_after


# -- history -------------------------------------------------------------------------------------------

RANGES: Mapping[str, tuple[timedelta, timedelta]] = {
    "hour": (timedelta(hours=1), timedelta(minutes=1)),
    "day": (timedelta(days=1), timedelta(minutes=15)),
    "week": (timedelta(days=7), timedelta(hours=1)),
}
