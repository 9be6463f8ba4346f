"""Dispatch tickets: the closed loop to grid workers, with SLA clocks. Pure: no I/O, no clock of its own.

The loop follows the seed (3.3): 受理 accepted → 分派 dispatched → 处置 handling → 反馈 feedback →
评价 evaluated, plus escalated (an SLA deadline passed: the grid supervisor is told), reopened
(the resident or an operator says it is not solved) and cancelled (a false alarm, with a reason)::

    accepted --dispatch--> dispatched --accept--> handling --resolve--> feedback --rate--> evaluated
       |  ^                   |    ^                 |  ^                  |                   |
       |  +----reassign-------+    +---reassign------+  +--accept-- reopened <------reopen------+
       +--cancel (any open state) --> cancelled;   any open state --SLA breach--> escalated

Every function here takes a :class:`Ticket` and returns a new one, or raises :class:`TicketError`
naming the state and what is allowed from it; the caller stores the result under an optimistic
``version`` check and records the transition. SLA arithmetic (:class:`SlaPolicy`, :func:`alerts_due`,
:func:`next_alert_at`), assignment (:func:`assign`), incident correlation (:func:`incident_keys`),
permissions (:func:`permission_problem`) and KPIs (:func:`kpis`) are pure functions of their inputs.
Times are aware datetimes; a deadline is met by an action *at or before* it and breached after it.

Tickets live on server time: ``created_at`` (= ``received_at``, when the gateway got the alarm, see
:func:`received_time`), the SLA clocks, the watchdog and the duty roster all use it. ``occurred_at`` keeps
the device's own time of the alarm, for the record: a device clock that is wrong, or a replay of the past,
cannot make a ticket breached at birth nor hand it to the worker of another shift.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta, timezone
from enum import StrEnum
from statistics import fmean
from typing import Literal

from twin import catalogue
from twin.alarms import AlarmEvent, Dispatch
from twin.community import Community, Grid, Worker
from twin.people import Role, User

# -- states and priorities ---------------------------------------------------------------------------


class TicketState(StrEnum):
    ACCEPTED = "accepted"  # 受理: registered (from an alarm or a resident's call)
    DISPATCHED = "dispatched"  # 分派: assigned to a worker, the respond clock runs
    HANDLING = "handling"  # 处置: the worker accepted it and is on it
    FEEDBACK = "feedback"  # 反馈: resolved, the result reported back; waiting for the resident's rating
    EVALUATED = "evaluated"  # 评价: rated by the resident (done)
    ESCALATED = "escalated"  # a deadline passed: the grid supervisor was told
    REOPENED = "reopened"  # not solved after all: back to the worker with fresh clocks
    CANCELLED = "cancelled"  # false alarm or duplicate, with a reason

    @property
    def label_zh(self) -> str:
        return _STATE_ZH[self]

    @property
    def open(self) -> bool:
        """Still in someone's hands (the SLA clocks run)."""
        return self in OPEN_STATES


_STATE_ZH = {
    TicketState.ACCEPTED: "已受理", TicketState.DISPATCHED: "已分派", TicketState.HANDLING: "处置中",
    TicketState.FEEDBACK: "已反馈", TicketState.EVALUATED: "已评价", TicketState.ESCALATED: "已升级",
    TicketState.REOPENED: "已重开", TicketState.CANCELLED: "已撤销",
}
OPEN_STATES = frozenset({TicketState.ACCEPTED, TicketState.DISPATCHED, TicketState.HANDLING,
                         TicketState.ESCALATED, TicketState.REOPENED})
_AWAITING_RESPONSE = frozenset({TicketState.ACCEPTED, TicketState.DISPATCHED, TicketState.REOPENED})


