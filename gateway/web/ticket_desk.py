"""The dashboard's ticket desk on the dispatch service (:class:`gateway.tickets.service.TicketService`):
tickets, their actions and KPIs in the dashboard's terms (:mod:`viz.data`). Does I/O."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from gateway.api.pool import StoragePool
from gateway.storage import Storage
from gateway.tickets import handoff as handoff_store
from gateway.web.database import connection
from twin.alarms import AlarmEvent, Dispatch, EventKind, SubjectType
from twin.community import Community
from twin.people import Role, User
from twin.tickets.handoff import PartnerKpi
from viz.data import ActionRefused, AlarmView, KpiRow, Photo, Position, TicketAlarm, TicketStep, TicketView


class TicketDesk(Protocol):
    """What the dashboard needs from the dispatch service (gateway/tickets/service.py), in the dashboard's terms."""

    def version(self) -> str: ...

    def tickets(self, user: User, *, include_closed: bool = False) -> Sequence[TicketView]: ...

    def ticket(self, user: User, ticket_id: str) -> TicketView | None: ...

    def accept(self, user: User, ticket_id: str) -> None: ...

    def feedback(self, user: User, ticket_id: str, note: str, photo: Photo | None) -> None: ...

    def arrive(self, user: User, ticket_id: str, position: Position | None = None) -> None: ...

    def check_sop(self, user: User, ticket_id: str, step: int, done: bool) -> None: ...

    def resolve(self, user: User, ticket_id: str, note: str, reason: str | None = None) -> None: ...

    def cancel(self, user: User, ticket_id: str, reason: str, code: str | None = None) -> None: ...

    def reassign(self, user: User, ticket_id: str, assignee: str, reason: str) -> None: ...

    def escalate(self, user: User, ticket_id: str, reason: str) -> None: ...

    def reopen(self, user: User, ticket_id: str, reason: str) -> None: ...

    def snapshot(self, user: User, ticket_id: str) -> bytes | None: ...

    def photo(self, user: User, photo_id: str) -> tuple[bytes, str] | None: ...

    def dispatch_alarm(self, user: User, alarm: AlarmView, note: str) -> str: ...

    def kpis(self, since: datetime, until: datetime) -> Sequence[KpiRow]: ...

    def partner_kpis(self, user: User, since: datetime, until: datetime) -> Sequence[PartnerKpi]: ...

    def record_handoff(self, user: User, ticket_id: str, role: str, *, arrived: bool) -> None: ...



@contextlib.contextmanager
def refusals() -> Iterator[None]:
    """The ticket service's errors in the block as the dashboard's :class:`~viz.data.ActionRefused` codes."""
    from gateway.tickets.service import Forbidden, PhotoRejected, TicketConflict, TicketNotFound
    from twin.tickets import AlarmsStillActive, InvalidInput, TicketError

    try:
        yield
    except TicketNotFound as exc:
        raise ActionRefused("not_found", str(exc)) from exc
    except Forbidden as exc:
        raise ActionRefused("forbidden", str(exc)) from exc
    except TicketConflict as exc:
        raise ActionRefused("conflict", str(exc)) from exc
    except PhotoRejected as exc:
        raise ActionRefused("too_large" if exc.status == 413 else "bad_input", str(exc)) from exc
    except InvalidInput as exc:
        raise ActionRefused("bad_input", str(exc)) from exc
    except AlarmsStillActive as exc:
        raise ActionRefused("alarms_active", ", ".join(exc.alarms)) from exc
    except TicketError as exc:
        raise ActionRefused("illegal_transition", str(exc)) from exc


