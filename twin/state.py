"""Live state of a community: latest values, last seen, online/offline, active conditions. Pure.

Facts go in (readings, events, status changes, alarm raises/clears, the clock); the roll-up comes
out: device -> floor -> building -> grid -> community, worst condition wins. No I/O: the gateway
feeds it and restores it from the database at start (:meth:`LiveState.restore`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import IntEnum

from twin import catalogue
from twin.community import Community


class Level(IntEnum):
    """Condition of a thing, ordered so that ``max()`` is "worst wins"."""

    UNKNOWN = 0  # never heard from
    NORMAL = 1
    WARNING = 2  # e.g. a value outside its normal range
    OFFLINE = 3
    MINOR = 4
    MAJOR = 5
    CRITICAL = 6

    @property
    def css(self) -> str:
        return self.name.lower()


# Default condition while a latching device event is active (the alarm rules refine these later).
EVENT_LEVEL: Mapping[str, Level] = {
    "fire_alarm": Level.CRITICAL,
    "entrapment": Level.CRITICAL,
    "door_open_moving": Level.MAJOR,
    "overtravel_top": Level.MAJOR,
    "overtravel_bottom": Level.MAJOR,
    "overspeed": Level.MAJOR,
    "stop_outside_door_zone": Level.MAJOR,
    "safety_circuit_break": Level.MAJOR,
    "power_failure": Level.MINOR,
    "fault": Level.MINOR,
    "supervisory": Level.MINOR,
    "shielded": Level.WARNING,
    "held_open": Level.WARNING,
    "maintenance_mode": Level.WARNING,
}
OFFLINE_AFTER_HEARTBEATS = catalogue.OFFLINE_AFTER_HEARTBEATS  # default; each kind's catalogue silence_s rules


@dataclass(slots=True)
class FieldValue:
    value: float
    ts: datetime


@dataclass(slots=True)
class DeviceState:
    device_id: str
    kind: str
    values: dict[str, FieldValue] = field(default_factory=dict)
    last_seen: datetime | None = None
    online: bool | None = None
    active_events: dict[str, datetime] = field(default_factory=dict)
    alarms: dict[str, Level] = field(default_factory=dict)  # rule id -> severity, owned by the rules engine

    def level(self) -> Level:
        levels = [Level.UNKNOWN if self.last_seen is None and self.online is None else Level.NORMAL]
        if self.online is False:
            levels.append(Level.OFFLINE)
        levels += [EVENT_LEVEL.get(code, Level.WARNING) for code in self.active_events]
        levels += self.alarms.values()
        spec = catalogue.KINDS.get(self.kind)
        if spec is not None:
            for name, fv in self.values.items():
                f = spec.field(name)
                if f is not None and f.normal is not None and not f.normal[0] <= fv.value <= f.normal[1]:
                    levels.append(Level.WARNING)
                    break
        return max(levels)


@dataclass(frozen=True, slots=True)
class Rollup:
    """Worst level per place; ``floors`` keyed by (building id, floor number)."""

    devices: dict[str, Level]
    floors: dict[tuple[str, int], Level]
    buildings: dict[str, Level]
    grids: dict[str, Level]
    community: Level


@dataclass(frozen=True, slots=True)
class PlaceAlarm:
    """An active alarm on a place (a floor, a building or a care unit) rather than on one device."""

    building: str | None
    floor: int | None
    level: Level


class LiveState:
    def __init__(self, community: Community) -> None:
        self.community = community
        self.devices: dict[str, DeviceState] = {d.id: DeviceState(d.id, d.kind) for d in community.devices}
        self.place_alarms: dict[str, PlaceAlarm] = {}  # alarm key -> where and how bad

    # -- facts in ---------------------------------------------------------------------------------

    def reading(self, device_id: str, ts: datetime, values: Mapping[str, float], *,
                received: datetime | None = None) -> None:
        """A reading at device time ``ts``; ``received`` (server time) is what heartbeats count from,
        so a device whose clock runs behind does not look silent."""
        d = self.devices.get(device_id)
        if d is None:
            return
        for name, v in values.items():
            cur = d.values.get(name)
            if cur is None or ts >= cur.ts:  # a late reading never overwrites a newer one
                d.values[name] = FieldValue(float(v), ts)
        self._seen(d, received or ts)

    def event(self, device_id: str, ts: datetime, code: str, state: str, *, received: datetime | None = None) -> None:
        d = self.devices.get(device_id)
        if d is None:
            return
        spec = catalogue.KINDS[d.kind].event(code)
        if spec is not None and spec.latching:
            if state == "active":
                d.active_events[code] = ts
            elif state == "cleared":
                d.active_events.pop(code, None)
        self._seen(d, received or ts)

    def status(self, device_id: str, ts: datetime, online: bool, *, received: datetime | None = None) -> None:
        d = self.devices.get(device_id)
        if d is None:
            return
        d.online = online
        if online:
            self._seen(d, received or ts)

    def alarm(self, device_id: str, rule: str, level: Level | None) -> None:
        """Set (or clear, with None) the severity an alarm rule gives a device."""
        d = self.devices.get(device_id)
        if d is None:
            return
        if level is None:
            d.alarms.pop(rule, None)
        else:
            d.alarms[rule] = level

    def place_alarm(self, key: str, building: str | None, floor: int | None, level: Level | None) -> None:
        """Set (or clear, with None) an alarm whose subject is a floor, building or care unit."""
        if level is None:
            self.place_alarms.pop(key, None)
        else:
            self.place_alarms[key] = PlaceAlarm(building, floor, level)

    def tick(self, now: datetime) -> list[str]:
        """Mark devices offline whose heartbeat is overdue; return the ids that just went offline."""
        gone = []
        for d in self.devices.values():
            if d.online is False or d.last_seen is None:
                continue
            period = timedelta(seconds=catalogue.KINDS[d.kind].silence_s)
            if now - d.last_seen > period:
                d.online = False
                gone.append(d.device_id)
        return gone

    def _seen(self, d: DeviceState, ts: datetime) -> None:
        if d.last_seen is None or ts > d.last_seen:
            d.last_seen = ts
        d.online = True

    # -- restore ----------------------------------------------------------------------------------

    def restore(
        self,
        latest: Iterable[tuple[str, str, float, datetime]],
        statuses: Iterable[tuple[str, str, datetime]],
        active_events: Iterable[tuple[str, str, datetime]],
    ) -> None:
        """Rebuild from stored facts: (device, field, value, ts), (device, state, last_seen), (device, code, ts)."""
        for device_id, name, value, ts in latest:
            self.reading(device_id, ts, {name: value})
        for device_id, code, ts in active_events:
            self.event(device_id, ts, code, "active")
        for device_id, state, last_seen in statuses:
            d = self.devices.get(device_id)
            if d is not None:
                d.online = state == "online"
                if d.last_seen is None or last_seen > d.last_seen:
                    d.last_seen = last_seen

    # -- roll-up ----------------------------------------------------------------------------------

    def rollup(self) -> Rollup:
        devices = {i: d.level() for i, d in self.devices.items()}
        floors: dict[tuple[str, int], Level] = {}
        buildings: dict[str, Level] = {b.id: Level.UNKNOWN for b in self.community.buildings}
        for b in self.community.buildings:
            for f in b.floors:
                floors[(b.id, f)] = Level.UNKNOWN
        for dev in self.community.devices:
            lv = devices[dev.id]
            if dev.building is None:
                continue
            buildings[dev.building] = max(buildings[dev.building], lv)
            if dev.floor is not None:
                key = (dev.building, dev.floor)
                floors[key] = max(floors.get(key, Level.UNKNOWN), lv)
        for pa in self.place_alarms.values():
            if pa.building is None or pa.building not in buildings:
                continue
            buildings[pa.building] = max(buildings[pa.building], pa.level)
            if pa.floor is not None and (pa.building, pa.floor) in floors:
                floors[(pa.building, pa.floor)] = max(floors[(pa.building, pa.floor)], pa.level)
        grids: dict[str, Level] = {g.id: Level.UNKNOWN for g in self.community.grids}
        for b in self.community.buildings:
            if b.grid is not None:
                grids[b.grid] = max(grids[b.grid], buildings[b.id])
        loose = [devices[d.id] for d in self.community.devices if d.building is None]
        community = max([*buildings.values(), *loose, *(p.level for p in self.place_alarms.values()), Level.UNKNOWN])
        return Rollup(devices, floors, buildings, grids, community)
