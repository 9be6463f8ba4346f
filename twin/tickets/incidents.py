"""Incidents: which alarms are one emergency (one ticket), what it is called, and the place in words. Pure.

An incident groups the alarms of one emergency by the data of :mod:`twin.tickets.policy`: the same group (fire,
elevator, gas, communication loss, ...) at the same place (its scope: building, floor, lift, care unit, ...),
each alarm arriving within the group's window of the incident's last one; the same alarm raising again always
joins the incident it belongs to. Its title, rule and severity follow its worst alarm (:func:`summarize`); from
a group's storm size on (49 silent devices of one building) it is titled as one storm with its device count.

:func:`incident_key` is what the ticket service stores on the ticket (``Ticket.keys``) to find the incident's
ticket again; :func:`incidents_of` replays a sequence of alarm events into incidents without any ticket (the
scenario checks and ``gridtwin rules test --incidents`` use it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from twin import catalogue
from twin.alarms import AlarmEvent, EventKind, Severity
from twin.community import Community
from twin.tickets.model import Priority, Ticket
from twin.tickets.policy import CATEGORIES, DEFAULT_TITLE, Group, IncidentPolicy


def care_unit_of(community: Community | None, device: str | None, unit: str | None = None) -> str | None:
    if community is None:
        return None
    for cu in community.care_units:
        if (device is not None and device in cu.sensors) or (unit is not None and cu.unit == unit):
            return cu.unit
    return None


def panel_of(community: Community | None, device: str | None) -> str | None:
    """The fire panel whose component address table holds ``device`` (or ``device`` itself if it is a panel)."""
    if community is None or device is None:
        return None
    dev = community.device(device)
    if dev is not None and dev.kind == "fire_panel":
        return dev.id
    return next((p.id for p in community.devices if p.components and device in p.components.values()), None)


def correlates(t: Ticket, keys: frozenset[str], at: datetime, window: timedelta) -> bool:
    """An alarm (arriving at server time ``at``) joins an open ticket that shares an incident key and saw an
    alarm (or was opened) within ``window``."""
    last = t.last_alarm_at or t.created_at
    return t.open and bool(t.keys & keys) and at - last <= window


# -- incident keys ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IncidentKey:
    """Where an alarm belongs: ``key`` (``"fire:B1"``, ``"elevator:B1-E1-M"``, ``"subject:X"`` when no group takes
    it) and the group deciding its window, title and category."""

    key: str
    group: Group | None
    within_s: float

    @property
    def stored(self) -> str:
        """The form kept in ``Ticket.keys``."""
        return f"incident:{self.key}"


def incident_key(policy: IncidentPolicy, community: Community | None, event: AlarmEvent) -> IncidentKey:
    """The incident an alarm event belongs to (by the policy's first group taking its rule or category)."""
    dev = community.device(event.device) if community is not None and event.device else None
    group = policy.group_of(event.rule, category_of(event.rule, dev.kind if dev else None))
    if group is None:
        return IncidentKey(f"subject:{event.subject}", None, policy.default_within)
    unit = event.subject if event.subject_type == "care_unit" else (dev.unit if dev else None)
    value = _scope_value(group.scope, community, subject=event.subject, building=event.building, floor=event.floor,
                         device=event.device, unit=unit)
    return IncidentKey(f"{group.id}:{value or event.subject}", group, group.within)


def stored_key(policy: IncidentPolicy, keys: Iterable[str]) -> IncidentKey | None:
    """The incident key a ticket keeps (the first, if a manual report collected several); None: none (a ticket
    from before incidents, keyed by subject and floor)."""
    for k in sorted(keys):
        if k.startswith("incident:"):
            key = k.removeprefix("incident:")
            g = next((g for g in policy.groups if g.id == key.split(":", 1)[0]), None)
            return IncidentKey(key, g, g.within if g is not None else policy.default_within)
    return None


def place_keys(policy: IncidentPolicy, community: Community | None, category: str, *, building: str | None,
               floor: int | None = None, unit: str | None = None) -> frozenset[str]:
    """The incident keys a manual report at a place collects: those of every group of its category whose scope the
    place names (a reported fire in building B1 collects the fire alarms of B1 that follow)."""
    out: set[str] = set()
    for g in policy.groups:
        if g.category != category or g.scope in ("device", "subject", "panel"):
            continue
        value = _scope_value(g.scope, community, subject=None, building=building, floor=floor, device=None,
                             unit=unit)
        if value is not None:
            out.add(IncidentKey(f"{g.id}:{value}", g, g.within).stored)
    return frozenset(out)


def _scope_value(scope: str, community: Community | None, *, subject: str | None, building: str | None,
                 floor: int | None, device: str | None, unit: str | None) -> str | None:
    """The place an alarm stands for in ``scope`` (None: it does not say; the caller falls back to its subject)."""
    floor_value = f"{building}/{floor}" if building and floor is not None else None
    if scope == "building":
        return building
    if scope == "floor":
        return floor_value or building
    if scope == "unit":
        return f"unit:{unit}" if unit else floor_value or building
    if scope == "device":
        return device or subject
    if scope == "care_unit":
        return care_unit_of(community, device, unit)
    if scope == "panel":
        p = panel_of(community, device)
        return f"panel:{p}" if p else building
    return subject


# -- the incident's alarms, title and worst alarm ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IncidentAlarm:
    """One alarm of an incident (its timeline entry)."""

    key: str
    rule: str
    severity: Severity
    subject: str
    device: str | None
    building: str | None
    floor: int | None
    first_at: datetime
    count: int = 1
    cleared_at: datetime | None = None
    priority: Priority | None = None

    @classmethod
    def of(cls, e: AlarmEvent, at: datetime | None = None) -> IncidentAlarm:
        return cls(e.key, e.rule, e.severity, e.subject, e.device, e.building, e.floor, at or e.at, max(1, e.count),
                   priority=Priority.of(e.dispatch))

    @property
    def active(self) -> bool:
        return self.cleared_at is None

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "rule": self.rule, "severity": self.severity.value, "subject": self.subject,
                "device": self.device, "building": self.building, "floor": self.floor,
                "first_at": self.first_at.isoformat(), "count": self.count,
                "cleared_at": self.cleared_at.isoformat() if self.cleared_at else None}


