"""Who gets a ticket: the duty roster of a community's grids (on-duty worker, backup, supervisor) in the
community's local time."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from typing import NamedTuple

from twin.community import Community, Grid, Worker
from twin.tickets.model import require_aware


@dataclass(frozen=True, slots=True)
class Assignment:
    """Who gets a ticket, and why. ``assignee`` None: no grid holds the building (an operator decides)."""

    grid: str | None
    assignee: str | None
    role: str  # on_duty | backup | supervisor | none
    reason: str
    collaborator: str | None = None


def on_duty(worker: Worker, at: datetime, offset: timedelta) -> bool:
    """Whether ``at`` falls in the worker's duty hours in the community's local time.

    ``(08:00, 18:00)`` is a day shift, ``(18:00, 08:00)`` runs overnight, equal ends mean around the clock.
    A shift includes its start and excludes its end.
    """
    require_aware(at)
    local = (at.astimezone(timezone(offset))).time().replace(tzinfo=None)
    start, end = worker.on_duty
    return in_shift(local, start, end)


def in_shift(local: time, start: time, end: time) -> bool:
    if start == end:
        return True
    if start < end:
        return start <= local < end
    return local >= start or local < end


class GridWorker(NamedTuple):
    grid: Grid
    worker: Worker


def find_worker(community: Community, worker_id: str) -> GridWorker | None:
    """The worker with id ``worker_id`` and the grid they work in."""
    for g in community.grids:
        for w in g.workers:
            if w.id == worker_id:
                return GridWorker(g, w)
    return None


def known_people(community: Community) -> dict[str, str]:
    """Every id a ticket can be assigned to (workers, backups, supervisors) -> display name."""
    out: dict[str, str] = {}
    for g in community.grids:
        for w in g.workers:
            out[w.id] = w.name
        out.setdefault(g.supervisor, f"{g.name}网格长")
        if g.backup:
            out.setdefault(g.backup, g.backup)
    return out


def assign(community: Community, building: str | None, at: datetime, *, offset: timedelta = timedelta(hours=8),
           load: Mapping[str, int] | None = None, category: str | None = None,
           partners: Mapping[str, str] | None = None, prefer: str | None = None) -> Assignment:
    """The grid holding the building → its on-duty worker (``prefer`` if they are one of them, e.g. the worker
    of a reopened incident; else the least loaded) → the grid's backup if on duty → the grid supervisor.
    ``partners``: category → collaborator (elevator company...)."""
    collaborator = (partners or {}).get(category or "")
    b = community.building(building) if building else None
    if b is None:
        return Assignment(None, None, "none", f"building {building!r} is not in community {community.id}"
                          if building else "no building given", collaborator)
    grid_id = community.grid_of(b)
    grid = next((g for g in community.grids if g.id == grid_id), None)
    if grid is None:
        return Assignment(None, None, "none", f"building {b.id} lies in no grid", collaborator)
    loads = load or {}
    duty = [w for w in grid.workers if on_duty(w, at, offset)]
    if duty:
        w = next((w for w in duty if w.id == prefer), None) or min(
            duty, key=lambda w: (loads.get(w.id, 0), grid.workers.index(w)))
        return Assignment(grid.id, w.id, "on_duty", f"{w.name} is on duty in {grid.name}", collaborator)
    if grid.backup:
        found = find_worker(community, grid.backup)
        if found is None or on_duty(found.worker, at, offset):
            name = found.worker.name if found else grid.backup
            return Assignment(grid.id, grid.backup, "backup",
                              f"no worker of {grid.name} is on duty: backup {name}", collaborator)
    return Assignment(grid.id, grid.supervisor, "supervisor",
                      f"no worker of {grid.name} nor its backup is on duty: supervisor {grid.supervisor}",
                      collaborator)


def supervisor_of(community: Community, grid: str | None) -> str | None:
    g = next((g for g in community.grids if g.id == grid), None)
    return g.supervisor if g else None


_UTC_OFFSET = re.compile(r"^([+-])(\d{2}):(\d{2})$")


def parse_offset(text: str) -> timedelta:
    """``+08:00`` -> 8 h."""
    m = _UTC_OFFSET.match(text)
    if not m or int(m.group(2)) > 14 or int(m.group(3)) > 59:
        raise ValueError(f"{text!r} is not a UTC offset like +08:00")
    sign = -1 if m.group(1) == "-" else 1
    return sign * timedelta(hours=int(m.group(2)), minutes=int(m.group(3)))
