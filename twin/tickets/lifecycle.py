"""The ticket's life: every action takes a :class:`~twin.tickets.model.Ticket` and returns a new one, or
raises :class:`~twin.tickets.model.TicketError` naming the state and what is allowed from it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Literal

from twin.alarms import AlarmEvent
from twin.tickets.assign import Assignment
from twin.tickets.model import (
    OPEN_STATES,
    InvalidInput,
    Priority,
    Ticket,
    TicketError,
    TicketState,
    require_aware,
)
from twin.tickets.sla import SlaPolicy


def allowed(action: str, state: TicketState) -> bool:
    return state in _ALLOWED_FROM[action]


_ALLOWED_FROM: Mapping[str, frozenset[TicketState]] = {
    "dispatch": frozenset({TicketState.ACCEPTED, TicketState.REOPENED}),
    "accept": frozenset({TicketState.DISPATCHED, TicketState.ESCALATED, TicketState.REOPENED}),
    "progress": frozenset({TicketState.HANDLING, TicketState.ESCALATED}),
    "resolve": frozenset({TicketState.HANDLING, TicketState.ESCALATED}),
    "rate": frozenset({TicketState.FEEDBACK}),
    "reopen": frozenset({TicketState.FEEDBACK, TicketState.EVALUATED}),
    "cancel": OPEN_STATES,
    "reassign": OPEN_STATES,
    "escalate": OPEN_STATES,
    "attach": OPEN_STATES,
}
ACTIONS = tuple(_ALLOWED_FROM)


def _require_allowed(t: Ticket, action: str) -> None:
    if t.state not in _ALLOWED_FROM[action]:
        can = sorted(a for a in ACTIONS if t.state in _ALLOWED_FROM[a] and a != "attach")
        raise TicketError(f"ticket {t.id} is {t.state.value} ({t.state.label_zh}): cannot {action} it"
                          + (f"; possible now: {', '.join(can)}" if can else "; it is closed"))


def new_ticket(*, community: str, title: str, category: str, priority: Priority, source: Literal["alarm", "manual"],
               at: datetime, policy: SlaPolicy, rate_token: str, rule: str | None = None, building: str | None = None,
               floor: int | None = None, unit: str | None = None, device: str | None = None,
               description: str = "", reporter: str = "system", contact: str | None = None,
               keys: Iterable[str] = (), occurred_at: datetime | None = None) -> Ticket:
    """A ticket just registered (受理) at server time ``at`` with its deadlines; :func:`dispatch` hands it to
    someone. ``occurred_at``: the device time of the alarm (default ``at``)."""
    require_aware(at)
    if occurred_at is not None:
        require_aware(occurred_at)
    d = policy.deadlines(priority, rule, at)
    return Ticket(
        id=0, community=community, title=title, category=category, priority=priority, state=TicketState.ACCEPTED,
        source=source, created_at=at, clock_start=at, respond_by=d.respond_by, resolve_by=d.resolve_by,
        progress_from=at if d.progress_by else None, progress_by=d.progress_by, rate_token=rate_token, rule=rule,
        life_safety=policy.is_life_safety(rule), building=building, floor=floor, unit=unit, device=device,
        description=description, reporter=reporter, contact=contact, keys=frozenset(keys),
        last_alarm_at=at if source == "alarm" else None, occurred_at=occurred_at or at, received_at=at,
    )


def received_time(event: AlarmEvent, default: datetime) -> datetime:
    """Server time an alarm event reached the gateway (``default``, the caller's now, if it does not say)."""
    return event.received_at if event.received_at is not None else default


def dispatch(t: Ticket, a: Assignment) -> Ticket:
    """分派: hand the ticket to the assignment's person (from accepted or reopened)."""
    _require_allowed(t, "dispatch")
    if a.assignee is None:
        raise TicketError(f"ticket {t.id}: nobody to dispatch it to ({a.reason})")
    return replace(t, state=TicketState.DISPATCHED, grid=a.grid or t.grid, assignee=a.assignee,
                   assignee_role=a.role, collaborator=t.collaborator or a.collaborator)


def accept(t: Ticket, at: datetime) -> Ticket:
    """受理签收 by the worker: the respond clock stops (first response counts for the KPI)."""
    _require_allowed(t, "accept")
    if t.accepted_at is not None:
        raise TicketError(f"ticket {t.id} was already accepted at {t.accepted_at.isoformat()}: "
                          "report progress or resolve it")
    return replace(t, state=TicketState.HANDLING, accepted_at=at, responded_at=t.responded_at or at)


def progress(t: Ticket, at: datetime, policy: SlaPolicy, *, plan: bool = False) -> Ticket:
    """Progress feedback (with a note/photo, recorded by the caller). Complex tickets: restarts the
    progress clock; the first one is the handling plan."""
    _require_allowed(t, "progress")
    if t.progress_by is None:
        return t
    every = policy.targets[t.priority].progress_every_s
    if every is None:
        return replace(t, plan_submitted=t.plan_submitted or plan)
    alerts = frozenset(k for k in t.alerts if not k.endswith(":progress"))
    return replace(t, plan_submitted=True, progress_from=at, progress_by=at + timedelta(seconds=every),
                   alerts=alerts)


def resolve(t: Ticket, at: datetime) -> Ticket:
    """处置完毕, 反馈: the worker reports it resolved; the resident may now rate it."""
    _require_allowed(t, "resolve")
    return replace(t, state=TicketState.FEEDBACK, resolved_at=at, responded_at=t.responded_at or at,
                   accepted_at=t.accepted_at or at)


def rate(t: Ticket, rating: int, comment: str | None, at: datetime) -> Ticket:
    """评价 by the resident: 1 (very unsatisfied) .. 5 (very satisfied)."""
    _require_allowed(t, "rate")
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
        raise InvalidInput(f"rating {rating!r} must be a whole number from 1 to 5")
    return replace(t, state=TicketState.EVALUATED, rating=rating, rating_comment=comment or None, rated_at=at,
                   closed_at=at)


def reopen(t: Ticket, at: datetime, policy: SlaPolicy) -> Ticket:
    """Not solved after all: fresh clocks from now, back to the same worker."""
    _require_allowed(t, "reopen")
    d = policy.deadlines(t.priority, t.rule, at)
    return replace(t, state=TicketState.REOPENED, clock_start=at, respond_by=d.respond_by, resolve_by=d.resolve_by,
                   progress_from=at if d.progress_by else None, progress_by=d.progress_by, resolved_at=None,
                   accepted_at=None, closed_at=None, alerts=frozenset(), reopens=t.reopens + 1, rating=None,
                   rating_comment=None, rated_at=None)


def cancel(t: Ticket, reason: str, at: datetime) -> Ticket:
    """撤销: a false alarm or a duplicate; the reason is required."""
    _require_allowed(t, "cancel")
    if not reason.strip():
        raise InvalidInput("cancelling a ticket needs a reason (e.g. 误报: detector dusty, verified on site)")
    return replace(t, state=TicketState.CANCELLED, cancel_reason=reason.strip(), closed_at=at)


def reassign(t: Ticket, assignee: str, reason: str, *, role: str = "manual", grid: str | None = None) -> Ticket:
    """Hand an open ticket to someone else (with a reason); they must accept it anew unless it was
    already being handled."""
    _require_allowed(t, "reassign")
    if not reason.strip():
        raise InvalidInput("reassigning a ticket needs a reason")
    if assignee == t.assignee:
        raise TicketError(f"ticket {t.id} is already assigned to {assignee}")
    # before acceptance the new person must accept it; after, they take the handling over
    state = TicketState.HANDLING if t.accepted_at is not None else TicketState.DISPATCHED
    return replace(t, state=state, assignee=assignee, assignee_role=role, grid=grid or t.grid)


def escalate(t: Ticket, to: str | None, at: datetime) -> Ticket:
    """A deadline passed (or an operator asks): the supervisor is told; the assignee keeps the ticket."""
    _require_allowed(t, "escalate")
    del at  # when is recorded by the caller with the transition
    return replace(t, state=TicketState.ESCALATED, escalated_to=to or t.escalated_to, escalations=t.escalations + 1)


def attach_alarm(t: Ticket, event: AlarmEvent, policy: SlaPolicy, keys: Iterable[str] = (), *,
                 at: datetime | None = None) -> Ticket:
    """A correlated alarm joins the open ticket; a life-safety or urgent alarm tightens its clocks from ``at``,
    the server time it arrived (default: :func:`received_time`, else the event's own time)."""
    _require_allowed(t, "attach")
    at = at or received_time(event, event.at)
    t = replace(t, keys=t.keys | frozenset(keys), last_alarm_at=max(t.last_alarm_at or at, at))
    wanted = Priority.of(event.dispatch)
    if wanted is Priority.URGENT or policy.is_life_safety(event.rule):
        t = tighten(t, Priority.URGENT, event.rule if policy.is_life_safety(event.rule) else t.rule, at, policy)
    return t


def tighten(t: Ticket, priority: Priority, rule: str | None, at: datetime, policy: SlaPolicy) -> Ticket:
    """Raise the ticket to ``priority`` (never lower it) and/or to a life-safety rule's targets, from ``at``:
    each deadline becomes the earlier of the current one and ``at`` + the new target."""
    new_priority = priority if _PRIORITY_RANK[priority] > _PRIORITY_RANK[t.priority] else t.priority
    target = policy.target(new_priority, rule)
    respond_by = min(t.respond_by, at + timedelta(seconds=target.respond_s))
    if target.resolve_s is None:
        resolve_by = t.resolve_by
    else:
        new = at + timedelta(seconds=target.resolve_s)
        resolve_by = new if t.resolve_by is None else min(t.resolve_by, new)
    keep_progress = target.resolve_s is None
    changed_rule = rule if rule is not None and policy.is_life_safety(rule) else t.rule
    return replace(t, priority=new_priority, rule=changed_rule,
                   life_safety=t.life_safety or policy.is_life_safety(rule), respond_by=respond_by,
                   resolve_by=resolve_by, progress_by=t.progress_by if keep_progress else None,
                   progress_from=t.progress_from if keep_progress else None)


_PRIORITY_RANK = {Priority.GENERAL: 0, Priority.COMPLEX: 1, Priority.URGENT: 2}
