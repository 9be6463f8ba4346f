"""What people see of a ticket: the worker's view, the 3D snapshot, the SOP, the KPI report.

Pure formatting of what :class:`~gateway.tickets.service.TicketService` read: no database here.
"""

from __future__ import annotations

import csv
import io
import logging
import tempfile
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from gateway.tickets.rows import AlarmHistoryRow, EarlierTicketRow, TicketAlarmRow
from twin import tickets as tk
from twin.community import Community
from twin.knowledge import KNOWLEDGE_DIRS, Document, KnowledgeBase, KnowledgeError, Layered
from twin.tickets import Ticket

if TYPE_CHECKING:
    from twin.assistant import Assistant

log = logging.getLogger(__name__)
API_PREFIX = "/api/v1"
MAX_VIEW_DEVICES = 8  # devices whose latest readings a view shows
SnapshotFn = Callable[[Community, Ticket], bytes | None]
Iso = Callable[[datetime | None], str | None]


_local_dirs: list[tuple[Path, ...]] = [()]  # the process's local knowledge directories (use_local_knowledge)


@cache
def load_knowledge(local: tuple[Path, ...] = ()) -> Layered:
    """The knowledge base bundled under twin/sop and twin/knowledge_base with the ``*.yaml`` files of the ``local``
    directories (in order) over it: read once per tuple of directories. :class:`KnowledgeError` lists every problem
    (``file: entries[3]: field: why``; a directory that is missing or unreadable)."""
    problems: list[str] = []

    def read(paths: Sequence[Path]) -> list[tuple[str, str]]:
        texts = []
        for p in paths:
            try:
                texts.append((str(p), p.read_text(encoding="utf-8")))
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(f"{p}: cannot read: {getattr(exc, 'strerror', None) or exc}")
        return texts

    local_files: list[Path] = []
    for d in local:
        if not d.is_dir():
            problems.append(f"{d}: knowledge directory {'is not a directory' if d.exists() else 'not found'}")
            continue
        local_files += sorted(d.glob("*.yaml"))
    shipped = read([p for d in KNOWLEDGE_DIRS for p in sorted(d.glob("*.yaml"))])
    texts = read(local_files)
    try:
        layered = KnowledgeBase.layered(shipped, texts)
    except KnowledgeError as exc:
        problems += exc.problems
    if problems:
        raise KnowledgeError(problems)
    return layered


def _dirs(local: Sequence[Path] | None) -> tuple[Path, ...]:
    return _local_dirs[0] if local is None else tuple(Path(d) for d in local)


def knowledge_base(local: Sequence[Path] | None = None) -> KnowledgeBase:
    """The shipped knowledge base with the ``local`` directories over it (None: the process's, set by
    :func:`use_local_knowledge`; read once per tuple of directories)."""
    return load_knowledge(_dirs(local)).kb


def assistant(local: Sequence[Path] | None = None) -> Assistant:
    """The knowledge assistant over :func:`knowledge_base` (index built once per tuple of directories; jieba and
    bm25s are imported only here, about 0.3 s, so processes that never ask do not pay for them)."""
    return _assistant(_dirs(local))


@cache
def _assistant(local: tuple[Path, ...]) -> Assistant:
    from twin.assistant import Assistant

    return Assistant.build(load_knowledge(local).kb)


def use_local_knowledge(dirs: Sequence[Path]) -> Layered:
    """Load the shipped knowledge base with ``dirs`` over it and make it the process's (what :func:`knowledge_base`
    and :func:`assistant` give without arguments). At start: :class:`KnowledgeError` when it is broken."""
    local = tuple(Path(d) for d in dirs)
    layered = load_knowledge(local)
    _local_dirs[0] = local
    if local:
        log.info("knowledge base: %d documents; local %s: %d entries, %d added, %d replaced by id%s",
                 len(layered.kb), ", ".join(map(str, local)), layered.local, len(layered.added),
                 len(layered.replaced), f" ({', '.join(layered.replaced)})" if layered.replaced else "")
    return layered


