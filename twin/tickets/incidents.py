"""What makes alarms one incident (correlation keys), a ticket's category, and the place in words."""

from __future__ import annotations

from datetime import datetime, timedelta

from twin import catalogue
from twin.alarms import AlarmEvent
from twin.community import Community
from twin.tickets.model import Ticket


def care_unit_of(community: Community | None, device: str | None, unit: str | None = None) -> str | None:
    if community is None:
        return None
    for cu in community.care_units:
        if (device is not None and device in cu.sensors) or (unit is not None and cu.unit == unit):
            return cu.unit
    return None


def incident_keys(community: Community | None, *, subject: str | None = None, building: str | None = None,
                  floor: int | None = None, device: str | None = None, unit: str | None = None,
                  care_unit: str | None = None) -> frozenset[str]:
    """What makes two alarms one incident: the same subject, the same floor of a building, the same care unit."""
    keys: set[str] = set()
    if subject:
        keys.add(f"subject:{subject}")
    if device:
        keys.add(f"subject:{device}")
    if building and floor is not None:
        keys.add(f"floor:{building}/{floor}")
    cu = care_unit or care_unit_of(community, device, unit)
    if cu:
        keys.add(f"care:{cu}")
    return frozenset(keys)


def event_keys(community: Community | None, event: AlarmEvent) -> frozenset[str]:
    return incident_keys(community, subject=event.subject, building=event.building, floor=event.floor,
                         device=event.device, care_unit=event.subject if event.subject_type == "care_unit" else None)


def correlates(t: Ticket, keys: frozenset[str], at: datetime, window: timedelta) -> bool:
    """An alarm (arriving at server time ``at``) joins an open ticket that shares an incident key and saw an
    alarm (or was opened) recently."""
    last = t.last_alarm_at or t.created_at
    return t.open and bool(t.keys & keys) and at - last <= window


# -- categories ----------------------------------------------------------------------------------------

CATEGORIES = ("fire", "elevator", "gas", "water", "care", "environment", "other")
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
