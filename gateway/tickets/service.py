"""The ticket service: alarms become tickets in a grid worker's hands, with SLA clocks. Does I/O.

Persistence (tables ``tickets``, ``ticket_events``, ``ticket_alarms``, ``ticket_photos``, migration 6),
the SLA watchdog, delivery to the worker's MQTT topic (``contract.worker_topic``) through an injected
``publish(topic, payload, qos)`` callable, and the 3D snapshot through an injected callable. The rules of
the loop (states, deadlines, assignment, correlation, permissions, KPIs) are pure, in :mod:`twin.tickets`.

What the gateway calls:

* :meth:`TicketService.on_alarm_event` for every :class:`~twin.alarms.AlarmEvent` of a community
  (a raised alarm whose rule dispatches opens a ticket or joins the open one of the same incident: the
  decisions are in :mod:`gateway.tickets.incidents`);
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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from gateway.reports.checks import report_rate_problem
from gateway.settings import Settings
from gateway.storage import Storage, StorageError, UnknownDevice, fetch_rows, fetch_value, fetch_values
from gateway.tickets import fieldwork, incidents
from gateway.tickets.config import incident_policy, sla_policy
from gateway.tickets.photos import PHOTO_TYPES, Photo, PhotoRejected, check_photo, content_type_of
from gateway.tickets.rows import (
    OPEN_STATES,
    SELECT_TICKETS,
    TICKET_ALARM_COLUMNS,
    TICKET_COLUMNS,
    TICKET_ROW,
    AlarmHistoryRow,
    EarlierTicketRow,
    TicketAlarmRow,
    TicketEventRow,
    ticket_params,
)
from gateway.tickets.views import (
    API_PREFIX,
    SnapshotFn,
    devices_to_show,
    knowledge_base,
    knowledge_or_shipped,
    kpi_csv,
    photo_url,
    render_snapshot,
    rule_names,
    worker_view,
)
from twin import contract
from twin import tickets as tk
from twin.alarms import AlarmEvent
from twin.community import Community
from twin.knowledge import KnowledgeBase
from twin.people import User
from twin.tickets import Alert, InvalidInput, Priority, Ticket, TicketError, TicketState

__all__ = [  # what the API, the dashboard and the CLI import from here
    "API_PREFIX",
    "MAX_NOTE",
    "PHOTO_TYPES",
    "Forbidden",
    "Photo",
    "PhotoRejected",
    "Publish",
    "ReadingsFn",
    "SnapshotFn",
    "TicketConflict",
    "TicketNotFound",
    "TicketService",
    "alarm_tickets",
    "check_photo",
    "incident_policy",
    "knowledge_base",
    "kpi_csv",
    "render_snapshot",
    "rule_names",
    "sla_policy",
]

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes, int], None]
ReadingsFn = Callable[[str, str], list[dict[str, Any]]]
MAX_NOTE = 4000


class TicketNotFound(LookupError):
    pass


class TicketConflict(Exception):
    """Someone else changed the ticket since it was read: reload and try again."""


class Forbidden(PermissionError):
    pass


def alarm_tickets(conn: psycopg.Connection[Any], community: str, keys: Sequence[str]) -> dict[str, int]:
    """Alarm key -> the ticket holding it (the newest, if the alarm came back after its ticket closed), for the
    alarms of ``community`` given; alarms on no ticket are left out."""
    if not keys:
        return {}
    rows = conn.execute(
        "SELECT DISTINCT ON (a.alarm_key) a.alarm_key, a.ticket_id FROM ticket_alarms a JOIN tickets t "
        "ON t.id = a.ticket_id WHERE t.community = %s AND a.alarm_key = ANY(%s) ORDER BY a.alarm_key, a.ticket_id DESC",
        (community, list(keys))).fetchall()
    return {str(k): int(i) for k, i in rows}


# -- the service --------------------------------------------------------------------------------------


class TicketService:
    """Tickets of one or more communities on one database connection (not thread-safe: one per thread).

    Extension API: what the modules that store more about tickets (:mod:`gateway.tickets.incidents`,
    :mod:`~gateway.tickets.fieldwork`, :mod:`~gateway.tickets.handoff`, :mod:`gateway.reports.store`,
    :mod:`gateway.care.overdue`) use on the service's connection, with its error mapping and its rules:
    :meth:`db_step` (a database step: ``psycopg`` errors become :class:`StorageError`), :meth:`select_tickets`,
    :meth:`insert_and_dispatch`, :meth:`write_transition`, :meth:`record_event`, :meth:`act`, :meth:`store_photo`,
    :meth:`deliver` and :meth:`workload`.
    """

    def __init__(self, storage: Storage, settings: Settings, communities: Community | Iterable[Community], *,
                 publish: Publish | None = None, snapshot: SnapshotFn | None = None,
                 readings: ReadingsFn | None = None, knowledge: KnowledgeBase | None = None,
                 clock: Callable[[], datetime] | None = None, render_on_create: bool = True) -> None:
        self.storage = storage
        self.conn = storage.conn
        self.settings = settings
        self.cfg = settings.tickets
        self.incidents = incident_policy(settings)
        self.policy = sla_policy(settings.tickets, self.incidents)
        cs = [communities] if isinstance(communities, Community) else list(communities)
        self.communities: dict[str, Community] = {c.id: c for c in cs}
        self.publish = publish
        self.snapshot = snapshot
        self.readings = readings or self._stored_readings
        self.knowledge = knowledge or knowledge_or_shipped(settings.knowledge.dirs)
        self.clock = clock or (lambda: datetime.now(UTC))
        # False: the 3D snapshot (slow: ~1 s) is rendered by tick() instead, off the alarm path
        self.render_on_create = render_on_create
        self.offset = tk.parse_offset(settings.tickets.utc_offset)
        self.tz = timezone(self.offset)
        self.root = settings.mqtt.topic_root

    # -- from alarms ------------------------------------------------------------------------------

    def on_alarm_event(self, community: Community | str, event: AlarmEvent) -> Ticket | None:
        """Act on one alarm event; returns the ticket it opened or changed (None: nothing to do). The incident
        decisions are in :mod:`gateway.tickets.incidents`."""
        return incidents.on_alarm_event(self, self._community(community), event)

    def workload(self, c: Community) -> dict[str, int]:
        """Worker -> how many open tickets of community ``c`` they hold (assignment balances by it)."""
        return dict(self.conn.execute("SELECT assignee, count(*) FROM tickets WHERE community = %s AND state = ANY(%s) "
                                      "AND assignee IS NOT NULL GROUP BY 1", (c.id, OPEN_STATES)).fetchall())

    def insert_and_dispatch(self, c: Community, t: Ticket, context: dict[str, Any]) -> Ticket:
        """Store the new ticket ``t`` (``context``: kept with it) and dispatch it to whoever is on duty; inside the
        caller's transaction (which holds the community's advisory lock, as :meth:`open_ticket` does)."""
        a = tk.assign(c, t.building, t.created_at, offset=self.offset, load=self.workload(c),
                      category=t.category, partners=self.cfg.partners)
        t = replace(t, grid=a.grid, collaborator=a.collaborator)
        context = {**context, "assignment": {"role": a.role, "reason": a.reason}}
        t = self._insert(t, context)
        if a.assignee is not None:
            before = t
            t = self.write_transition(before, tk.dispatch(t, a), "dispatch", "system", a.reason,
                                      detail={"assignee": a.assignee, "role": a.role, "collaborator": a.collaborator})
        return t

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
        keys = tk.place_keys(self.incidents, c, category, building=building, floor=floor, unit=unit)
        t = tk.new_ticket(community=c.id, title=title.strip(), category=category, priority=priority, source="manual",
                          at=now, policy=self.policy, rate_token=secrets.token_urlsafe(18), building=building,
                          floor=floor, unit=unit, description=description.strip(), reporter=user.username,
                          contact=contact, keys=keys)
        with self.db_step("creating a ticket"), self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"gridtwin-tickets:{c.id}",))
            t = self.insert_and_dispatch(c, t, {"reported_by": user.username})
        self.deliver(t, "created")
        return (self.attach_snapshot(t.id) if self.render_on_create else None) or t

    def open_ticket(self, c: Community, t: Ticket, context: dict[str, Any], then: Callable[[Ticket], None]) -> Ticket:
        """Store and dispatch a ticket built elsewhere (a one-click report, gateway/reports/); ``then`` in the same
        transaction."""
        with self.db_step("creating a ticket"), self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"gridtwin-tickets:{c.id}",))
            t = self.insert_and_dispatch(c, t, context)
            then(t)
        self.deliver(t, "created")
        return t

    # -- people act on tickets ----------------------------------------------------------------------

    def accept(self, user: User, ticket_id: int, note: str = "", *, version: int | None = None) -> Ticket:
        return self.act(user, ticket_id, "accept", tk.accept, note, version=version)

    def progress(self, user: User, ticket_id: int, note: str = "", *, photo: Photo | None = None, plan: bool = False,
                 version: int | None = None) -> Ticket:
        if not note.strip() and photo is None:
            raise InvalidInput("feedback needs a note or a photo")
        if photo is not None:
            check_photo(photo, self.cfg.photo_max_bytes)
        return self.act(user, ticket_id, "progress", lambda t, now: tk.progress(t, now, self.policy, plan=plan),
                        note, version=version, photo=photo, detail={"plan": plan})

    def arrive(self, user: User, ticket_id: int, note: str = "", *, version: int | None = None,
               position: tk.Position | None = None) -> Ticket:
        """到场: someone is on site (the arrival clock of life-safety targets such as an entrapment's), with where
        their phone was (``position``) if it told; stored with the ticket and in its history."""
        return self.act(user, ticket_id, "arrive", lambda t, now: tk.arrive(t, now, position), note, version=version,
                        detail={"position": position.as_json()} if position else None)

    def check_sop(self, user: User, ticket_id: int, step: int, done: bool) -> Ticket:
        """Tick (or untick) a step of the ticket's SOP checklist (:func:`gateway.tickets.fieldwork.check_sop`)."""
        return fieldwork.check_sop(self, user, ticket_id, step, done)

    def release(self, user: User, ticket_id: int, note: str = "", *, version: int | None = None) -> Ticket:
        """解困: the trapped people are out (entrapment tickets; recorded apart from arrival and resolving)."""
        return self.act(user, ticket_id, "release", tk.release, note, version=version)

    def resolve(self, user: User, ticket_id: int, note: str, *, photo: Photo | None = None,
                version: int | None = None, reason: str | None = None, reason_note: str | None = None) -> Ticket:
        """办结. Refused (:class:`tk.AlarmsStillActive`) while a life-safety alarm of the incident is active, unless
        ``reason`` says why (false_alarm, device_fault, other with ``reason_note``); the reason is stored with the
        ticket and its alarms (false-alarm statistics)."""
        if not note.strip():
            raise InvalidInput("resolving needs a note saying what was done")
        if photo is not None:
            check_photo(photo, self.cfg.photo_max_bytes)
        active: list[str] = []

        def fn(t: Ticket, now: datetime) -> Ticket:
            active.extend(self._active_life_safety(t.id))
            return tk.resolve(t, now, active_life_safety=active, reason=reason, note=reason_note)

        return self.act(user, ticket_id, "resolve", fn, note, version=version, photo=photo,
                        detail={"reason": reason, "reason_note": reason_note, "active_life_safety": active}
                        if reason else None, then=lambda t, now: self._note_reason(t, active, user, now))

    def cancel(self, user: User, ticket_id: int, reason: str, *, version: int | None = None,
               code: str | None = None) -> Ticket:
        """撤销 with a reason; while a life-safety alarm of the incident is active also its kind (``code``)."""
        active: list[str] = []

        def fn(t: Ticket, now: datetime) -> Ticket:
            active.extend(self._active_life_safety(t.id))
            return tk.cancel(t, reason, now, active_life_safety=active, code=code)

        return self.act(user, ticket_id, "cancel", fn, reason, version=version,
                        detail={"reason": code, "active_life_safety": active} if code else None,
                        then=lambda t, now: self._note_reason(t, active, user, now))

    def _active_life_safety(self, ticket_id: int) -> list[str]:
        """Keys of the ticket's life-safety alarms that have not cleared."""
        return fetch_values(self.conn, "SELECT alarm_key FROM ticket_alarms WHERE ticket_id = %s "
                            "AND cleared_at IS NULL AND rule = ANY(%s) ORDER BY first_at, alarm_key",
                            (ticket_id, sorted(self.incidents.life_safety)))

    def _note_reason(self, t: Ticket, active: Sequence[str], user: User, now: datetime) -> None:
        """Record the reason given on the alarms it is about: the active life-safety ones, else all of the ticket's."""
        if t.close_reason is None:
            return
        self.conn.execute(
            "UPDATE ticket_alarms SET close_reason = %s, close_note = %s, closed_by = %s, closed_at = %s "
            "WHERE ticket_id = %s AND (cardinality(%s::text[]) = 0 OR alarm_key = ANY(%s))",
            (t.close_reason, t.close_note, user.username, now, t.id, list(active), list(active)))

    def reopen(self, user: User, ticket_id: int, reason: str, *, version: int | None = None) -> Ticket:
        if not reason.strip():
            raise InvalidInput("reopening a ticket needs a reason")
        return self.act(user, ticket_id, "reopen", lambda t, now: tk.reopen(t, now, self.policy), reason,
                        version=version)

    def escalate(self, user: User, ticket_id: int, reason: str, *, version: int | None = None) -> Ticket:
        def fn(t: Ticket, now: datetime) -> Ticket:
            return tk.escalate(t, tk.supervisor_of(self._community(t.community), t.grid), now)

        return self.act(user, ticket_id, "escalate", fn, reason, version=version)

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

        t = self.act(user, ticket_id, "reassign", fn, reason, version=version, detail={"assignee": assignee},
                     deliver=False)
        if previous and previous[0] and previous[0] != t.assignee:
            self._send(previous[0], {"v": 1, "type": "ticket_withdrawn", "at": self.iso(self.clock()),
                                     "ticket": {"id": t.id, "title": t.title, "community": t.community, "grid": t.grid},
                                     "reason": reason})
        self.deliver(t, "reassigned")
        return t

    def act(self, user: User, ticket_id: int, action: str, fn: Callable[[Ticket, datetime], Ticket], note: str, *,
            version: int | None, photo: Photo | None = None, detail: dict[str, Any] | None = None,
            deliver: bool = True, then: Callable[[Ticket, datetime], None] | None = None) -> Ticket:
        """``user`` does ``action`` on the ticket: checks the permission and ``version`` (if given), applies the
        pure transition ``fn(ticket, now)``, stores it with ``photo`` and ``detail`` in the history, runs
        ``then(ticket, now)`` in the same transaction, and tells the assignee (``deliver``)."""
        if len(note) > MAX_NOTE:
            raise InvalidInput(f"the note is longer than {MAX_NOTE} characters")
        now = self.clock()
        with self.db_step(f"{action} on ticket {ticket_id}"), self.conn.transaction():
            before = self._load(ticket_id)
            problem = tk.permission_problem(user, before, action)
            if problem:
                raise Forbidden(problem)
            if version is not None and version != before.version:
                raise TicketConflict(f"ticket {ticket_id} is at version {before.version}, not {version}: "
                                     "it changed meanwhile; reload it")
            after = fn(before, now)
            photo_id = self.store_photo(before.id, photo, "feedback", user.username, now) if photo else None
            t = self.write_transition(before, after, action, user.username, note.strip(), photo_id=photo_id, at=now,
                                      detail=detail)
            if then is not None:
                then(t, now)
        if deliver:
            self.deliver(t, action)
        return t

    # -- the resident ---------------------------------------------------------------------------------

    def by_token(self, token: str) -> Ticket:
        with self.db_step("reading a ticket"):
            found = self.select_tickets(f"{SELECT_TICKETS} WHERE rate_token = %s", (token,))
        if not found:
            raise TicketNotFound("no ticket for this link")
        return found[0]

    def rate(self, token: str, rating: int, comment: str | None = None) -> Ticket:
        if comment is not None and len(comment) > MAX_NOTE:
            raise InvalidInput(f"the comment is longer than {MAX_NOTE} characters")
        now = self.clock()
        with self.db_step("rating a ticket"), self.conn.transaction():
            before = self.by_token(token)
            if before.state is TicketState.EVALUATED:
                raise TicketError("this ticket has already been rated: thank you")
            if before.state is not TicketState.FEEDBACK:
                raise TicketError(f"this ticket is {before.state.label_zh}; it can be rated once it is resolved")
            if (why := report_rate_problem(self.conn, before)) is not None:  # a report's check (核查) is pending
                raise TicketError(why)
            t = self.write_transition(before, tk.rate(before, rating, comment, now), "rate", "resident",
                                      comment or "", at=now, detail={"rating": rating})
        self.deliver(t, "rated")
        return t

    # -- the watchdog -----------------------------------------------------------------------------------

    def tick(self, now: datetime | None = None, *, limit: int = 500) -> list[tuple[int, Alert]]:
        """Raise the SLA alerts that are due: warn the assignee at 75 %, escalate to the supervisor at breach.

        Looks only at tickets whose stored ``next_alert_at`` has come (an index serves it). Returns what it did.
        """
        now = now or self.clock()
        done: list[tuple[int, Alert]] = []
        with self.db_step("reading due tickets"):
            ids = fetch_values(self.conn, "SELECT id FROM tickets WHERE next_alert_at <= %s "
                               "ORDER BY next_alert_at LIMIT %s", (now, limit))
        for ticket_id in ids:
            try:
                done += self._alert(ticket_id, now)
            except TicketConflict:
                continue  # changed meanwhile: the next tick looks again
        if self.snapshot is not None and not self.render_on_create:
            self.attach_missing_snapshots()
        from gateway.care.overdue import raise_overdue  # (it imports this module) overdue care visits: tickets
        raise_overdue(self, now)
        from gateway.ops.retention import purge_personal_data  # positions, care visit details: docs/patrols, care
        with self.db_step("purging personal data past its retention"), self.conn.transaction():
            purge_personal_data(self.conn, now)
        return done

    def attach_missing_snapshots(self, limit: int = 3) -> list[int]:
        """Render snapshots of the newest open tickets that have none yet (for ``render_on_create=False``)."""
        with self.db_step("finding tickets without a snapshot"):
            ids = fetch_values(self.conn, "SELECT id FROM tickets WHERE state = ANY(%s) AND NOT context ? 'snapshot' "
                               "ORDER BY created_at DESC LIMIT %s", (OPEN_STATES, limit))
        return [i for i in ids if self.attach_snapshot(i) is not None]

    def _alert(self, ticket_id: int, now: datetime) -> list[tuple[int, Alert]]:
        out: list[tuple[int, Alert]] = []
        with self.db_step(f"SLA alerts of ticket {ticket_id}"), self.conn.transaction():
            t = self._load(ticket_id)
            alerts = tk.alerts_due(t, now, self.policy.warn_fraction)
            if not alerts:  # nothing new (e.g. the state changed): just move the next look
                self.conn.execute("UPDATE tickets SET next_alert_at = %s WHERE id = %s AND version = %s",
                                  (tk.next_alert_at(t, self.policy.warn_fraction), t.id, t.version))
                return out
            for a in alerts:
                before = t
                after = tk.note_alert(t, a)
                clock_zh = a.clock.label_zh
                if a.level == "breach":
                    to = tk.supervisor_of(self._community(t.community), t.grid)
                    after = tk.escalate(after, to, now)
                    note = f"{clock_zh}时限 {self.iso(a.deadline)} 已超时，升级至 {to or '指挥中心'}"
                    t = self.write_transition(before, after, "escalate", "watchdog", note, at=now,
                                              detail={"clock": a.clock.value, "deadline": a.deadline.isoformat(),
                                                      "escalated_to": to})
                else:
                    note = f"{clock_zh}时限 {self.iso(a.deadline)} 已过 {round(self.policy.warn_fraction * 100)}%"
                    t = self.write_transition(before, after, "warn", "watchdog", note, at=now,
                                              detail={"clock": a.clock.value, "deadline": a.deadline.isoformat()})
                out.append((t.id, a))
        for _id, a in out:
            self.deliver(t, "escalated" if a.level == "breach" else "sla_warning",
                         extra_to=t.escalated_to if a.level == "breach" else None,
                         alert={"clock": a.clock.value, "level": a.level, "deadline": self.iso(a.deadline)})
        return out

    # -- reading ----------------------------------------------------------------------------------------

    def get(self, ticket_id: int, user: User | None = None) -> Ticket:
        with self.db_step(f"reading ticket {ticket_id}"):
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
            args.append(OPEN_STATES)
        with self.db_step("listing tickets"):
            return self.select_tickets(f"{SELECT_TICKETS} WHERE {' AND '.join(where)} "
                                       "ORDER BY created_at DESC, id DESC LIMIT %s OFFSET %s", (*args, limit, offset))

    def timeline(self, ticket_id: int) -> list[dict[str, Any]]:
        with self.db_step(f"reading the timeline of ticket {ticket_id}"):
            events = fetch_rows(self.conn, class_row(TicketEventRow),
                "SELECT id, at, action, from_state, to_state, actor, note, photo_id, detail FROM ticket_events "
                "WHERE ticket_id = %s ORDER BY id", (ticket_id,))
        return [{"id": e.id, "at": self.iso(e.at), "action": e.action, "from": e.from_state, "to": e.to_state,
                 "by": e.actor, "note": e.note, "photo_url": photo_url(ticket_id, e.photo_id) if e.photo_id else None,
                 "detail": e.detail} for e in events]

    def photo(self, ticket_id: int, photo_id: int | None = None, *, kind: str | None = None) -> Photo:
        with self.db_step("reading a photo"):
            if photo_id is not None:
                found = fetch_rows(self.conn, class_row(Photo), "SELECT content_type, bytes AS data "
                                   "FROM ticket_photos WHERE ticket_id = %s AND id = %s", (ticket_id, photo_id))
            else:
                found = fetch_rows(self.conn, class_row(Photo), "SELECT content_type, bytes AS data "
                                   "FROM ticket_photos WHERE ticket_id = %s AND kind = %s ORDER BY id DESC LIMIT 1",
                                   (ticket_id, kind))
        if not found:
            raise TicketNotFound(f"ticket {ticket_id} has no such photo")
        return found[0]

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
            with self.db_step("noting a missing snapshot"):
                self.conn.execute("UPDATE tickets SET context = context || %s WHERE id = %s",
                                  (Jsonb({"snapshot": False}), t.id))
            return None
        with self.db_step("storing a snapshot"), self.conn.transaction():
            self.store_photo(t.id, Photo("image/png", png), "snapshot", "system", self.clock())
            self.conn.execute("UPDATE tickets SET context = context || %s WHERE id = %s",
                              (Jsonb({"snapshot": True}), t.id))
        self.deliver(t, "snapshot")
        return t

    def view(self, t: Ticket, *, private: bool = False, now: datetime | None = None) -> dict[str, Any]:
        """The ticket as the worker receives it: where, what, deadlines, readings, alarms, history, SOP."""
        c = self.communities.get(t.community)
        with self.db_step(f"reading ticket {t.id}"):
            context: dict[str, Any] = fetch_value(self.conn, "SELECT context FROM tickets WHERE id = %s",
                                                  (t.id,)) or {}
            alarms = fetch_rows(self.conn, class_row(TicketAlarmRow),
                f"SELECT {TICKET_ALARM_COLUMNS} FROM ticket_alarms WHERE ticket_id = %s ORDER BY first_at, alarm_key",
                (t.id,))
            history = fetch_rows(self.conn, class_row(AlarmHistoryRow),
                "SELECT at, key, kind, severity, detail FROM alarm_events WHERE community = %s AND key = ANY(%s) "
                "ORDER BY at DESC, id DESC LIMIT 20", (t.community, [a.alarm_key for a in alarms])) if alarms else []
            earlier = fetch_rows(self.conn, class_row(EarlierTicketRow),
                "SELECT id, title, state, created_at FROM tickets WHERE community = %s AND building = %s AND "
                "floor IS NOT DISTINCT FROM %s AND id <> %s AND created_at > %s ORDER BY created_at DESC LIMIT 5",
                (t.community, t.building, t.floor, t.id, t.created_at - timedelta(days=90))) if t.building else []
        out = worker_view(t, community=c, context=context, alarms=alarms, history=history, earlier=earlier,
                          readings=self._readings_of(t.community, devices_to_show(t, c, alarms)),
                          sop=self.knowledge.sop_for(t.rule, t.category), now=now or self.clock(), iso=self.iso,
                          life_safety=self.incidents.life_safety)
        if out.get("sop"):
            out["sop"]["checks"] = fieldwork.checks_json(self, t)
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
        with self.db_step("reading tickets for KPIs"):
            tickets = self.select_tickets(f"{SELECT_TICKETS} WHERE {' AND '.join(where)}", args)
        names: dict[str, str] = {}
        for c in self.communities.values():
            names.update(tk.known_people(c))
            names.update({g.id: g.name for g in c.grids})
            names[c.id] = c.name
        return tk.kpis(tickets, names=names)

    def false_alarms(self, start: datetime, end: datetime, *, community: str | None = None,
                     user: User | None = None) -> list[tk.FalseAlarmRow]:
        """What the alarms raised in [start, end) turned out to be, per device and rule, by the reasons workers gave
        when resolving or closing their tickets (false alarm, device fault, other); a supervisor sees their grids."""
        where = ["a.first_at >= %s", "a.first_at < %s"]
        args: list[Any] = [start, end]
        if community:
            where.append("t.community = %s")
            args.append(community)
        if user is not None and not user.sees_everything():
            where.append("t.grid = ANY(%s)")
            args.append(list(user.grids))
        with self.db_step("reading false-alarm statistics"):
            rows = self.conn.execute(
                "SELECT t.community, coalesce(a.device, a.subject), a.rule, a.close_reason FROM ticket_alarms a "
                f"JOIN tickets t ON t.id = a.ticket_id WHERE {' AND '.join(where)}", args).fetchall()

        def kind(code: str, device: str) -> str | None:
            c = self.communities.get(code)
            d = c.device(device) if c is not None else None
            return d.kind if d is not None else None

        return tk.false_alarm_stats((device, kind(code, device), rule, reason) for code, device, rule, reason in rows)

    def alarm_tickets(self, community: str, keys: Sequence[str]) -> dict[str, int]:
        """Alarm key -> the ticket its incident is on (the newest holding it)."""
        with self.db_step("reading the tickets of alarms"):
            return alarm_tickets(self.conn, community, keys)

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
    def db_step(self, what: str) -> Iterator[None]:
        """A database step: a ``psycopg`` error inside becomes :class:`StorageError` saying ``what`` failed."""
        try:
            yield
        except psycopg.Error as exc:
            raise StorageError(f"{what} failed: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}") \
                from exc

    def _load(self, ticket_id: int) -> Ticket:
        found = self.select_tickets(f"{SELECT_TICKETS} WHERE id = %s", (ticket_id,))
        if not found:
            raise TicketNotFound(f"no ticket {ticket_id}")
        return found[0]

    def select_tickets(self, query: str, args: Sequence[Any]) -> list[Ticket]:
        """Tickets of a query selecting :data:`SELECT_TICKETS`'s columns."""
        return fetch_rows(self.conn, TICKET_ROW, query, args)

    def _insert(self, t: Ticket, context: dict[str, Any]) -> Ticket:
        params = ticket_params(t)
        ticket_id = fetch_value(
            self.conn,
            f"INSERT INTO tickets ({', '.join(TICKET_COLUMNS)}, next_alert_at, context) VALUES "
            f"({', '.join(['%s'] * len(TICKET_COLUMNS))}, %s, %s) RETURNING id",
            (*params, tk.next_alert_at(t, self.policy.warn_fraction), Jsonb(context)))
        t = replace(t, id=int(ticket_id))
        self.record_event(t, "create", None, t.reporter, t.description, detail={"source": t.source})
        return t

    def write_transition(self, before: Ticket, after: Ticket, action: str, actor: str, note: str, *,
                         photo_id: int | None = None, at: datetime | None = None,
                         detail: dict[str, Any] | None = None) -> Ticket:
        """Store ``after`` if the row is still at ``before.version`` (else :class:`TicketConflict`); record the
        transition in the history."""
        after = replace(after, version=before.version + 1)
        cur = self.conn.execute(
            f"UPDATE tickets SET ({', '.join(TICKET_COLUMNS)}, version, next_alert_at, updated_at) = "
            f"({', '.join(['%s'] * len(TICKET_COLUMNS))}, %s, %s, now()) WHERE id = %s AND version = %s",
            (*ticket_params(after), after.version, tk.next_alert_at(after, self.policy.warn_fraction), before.id,
             before.version))
        if cur.rowcount != 1:
            raise TicketConflict(f"ticket {before.id} changed meanwhile (it was at version {before.version}); "
                                 "reload it")
        self.record_event(after, action, before.state, actor, note, photo_id=photo_id, at=at, detail=detail)
        return after

    def record_event(self, t: Ticket, action: str, from_state: TicketState | None, actor: str, note: str, *,
                     photo_id: int | None = None, at: datetime | None = None,
                     detail: dict[str, Any] | None = None) -> None:
        """Add a line to the ticket's history (``ticket_events``) without changing the ticket."""
        self.conn.execute(
            "INSERT INTO ticket_events (ticket_id, at, action, from_state, to_state, actor, note, photo_id, version, "
            "detail) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (t.id, at or self.clock(), action, from_state.value if from_state else None, t.state.value, actor, note,
             photo_id, t.version, Jsonb(detail or {})))

    def store_photo(self, ticket_id: int, photo: Photo, kind: str, by: str, at: datetime) -> int:
        """Store a photo (already checked) of the ticket; returns its id (for :func:`photo_url`)."""
        return int(fetch_value(
            self.conn,
            "INSERT INTO ticket_photos (ticket_id, kind, content_type, bytes, uploaded_by, at) "
            "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (ticket_id, kind, content_type_of(photo), photo.data, by, at)))

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

    def iso(self, at: datetime | None) -> str | None:
        return None if at is None else at.astimezone(self.tz).isoformat()

    # -- delivery -----------------------------------------------------------------------------------------

    def deliver(self, t: Ticket, event: str, *, extra_to: str | None = None,
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
