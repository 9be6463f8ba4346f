"""The ticket service: alarms become tickets in a grid worker's hands, with SLA clocks. Does I/O.

Persistence (tables ``tickets``, ``ticket_events``, ``ticket_alarms``, ``ticket_photos``, migration 6),
the SLA watchdog, delivery to the worker's MQTT topic (``contract.worker_topic``) through an injected
``publish(topic, payload, qos)`` callable, and the 3D snapshot through an injected callable. The rules of
the loop (states, deadlines, assignment, correlation, permissions, KPIs) are pure, in :mod:`twin.tickets`.

What the gateway calls:

* :meth:`TicketService.on_alarm_event` for every :class:`~twin.alarms.AlarmEvent` of a community
  (a raised alarm whose rule dispatches opens a ticket or joins the open one of the same incident);
* :meth:`TicketService.tick` every ``tickets.watchdog_interval_s`` seconds (warnings at 75 %, escalation
  to the grid supervisor at breach). Deadlines and raised alerts are stored, so a new service on the
  same database continues the clocks after a restart.

Server time only: a ticket starts when the gateway received its alarm (``AlarmEvent.received_at``, else
the service's clock), and its SLA clocks, the watchdog and the duty roster run on that clock; the device's
time of the alarm is kept as ``occurred_at``.

Concurrency: every change reads the ticket, applies a pure transition and writes it back with
``WHERE version = <read version>``; a concurrent change makes that write find no row and raises
:class:`TicketConflict` instead of overwriting. One service per connection (per thread).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any, Literal

import orjson
import psycopg
import yaml
from psycopg.types.json import Jsonb

from gateway.settings import Settings, TicketSettings
from gateway.storage import Storage, StorageError, UnknownDevice
from twin import contract
from twin import tickets as tk
from twin.alarms import AlarmEvent, EventKind, Severity
from twin.community import Community
from twin.knowledge import SOP_DIR, Document, KnowledgeBase
from twin.people import User
from twin.tickets import Alert, InvalidInput, Priority, Ticket, TicketError, TicketState

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes, int], None]
SnapshotFn = Callable[[Community, Ticket], bytes | None]
ReadingsFn = Callable[[str, str], list[dict[str, Any]]]
API_PREFIX = "/api/v1"
PHOTO_TYPES = {"image/jpeg": (b"\xff\xd8\xff",), "image/png": (b"\x89PNG\r\n\x1a\n",),
               "image/webp": (b"RIFF",)}
MAX_NOTE = 4000
_COLS = ("community", "title", "category", "priority", "state", "source", "rule", "life_safety", "building", "floor",
         "unit", "device", "grid", "assignee", "assignee_role", "escalated_to", "collaborator", "description",
         "reporter", "contact", "keys", "created_at", "clock_start", "respond_by", "resolve_by", "progress_from",
         "progress_by", "responded_at", "accepted_at", "resolved_at", "closed_at", "last_alarm_at", "alerts",
         "breaches", "escalations", "reopens", "plan_submitted", "cancel_reason", "rating", "rating_comment",
         "rated_at", "rate_token", "occurred_at", "received_at")
_SELECT = "SELECT id, version, " + ", ".join(_COLS) + " FROM tickets"
_OPEN = [s.value for s in tk.OPEN_STATES]


class TicketNotFound(LookupError):
    pass


class TicketConflict(Exception):
    """Someone else changed the ticket since it was read: reload and try again."""


class Forbidden(PermissionError):
    pass


class PhotoRejected(ValueError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Photo:
    content_type: str
    data: bytes


# -- configuration ----------------------------------------------------------------------------------


def sla_policy(s: TicketSettings) -> tk.SlaPolicy:
    h = 3600.0
    targets = {
        Priority.URGENT: tk.Target(s.urgent_respond_h * h, s.urgent_resolve_h * h, source="settings tickets.urgent_*"),
        Priority.GENERAL: tk.Target(s.general_respond_h * h, s.general_resolve_h * h,
                                    source="settings tickets.general_*"),
        Priority.COMPLEX: tk.Target(s.complex_respond_h * h, None, s.complex_progress_h * h,
                                    source="settings tickets.complex_*"),
    }
    life = {rule: tk.Target(t.respond_min * 60, None if t.resolve_min is None else t.resolve_min * 60,
                            source=t.source) for rule, t in s.life_safety.items()}
    return tk.SlaPolicy(targets, life, s.warn_fraction)


@cache
def knowledge_base(directory: Path = SOP_DIR) -> KnowledgeBase:
    """The knowledge base bundled under twin/sop (read once)."""
    return KnowledgeBase.parse([(str(p), p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.yaml"))])


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


def check_photo(photo: Photo, max_bytes: int) -> None:
    """Size and type of an uploaded photo: the declared content type must match the file's magic bytes."""
    ctype = photo.content_type.split(";")[0].strip().lower()
    if ctype not in PHOTO_TYPES:
        raise PhotoRejected(415, f"photo content type {photo.content_type or '(none)'!r} is not accepted; "
                                 f"send {', '.join(PHOTO_TYPES)}")
    if len(photo.data) > max_bytes:
        raise PhotoRejected(413, f"photo of {len(photo.data)} bytes is larger than the limit of {max_bytes} bytes")
    if not photo.data:
        raise PhotoRejected(400, "the photo is empty")
    if not any(photo.data.startswith(m) for m in PHOTO_TYPES[ctype]) or (
            ctype == "image/webp" and photo.data[8:12] != b"WEBP"):
        raise PhotoRejected(415, f"the photo's bytes are not a {ctype} image")