class Priority(StrEnum):
    """SLA class of a ticket (docs/tickets.md, seed 3.3)."""

    URGENT = "urgent"  # 紧急
    GENERAL = "general"  # 一般
    COMPLEX = "complex"  # 复杂: by a handling plan, with staged progress feedback

    @property
    def label_zh(self) -> str:
        return {"urgent": "紧急", "general": "一般", "complex": "复杂"}[self.value]

    @classmethod
    def of(cls, dispatch: Dispatch) -> Priority | None:
        """The priority a rule's ``dispatch`` asks for; None for ``none`` (no ticket)."""
        return None if dispatch is Dispatch.NONE else cls(dispatch.value)


class TicketError(ValueError):
    """An action the ticket's state (or the input) does not allow. The message says why and what would."""


class InvalidInput(TicketError):
    """The action is allowed, but its input is not (a rating of 7, a cancel without a reason)."""


class Clock(StrEnum):
    RESPOND = "respond"  # accept (签收) the ticket
    RESOLVE = "resolve"  # report it resolved
    PROGRESS = "progress"  # complex tickets: the handling plan, then progress feedback at a cadence


AlertLevel = Literal["warn", "breach"]


# -- SLA -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """How long a ticket may take. ``resolve_s`` None: resolved by plan (complex tickets)."""

    respond_s: float
    resolve_s: float | None
    progress_every_s: float | None = None  # complex: plan due with the response, then feedback this often
    source: str = ""


@dataclass(frozen=True, slots=True)
class Deadlines:
    respond_by: datetime
    resolve_by: datetime | None
    progress_by: datetime | None


HOUR = 3600.0
DEFAULT_TARGETS: Mapping[Priority, Target] = {
    Priority.URGENT: Target(2 * HOUR, 24 * HOUR, source="seed 3.3: urgent respond 2 h, resolve 24 h"),
    Priority.GENERAL: Target(24 * HOUR, 72 * HOUR, source="seed 3.3: general respond 24 h, resolve 72 h"),
    Priority.COMPLEX: Target(24 * HOUR, None, 72 * HOUR,
                             source="seed 3.3: complex respond 24 h, then plan and staged progress feedback"),
}


@dataclass(frozen=True, slots=True)
class SlaPolicy:
    """SLA targets per priority, and tighter site targets for life-safety rules (by rule id)."""

    targets: Mapping[Priority, Target] = field(default_factory=lambda: dict(DEFAULT_TARGETS))
    life_safety: Mapping[str, Target] = field(default_factory=dict)
    warn_fraction: float = 0.75

    def __post_init__(self) -> None:
        if not 0 < self.warn_fraction < 1:
            raise ValueError(f"warn_fraction {self.warn_fraction} must lie strictly between 0 and 1")
        missing = [p.value for p in Priority if p not in self.targets]
        if missing:
            raise ValueError(f"SLA targets missing for {', '.join(missing)}")

    def is_life_safety(self, rule: str | None) -> bool:
        return rule is not None and rule in self.life_safety

    def target(self, priority: Priority, rule: str | None) -> Target:
        """The priority's target, tightened by the rule's life-safety target where that is stricter."""
        base = self.targets[priority]
        ls = self.life_safety.get(rule) if rule is not None else None
        if ls is None:
            return base
        if ls.resolve_s is None or base.resolve_s is None:
            resolve = base.resolve_s if ls.resolve_s is None else ls.resolve_s
        else:
            resolve = min(base.resolve_s, ls.resolve_s)
        return Target(min(base.respond_s, ls.respond_s), resolve,
                      base.progress_every_s if resolve is None else None, ls.source or base.source)

    def deadlines(self, priority: Priority, rule: str | None, start: datetime) -> Deadlines:
        t = self.target(priority, rule)
        respond_by = start + timedelta(seconds=t.respond_s)
        resolve_by = None if t.resolve_s is None else start + timedelta(seconds=t.resolve_s)
        # complex: the handling plan is due with the response; progress feedback then follows every N h
        progress_by = respond_by if t.resolve_s is None and t.progress_every_s is not None else None
        return Deadlines(respond_by, resolve_by, progress_by)


