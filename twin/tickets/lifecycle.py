"""The ticket's life: every action takes a :class:`~twin.tickets.model.Ticket` and returns a new one, or
raises :class:`~twin.tickets.model.TicketError` naming the state and what is allowed from it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Literal

from twin.alarms import AlarmEvent
from twin.tickets.assign import Assignment
from twin.tickets.fieldwork import Position
from twin.tickets.model import (
    CLOSE_REASONS,
    OPEN_STATES,
    AlarmsStillActive,
    Clock,
    InvalidInput,
    Priority,
    Ticket,
    TicketError,
    TicketState,
    require_aware,
)
from twin.tickets.sla import Deadlines, SlaPolicy


def allowed(action: str, state: TicketState) -> bool:
    return state in _ALLOWED_FROM[action]


_ALLOWED_FROM: Mapping[str, frozenset[TicketState]] = {
    "dispatch": frozenset({TicketState.ACCEPTED, TicketState.REOPENED}),
    "accept": frozenset({TicketState.DISPATCHED, TicketState.ESCALATED, TicketState.REOPENED}),
    "progress": frozenset({TicketState.HANDLING, TicketState.ESCALATED}),
    "resolve": frozenset({TicketState.HANDLING, TicketState.ESCALATED}),
    "arrive": frozenset({TicketState.DISPATCHED, TicketState.HANDLING, TicketState.ESCALATED, TicketState.REOPENED}),
    "release": frozenset({TicketState.DISPATCHED, TicketState.HANDLING, TicketState.ESCALATED,
                          TicketState.REOPENED}),
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
        arrive_by=d.arrive_by, release_by=d.release_by,
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


def arrive(t: Ticket, at: datetime, position: Position | None = None) -> Ticket:
    """到场: someone is on site (stops the arrival clock; counts as accepting if that had not happened), with where
    their phone was if it told."""
    _require_allowed(t, "arrive")
    if t.arrived_at is not None:
        raise TicketError(f"ticket {t.id}: arrival was already recorded at {t.arrived_at.isoformat()}")
    return replace(t, state=TicketState.HANDLING if t.state is not TicketState.ESCALATED else t.state, arrived_at=at,
                   accepted_at=t.accepted_at or at, responded_at=t.responded_at or at,
                   arrived_lat=position.lat if position else None, arrived_lon=position.lon if position else None,
                   arrived_accuracy_m=position.accuracy_m if position else None)


def release(t: Ticket, at: datetime) -> Ticket:
    """解困: the trapped people are out (entrapment tickets: recorded apart from arrival and from resolving)."""
    _require_allowed(t, "release")
    if t.release_by is None:
        raise TicketError(f"ticket {t.id} has nobody trapped to release (no alarm of its incident times a release)")
    if t.released_at is not None:
        raise TicketError(f"ticket {t.id}: the release was already recorded at {t.released_at.isoformat()}")
    return replace(t, state=TicketState.HANDLING if t.state is not TicketState.ESCALATED else t.state,
                   released_at=at, arrived_at=t.arrived_at or at, accepted_at=t.accepted_at or at,
                   responded_at=t.responded_at or at)


def close_reason(t: Ticket, action: str, active_life_safety: Sequence[str], reason: str | None,
                 note: str | None) -> tuple[str | None, str | None]:
    """The (reason, note) to store when ``t`` is resolved or cancelled.

    While life-safety alarms of the incident (``active_life_safety``: their keys) are still active the worker must
    say why it may be closed anyway: ``false_alarm``, ``device_fault`` or ``other`` with a note. Raises
    :class:`AlarmsStillActive` (no reason) or :class:`InvalidInput` (an unknown reason, ``other`` without a note)."""
    note = (note or "").strip() or None
    if reason is not None and reason not in CLOSE_REASONS:
        raise InvalidInput(f"reason {reason!r} is not one of {', '.join(CLOSE_REASONS)}")
    if reason == "other" and note is None:
        raise InvalidInput("reason other needs a note saying what it was")
    if reason is None and active_life_safety:
        shown = ", ".join(active_life_safety[:5]) + (f" and {len(active_life_safety) - 5} more"
                                                     if len(active_life_safety) > 5 else "")
        raise AlarmsStillActive(
            f"ticket {t.id} cannot be {'resolved' if action == 'resolve' else 'closed'}: its life-safety alarms "
            f"are still active ({shown}). They clear when the devices report normal; otherwise give a reason: "
            f"{', '.join(CLOSE_REASONS)} (other with a note)", tuple(active_life_safety))
    return reason, note if reason is not None else None


def resolve(t: Ticket, at: datetime, *, active_life_safety: Sequence[str] = (), reason: str | None = None,
            note: str | None = None) -> Ticket:
    """处置完毕, 反馈: the worker reports it resolved; the resident may now rate it. Refused while life-safety
    alarms of the incident are active, unless a reason is given (:func:`close_reason`)."""
    _require_allowed(t, "resolve")
    code, text = close_reason(t, "resolve", active_life_safety, reason, note)
    return replace(t, state=TicketState.FEEDBACK, resolved_at=at, responded_at=t.responded_at or at,
                   accepted_at=t.accepted_at or at, close_reason=code, close_note=text)


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
                   rating_comment=None, rated_at=None, arrive_by=d.arrive_by if t.arrive_by else None,
                   release_by=d.release_by if t.release_by else None, arrived_at=None, released_at=None,
                   close_reason=None, close_note=None, arrived_lat=None, arrived_lon=None, arrived_accuracy_m=None)


def cancel(t: Ticket, reason: str, at: datetime, *, active_life_safety: Sequence[str] = (),
           code: str | None = None) -> Ticket:
    """撤销: a false alarm or a duplicate; the reason is required, and while life-safety alarms of the incident
    are active also its kind (``code``: false_alarm, device_fault, other)."""
    _require_allowed(t, "cancel")
    if not reason.strip():
        raise InvalidInput("cancelling a ticket needs a reason (e.g. 误报: detector dusty, verified on site)")
    kind, _note = close_reason(t, "cancel", active_life_safety, code, reason)
    return replace(t, state=TicketState.CANCELLED, cancel_reason=reason.strip(), closed_at=at, close_reason=kind,
                   close_note=reason.strip() if kind else None)


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
                 at: datetime | None = None, title: str | None = None, worst: str | None = None) -> Ticket:
    """A correlated alarm joins the open ticket (at ``at``, the server time it arrived; default
    :func:`received_time`, else the event's own time). The incident takes the alarm's priority if higher and
    its life-safety targets, counted from the start of the ticket's cycle (:func:`upgrade`); ``title`` and
    ``worst`` (the rule of its worst alarm, :func:`twin.tickets.incidents.summarize`) follow the incident."""
    _require_allowed(t, "attach")
    at = at or received_time(event, event.at)
    t = replace(t, keys=t.keys | frozenset(keys), last_alarm_at=max(t.last_alarm_at or at, at))
    return upgrade(t, Priority.of(event.dispatch) or t.priority, [event.rule], policy, title=title, worst=worst)


def upgrade(t: Ticket, priority: Priority, rules: Iterable[str], policy: SlaPolicy, *, title: str | None = None,
            worst: str | None = None) -> Ticket:
    """The incident got worse: raise the ticket to ``priority`` (never lower it) and to the targets of the
    life-safety ``rules``, re-computed from the start of the ticket's cycle (``clock_start``: its creation, or
    its last reopening) - the emergency began then, not when it was confirmed. Each deadline becomes the
    earliest of the current one and the new targets'; a deadline may thereby have passed already (the
    watchdog escalates it at its next look). ``title`` and ``worst`` replace the title and rule if given."""
    new_priority = priority if priority.rank > t.priority.rank else t.priority
    strict = [r for r in dict.fromkeys(rules) if policy.is_life_safety(r)]
    wanted = [policy.deadlines(new_priority, r, t.clock_start) for r in strict]
    if new_priority is not t.priority:
        wanted.append(policy.deadlines(new_priority, None, t.clock_start))
    t = _earliest(t, wanted)
    rule = worst if worst is not None else (strict[0] if strict and not t.life_safety else t.rule)
    return replace(t, priority=new_priority, rule=rule, life_safety=t.life_safety or bool(strict),
                   title=title or t.title)


def _earliest(t: Ticket, wanted: Sequence[Deadlines]) -> Ticket:
    """Each deadline of ``t`` moved to the earliest of itself and ``wanted``'s (a resolve deadline ends a complex
    ticket's progress clock)."""
    if not wanted:
        return t

    def first(now: datetime | None, *new: datetime | None) -> datetime | None:
        times = [x for x in (now, *new) if x is not None]
        return min(times) if times else None

    resolve_by = first(t.resolve_by, *(d.resolve_by for d in wanted))
    keep_progress = resolve_by is None
    return replace(t, respond_by=min(t.respond_by, *(d.respond_by for d in wanted)), resolve_by=resolve_by,
                   arrive_by=first(t.arrive_by, *(d.arrive_by for d in wanted)),
                   release_by=first(t.release_by, *(d.release_by for d in wanted)),
                   progress_by=t.progress_by if keep_progress else None,
                   progress_from=t.progress_from if keep_progress else None)


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def upgrade_note(before: Ticket, after: Ticket, iso: Callable[[datetime | None], str | None] = _iso) -> str:
    """What an upgrade (:func:`upgrade`, :func:`attach_alarm`) changed, for the ticket's history (Chinese,
    English); empty if nothing did. ``iso`` formats times (default ISO 8601 as stored)."""
    parts: list[str] = []
    if after.title != before.title:
        parts.append(f"标题 / title: {before.title} → {after.title}")
    if after.priority is not before.priority:
        parts.append(f"优先级 / priority: {before.priority.label_zh} → {after.priority.label_zh}")
    if after.life_safety and not before.life_safety:
        parts.append(f"生命安全类 / life-safety ({after.rule})")
    for clock, old, new in ((Clock.RESPOND, before.respond_by, after.respond_by),
                            (Clock.ARRIVE, before.arrive_by, after.arrive_by),
                            (Clock.RELEASE, before.release_by, after.release_by),
                            (Clock.RESOLVE, before.resolve_by, after.resolve_by)):
        if new != old and new is not None:
            parts.append(f"{clock.label_zh}时限 / {clock.value} by {iso(new)}")
    if not parts:
        return ""
    return "事件升级 / incident upgraded: " + "; ".join(parts) + \
        f" (时限自 {iso(after.clock_start)} 起算 / counted from the ticket's start)"


def tighten(t: Ticket, priority: Priority, rule: str | None, at: datetime, policy: SlaPolicy) -> Ticket:
    """Raise the ticket to ``priority`` (never lower it) and/or to a life-safety rule's targets, from ``at`` (an
    alarm left unacknowledged escalated then): each deadline becomes the earlier of the current one and ``at``
    + the new target."""
    new_priority = priority if priority.rank > t.priority.rank else t.priority
    t = _earliest(t, [policy.deadlines(new_priority, rule, at)])
    changed_rule = rule if rule is not None and policy.is_life_safety(rule) else t.rule
    return replace(t, priority=new_priority, rule=changed_rule,
                   life_safety=t.life_safety or policy.is_life_safety(rule))