@dataclass(frozen=True, slots=True)
class Summary:
    """What an incident is now: its title, worst alarm (its rule names the ticket's SOP), the life-safety rules
    among its alarms (they set its tightest targets), and its devices."""

    title: str
    worst: IncidentAlarm
    life_safety: tuple[str, ...]
    devices: tuple[str, ...]
    category: str


def worst_alarm(policy: IncidentPolicy, group: Group | None, alarms: Sequence[IncidentAlarm]) -> IncidentAlarm:
    """The most serious alarm: highest severity, then life-safety, then the earlier rule in the group's list, then
    the first to come."""
    if not alarms:
        raise ValueError("an incident has at least one alarm")

    def rank(a: IncidentAlarm) -> tuple[int, bool, int, float]:
        return (a.severity.rank, policy.is_life_safety(a.rule), -(group.order(a.rule) if group else 0),
                -a.first_at.timestamp())

    return max(alarms, key=rank)


def summarize(policy: IncidentPolicy, community: Community | None, key: IncidentKey, alarms: Sequence[IncidentAlarm],
              names: Mapping[str, str] | None = None) -> Summary:
    """Title, worst alarm, life-safety rules, devices and category of an incident with these ``alarms``.

    ``names``: rule id -> its Chinese name (the rules file's ``name`` before `` / ``); the rule id if missing."""
    group = key.group
    worst = worst_alarm(policy, group, alarms)
    devices = tuple(dict.fromkeys(a.device or a.subject for a in alarms))
    template = group.title if group is not None else DEFAULT_TITLE
    if group is not None and group.storm is not None and len(devices) >= group.storm.devices:
        template = group.storm.title
    dev = community.device(worst.device) if community is not None and worst.device else None
    unit = dev.unit if dev is not None else care_unit_of(community, None, worst.subject)
    where = location_text(community, worst.building, worst.floor, unit)
    scope = group.scope if group is not None else "subject"
    if scope == "building":
        place = location_text(community, worst.building, None, None)
    elif scope == "floor":
        place = location_text(community, worst.building, worst.floor, None)
    else:
        place = where
    rule_name = (names or {}).get(worst.rule, worst.rule)
    title = template.format(worst=rule_name, where=where, place=place, devices=len(devices), alarms=len(alarms),
                            name=group.name_zh if group else rule_name)
    life = tuple(dict.fromkeys(a.rule for a in alarms if policy.is_life_safety(a.rule)))
    category = (group.category if group is not None and group.category is not None
                else category_of(worst.rule, dev.kind if dev else None))
    return Summary(" ".join(title.split()).strip(" ·"), worst, life, devices, category)


# -- incidents from a sequence of alarm events (no tickets) ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Incident:
    """One emergency: its alarms (a timeline, in order of arrival), title, category, priority and worst alarm."""

    key: str
    group: str | None
    title: str
    category: str
    priority: Priority
    severity: Severity
    rule: str
    life_safety: bool
    alarms: tuple[IncidentAlarm, ...]
    devices: tuple[str, ...]
    opened_at: datetime
    last_alarm_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "group": self.group, "title": self.title, "category": self.category,
                "priority": self.priority.value, "severity": self.severity.value, "rule": self.rule,
                "life_safety": self.life_safety, "devices": list(self.devices),
                "opened_at": self.opened_at.isoformat(), "last_alarm_at": self.last_alarm_at.isoformat(),
                "alarms": [a.as_dict() for a in self.alarms]}


