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
Modules: :mod:`~twin.tickets.model` (the ticket, states, priorities, errors), :mod:`~twin.tickets.lifecycle`
(the actions), :mod:`~twin.tickets.sla`, :mod:`~twin.tickets.assign` (duty roster),
:mod:`~twin.tickets.incidents` (correlation keys, categories, location text), :mod:`~twin.tickets.permissions`
and :mod:`~twin.tickets.kpi`; this package re-exports their names.
Times are aware datetimes; a deadline is met by an action *at or before* it and breached after it.

Tickets live on server time: ``created_at`` (= ``received_at``, when the gateway got the alarm, see
:func:`received_time`), the SLA clocks, the watchdog and the duty roster all use it. ``occurred_at`` keeps
the device's own time of the alarm, for the record: a device clock that is wrong, or a replay of the past,
cannot make a ticket breached at birth nor hand it to the worker of another shift.
"""


from twin.tickets.assign import (
    Assignment,
    GridWorker,
    assign,
    find_worker,
    in_shift,
    known_people,
    on_duty,
    parse_offset,
    supervisor_of,
)
from twin.tickets.incidents import (
    CATEGORIES,
    care_unit_of,
    category_of,
    correlates,
    event_keys,
    incident_keys,
    location_text,
)
from twin.tickets.kpi import (
    KPI_FIELDS,
    KpiRow,
    Scope,
    kpi_markdown,
    kpis,
)
from twin.tickets.lifecycle import (
    ACTIONS,
    accept,
    allowed,
    attach_alarm,
    cancel,
    dispatch,
    escalate,
    new_ticket,
    progress,
    rate,
    reassign,
    received_time,
    reopen,
    resolve,
    tighten,
)
from twin.tickets.model import (
    OPEN_STATES,
    AlertLevel,
    Clock,
    InvalidInput,
    Priority,
    Ticket,
    TicketError,
    TicketState,
    require_aware,
)
from twin.tickets.permissions import (
    permission_problem,
    visible_to,
)
from twin.tickets.sla import (
    DEFAULT_TARGETS,
    HOUR,
    Alert,
    Deadlines,
    RunningClock,
    SlaPolicy,
    Target,
    alerts_due,
    next_alert_at,
    note_alert,
    remaining,
    running_clocks,
    warn_at,
)

__all__ = [
    "ACTIONS",
    "CATEGORIES",
    "DEFAULT_TARGETS",
    "HOUR",
    "KPI_FIELDS",
    "OPEN_STATES",
    "Alert",
    "AlertLevel",
    "Assignment",
    "Clock",
    "Deadlines",
    "GridWorker",
    "InvalidInput",
    "KpiRow",
    "Priority",
    "RunningClock",
    "Scope",
    "SlaPolicy",
    "Target",
    "Ticket",
    "TicketError",
    "TicketState",
    "accept",
    "alerts_due",
    "allowed",
    "assign",
    "attach_alarm",
    "cancel",
    "care_unit_of",
    "category_of",
    "correlates",
    "dispatch",
    "escalate",
    "event_keys",
    "find_worker",
    "in_shift",
    "incident_keys",
    "known_people",
    "kpi_markdown",
    "kpis",
    "location_text",
    "new_ticket",
    "next_alert_at",
    "note_alert",
    "on_duty",
    "parse_offset",
    "permission_problem",
    "progress",
    "rate",
    "reassign",
    "received_time",
    "remaining",
    "reopen",
    "require_aware",
    "resolve",
    "running_clocks",
    "supervisor_of",
    "tighten",
    "visible_to",
    "warn_at",
]