@dataclass(frozen=True, slots=True)
class Alert:
    """A deadline reached 75 % (``warn``) or passed (``breach``). ``due`` is when that happened."""

    clock: Clock
    level: AlertLevel
    due: datetime
    deadline: datetime

    @property
    def key(self) -> str:
        return f"{self.level}:{self.clock.value}"


# -- the ticket ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ticket:
    """One incident in the hands of one worker. ``id`` is 0 until stored; ``version`` guards updates."""

    id: int
    community: str
    title: str
    category: str
    priority: Priority
    state: TicketState
    source: Literal["alarm", "manual"]
    created_at: datetime  # registered (server time): the roster and the first SLA clocks start here
    clock_start: datetime  # creation, or the last reopening: the respond/resolve clocks run from here
    respond_by: datetime
    resolve_by: datetime | None
    rate_token: str
    rule: str | None = None
    life_safety: bool = False
    building: str | None = None
    floor: int | None = None
    unit: str | None = None
    device: str | None = None
    grid: str | None = None
    assignee: str | None = None
    assignee_role: str | None = None  # on_duty | backup | supervisor | manual
    escalated_to: str | None = None
    collaborator: str | None = None
    description: str = ""
    reporter: str = "system"
    contact: str | None = None  # the resident's phone for a manual report
    keys: frozenset[str] = frozenset()
    progress_from: datetime | None = None
    progress_by: datetime | None = None
    responded_at: datetime | None = None  # first acceptance ever (KPI: time to respond)
    accepted_at: datetime | None = None  # acceptance in the current cycle (reset when reopened)
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    last_alarm_at: datetime | None = None
    alerts: frozenset[str] = frozenset()  # "warn:respond", "breach:resolve", ... in the current cycle
    breaches: int = 0  # deadlines missed over the ticket's life (KPI: on time = 0)
    escalations: int = 0
    reopens: int = 0
    plan_submitted: bool = False
    cancel_reason: str | None = None
    rating: int | None = None
    rating_comment: str | None = None
    rated_at: datetime | None = None
    version: int = 1
    occurred_at: datetime | None = None  # device time of the (first) alarm, or the reported time of a call
    received_at: datetime | None = None  # server time the gateway got the alarm (or the call was taken)

    @property
    def open(self) -> bool:
        return self.state.open


def allowed(action: str, state: TicketState) -> bool:
    return state in _FROM[action]


