"""The ticket and its vocabulary: states, priorities, SLA clocks' names, errors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

from twin.alarms import Dispatch

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


class Priority(StrEnum):
    """SLA class of a ticket (docs/tickets.md, seed 3.3)."""

    URGENT = "urgent"  # 紧急
    GENERAL = "general"  # 一般
    COMPLEX = "complex"  # 复杂: by a handling plan, with staged progress feedback

    @property
    def label_zh(self) -> str:
        return {"urgent": "紧急", "general": "一般", "complex": "复杂"}[self.value]

    @property
    def rank(self) -> int:
        """How pressing: general < complex < urgent (a ticket's priority is raised, never lowered)."""
        return {"general": 0, "complex": 1, "urgent": 2}[self.value]

    @classmethod
    def of(cls, dispatch: Dispatch) -> Priority | None:
        """The priority a rule's ``dispatch`` asks for; None for ``none`` (no ticket)."""
        return None if dispatch is Dispatch.NONE else cls(dispatch.value)


class TicketError(ValueError):
    """An action the ticket's state (or the input) does not allow. The message says why and what would."""


class InvalidInput(TicketError):
    """The action is allowed, but its input is not (a rating of 7, a cancel without a reason)."""


class AlarmsStillActive(TicketError):
    """Resolving or closing a ticket whose life-safety alarms are still active, without a stated reason."""

    def __init__(self, message: str, alarms: tuple[str, ...]) -> None:
        super().__init__(message)
        self.alarms = alarms


# Why a ticket was resolved or closed while its life-safety alarms were active (or what the alarm turned out
# to be): the false-alarm statistics per device and rule count these (twin.tickets.kpi.false_alarm_stats).
CLOSE_REASONS: dict[str, str] = {
    "false_alarm": "误报 / false alarm",
    "device_fault": "设备故障 / device fault",
    "other": "其他 / other (say what)",
}


class Clock(StrEnum):
    RESPOND = "respond"  # accept (签收) the ticket
    RESOLVE = "resolve"  # report it resolved
    PROGRESS = "progress"  # complex tickets: the handling plan, then progress feedback at a cadence
    ARRIVE = "arrive"  # life-safety targets that time arrival on site (entrapment: TSG T5002-2017)
    RELEASE = "release"  # entrapment: the trapped people released

    @property
    def label_zh(self) -> str:
        return {"respond": "响应", "resolve": "办结", "progress": "进展反馈", "arrive": "到场",
                "release": "解困"}[self.value]


AlertLevel = Literal["warn", "breach"]


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
    arrive_by: datetime | None = None  # life-safety arrival target (到场), if the incident's alarms time one
    arrived_at: datetime | None = None
    release_by: datetime | None = None  # entrapment: the trapped people out (解困)
    released_at: datetime | None = None
    close_reason: str | None = None  # false_alarm | device_fault | other: why it was resolved or cancelled
    close_note: str | None = None  # ... while life-safety alarms were active (or the worker said so anyway)
    arrived_lat: float | None = None  # where the phone was at 到场 (WGS 84), if it told: see fieldwork.Position
    arrived_lon: float | None = None
    arrived_accuracy_m: float | None = None

    @property
    def open(self) -> bool:
        return self.state.open


def require_aware(at: datetime) -> None:
    """Ticket times are aware datetimes: a naive one is a ValueError."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{at!r} has no time zone: ticket times are aware datetimes")