def knowledge_or_shipped(dirs: Sequence[Path]) -> KnowledgeBase:
    """:func:`knowledge_base` of ``dirs``; when they are broken (they were checked at start: a file changed since),
    the error is logged and the shipped one is used, so tickets are never stopped by a knowledge file."""
    try:
        return knowledge_base(dirs)
    except KnowledgeError as exc:
        log.error("local knowledge base broken, using the shipped one:\n  %s", "\n  ".join(exc.problems))
        return knowledge_base(())


@cache
def rule_names() -> dict[str, str]:
    """Rule id -> Chinese name from the shipped rules (``"电梯困人 / passengers trapped"`` -> ``电梯困人``)."""
    from twin.rules import DEFAULTS_FILE

    try:
        data = yaml.safe_load(DEFAULTS_FILE.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}
    out: dict[str, str] = {}
    for r in data.get("rules", []) or []:
        if isinstance(r, dict) and isinstance(r.get("id"), str) and isinstance(r.get("name"), str):
            out[r["id"]] = r["name"].split(" / ")[0].strip()
    return out


def render_snapshot(size: tuple[int, int] = (960, 680)) -> SnapshotFn:
    """A snapshot callable drawing the 3D community with the ticket's spot highlighted (viz.render)."""

    def snap(community: Community, t: Ticket) -> bytes | None:
        from viz import render
        if t.building is None or community.building(t.building) is None:
            return None
        dev = community.device(t.device) if t.device else None
        floor = t.floor if t.floor is not None else (dev.floor if dev else None)
        floor_class = {(t.building, floor): "critical"} if floor is not None else {}
        device_class = {dev.id: "critical"} if dev else {}
        with tempfile.TemporaryDirectory(prefix="gridtwin-snap-") as tmp:
            out = Path(tmp) / "snapshot.png"
            render.render_png(community, out, floor_class=floor_class, device_class=device_class,
                              highlight=(t.building, floor, dev.id if dev else None), building=t.building,
                              floor=floor, size=size)
            return out.read_bytes()

    return snap


def sop_json(d: Document | None) -> dict[str, Any] | None:
    if d is None:
        return None
    return {"id": d.id, "title": d.title, "title_zh": d.title_zh, "steps": list(d.steps), "steps_en": list(d.steps_en),
            "notes": d.notes, "source": d.source, "url": f"{API_PREFIX}/knowledge/{d.id}", "calls": list(d.calls)}




def devices_to_show(t: Ticket, c: Community | None, alarms: Sequence[TicketAlarmRow]) -> list[str]:
    """The ticket's device and its alarms' devices; else the devices on its floor."""
    devices = list(dict.fromkeys(d for d in [t.device, *(a.device for a in alarms)] if d))
    if not devices and c is not None and t.building is not None and t.floor is not None:
        devices = [d.id for d in c.devices if d.building == t.building and d.floor == t.floor]
    return devices[:MAX_VIEW_DEVICES]