_FROM: Mapping[str, frozenset[TicketState]] = {
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
ACTIONS = tuple(_FROM)


def _need(t: Ticket, action: str) -> None:
    if t.state not in _FROM[action]:
        can = sorted(a for a in ACTIONS if t.state in _FROM[a] and a != "attach")
        raise TicketError(f"ticket {t.id} is {t.state.value} ({t.state.label_zh}): cannot {action} it"
                          + (f"; possible now: {', '.join(can)}" if can else "; it is closed"))


def new_ticket(*, community: str, title: str, category: str, priority: Priority, source: Literal["alarm", "manual"],
               at: datetime, policy: SlaPolicy, rate_token: str, rule: str | None = None, building: str | None = None,
               floor: int | None = None, unit: str | None = None, device: str | None = None,
               description: str = "", reporter: str = "system", contact: str | None = None,
               keys: Iterable[str] = (), occurred_at: datetime | None = None) -> Ticket:
    """A ticket just registered (受理) at server time ``at`` with its deadlines; :func:`dispatch` hands it to
    someone. ``occurred_at``: the device time of the alarm (default ``at``)."""
    _aware(at)
    if occurred_at is not None:
        _aware(occurred_at)
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
    _need(t, "dispatch")
    if a.assignee is None:
        raise TicketError(f"ticket {t.id}: nobody to dispatch it to ({a.reason})")
    return replace(t, state=TicketState.DISPATCHED, grid=a.grid or t.grid, assignee=a.assignee,
                   assignee_role=a.role, collaborator=t.collaborator or a.collaborator)


def accept(t: Ticket, at: datetime) -> Ticket:
    """受理签收 by the worker: the respond clock stops (first response counts for the KPI)."""
    _need(t, "accept")
    if t.accepted_at is not None:
        raise TicketError(f"ticket {t.id} was already accepted at {t.accepted_at.isoformat()}: "
                          "report progress or resolve it")
    return replace(t, state=TicketState.HANDLING, accepted_at=at, responded_at=t.responded_at or at)


def progress(t: Ticket, at: datetime, policy: SlaPolicy, *, plan: bool = False) -> Ticket:
    """Progress feedback (with a note/photo, recorded by the caller). Complex tickets: restarts the
    progress clock; the first one is the handling plan."""
    _need(t, "progress")
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
    _need(t, "resolve")
    return replace(t, state=TicketState.FEEDBACK, resolved_at=at, responded_at=t.responded_at or at,
                   accepted_at=t.accepted_at or at)


def rate(t: Ticket, rating: int, comment: str | None, at: datetime) -> Ticket:
    """评价 by the resident: 1 (very unsatisfied) .. 5 (very satisfied)."""
    _need(t, "rate")
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
        raise InvalidInput(f"rating {rating!r} must be a whole number from 1 to 5")
    return replace(t, state=TicketState.EVALUATED, rating=rating, rating_comment=comment or None, rated_at=at,
                   closed_at=at)


def reopen(t: Ticket, at: datetime, policy: SlaPolicy) -> Ticket:
    """Not solved after all: fresh clocks from now, back to the same worker."""
    _need(t, "reopen")
    d = policy.deadlines(t.priority, t.rule, at)
    return replace(t, state=TicketState.REOPENED, clock_start=at, respond_by=d.respond_by, resolve_by=d.resolve_by,
                   progress_from=at if d.progress_by else None, progress_by=d.progress_by, resolved_at=None,
                   accepted_at=None, closed_at=None, alerts=frozenset(), reopens=t.reopens + 1, rating=None,
                   rating_comment=None, rated_at=None)


def cancel(t: Ticket, reason: str, at: datetime) -> Ticket:
    """撤销: a false alarm or a duplicate; the reason is required."""
    _need(t, "cancel")
    if not reason.strip():
        raise InvalidInput("cancelling a ticket needs a reason (e.g. 误报: detector dusty, verified on site)")
    return replace(t, state=TicketState.CANCELLED, cancel_reason=reason.strip(), closed_at=at)


def reassign(t: Ticket, assignee: str, reason: str, *, role: str = "manual", grid: str | None = None) -> Ticket:
    """Hand an open ticket to someone else (with a reason); they must accept it anew unless it was
    already being handled."""
    _need(t, "reassign")
    if not reason.strip():
        raise InvalidInput("reassigning a ticket needs a reason")
    if assignee == t.assignee:
        raise TicketError(f"ticket {t.id} is already assigned to {assignee}")
    # before acceptance the new person must accept it; after, they take the handling over
    state = TicketState.HANDLING if t.accepted_at is not None else TicketState.DISPATCHED
    return replace(t, state=state, assignee=assignee, assignee_role=role, grid=grid or t.grid)


def escalate(t: Ticket, to: str | None, at: datetime) -> Ticket:
    """A deadline passed (or an operator asks): the supervisor is told; the assignee keeps the ticket."""
    _need(t, "escalate")
    del at  # when is recorded by the caller with the transition
    return replace(t, state=TicketState.ESCALATED, escalated_to=to or t.escalated_to, escalations=t.escalations + 1)


def attach_alarm(t: Ticket, event: AlarmEvent, policy: SlaPolicy, keys: Iterable[str] = (), *,
                 at: datetime | None = None) -> Ticket:
    """A correlated alarm joins the open ticket; a life-safety or urgent alarm tightens its clocks from ``at``,
    the server time it arrived (default: :func:`received_time`, else the event's own time)."""
    _need(t, "attach")
    at = at or received_time(event, event.at)
    t = replace(t, keys=t.keys | frozenset(keys), last_alarm_at=max(t.last_alarm_at or at, at))
    wanted = Priority.of(event.dispatch)
    if wanted is Priority.URGENT or policy.is_life_safety(event.rule):
        t = tighten(t, Priority.URGENT, event.rule if policy.is_life_safety(event.rule) else t.rule, at, policy)
    return t


def tighten(t: Ticket, priority: Priority, rule: str | None, at: datetime, policy: SlaPolicy) -> Ticket:
    """Raise the ticket to ``priority`` (never lower it) and/or to a life-safety rule's targets, from ``at``:
    each deadline becomes the earlier of the current one and ``at`` + the new target."""
    new_priority = priority if _RANK[priority] > _RANK[t.priority] else t.priority
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


_RANK = {Priority.GENERAL: 0, Priority.COMPLEX: 1, Priority.URGENT: 2}


# -- SLA clocks ----------------------------------------------------------------------------------------


def running_clocks(t: Ticket) -> list[tuple[Clock, datetime, datetime]]:
    """(clock, start, deadline) of every clock running in the ticket's current state."""
    if not t.open:
        return []
    out: list[tuple[Clock, datetime, datetime]] = []
    if t.state in _AWAITING_RESPONSE or (t.state is TicketState.ESCALATED and t.accepted_at is None):
        out.append((Clock.RESPOND, t.clock_start, t.respond_by))
    if t.resolve_by is not None:
        out.append((Clock.RESOLVE, t.clock_start, t.resolve_by))
    if t.progress_by is not None and t.progress_from is not None:
        out.append((Clock.PROGRESS, t.progress_from, t.progress_by))
    return out


def warn_at(start: datetime, deadline: datetime, fraction: float) -> datetime:
    """When ``fraction`` of the time from ``start`` to ``deadline`` has passed (whole microseconds)."""
    return start + timedelta(microseconds=int((deadline - start) / timedelta(microseconds=1) * fraction))


_TICK = timedelta(microseconds=1)


def alerts_due(t: Ticket, now: datetime, warn_fraction: float) -> list[Alert]:
    """Alerts that are due at ``now`` and not yet raised in this cycle, oldest first.

    A warning is due from 75 % of a clock's time on (``now >= warn_at``); a breach once the
    deadline has passed (``now > deadline``: acting exactly at the deadline is on time).
    A breach makes the warning of the same clock moot, so only the breach is returned then.
    """
    _aware(now)
    out: list[Alert] = []
    for clock, start, deadline in running_clocks(t):
        if now > deadline and f"breach:{clock.value}" not in t.alerts:
            out.append(Alert(clock, "breach", deadline, deadline))
        elif now <= deadline and f"warn:{clock.value}" not in t.alerts:
            w = warn_at(start, deadline, warn_fraction)
            if now >= w:
                out.append(Alert(clock, "warn", w, deadline))
    return sorted(out, key=lambda a: a.due)


def next_alert_at(t: Ticket, warn_fraction: float) -> datetime | None:
    """The earliest time at which :func:`alerts_due` will return something new (None: nothing pending).

    Stored with the ticket, so a watchdog (after a restart too) only looks at tickets that are due.
    """
    times: list[datetime] = []
    for clock, start, deadline in running_clocks(t):
        if f"warn:{clock.value}" not in t.alerts and f"breach:{clock.value}" not in t.alerts:
            times.append(warn_at(start, deadline, warn_fraction))
        if f"breach:{clock.value}" not in t.alerts:
            times.append(deadline + _TICK)
    return min(times) if times else None


def note_alert(t: Ticket, a: Alert) -> Ticket:
    """Remember that ``a`` was raised (a breach also counts toward the on-time KPI)."""
    keys = set(t.alerts) | {a.key}
    if a.level == "breach":
        keys.add(f"warn:{a.clock.value}")
    return replace(t, alerts=frozenset(keys), breaches=t.breaches + (a.level == "breach"))


def remaining(t: Ticket, now: datetime) -> dict[str, float]:
    """Seconds left on each running clock (negative: overdue), for the worker's view."""
    return {c.value: (d - now).total_seconds() for c, _s, d in running_clocks(t)}


# -- assignment ----------------------------------------------------------------------------------------


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
    _aware(at)
    local = (at.astimezone(timezone(offset))).time().replace(tzinfo=None)
    start, end = worker.on_duty
    return in_shift(local, start, end)


def in_shift(local: time, start: time, end: time) -> bool:
    if start == end:
        return True
    if start < end:
        return start <= local < end
    return local >= start or local < end


def find_worker(community: Community, worker_id: str) -> tuple[Grid, Worker] | None:
    for g in community.grids:
        for w in g.workers:
            if w.id == worker_id:
                return g, w
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
           partners: Mapping[str, str] | None = None) -> Assignment:
    """The grid holding the building → its on-duty worker (the least loaded if several) → the grid's
    backup if on duty → the grid supervisor. ``partners``: category → collaborator (elevator company...)."""
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
        w = min(duty, key=lambda w: (loads.get(w.id, 0), grid.workers.index(w)))
        return Assignment(grid.id, w.id, "on_duty", f"{w.name} is on duty in {grid.name}", collaborator)
    if grid.backup:
        found = find_worker(community, grid.backup)
        if found is None or on_duty(found[1], at, offset):
            name = found[1].name if found else grid.backup
            return Assignment(grid.id, grid.backup, "backup",
                              f"no worker of {grid.name} is on duty: backup {name}", collaborator)
    return Assignment(grid.id, grid.supervisor, "supervisor",
                      f"no worker of {grid.name} nor its backup is on duty: supervisor {grid.supervisor}",
                      collaborator)