class ServiceTicketDesk:
    """:class:`TicketDesk` on :class:`gateway.tickets.service.TicketService` (one service per pooled connection).

    ``make_service(storage)`` builds a service on a connection (the composition root decides its
    settings, MQTT delivery and snapshot renderer). Ticket-service errors become the dashboard's
    :class:`~viz.data.ActionRefused` codes; database errors :class:`~viz.data.DataUnavailable`.
    """

    def __init__(self, community: Community, db_url: str, make_service: Callable[[Storage], Any], *,
                 schema: str = "gridtwin", pool_size: int = 3, pool: StoragePool | None = None) -> None:
        self._community = community
        self._make = make_service
        self._own_pool = pool is None  # a shared pool is closed by its owner
        self._pool = pool or StoragePool(db_url, schema=schema, max_size=pool_size, name="gridtwin-tickets")

    @contextlib.contextmanager
    def _service(self, what: str) -> Iterator[Any]:
        with connection(self._pool, what) as st, refusals():
            yield self._make(st)

    def version(self) -> str:
        with connection(self._pool, "reading the ticket digest") as st:
            row = st.conn.execute("SELECT count(*), coalesce(sum(version), 0), max(updated_at) FROM tickets "
                                  "WHERE community = %s", (self._community.id,)).fetchone()
        return f"{row[0]}.{row[1]}.{row[2].timestamp() if row and row[2] else 0:.3f}" if row else "0"

    def _view(self, t: Any, names: Mapping[str, str]) -> TicketView:
        return TicketView(
            id=str(t.id), title=t.title, priority=t.priority.value, status=t.state.value, created_at=t.created_at,
            respond_by=t.respond_by, resolve_by=t.resolve_by, responded_at=t.accepted_at, resolved_at=t.resolved_at,
            grid=t.grid, building=t.building, floor=t.floor, unit=t.unit, device=t.device, assignee=t.assignee,
            assignee_name=names.get(t.assignee or "", t.assignee), category=t.category, description=t.description,
            clock_start=t.clock_start, closed_at=t.closed_at, close_reason=t.close_reason,
            cancel_reason=t.cancel_reason, rating=t.rating, rating_comment=t.rating_comment,
            escalated_to=t.escalated_to, rule_name=_rule_names().get(t.rule) if t.rule else None,
            arrived_at=t.arrived_at, life_safety=t.life_safety,
            arrived_position=Position(t.arrived_lat, t.arrived_lon, t.arrived_accuracy_m)
            if t.arrived_lat is not None and t.arrived_lon is not None else None,
        )

    def tickets(self, user: User, *, include_closed: bool = False) -> Sequence[TicketView]:
        from twin.tickets import known_people

        names = known_people(self._community)
        with self._service("listing tickets") as svc:
            return [self._view(t, names) for t in svc.list_for(user, open_only=not include_closed, limit=500)
                    if t.community == self._community.id]

    def ticket(self, user: User, ticket_id: str) -> TicketView | None:
        from twin.tickets import known_people

        tid = _ticket_id(ticket_id)
        if tid is None:
            return None
        with self._service(f"reading ticket {ticket_id}") as svc:
            try:
                t = svc.get(tid, user)
            except ActionRefused:
                return None
            view = svc.view(t)
            steps = tuple(svc.timeline(t.id))
            handoffs = tuple(handoff_store.current(svc, t.id))
        base = self._view(t, known_people(self._community))
        sop = view.get("sop") or {}
        latest = {f"{r.get('device', '')} {r['metric']}".strip(): float(r["value"]) for r in view.get("readings", [])
                  if isinstance(r.get("value"), int | float)}
        history = tuple(
            TicketStep(datetime.fromisoformat(s["at"]), str(s["by"]), str(s["action"]), str(s.get("note") or ""),
                       _photo_ref(t.id, s.get("photo_url")),
                       s["detail"] if isinstance(s.get("detail"), dict) else {}) for s in steps if s.get("at"))
        alarms = tuple(TicketAlarm(str(a["key"]), str(a["rule"]),
                                   _rule_names().get(str(a["rule"])) or str(a.get("rule_name") or a["rule"]),
                                   str(a["severity"]), a.get("device"), datetime.fromisoformat(a["first_at"]),
                                   int(a.get("count") or 1), bool(a.get("active")), bool(a.get("life_safety")),
                                   a.get("building"), a.get("floor"))
                       for a in view.get("alarms", []))
        return TicketView(**{**_fields(base), "sop": tuple(str(x) for x in sop.get("steps", ())),
                             "sop_en": tuple(str(x) for x in sop.get("steps_en", ())), "latest": latest,
                             "history": history, "has_snapshot": bool(view.get("snapshot_url")),
                             "alarm_key": alarms[0].key if alarms else None, "alarms": alarms,
                             "sop_id": sop.get("id"), "sop_calls": tuple(str(x) for x in sop.get("calls", ())),
                             "sop_done": tuple(int(c["step"]) for c in sop.get("checks", ()) if c.get("done")),
                             "handoffs": handoffs})

    def accept(self, user: User, ticket_id: str) -> None:
        with self._service(f"accepting ticket {ticket_id}") as svc:
            svc.accept(user, _need_ticket_id(ticket_id))

    def feedback(self, user: User, ticket_id: str, note: str, photo: Photo | None) -> None:
        from gateway.tickets.service import Photo as ServicePhoto

        with self._service(f"feedback on ticket {ticket_id}") as svc:
            svc.progress(user, _need_ticket_id(ticket_id), note,
                         photo=ServicePhoto(photo.content_type, photo.content) if photo else None)

    def arrive(self, user: User, ticket_id: str, position: Position | None = None) -> None:
        from twin.tickets import Position as TicketPosition

        with self._service(f"arrival on ticket {ticket_id}") as svc:
            where = TicketPosition.checked(position.lat, position.lon, position.accuracy_m) if position else None
            svc.arrive(user, _need_ticket_id(ticket_id), position=where)

    def check_sop(self, user: User, ticket_id: str, step: int, done: bool) -> None:
        with self._service(f"ticking the checklist of ticket {ticket_id}") as svc:
            svc.check_sop(user, _need_ticket_id(ticket_id), step, done)

    def resolve(self, user: User, ticket_id: str, note: str, reason: str | None = None) -> None:
        with self._service(f"resolving ticket {ticket_id}") as svc:
            svc.resolve(user, _need_ticket_id(ticket_id), note, reason=reason,
                        reason_note=note if reason == "other" else None)

    def cancel(self, user: User, ticket_id: str, reason: str, code: str | None = None) -> None:
        with self._service(f"cancelling ticket {ticket_id}") as svc:
            svc.cancel(user, _need_ticket_id(ticket_id), reason, code=code)

    def reassign(self, user: User, ticket_id: str, assignee: str, reason: str) -> None:
        with self._service(f"reassigning ticket {ticket_id}") as svc:
            svc.reassign(user, _need_ticket_id(ticket_id), assignee, reason)

    def escalate(self, user: User, ticket_id: str, reason: str) -> None:
        with self._service(f"escalating ticket {ticket_id}") as svc:
            svc.escalate(user, _need_ticket_id(ticket_id), reason)

    def reopen(self, user: User, ticket_id: str, reason: str) -> None:
        with self._service(f"reopening ticket {ticket_id}") as svc:
            svc.reopen(user, _need_ticket_id(ticket_id), reason)

    def snapshot(self, user: User, ticket_id: str) -> bytes | None:
        tid = _ticket_id(ticket_id)
        if tid is None:
            return None
        with self._service(f"reading the snapshot of ticket {ticket_id}") as svc:
            svc.get(tid, user)  # may the user see it?
            try:
                return bytes(svc.photo(tid, kind="snapshot").data)
            except ActionRefused:
                return None

    def photo(self, user: User, photo_id: str) -> tuple[bytes, str] | None:
        ticket_part, _, photo_part = photo_id.partition("-")
        tid, pid = _ticket_id(ticket_part), _ticket_id(photo_part)
        if tid is None or pid is None:
            return None
        with self._service(f"reading photo {photo_id}") as svc:
            svc.get(tid, user)
            p = svc.photo(tid, pid)
            return bytes(p.data), str(p.content_type)

    def dispatch_alarm(self, user: User, alarm: AlarmView, note: str) -> str:
        """The operator dispatches an alarm: the service opens a ticket (or joins the incident's open one)."""
        if user.role not in (Role.OPERATOR, Role.ADMIN):
            raise ActionRefused("forbidden", user.role.value)
        dispatch = Dispatch(alarm.dispatch) if alarm.dispatch not in ("", "none") else Dispatch.GENERAL
        now = datetime.now(UTC)
        detail = f"{alarm.detail} · {user.username}: {note}" if note else alarm.detail
        event = AlarmEvent(EventKind.RAISED, alarm.rule, alarm.subject, cast(SubjectType, alarm.subject_type),
                           alarm.severity, alarm.status, now, alarm.raised_at, alarm.count, alarm.building,
                           alarm.floor, alarm.device, detail, dispatch, user.username)
        with self._service(f"dispatching alarm {alarm.key}") as svc:
            t = svc.on_alarm_event(self._community, event)
        if t is None:
            raise ActionRefused("illegal_transition", alarm.key)
        return str(t.id)

    def kpis(self, since: datetime, until: datetime) -> Sequence[KpiRow]:
        with self._service("reading KPIs") as svc:
            rows = svc.kpis(since, until, community=self._community.id)
        return [KpiRow(r.scope, r.key, r.name, r.tickets, r.open,
                       None if r.mean_respond_min is None else r.mean_respond_min * 60,
                       None if r.mean_resolve_h is None else r.mean_resolve_h * 3600,
                       r.on_time_rate, r.satisfaction, r.reopen_rate) for r in rows]

    def record_handoff(self, user: User, ticket_id: str, role: str, *, arrived: bool) -> None:
        with self._service(f"recording a hand-off of ticket {ticket_id}") as svc:
            handoff_store.record(svc, user, _need_ticket_id(ticket_id), role, arrived=arrived)

    def partner_kpis(self, user: User, since: datetime, until: datetime) -> Sequence[PartnerKpi]:
        with self._service("reading partners' arrival times") as svc:
            return handoff_store.partner_kpis(svc, since, until, None if user.sees_everything() else user)

    def close(self) -> None:
        if self._own_pool:
            self._pool.close()


@functools.cache
def _rule_names() -> dict[str, str]:
    """Rule id -> "中文 / English" (the service's views carry only the Chinese half)."""
    from gateway.web.dashboard_data import rule_names

    return rule_names()


def _ticket_id(text: str) -> int | None:
    return int(text) if text.isdigit() and 0 < len(text) <= 18 else None


def _need_ticket_id(text: str) -> int:
    tid = _ticket_id(text)
    if tid is None:
        raise ActionRefused("not_found", text[:40])
    return tid


def _photo_ref(ticket_id: int, url: Any) -> str | None:
    """``/api/v1/tickets/7/photos/3`` -> ``7-3`` (the dashboard serves it at /media/photos/7-3)."""
    if not isinstance(url, str):
        return None
    last = url.rstrip("/").rsplit("/", 1)[-1]
    return f"{ticket_id}-{last}" if last.isdigit() else None


def _fields(v: TicketView) -> dict[str, Any]:
    return {f: getattr(v, f) for f in v.__dataclass_fields__}
