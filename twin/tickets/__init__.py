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
:func:`next_alert_at`), assignment (:func:`assign`), incidents (:func:`incident_key`, :func:`summarize`,
:func:`incidents_of`, by the data of :func:`load_incident_policy`),
permissions (:func:`permission_problem`) and KPIs (:func:`kpis`) are pure functions of their inputs.
Modules: :mod:`~twin.tickets.model` (the ticket, states, priorities, errors), :mod:`~twin.tickets.lifecycle`
(the actions), :mod:`~twin.tickets.sla`, :mod:`~twin.tickets.assign` (duty roster),
:mod:`~twin.tickets.policy` (the incident policy file: groups, life-safety targets),
:mod:`~twin.tickets.incidents` (incident keys, titles, grouping, categories, location text),
:mod:`~twin.tickets.permissions`
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
from twin.tickets.fieldwork import (
    SOP_CHECK,
    Position,
    SopCheck,
    check_step,
    sop_checks,
    ticked,
)
from twin.tickets.handoff import PARTNER_ROLES, Handoff, PartnerKpi
from twin.tickets.incidents import (
    Incident,
    IncidentAlarm,
    IncidentKey,
    Summary,
    care_unit_of,
    category_of,
    correlates,
    incident_key,
    incidents_of,
    location_text,
    panel_of,
    place_keys,
    stored_key,
    summarize,
    worst_alarm,
)
from twin.tickets.kpi import (
    KPI_FIELDS,
    FalseAlarmRow,
    KpiRow,
    Scope,
    false_alarm_stats,
    kpi_markdown,
    kpis,
)
from twin.tickets.lifecycle import (
    ACTIONS,
    accept,
    allowed,
    arrive,
    attach_alarm,
    cancel,
    close_reason,
    dispatch,
    escalate,
    new_ticket,
    progress,
    rate,
    reassign,
    received_time,
    release,
    reopen,
    resolve,
    tighten,
    upgrade,
    upgrade_note,
)
from twin.tickets.model import (
    CLOSE_REASONS,
    OPEN_STATES,
    AlarmsStillActive,
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
from twin.tickets.policy import (
    CATEGORIES,
    INCIDENTS_FILE,
    Group,
    IncidentPolicy,
    IncidentPolicyError,
    LifeSafety,
    load_incident_policy,
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
    "CLOSE_REASONS",
    "DEFAULT_TARGETS",
    "HOUR",
    "INCIDENTS_FILE",
    "KPI_FIELDS",
    "OPEN_STATES",
    "PARTNER_ROLES",
    "SOP_CHECK",
    "AlarmsStillActive",
    "Alert",
    "AlertLevel",
    "Assignment",
    "Clock",
    "Deadlines",
    "FalseAlarmRow",
    "GridWorker",
    "Group",
    "Handoff",
    "Incident",
    "IncidentAlarm",
    "IncidentKey",
    "IncidentPolicy",
    "IncidentPolicyError",
    "InvalidInput",
    "KpiRow",
    "LifeSafety",
    "PartnerKpi",
    "Position",
    "Priority",
    "RunningClock",
    "Scope",
    "SlaPolicy",
    "SopCheck",
    "Summary",
    "Target",
    "Ticket",
    "TicketError",
    "TicketState",
    "accept",
    "alerts_due",
    "allowed",
    "arrive",
    "assign",
    "attach_alarm",
    "cancel",
    "care_unit_of",
    "category_of",
    "check_step",
    "close_reason",
    "correlates",
    "dispatch",
    "escalate",
    "false_alarm_stats",
    "find_worker",
    "in_shift",
    "incident_key",
    "incidents_of",
    "known_people",
    "kpi_markdown",
    "kpis",
    "load_incident_policy",
    "location_text",
    "new_ticket",
    "next_alert_at",
    "note_alert",
    "on_duty",
    "panel_of",
    "parse_offset",
    "permission_problem",
    "place_keys",
    "progress",
    "rate",
    "reassign",
    "received_time",
    "release",
    "remaining",
    "reopen",
    "require_aware",
    "resolve",
    "running_clocks",
    "sop_checks",
    "stored_key",
    "summarize",
    "supervisor_of",
    "ticked",
    "tighten",
    "upgrade",
    "upgrade_note",
    "visible_to",
    "warn_at",
    "worst_alarm",
]