def supervisor_of(community: Community, grid: str | None) -> str | None:
    g = next((g for g in community.grids if g.id == grid), None)
    return g.supervisor if g else None


# -- incidents -----------------------------------------------------------------------------------------


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


# -- permissions ---------------------------------------------------------------------------------------


def visible_to(user: User, t: Ticket) -> bool:
    """Operators and admins see every ticket; workers and supervisors those of their grids, and their own."""
    return user.may_see_grid(t.grid) or (user.worker_id is not None and user.worker_id in (t.assignee,
                                                                                           t.escalated_to))


_OPERATOR_ACTIONS = frozenset({"cancel", "reassign", "reopen", "escalate", "create"})


def permission_problem(user: User, t: Ticket | None, action: str) -> str | None:
    """Why ``user`` may not do ``action`` on ``t`` (None: allowed). The state is checked separately."""
    if t is not None and not visible_to(user, t):
        return f"ticket {t.id} belongs to grid {t.grid or '(none)'}, not to yours"
    if user.sees_everything():
        return None
    if action in _OPERATOR_ACTIONS:
        if user.role is Role.SUPERVISOR and action != "create":
            return None
        return f"only an operator{'' if action == 'create' else ' or a grid supervisor'} may {action} tickets"
    if action in ("accept", "progress", "resolve"):
        if user.role is Role.SUPERVISOR:
            return None
        if t is not None and user.worker_id is not None and user.worker_id == t.assignee:
            return None
        if t is None:
            return f"only the assigned worker may {action} a ticket"
        return f"ticket {t.id} is assigned to {t.assignee or 'nobody'}, not to you"
    return None