@dataclass
class _Open:
    key: IncidentKey
    opened_at: datetime
    last_at: datetime
    alarms: dict[str, IncidentAlarm] = field(default_factory=dict)


def incidents_of(community: Community | None, events: Iterable[AlarmEvent], policy: IncidentPolicy, *,
                 names: Mapping[str, str] | None = None) -> list[Incident]:
    """The incidents a sequence of alarm events makes, in order of opening, as the dispatcher would group them
    into tickets if no ticket were ever resolved: a raised alarm that dispatches (and reaches a person) joins the
    incident already holding the same alarm, else the latest incident of its key that saw an alarm within the
    group's window, else opens one; repeats, escalations and clears update the alarm in its incident. Times are
    the events' ``received_at`` when they carry it, else their ``at``."""
    opened: list[_Open] = []
    by_alarm: dict[str, _Open] = {}
    for e in events:
        if e.kind is EventKind.RAISED:
            if Priority.of(e.dispatch) is None or not e.notify:
                continue
            at = e.received_at if e.received_at is not None else e.at
            ik = incident_key(policy, community, e)
            inc = by_alarm.get(e.key)
            if inc is None:
                inc = next((o for o in reversed(opened) if o.key.key == ik.key
                            and (at - o.last_at).total_seconds() <= ik.within_s), None)
            if inc is None:
                inc = _Open(ik, at, at)
                opened.append(inc)
            before = inc.alarms.get(e.key)
            inc.alarms[e.key] = (IncidentAlarm.of(e, at) if before is None
                                 else replace(before, count=before.count + 1, cleared_at=None,
                                              severity=e.severity))
            inc.last_at = max(inc.last_at, at)
            by_alarm[e.key] = inc
            continue
        inc = by_alarm.get(e.key)
        if inc is None or e.key not in inc.alarms:
            continue
        a = inc.alarms[e.key]
        if e.kind is EventKind.UPDATED:
            inc.alarms[e.key] = replace(a, count=max(a.count, e.count))
        elif e.kind is EventKind.ESCALATED:
            inc.alarms[e.key] = replace(a, severity=e.severity)
        elif e.kind is EventKind.CLEARED:
            inc.alarms[e.key] = replace(a, cleared_at=e.at)
    out = []
    for o in opened:
        alarms = tuple(o.alarms.values())
        s = summarize(policy, community, o.key, alarms, names)
        priorities = [a.priority for a in alarms if a.priority is not None]
        out.append(Incident(o.key.key, o.key.group.id if o.key.group else None, s.title, s.category,
                            max(priorities, key=lambda p: p.rank) if priorities else Priority.GENERAL,
                            max((a.severity for a in alarms), key=lambda sev: sev.rank), s.worst.rule,
                            bool(s.life_safety), alarms, s.devices, o.opened_at, o.last_at))
    return out


# -- categories ----------------------------------------------------------------------------------------

_RULE_PREFIX = (("elevator_", "elevator"), ("gas_", "gas"), ("co_", "gas"), ("care_", "care"),
                ("water_", "water"), ("fire_", "fire"), ("panel_", "fire"), ("heat_", "fire"), ("smoke_", "fire"),
                ("hydrant_", "fire"), ("sprinkler_", "fire"), ("emergency_", "fire"), ("extinguisher_", "fire"),
                ("detector_", "fire"), ("temperature_", "environment"), ("humidity_", "environment"),
                ("noise_", "environment"))
_KIND_CATEGORY = {"gas": "gas", "co": "gas", "water_leak": "water", "water_tank": "water"}


def category_of(rule: str | None, device_kind: str | None = None) -> str:
    """Ticket category (it picks the partner and the SOP fallback) from the device kind, else the rule id."""
    if device_kind is not None:
        if device_kind in _KIND_CATEGORY:
            return _KIND_CATEGORY[device_kind]
        spec = catalogue.kind(device_kind)
        if spec is not None:
            return spec.category if spec.category in CATEGORIES else "other"
    for prefix, cat in _RULE_PREFIX:
        if rule and rule.startswith(prefix):
            return cat
    return "other"


def location_text(community: Community | None, building: str | None, floor: int | None, unit: str | None,
                  device: str | None = None) -> str:
    """``阳光社区 1号楼 12层 B1-1201`` (basements as B1, B2)."""
    parts: list[str] = []
    if community is not None:
        parts.append(community.name)
        b = community.building(building) if building else None
        parts.append(b.name if b else building or "")
    elif building:
        parts.append(building)
    if floor is not None:
        parts.append(f"B{-floor}层" if floor < 0 else f"{floor}层")
    if unit:
        parts.append(unit)
    if device and device != unit:
        parts.append(f"设备 {device}")
    return " ".join(p for p in parts if p)