# -- the service --------------------------------------------------------------------------------------


class TicketService:
    """Tickets of one or more communities on one database connection (not thread-safe: one per thread)."""

    def __init__(self, storage: Storage, settings: Settings, communities: Community | Iterable[Community], *,
                 publish: Publish | None = None, snapshot: SnapshotFn | None = None,
                 readings: ReadingsFn | None = None, knowledge: KnowledgeBase | None = None,
                 clock: Callable[[], datetime] | None = None, render_on_create: bool = True) -> None:
        self.storage = storage
        self.conn = storage.conn
        self.settings = settings
        self.cfg = settings.tickets
        self.policy = sla_policy(settings.tickets)
        cs = [communities] if isinstance(communities, Community) else list(communities)
        self.communities: dict[str, Community] = {c.id: c for c in cs}
        self.publish = publish
        self.snapshot = snapshot
        self.readings = readings or self._stored_readings
        self.knowledge = knowledge or knowledge_base()
        self.clock = clock or (lambda: datetime.now(UTC))
        # False: the 3D snapshot (slow: ~1 s) is rendered by tick() instead, off the alarm path
        self.render_on_create = render_on_create
        self.offset = tk.parse_offset(settings.tickets.utc_offset)
        self.tz = timezone(self.offset)
        self.root = settings.mqtt.topic_root

    # -- from alarms ------------------------------------------------------------------------------

    def on_alarm_event(self, community: Community | str, event: AlarmEvent) -> Ticket | None:
        """Act on one alarm event; returns the ticket it opened or changed (None: nothing to do)."""
        c = self._community(community)
        if event.kind is EventKind.RAISED:
            return self._on_raised(c, event)
        if event.kind is EventKind.ESCALATED:
            return self._on_escalated(c, event)
        if event.kind is EventKind.UPDATED:
            with self._db("recording a repeated alarm"):
                self.conn.execute(
                    "UPDATE ticket_alarms a SET count = %s, last_at = greatest(a.last_at, %s), detail = %s "
                    "FROM tickets t WHERE t.id = a.ticket_id AND t.community = %s AND t.state = ANY(%s) "
                    "AND a.alarm_key = %s", (event.count, event.at, event.detail, c.id, _OPEN, event.key))
            return None
        if event.kind is EventKind.CLEARED:
            return self._on_cleared(c, event)
        return None

    def _on_raised(self, c: Community, event: AlarmEvent) -> Ticket | None:
        priority = Priority.of(event.dispatch)
        if priority is None or not event.notify:
            return None
        received = tk.received_time(event, self.clock())
        keys = tk.event_keys(c, event)
        window = timedelta(minutes=self.cfg.correlate_min)
        created = False
        with self._db("opening a ticket"), self.conn.transaction():
            # one incident decision at a time per community (N gateways may see related alarms together)
            self.conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"gridtwin-tickets:{c.id}",))
            rows = self.conn.execute(
                f"{_SELECT} WHERE community = %s AND state = ANY(%s) AND keys && %s ORDER BY created_at",
                (c.id, _OPEN, list(keys))).fetchall()
            same_alarm = {r[0] for r in self.conn.execute(
                "SELECT a.ticket_id FROM ticket_alarms a JOIN tickets t ON t.id = a.ticket_id WHERE a.alarm_key = %s "
                "AND t.state = ANY(%s)", (event.key, _OPEN)).fetchall()}
            target = next((t for t in map(_ticket, rows)
                           if t.id in same_alarm or tk.correlates(t, keys, received, window)), None)
            if target is not None:
                before = target
                t = tk.attach_alarm(target, event, self.policy, keys, at=received)
                t = self._write(before, t, "attach", "system", f"{event.rule}: {event.detail}",
                                detail={"alarm": event.key, "severity": event.severity.value})
                if t.priority is not before.priority or t.rule != before.rule:
                    self._event(t, "priority", before.state, "system",
                                f"{before.priority.value} -> {t.priority.value}"
                                + (f", life-safety rule {t.rule}" if t.life_safety and not before.life_safety else ""),
                                detail={"respond_by": t.respond_by.isoformat(),
                                        "resolve_by": t.resolve_by.isoformat() if t.resolve_by else None})
            else:
                t = self._create_from_alarm(c, event, priority, keys, received)
                created = True
            self._record_alarm(t.id, event)
        self._deliver(t, "created" if created else "alarm_attached")
        if created and self.render_on_create:
            t = self.attach_snapshot(t.id) or t
        return t

    def _create_from_alarm(self, c: Community, event: AlarmEvent, priority: Priority, keys: frozenset[str],
                           received: datetime) -> Ticket:
        dev = c.device(event.device) if event.device else None
        category = tk.category_of(event.rule, dev.kind if dev else None)
        unit = dev.unit if dev and dev.unit else (event.subject if event.subject_type == "care_unit" else None)
        name = rule_names().get(event.rule, event.rule)
        where = tk.location_text(c, event.building, event.floor, unit)
        t = tk.new_ticket(community=c.id, title=f"{name} · {where}".strip(" ·"), category=category,
                          priority=priority, source="alarm", at=received, policy=self.policy,
                          rate_token=secrets.token_urlsafe(18), rule=event.rule, building=event.building,
                          floor=event.floor, unit=unit, device=event.device, description=event.detail, keys=keys,
                          occurred_at=event.occurred_at or event.at)
        return self._insert_and_dispatch(c, t, {"alarm": event.to_json()})

    def _insert_and_dispatch(self, c: Community, t: Ticket, context: dict[str, Any]) -> Ticket:
        load = dict(self.conn.execute("SELECT assignee, count(*) FROM tickets WHERE community = %s AND state = ANY(%s) "
                                      "AND assignee IS NOT NULL GROUP BY 1", (c.id, _OPEN)).fetchall())
        a = tk.assign(c, t.building, t.created_at, offset=self.offset, load=load, category=t.category,
                      partners=self.cfg.partners)
        t = replace(t, grid=a.grid, collaborator=a.collaborator)
        context = {**context, "assignment": {"role": a.role, "reason": a.reason}}
        t = self._insert(t, context)
        if a.assignee is not None:
            before = t
            t = self._write(before, tk.dispatch(t, a), "dispatch", "system", a.reason,
                            detail={"assignee": a.assignee, "role": a.role, "collaborator": a.collaborator})
        return t

    def _on_escalated(self, c: Community, event: AlarmEvent) -> Ticket | None:
        with self._db("escalating a ticket"), self.conn.transaction():
            row = self.conn.execute(
                f"{_SELECT} WHERE community = %s AND state = ANY(%s) AND id IN (SELECT ticket_id FROM ticket_alarms "
                "WHERE alarm_key = %s) ORDER BY created_at LIMIT 1", (c.id, _OPEN, event.key)).fetchone()
            if row is None:
                return None
            before = _ticket(row)
            self.conn.execute("UPDATE ticket_alarms SET severity = %s WHERE ticket_id = %s AND alarm_key = %s",
                              (event.severity.value, before.id, event.key))
            if event.severity.rank < Severity.MAJOR.rank or before.priority is Priority.URGENT:
                self._event(before, "alarm_escalated", before.state, "system", event.detail,
                            detail={"alarm": event.key, "severity": event.severity.value})
                return None
            received = tk.received_time(event, self.clock())
            t = self._write(before, tk.tighten(before, Priority.URGENT, before.rule, received, self.policy),
                            "priority", "system",
                            f"alarm {event.key} escalated to {event.severity.value}: "
                            f"{before.priority.value} -> urgent", detail={"alarm": event.key})
        self._deliver(t, "priority_raised")
        return t

    def _on_cleared(self, c: Community, event: AlarmEvent) -> Ticket | None:
        with self._db("recording a cleared alarm"), self.conn.transaction():
            row = self.conn.execute(
                f"{_SELECT} WHERE community = %s AND state = ANY(%s) AND id IN (SELECT ticket_id FROM ticket_alarms "
                "WHERE alarm_key = %s AND cleared_at IS NULL) ORDER BY created_at LIMIT 1",
                (c.id, _OPEN, event.key)).fetchone()
            if row is None:
                return None
            t = _ticket(row)
            self.conn.execute("UPDATE ticket_alarms SET cleared_at = %s WHERE ticket_id = %s AND alarm_key = %s",
                              (event.at, t.id, event.key))
            self._event(t, "alarm_cleared", t.state, event.by or "system", event.detail,
                        detail={"alarm": event.key})
        self._deliver(t, "alarm_cleared")
        return t

    def _record_alarm(self, ticket_id: int, e: AlarmEvent) -> None:
        self.conn.execute(
            "INSERT INTO ticket_alarms (ticket_id, alarm_key, rule, severity, subject, device, building, floor, "
            "detail, first_at, last_at, count) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (ticket_id, alarm_key) DO UPDATE SET "
            "last_at = greatest(ticket_alarms.last_at, excluded.last_at), count = ticket_alarms.count + 1, "
            "severity = excluded.severity, detail = excluded.detail, cleared_at = NULL",
            (ticket_id, e.key, e.rule, e.severity.value, e.subject, e.device, e.building, e.floor, e.detail, e.at,
             e.at, max(1, e.count)))

    # -- manual reports -----------------------------------------------------------------------------

    def create_manual(self, user: User, *, community: str | None, title: str, description: str = "",
                      priority: Priority = Priority.GENERAL, category: str = "other", building: str | None = None,
                      floor: int | None = None, unit: str | None = None, contact: str | None = None,
                      at: datetime | None = None) -> Ticket:
        """A report taken by an operator (a resident's phone call): registered, then dispatched by building."""
        problem = tk.permission_problem(user, None, "create")
        if problem:
            raise Forbidden(problem)
        c = self._community(community or next(iter(self.communities)))
        if building is not None:
            b = c.building(building)
            if b is None:
                raise InvalidInput(f"community {c.id} has no building {building!r}")
            if floor is not None and floor not in b.floors:
                raise InvalidInput(f"building {building} has no floor {floor} (floors {b.floors[0]}..{b.floors[-1]}, "
                                  "no floor 0)")
        if category not in tk.CATEGORIES:
            raise InvalidInput(f"unknown category {category!r}; one of {', '.join(tk.CATEGORIES)}")
        now = at or self.clock()
        keys = tk.incident_keys(c, building=building, floor=floor, unit=unit)
        t = tk.new_ticket(community=c.id, title=title.strip(), category=category, priority=priority, source="manual",
                          at=now, policy=self.policy, rate_token=secrets.token_urlsafe(18), building=building,
                          floor=floor, unit=unit, description=description.strip(), reporter=user.username,
                          contact=contact, keys=keys)
        with self._db("creating a ticket"), self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"gridtwin-tickets:{c.id}",))
            t = self._insert_and_dispatch(c, t, {"reported_by": user.username})
        self._deliver(t, "created")
        return (self.attach_snapshot(t.id) if self.render_on_create else None) or t

    # -- people act on tickets ----------------------------------------------------------------------

    def accept(self, user: User, ticket_id: int, note: str = "", *, version: int | None = None) -> Ticket:
        return self._act(user, ticket_id, "accept", tk.accept, note, version=version)

    def progress(self, user: User, ticket_id: int, note: str = "", *, photo: Photo | None = None, plan: bool = False,
                 version: int | None = None) -> Ticket:
        if not note.strip() and photo is None:
            raise InvalidInput("feedback needs a note or a photo")
        if photo is not None:
            check_photo(photo, self.cfg.photo_max_bytes)
        return self._act(user, ticket_id, "progress", lambda t, now: tk.progress(t, now, self.policy, plan=plan),
                         note, version=version, photo=photo, detail={"plan": plan})

    def resolve(self, user: User, ticket_id: int, note: str, *, photo: Photo | None = None,
                version: int | None = None) -> Ticket:
        if not note.strip():
            raise InvalidInput("resolving needs a note saying what was done")
        if photo is not None:
            check_photo(photo, self.cfg.photo_max_bytes)
        return self._act(user, ticket_id, "resolve", tk.resolve, note, version=version,
                         photo=photo)

    def cancel(self, user: User, ticket_id: int, reason: str, *, version: int | None = None) -> Ticket:
        return self._act(user, ticket_id, "cancel", lambda t, now: tk.cancel(t, reason, now), reason, version=version)

    def reopen(self, user: User, ticket_id: int, reason: str, *, version: int | None = None) -> Ticket:
        if not reason.strip():
            raise InvalidInput("reopening a ticket needs a reason")
        return self._act(user, ticket_id, "reopen", lambda t, now: tk.reopen(t, now, self.policy), reason,
                         version=version)

    def escalate(self, user: User, ticket_id: int, reason: str, *, version: int | None = None) -> Ticket:
        def fn(t: Ticket, now: datetime) -> Ticket:
            return tk.escalate(t, tk.supervisor_of(self._community(t.community), t.grid), now)

        return self._act(user, ticket_id, "escalate", fn, reason, version=version)

    def reassign(self, user: User, ticket_id: int, assignee: str, reason: str, *,
                 version: int | None = None) -> Ticket:
        previous: list[str | None] = []

        def fn(t: Ticket, _now: datetime) -> Ticket:
            c = self._community(t.community)
            people = tk.known_people(c)
            if assignee not in people:
                raise InvalidInput(f"{assignee!r} is no worker, backup or supervisor of community {c.id}")
            found = tk.find_worker(c, assignee)
            previous.append(t.assignee)
            return tk.reassign(t, assignee, reason, grid=found[0].id if found and t.grid is None else None)

        t = self._act(user, ticket_id, "reassign", fn, reason, version=version, detail={"assignee": assignee},
                      deliver=False)
        if previous and previous[0] and previous[0] != t.assignee:
            self._send(previous[0], {"v": 1, "type": "ticket_withdrawn", "at": self.iso(self.clock()),
                                     "ticket": {"id": t.id, "title": t.title}, "reason": reason})
        self._deliver(t, "reassigned")
        return t

    def _act(self, user: User, ticket_id: int, action: str, fn: Callable[[Ticket, datetime], Ticket], note: str, *,
             version: int | None, photo: Photo | None = None, detail: dict[str, Any] | None = None,
             deliver: bool = True) -> Ticket:
        if len(note) > MAX_NOTE:
            raise InvalidInput(f"the note is longer than {MAX_NOTE} characters")
        now = self.clock()
        with self._db(f"{action} on ticket {ticket_id}"), self.conn.transaction():
            before = self._load(ticket_id)
            problem = tk.permission_problem(user, before, action)
            if problem:
                raise Forbidden(problem)
            if version is not None and version != before.version:
                raise TicketConflict(f"ticket {ticket_id} is at version {before.version}, not {version}: "
                                     "it changed meanwhile; reload it")
            after = fn(before, now)
            photo_id = self._store_photo(before.id, photo, "feedback", user.username, now) if photo else None
            t = self._write(before, after, action, user.username, note.strip(), photo_id=photo_id, at=now,
                            detail=detail)
        if deliver:
            self._deliver(t, action)
        return t

    # -- the resident ---------------------------------------------------------------------------------

    def by_token(self, token: str) -> Ticket:
        with self._db("reading a ticket"):
            row = self.conn.execute(f"{_SELECT} WHERE rate_token = %s", (token,)).fetchone()
        if row is None:
            raise TicketNotFound("no ticket for this link")
        return _ticket(row)

    def rate(self, token: str, rating: int, comment: str | None = None) -> Ticket:
        if comment is not None and len(comment) > MAX_NOTE:
            raise InvalidInput(f"the comment is longer than {MAX_NOTE} characters")
        now = self.clock()
        with self._db("rating a ticket"), self.conn.transaction():
            before = self.by_token(token)
            if before.state is TicketState.EVALUATED:
                raise TicketError("this ticket has already been rated: thank you")
            if before.state is not TicketState.FEEDBACK:
                raise TicketError(f"this ticket is {before.state.label_zh}; it can be rated once it is resolved")
            t = self._write(before, tk.rate(before, rating, comment, now), "rate", "resident", comment or "", at=now,
                            detail={"rating": rating})
        self._deliver(t, "rated")
        return t

    # -- the watchdog -----------------------------------------------------------------------------------

    def tick(self, now: datetime | None = None, *, limit: int = 500) -> list[tuple[int, Alert]]:
        """Raise the SLA alerts that are due: warn the assignee at 75 %, escalate to the supervisor at breach.

        Looks only at tickets whose stored ``next_alert_at`` has come (an index serves it). Returns what it did.
        """
        now = now or self.clock()
        done: list[tuple[int, Alert]] = []
        with self._db("reading due tickets"):
            ids = [r[0] for r in self.conn.execute(
                "SELECT id FROM tickets WHERE next_alert_at <= %s ORDER BY next_alert_at LIMIT %s",
                (now, limit)).fetchall()]
        for ticket_id in ids:
            try:
                done += self._alert(ticket_id, now)
            except TicketConflict:
                continue  # changed meanwhile: the next tick looks again
        if self.snapshot is not None and not self.render_on_create:
            self.attach_missing_snapshots()
        return done

    def attach_missing_snapshots(self, limit: int = 3) -> list[int]:
        """Render snapshots of the newest open tickets that have none yet (for ``render_on_create=False``)."""
        with self._db("finding tickets without a snapshot"):
            ids = [r[0] for r in self.conn.execute(
                "SELECT id FROM tickets WHERE state = ANY(%s) AND NOT context ? 'snapshot' ORDER BY created_at DESC "
                "LIMIT %s", (_OPEN, limit)).fetchall()]
        return [i for i in ids if self.attach_snapshot(i) is not None]

    def _alert(self, ticket_id: int, now: datetime) -> list[tuple[int, Alert]]:
        out: list[tuple[int, Alert]] = []
        with self._db(f"SLA alerts of ticket {ticket_id}"), self.conn.transaction():
            t = self._load(ticket_id)
            alerts = tk.alerts_due(t, now, self.policy.warn_fraction)
            if not alerts:  # nothing new (e.g. the state changed): just move the next look
                self.conn.execute("UPDATE tickets SET next_alert_at = %s WHERE id = %s AND version = %s",
                                  (tk.next_alert_at(t, self.policy.warn_fraction), t.id, t.version))
                return out
            for a in alerts:
                before = t
                after = tk.note_alert(t, a)
                clock_zh = {"respond": "响应", "resolve": "办结", "progress": "进展反馈"}[a.clock.value]
                if a.level == "breach":
                    to = tk.supervisor_of(self._community(t.community), t.grid)
                    after = tk.escalate(after, to, now)
                    note = f"{clock_zh}时限 {self.iso(a.deadline)} 已超时，升级至 {to or '指挥中心'}"
                    t = self._write(before, after, "escalate", "watchdog", note, at=now,
                                    detail={"clock": a.clock.value, "deadline": a.deadline.isoformat(),
                                            "escalated_to": to})
                else:
                    note = f"{clock_zh}时限 {self.iso(a.deadline)} 已过 {round(self.policy.warn_fraction * 100)}%"
                    t = self._write(before, after, "warn", "watchdog", note, at=now,
                                    detail={"clock": a.clock.value, "deadline": a.deadline.isoformat()})
                out.append((t.id, a))
        for _id, a in out:
            self._deliver(t, "escalated" if a.level == "breach" else "sla_warning",
                          extra_to=t.escalated_to if a.level == "breach" else None,
                          alert={"clock": a.clock.value, "level": a.level, "deadline": self.iso(a.deadline)})
        return out

    # -- reading ----------------------------------------------------------------------------------------

    def get(self, ticket_id: int, user: User | None = None) -> Ticket:
        with self._db(f"reading ticket {ticket_id}"):
            t = self._load(ticket_id)
        if user is not None and not tk.visible_to(user, t):
            raise Forbidden(f"ticket {ticket_id} belongs to grid {t.grid or '(none)'}, not to yours")
        return t

    def list_for(self, user: User, *, state: TicketState | None = None, open_only: bool = False, limit: int = 50,
             offset: int = 0) -> list[Ticket]:
        """Tickets the user may see, newest first."""
        where: list[str] = ["true"]
        args: list[Any] = []
        if not user.sees_everything():
            where.append("(grid = ANY(%s) OR assignee = %s OR escalated_to = %s)")
            args += [list(user.grids), user.worker_id or "", user.worker_id or ""]
        if state is not None:
            where.append("state = %s")
            args.append(state.value)
        if open_only:
            where.append("state = ANY(%s)")
            args.append(_OPEN)
        with self._db("listing tickets"):
            rows = self.conn.execute(f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY created_at DESC, id DESC "
                                     "LIMIT %s OFFSET %s", (*args, limit, offset)).fetchall()
        return [_ticket(r) for r in rows]

    def timeline(self, ticket_id: int) -> list[dict[str, Any]]:
        with self._db(f"reading the timeline of ticket {ticket_id}"):
            rows = self.conn.execute(
                "SELECT id, at, action, from_state, to_state, actor, note, photo_id, detail FROM ticket_events "
                "WHERE ticket_id = %s ORDER BY id", (ticket_id,)).fetchall()
        return [{"id": r[0], "at": self.iso(r[1]), "action": r[2], "from": r[3], "to": r[4], "by": r[5],
                 "note": r[6], "photo_url": self._photo_url(ticket_id, r[7]) if r[7] else None, "detail": r[8]}
                for r in rows]

    def photo(self, ticket_id: int, photo_id: int | None = None, *, kind: str | None = None) -> Photo:
        with self._db("reading a photo"):
            if photo_id is not None:
                row = self.conn.execute("SELECT content_type, bytes FROM ticket_photos WHERE ticket_id = %s "
                                        "AND id = %s", (ticket_id, photo_id)).fetchone()
            else:
                row = self.conn.execute("SELECT content_type, bytes FROM ticket_photos WHERE ticket_id = %s AND "
                                        "kind = %s ORDER BY id DESC LIMIT 1", (ticket_id, kind)).fetchone()
        if row is None:
            raise TicketNotFound(f"ticket {ticket_id} has no such photo")
        return Photo(row[0], bytes(row[1]))

    def attach_snapshot(self, ticket_id: int) -> Ticket | None:
        """Render the 3D snapshot (injected callable), store it with the ticket and tell the worker."""
        if self.snapshot is None:
            return None
        t = self.get(ticket_id)
        try:
            png = self.snapshot(self._community(t.community), t)
        except Exception as exc:  # a renderer failure of any kind must not lose the ticket
            log.warning("ticket %s: no 3D snapshot: %s: %s", ticket_id, type(exc).__name__, exc)
            png = None
        if not png:  # remembered, so it is not tried again on every tick
            with self._db("noting a missing snapshot"):
                self.conn.execute("UPDATE tickets SET context = context || %s WHERE id = %s",
                                  (Jsonb({"snapshot": False}), t.id))
            return None
        with self._db("storing a snapshot"), self.conn.transaction():
            self._store_photo(t.id, Photo("image/png", png), "snapshot", "system", self.clock())
            self.conn.execute("UPDATE tickets SET context = context || %s WHERE id = %s",
                              (Jsonb({"snapshot": True}), t.id))
        self._deliver(t, "snapshot")
        return t

    def view(self, t: Ticket, *, private: bool = False, now: datetime | None = None) -> dict[str, Any]:
        """The ticket as the worker receives it: where, what, deadlines, readings, alarms, history, SOP."""
        now = now or self.clock()
        c = self.communities.get(t.community)
        people = tk.known_people(c) if c else {}
        b = c.building(t.building) if c and t.building else None
        grid = next((g for g in c.grids if g.id == t.grid), None) if c else None
        with self._db(f"reading ticket {t.id}"):
            ctx_row = self.conn.execute("SELECT context FROM tickets WHERE id = %s", (t.id,)).fetchone()
            alarms = self.conn.execute(
                "SELECT alarm_key, rule, severity, subject, device, building, floor, detail, first_at, last_at, count, "
                "cleared_at FROM ticket_alarms WHERE ticket_id = %s ORDER BY first_at", (t.id,)).fetchall()
            keys = [a[0] for a in alarms]
            history = self.conn.execute(
                "SELECT at, key, kind, severity, detail FROM alarm_events WHERE community = %s AND key = ANY(%s) "
                "ORDER BY at DESC, id DESC LIMIT 20", (t.community, keys)).fetchall() if keys else []
            earlier = self.conn.execute(
                "SELECT id, title, state, created_at FROM tickets WHERE community = %s AND building = %s AND "
                "floor IS NOT DISTINCT FROM %s AND id <> %s AND created_at > %s ORDER BY created_at DESC LIMIT 5",
                (t.community, t.building, t.floor, t.id, t.created_at - timedelta(days=90))).fetchall() \
                if t.building else []
        context = ctx_row[0] if ctx_row else {}
        sop = self.knowledge.sop_for(t.rule, t.category)
        devices = list(dict.fromkeys(d for d in [t.device, *(a[4] for a in alarms)] if d))
        if not devices and c is not None and t.building is not None and t.floor is not None:
            devices = [d.id for d in c.devices if d.building == t.building and d.floor == t.floor][:8]
        out: dict[str, Any] = {
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
            "created_at": self.iso(t.created_at), "occurred_at": self.iso(t.occurred_at),
            "received_at": self.iso(t.received_at), "responded_at": self.iso(t.responded_at),
            "resolved_at": self.iso(t.resolved_at), "closed_at": self.iso(t.closed_at),
            "deadlines": {"respond_by": self.iso(t.respond_by), "resolve_by": self.iso(t.resolve_by),
                          "progress_by": self.iso(t.progress_by), "remaining_s": tk.remaining(t, now),
                          "alerts": sorted(t.alerts), "breaches": t.breaches},
            "snapshot_url": f"{API_PREFIX}/tickets/{t.id}/snapshot.png" if context.get("snapshot") else None,
            "readings": self._readings_of(t.community, devices[:8]),
            "alarms": [{"key": a[0], "rule": a[1], "rule_name": rule_names().get(a[1], a[1]), "severity": a[2],
                        "subject": a[3], "device": a[4], "building": a[5], "floor": a[6], "detail": a[7],
                        "first_at": self.iso(a[8]), "last_at": self.iso(a[9]), "count": a[10],
                        "cleared_at": self.iso(a[11])} for a in alarms],
            "history": {
                "alarm_events": [{"at": self.iso(h[0]), "alarm": h[1], "kind": h[2], "severity": h[3],
                                  "detail": h[4]} for h in history],
                "earlier_tickets_here": [{"id": e[0], "title": e[1], "state": e[2], "created_at": self.iso(e[3])}
                                         for e in earlier],
            },
            "sop": _sop_json(sop),
            "knowledge_search_url": f"{API_PREFIX}/knowledge?q=",
            "actions": sorted(a for a in tk.ACTIONS if a not in ("attach", "dispatch") and tk.allowed(a, t.state)),
            "cancel_reason": t.cancel_reason, "reopens": t.reopens, "escalations": t.escalations,
            "rating": {"score": t.rating, "comment": t.rating_comment, "at": self.iso(t.rated_at)}
            if t.rating is not None else None,
        }
        if private:
            out["rate_url"] = f"{self.settings.api.public_url.rstrip('/')}{API_PREFIX}/rate/{t.rate_token}"
            out["assignment"] = context.get("assignment")
        return out

    def kpis(self, start: datetime, end: datetime, *, community: str | None = None,
             user: User | None = None) -> list[tk.KpiRow]:
        """KPI rows of the tickets created in [start, end); a supervisor sees only their grids."""
        where = ["created_at >= %s", "created_at < %s"]
        args: list[Any] = [start, end]
        if community:
            where.append("community = %s")
            args.append(community)
        if user is not None and not user.sees_everything():
            where.append("grid = ANY(%s)")
            args.append(list(user.grids))
        with self._db("reading tickets for KPIs"):
            rows = self.conn.execute(f"{_SELECT} WHERE {' AND '.join(where)}", args).fetchall()
        names: dict[str, str] = {}
        for c in self.communities.values():
            names.update(tk.known_people(c))
            names.update({g.id: g.name for g in c.grids})
            names[c.id] = c.name
        return tk.kpis((_ticket(r) for r in rows), names=names)

    # -- internals ------------------------------------------------------------------------------------

    def _community(self, community: Community | str) -> Community:
        if isinstance(community, Community):
            self.communities.setdefault(community.id, community)
            return community
        c = self.communities.get(community)
        if c is None:
            raise InvalidInput(f"unknown community {community!r}; known: {', '.join(self.communities) or '(none)'}")
        return c

    @contextlib.contextmanager
    def _db(self, what: str) -> Iterator[None]:
        try:
            yield
        except psycopg.Error as exc:
            raise StorageError(f"{what} failed: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}") \
                from exc

    def _load(self, ticket_id: int) -> Ticket:
        row = self.conn.execute(f"{_SELECT} WHERE id = %s", (ticket_id,)).fetchone()
        if row is None:
            raise TicketNotFound(f"no ticket {ticket_id}")
        return _ticket(row)

    def _insert(self, t: Ticket, context: dict[str, Any]) -> Ticket:
        params = _params(t)
        row = self.conn.execute(
            f"INSERT INTO tickets ({', '.join(_COLS)}, next_alert_at, context) VALUES "
            f"({', '.join(['%s'] * len(_COLS))}, %s, %s) RETURNING id",
            (*params, tk.next_alert_at(t, self.policy.warn_fraction), Jsonb(context))).fetchone()
        assert row is not None
        t = replace(t, id=int(row[0]))
        self._event(t, "create", None, t.reporter, t.description, detail={"source": t.source})
        return t

    def _write(self, before: Ticket, after: Ticket, action: str, actor: str, note: str, *,
               photo_id: int | None = None, at: datetime | None = None, detail: dict[str, Any] | None = None) -> Ticket:
        """Store ``after`` if the row is still at ``before.version``; record the transition."""
        after = replace(after, version=before.version + 1)
        cur = self.conn.execute(
            f"UPDATE tickets SET ({', '.join(_COLS)}, version, next_alert_at, updated_at) = "
            f"({', '.join(['%s'] * len(_COLS))}, %s, %s, now()) WHERE id = %s AND version = %s",
            (*_params(after), after.version, tk.next_alert_at(after, self.policy.warn_fraction), before.id,
             before.version))
        if cur.rowcount != 1:
            raise TicketConflict(f"ticket {before.id} changed meanwhile (it was at version {before.version}); "
                                 "reload it")
        self._event(after, action, before.state, actor, note, photo_id=photo_id, at=at, detail=detail)
        return after

    def _event(self, t: Ticket, action: str, from_state: TicketState | None, actor: str, note: str, *,
               photo_id: int | None = None, at: datetime | None = None, detail: dict[str, Any] | None = None) -> None:
        self.conn.execute(
            "INSERT INTO ticket_events (ticket_id, at, action, from_state, to_state, actor, note, photo_id, version, "
            "detail) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (t.id, at or self.clock(), action, from_state.value if from_state else None, t.state.value, actor, note,
             photo_id, t.version, Jsonb(detail or {})))

    def _store_photo(self, ticket_id: int, photo: Photo, kind: str, by: str, at: datetime) -> int:
        row = self.conn.execute(
            "INSERT INTO ticket_photos (ticket_id, kind, content_type, bytes, uploaded_by, at) "
            "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (ticket_id, kind, photo.content_type.split(";")[0].strip().lower(), photo.data, by, at)).fetchone()
        assert row is not None
        return int(row[0])

    def _stored_readings(self, community: str, device: str) -> list[dict[str, Any]]:
        try:
            rows = self.storage.latest(device, community)
        except UnknownDevice:
            return []
        return [{"metric": r.metric, "value": r.value, "ts": self.iso(r.ts)} for r in rows]

    def _readings_of(self, community: str, devices: Sequence[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for d in devices:
            try:
                values = self.readings(community, d)
            except StorageError as exc:
                log.warning("latest readings of %s unavailable: %s", d, exc)
                continue
            out += [{"device": d, **v} for v in values]
        return out

    def _photo_url(self, ticket_id: int, photo_id: int) -> str:
        return f"{API_PREFIX}/tickets/{ticket_id}/photos/{photo_id}"

    def iso(self, at: datetime | None) -> str | None:
        return None if at is None else at.astimezone(self.tz).isoformat()

    # -- delivery -----------------------------------------------------------------------------------------

    def _deliver(self, t: Ticket, event: str, *, extra_to: str | None = None,
                 alert: Mapping[str, Any] | None = None) -> None:
        """Send the ticket's current view to its assignee's topic (and, on escalation, the supervisor's)."""
        if self.publish is None:
            return
        to = [p for p in dict.fromkeys([t.assignee, extra_to]) if p]
        if not to:
            return
        try:
            current = self.get(t.id)
            view = self.view(current)
        except (StorageError, TicketNotFound) as exc:
            log.warning("ticket %s not delivered: %s", t.id, exc)
            return
        message: dict[str, Any] = {"v": 1, "type": "ticket", "event": event, "at": self.iso(self.clock()),
                                   "ticket": view}
        if alert:
            message["alert"] = dict(alert)
        for person in to:
            self._send(person, message)

    def _send(self, person: str, message: Mapping[str, Any]) -> None:
        if self.publish is None:
            return
        try:
            topic = contract.worker_topic(self.root, person)
        except contract.ContractError as exc:
            log.warning("cannot deliver to %r: %s", person, exc)
            return
        try:
            self.publish(topic, orjson.dumps(message), 1)
        except (OSError, RuntimeError, ValueError) as exc:  # the ticket is stored; the inbox still shows it
            log.warning("publishing to %s failed: %s", topic, exc)


def _sop_json(d: Document | None) -> dict[str, Any] | None:
    if d is None:
        return None
    return {"id": d.id, "title": d.title, "title_zh": d.title_zh, "steps": list(d.steps), "notes": d.notes,
            "source": d.source, "url": f"{API_PREFIX}/knowledge/{d.id}"}


def _params(t: Ticket) -> tuple[Any, ...]:
    values = []
    for name in _COLS:
        v = getattr(t, name)
        if isinstance(v, frozenset):
            v = sorted(v)
        elif isinstance(v, Priority | TicketState):
            v = v.value
        values.append(v)
    return tuple(values)


def _ticket(row: Sequence[Any]) -> Ticket:
    d = dict(zip(("id", "version", *_COLS), row, strict=True))
    d["priority"] = Priority(d["priority"])
    d["state"] = TicketState(d["state"])
    d["keys"] = frozenset(d["keys"] or ())
    d["alerts"] = frozenset(d["alerts"] or ())
    d["id"] = int(d["id"])
    return Ticket(**d)


# -- reports ------------------------------------------------------------------------------------------------


def kpi_csv(rows: Sequence[tk.KpiRow]) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(tk.KPI_FIELDS)
    for r in rows:
        w.writerow(["" if v is None else v for v in (getattr(r, f) for f in tk.KPI_FIELDS)])
    return buf.getvalue()


Format = Literal["csv", "md"]