# -- KPIs ----------------------------------------------------------------------------------------------


Scope = Literal["worker", "grid", "community"]


@dataclass(frozen=True, slots=True)
class KpiRow:
    """The seed's online assessment for one worker, grid or community over a period."""

    scope: Scope
    key: str
    name: str
    tickets: int  # workload: tickets created in the period
    open: int
    resolved: int
    cancelled: int
    mean_respond_min: float | None
    mean_resolve_h: float | None
    on_time_rate: float | None  # resolved without a missed deadline / resolved
    rated: int
    satisfaction: float | None  # mean rating 1..5
    satisfied_rate: float | None  # ratings of 4 or 5 / ratings
    reopen_rate: float | None  # reopened at least once / resolved
    escalations: int

    def as_dict(self) -> dict[str, object]:
        return {f: getattr(self, f) for f in KPI_FIELDS}


KPI_FIELDS = ("scope", "key", "name", "tickets", "open", "resolved", "cancelled", "mean_respond_min",
              "mean_resolve_h", "on_time_rate", "rated", "satisfaction", "satisfied_rate", "reopen_rate",
              "escalations")


def _kpi(scope: Scope, key: str, name: str, ts: Sequence[Ticket]) -> KpiRow:
    live = [t for t in ts if t.state is not TicketState.CANCELLED]
    done = [t for t in live if t.resolved_at is not None or t.reopens > 0]
    responded = [(t.responded_at - t.created_at).total_seconds() for t in live if t.responded_at is not None]
    resolved = [(t.resolved_at - t.created_at).total_seconds() for t in live if t.resolved_at is not None]
    ratings = [t.rating for t in live if t.rating is not None]
    return KpiRow(
        scope=scope, key=key, name=name, tickets=len(ts), open=sum(t.open for t in ts),
        resolved=sum(t.resolved_at is not None for t in live), cancelled=len(ts) - len(live),
        mean_respond_min=round(fmean(responded) / 60, 1) if responded else None,
        mean_resolve_h=round(fmean(resolved) / 3600, 2) if resolved else None,
        on_time_rate=_ratio(sum(t.breaches == 0 for t in done), len(done)),
        rated=len(ratings), satisfaction=round(fmean(ratings), 2) if ratings else None,
        satisfied_rate=_ratio(sum(r >= 4 for r in ratings), len(ratings)),
        reopen_rate=_ratio(sum(t.reopens > 0 for t in done), len(done)),
        escalations=sum(t.escalations for t in ts),
    )


