"""Rows of the ticket tables (migrations 0006, 0009, 0012, 0014): columns, row factories, the typed rows read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import kwargs_row

from twin import tickets as tk
from twin.tickets import Priority, Ticket, TicketState

# the stored fields of a Ticket, in the order of INSERT and UPDATE parameters (id and version apart)
TICKET_COLUMNS = (
    "community", "title", "category", "priority", "state", "source", "rule", "life_safety", "building", "floor",
    "unit", "device", "grid", "assignee", "assignee_role", "escalated_to", "collaborator", "description",
    "reporter", "contact", "keys", "created_at", "clock_start", "respond_by", "resolve_by", "progress_from",
    "progress_by", "responded_at", "accepted_at", "resolved_at", "closed_at", "last_alarm_at", "alerts",
    "breaches", "escalations", "reopens", "plan_submitted", "cancel_reason", "rating", "rating_comment",
    "rated_at", "rate_token", "occurred_at", "received_at", "arrive_by", "arrived_at", "release_by", "released_at",
    "close_reason", "close_note", "arrived_lat", "arrived_lon", "arrived_accuracy_m",
)
SELECT_TICKETS = "SELECT id, version, " + ", ".join(TICKET_COLUMNS) + " FROM tickets"
OPEN_STATES = [s.value for s in tk.OPEN_STATES]


def ticket_from_row(**row: Any) -> Ticket:
    """A :class:`Ticket` from a row of :data:`SELECT_TICKETS` (as keyword arguments)."""
    return Ticket(**{
        **row,
        "id": int(row["id"]),
        "priority": Priority(row["priority"]),
        "state": TicketState(row["state"]),
        "keys": frozenset(row["keys"] or ()),
        "alerts": frozenset(row["alerts"] or ()),
    })


TICKET_ROW = kwargs_row(ticket_from_row)  # row factory: cursor(row_factory=TICKET_ROW) yields Tickets


def ticket_params(t: Ticket) -> tuple[Any, ...]:
    """The values of :data:`TICKET_COLUMNS` for ``t``, as the database takes them."""
    values = []
    for name in TICKET_COLUMNS:
        v = getattr(t, name)
        if isinstance(v, frozenset):
            v = sorted(v)
        elif isinstance(v, Priority | TicketState):
            v = v.value
        values.append(v)
    return tuple(values)


@dataclass(frozen=True, slots=True)
class TicketEventRow:
    """One transition or note of a ticket (``ticket_events``)."""

    id: int
    at: datetime
    action: str
    from_state: str | None
    to_state: str
    actor: str
    note: str
    photo_id: int | None
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TicketAlarmRow:
    """One alarm of a ticket's incident (``ticket_alarms``)."""

    alarm_key: str
    rule: str
    severity: str
    subject: str
    device: str | None
    building: str | None
    floor: int | None
    detail: str
    first_at: datetime
    last_at: datetime
    count: int
    cleared_at: datetime | None
    life_safety: bool = False
    close_reason: str | None = None
    close_note: str | None = None


TICKET_ALARM_COLUMNS = ("alarm_key, rule, severity, subject, device, building, floor, detail, first_at, last_at, "
                        "count, cleared_at, life_safety, close_reason, close_note")


@dataclass(frozen=True, slots=True)
class AlarmHistoryRow:
    """A change of one of the ticket's alarms (``alarm_events``)."""

    at: datetime
    key: str
    kind: str
    severity: str
    detail: str


@dataclass(frozen=True, slots=True)
class EarlierTicketRow:
    """A recent ticket at the same spot."""

    id: int
    title: str
    state: str
    created_at: datetime