def worker_view(t: Ticket, *, community: Community | None, context: dict[str, Any], alarms: Sequence[TicketAlarmRow],
                history: Sequence[AlarmHistoryRow], earlier: Sequence[EarlierTicketRow],
                readings: list[dict[str, Any]], sop: Document | None, now: datetime, iso: Iso,
                life_safety: Collection[str] = ()) -> dict[str, Any]:
    """The ticket as the worker receives it: where, what, deadlines, readings, its incident's alarms (a timeline,
    the life-safety ones still active), history, SOP. ``life_safety``: the life-safety rule ids."""
    c = community
    people = tk.known_people(c) if c else {}
    b = c.building(t.building) if c and t.building else None
    grid = next((g for g in c.grids if g.id == t.grid), None) if c else None
    return {
        "id": t.id, "version": t.version, "title": t.title, "state": t.state.value, "state_zh": t.state.label_zh,
        "priority": t.priority.value, "priority_zh": t.priority.label_zh, "life_safety": t.life_safety,
        "category": t.category, "source": t.source, "rule": t.rule, "description": t.description,
        "location": {
            "community": t.community, "community_name": c.name if c else None, "building": t.building,
            "building_name": b.name if b else None, "floor": t.floor, "unit": t.unit, "device": t.device,
            "grid": t.grid, "grid_name": grid.name if grid else None,
            "text": tk.location_text(c, t.building, t.floor, t.unit, t.device),
        },
        "assignee": {"id": t.assignee, "name": people.get(t.assignee or "", t.assignee), "role": t.assignee_role}
        if t.assignee else None,
        "escalated_to": t.escalated_to, "collaborator": t.collaborator,
        "contact": t.contact, "reporter": t.reporter,
        "created_at": iso(t.created_at), "occurred_at": iso(t.occurred_at),
        "received_at": iso(t.received_at), "responded_at": iso(t.responded_at),
        "resolved_at": iso(t.resolved_at), "closed_at": iso(t.closed_at),
        "deadlines": {"respond_by": iso(t.respond_by), "resolve_by": iso(t.resolve_by),
                      "progress_by": iso(t.progress_by), "arrive_by": iso(t.arrive_by),
                      "release_by": iso(t.release_by), "remaining_s": tk.remaining(t, now),
                      "alerts": sorted(t.alerts), "breaches": t.breaches},
        "arrived_at": iso(t.arrived_at), "released_at": iso(t.released_at),
        "arrived_position": {"lat": t.arrived_lat, "lon": t.arrived_lon, "accuracy_m": t.arrived_accuracy_m}
        if t.arrived_lat is not None else None,
        "snapshot_url": f"{API_PREFIX}/tickets/{t.id}/snapshot.png" if context.get("snapshot") else None,
        "readings": readings,
        "alarms": [{"key": a.alarm_key, "rule": a.rule, "rule_name": rule_names().get(a.rule, a.rule),
                    "severity": a.severity, "subject": a.subject, "device": a.device, "building": a.building,
                    "floor": a.floor, "detail": a.detail, "first_at": iso(a.first_at), "last_at": iso(a.last_at),
                    "count": a.count, "cleared_at": iso(a.cleared_at), "active": a.cleared_at is None,
                    "life_safety": a.rule in life_safety, "close_reason": a.close_reason} for a in alarms],
        "incident": {
            "key": next((k.removeprefix("incident:") for k in sorted(t.keys) if k.startswith("incident:")), None),
            "devices": list(dict.fromkeys(a.device or a.subject for a in alarms)),
            "active_life_safety": [a.alarm_key for a in alarms if a.cleared_at is None and a.rule in life_safety],
        },
        "history": {
            "alarm_events": [{"at": iso(h.at), "alarm": h.key, "kind": h.kind, "severity": h.severity,
                              "detail": h.detail} for h in history],
            "earlier_tickets_here": [{"id": e.id, "title": e.title, "state": e.state, "created_at": iso(e.created_at)}
                                     for e in earlier],
        },
        "sop": sop_json(sop),
        "knowledge_search_url": f"{API_PREFIX}/knowledge?q=",
        "actions": actions_of(t),
        "cancel_reason": t.cancel_reason, "reopens": t.reopens, "escalations": t.escalations,
        "close_reason": {"code": t.close_reason, "label": tk.CLOSE_REASONS[t.close_reason], "note": t.close_note}
        if t.close_reason in tk.CLOSE_REASONS else None,
        "rating": {"score": t.rating, "comment": t.rating_comment, "at": iso(t.rated_at)}
        if t.rating is not None else None,
    }


def actions_of(t: Ticket) -> list[str]:
    """What may be done to the ticket now (arrival until recorded; release only where its incident times it)."""
    def relevant(a: str) -> bool:
        if a == "arrive":  # on site (到场): every ticket's step, timed where the incident's alarms time it
            return t.arrived_at is None
        if a == "release":
            return t.release_by is not None and t.released_at is None
        return a not in ("attach", "dispatch")

    return sorted(a for a in tk.ACTIONS if relevant(a) and tk.allowed(a, t.state))


def photo_url(ticket_id: int, photo_id: int) -> str:
    return f"{API_PREFIX}/tickets/{ticket_id}/photos/{photo_id}"


def kpi_csv(rows: Sequence[tk.KpiRow]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(tk.KPI_FIELDS)
    for r in rows:
        w.writerow(["" if v is None else v for v in (getattr(r, f) for f in tk.KPI_FIELDS)])
    return buf.getvalue()