def _ratio(n: int, d: int) -> float | None:
    return round(n / d, 3) if d else None


def kpis(tickets: Iterable[Ticket], *, names: Mapping[str, str] | None = None,
         scopes: Sequence[str] = ("worker", "grid", "community")) -> list[KpiRow]:
    """KPI rows per worker (the ticket's final assignee), per grid and per community, in that order."""
    ts = list(tickets)
    nm = names or {}
    rows: list[KpiRow] = []
    groups: dict[tuple[Scope, str], list[Ticket]] = {}
    for t in ts:
        if t.assignee:
            groups.setdefault(("worker", t.assignee), []).append(t)
        groups.setdefault(("grid", t.grid or "(none)"), []).append(t)
        groups.setdefault(("community", t.community), []).append(t)
    order = {"worker": 0, "grid": 1, "community": 2}
    for (scope, key), group in sorted(groups.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
        if scope in scopes:
            rows.append(_kpi(scope, key, nm.get(key, key), group))
    return rows


def kpi_markdown(rows: Sequence[KpiRow], title: str) -> str:
    head = ["scope", "id", "name", "tickets", "open", "resolved", "respond (min)", "resolve (h)", "on time",
            "rated", "satisfaction", "satisfied", "reopened", "escalations"]
    lines = [f"# {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.scope, r.key, r.name, str(r.tickets), str(r.open), str(r.resolved), _num(r.mean_respond_min),
                 _num(r.mean_resolve_h), _pct(r.on_time_rate), str(r.rated), _num(r.satisfaction),
                 _pct(r.satisfied_rate), _pct(r.reopen_rate), str(r.escalations)]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:g}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.1f}%"


# -- helpers -------------------------------------------------------------------------------------------

_OFFSET = re.compile(r"^([+-])(\d{2}):(\d{2})$")


def parse_offset(text: str) -> timedelta:
    """``+08:00`` -> 8 h."""
    m = _OFFSET.match(text)
    if not m or int(m.group(2)) > 14 or int(m.group(3)) > 59:
        raise ValueError(f"{text!r} is not a UTC offset like +08:00")
    sign = -1 if m.group(1) == "-" else 1
    return sign * timedelta(hours=int(m.group(2)), minutes=int(m.group(3)))


def _aware(at: datetime) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{at!r} has no time zone: ticket times are aware datetimes")
