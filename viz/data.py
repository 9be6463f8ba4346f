"""What the dashboard needs from the rest of the system: a small typed interface. Pure (no I/O here).

The dashboard (``viz/``) never imports the gateway. The composition root builds an object that
satisfies :class:`DashboardData` (the real one is ``gateway.web.dashboard_data.StorageDashboardData``)
and hands it to :func:`viz.app.create_app`. Everything the pages show and every action they take
goes through it, so tests can also drive the pages against any implementation of this seam.

Access control is checked twice: the dashboard checks the signed-in user's role in every callback
before calling in here, and the methods that take a ``user`` (tickets) check again on their side,
because the REST API shares them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from twin.alarms import AlarmStatus, Severity
from twin.community import Community
from twin.hotspots import HotspotData
from twin.outcomes import Outcomes
from twin.people import User
from twin.state import Rollup
from twin.tickets.handoff import Handoff, PartnerKpi
from viz.history_model import HistoryData

if TYPE_CHECKING:  # viz.report_model imports this module
    from viz.assistant_model import AssistantData
    from viz.care_model import CareRegisterData
    from viz.patrol_model import PatrolData
    from viz.report_model import ReportsData


class DataUnavailable(Exception):
    """A part of the system the data source does not have (yet): tickets, KPIs, sign-in.

    The dashboard shows a clear "not available" note instead of the panel.
    """


class DatabaseDown(DataUnavailable):
    """The database cannot be reached. Deliberately says no more (no host, port or user): the data
    source logs the details; the dashboard shows a generic note in the person's language."""

    def __init__(self) -> None:
        super().__init__("the database cannot be reached right now")


class SignInRefused(Exception):
    """A sign-in refused before the password was checked.

    ``reason``: ``locked`` (the account, after repeated failures), ``throttled`` (too many attempts
    from this address or on this account) or ``busy`` (the server is checking as many passwords as it
    may at once). ``retry_after_s`` / ``retry_at``: when to try again.
    """

    def __init__(self, reason: Literal["locked", "throttled", "busy"], retry_after_s: int,
                 retry_at: datetime) -> None:
        super().__init__(f"sign-in refused ({reason}); retry in {retry_after_s} s")
        self.reason: Literal["locked", "throttled", "busy"] = reason
        self.retry_after_s = retry_after_s
        self.retry_at = retry_at


class ActionRefused(Exception):
    """An operator or worker action the current state does not allow.

    ``code`` is one of :data:`REFUSAL_CODES` (the dashboard translates it); ``detail`` is extra
    context for the person (an id, who acknowledged first, ...), shown as is.
    """

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


# Ticket states in which nothing more is expected of the worker (twin/tickets/model.py: feedback = resolved and
# reported back, waiting for the resident's rating).
CLOSED_STATES = frozenset({"feedback", "evaluated", "cancelled", "resolved", "closed"})
REFUSAL_CODES = ("not_found", "forbidden", "already_acknowledged", "not_active", "illegal_transition",
                 "conflict", "bad_input", "too_large", "alarms_active", "not_shelved",
                 "not_confirmed")


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in user and the opaque token the browser keeps (the REST API accepts the same token)."""

    token: str
    user: User
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class LiveView:
    """The live condition of the community: the roll-up and where each elevator car is.

    ``version`` changes whenever anything in here changes (cheap to compare).
    """

    rollup: Rollup
    elevator_floors: Mapping[str, float]  # elevator id -> car floor (latest ``floor`` of its device)
    updated_at: datetime
    version: str


@dataclass(frozen=True, slots=True)
class AlarmView:
    """One current alarm as the control room sees it (a row of the ``alarms`` table)."""

    key: str
    rule: str
    rule_name: str  # "中文 / English" as in the rule files, or the rule id
    severity: Severity
    status: AlarmStatus
    subject: str
    subject_type: str
    building: str | None
    floor: int | None
    device: str | None
    raised_at: datetime
    last_seen: datetime
    count: int
    detail: str
    dispatch: str = "none"  # the ticket priority the rule asks for (urgent | general | complex | none)
    acked_at: datetime | None = None
    acked_by: str | None = None
    ack_comment: str | None = None
    shelved_until: datetime | None = None
    shelved_by: str | None = None  # who shelved it (the latest ``shelved`` event), when it is shelved
    ticket: str | None = None  # the ticket of this alarm's incident (the newest holding it), if any

    def shelved(self, now: datetime) -> bool:
        return self.shelved_until is not None and self.shelved_until > now


@dataclass(frozen=True, slots=True)
class TicketStep:
    """One recorded transition of a ticket: who did what, when, with an optional note and photo."""

    at: datetime
    by: str
    action: str
    note: str = ""
    photo_id: str | None = None
    detail: Mapping[str, object] = field(default_factory=dict)  # the service's structured facts (assignee, alarm, ...)


@dataclass(frozen=True, slots=True)
class TicketAlarm:
    """One alarm of a ticket's incident (its timeline), and whether it is life-safety and still active."""

    key: str
    rule: str
    rule_name: str
    severity: str
    device: str | None
    first_at: datetime
    count: int = 1
    active: bool = True
    life_safety: bool = False
    building: str | None = None
    floor: int | None = None


# Why a ticket may be resolved while a life-safety alarm of its incident is still active (twin.tickets.CLOSE_REASONS).
CLOSE_REASONS = ("false_alarm", "device_fault", "other")


@dataclass(frozen=True, slots=True)
class Position:
    """Where a phone was (browser geolocation, WGS 84 degrees); ``accuracy_m`` its radius in metres if known."""

    lat: float
    lon: float
    accuracy_m: float | None = None


@dataclass(frozen=True, slots=True)
class TicketView:
    """A dispatch ticket as the ticket board and the worker's phone show it."""

    id: str
    title: str
    priority: str  # urgent | general | complex
    status: str  # twin.tickets.TicketState: accepted | dispatched | handling | feedback | evaluated | ...
    created_at: datetime
    respond_by: datetime | None
    resolve_by: datetime | None
    responded_at: datetime | None = None
    resolved_at: datetime | None = None
    grid: str | None = None
    building: str | None = None
    floor: int | None = None
    unit: str | None = None
    device: str | None = None
    assignee: str | None = None  # worker id
    assignee_name: str | None = None
    alarm_key: str | None = None
    category: str | None = None  # alarm rule or report category, picks the SOP
    description: str = ""
    sop: tuple[str, ...] = ()
    sop_en: tuple[str, ...] = ()  # the same steps in English (empty: the SOP has none)
    latest: Mapping[str, float] = field(default_factory=dict)
    history: tuple[TicketStep, ...] = ()
    has_snapshot: bool = False
    clock_start: datetime | None = None  # when the SLA clocks started (creation, or the last reopening)
    alarms: tuple[TicketAlarm, ...] = ()  # its incident's alarms, in order of arrival
    closed_at: datetime | None = None
    close_reason: str | None = None  # one of CLOSE_REASONS, when it was resolved or cancelled with one
    cancel_reason: str | None = None  # the text given when it was cancelled
    rating: int | None = None  # the resident's rating 1..5
    rating_comment: str | None = None
    escalated_to: str | None = None
    rule_name: str | None = None  # its worst alarm's rule, "中文 / English" (alarm tickets), for a title in English
    arrived_at: datetime | None = None  # 到场, in the current cycle
    arrived_position: Position | None = None  # where the worker's phone was then, if it told
    sop_id: str | None = None  # the SOP document of the checklist (history entries of ticks name it)
    sop_calls: tuple[str, ...] = ()  # whom the SOP says to call: contact roles (twin/contacts.py), in order
    sop_done: tuple[int, ...] = ()  # the checklist's steps ticked now (0-based)
    handoffs: tuple[Handoff, ...] = ()  # partners called (96333, the gas company...) and their arrival
    life_safety: bool = False

    @property
    def open(self) -> bool:
        return self.status not in CLOSED_STATES


@dataclass(frozen=True, slots=True)
class Photo:
    """A photo a worker attaches to feedback; the data source checks size and type again."""

    content: bytes
    content_type: str  # image/jpeg | image/png | image/webp
    filename: str = ""


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    """One time bucket of a device field: average, minimum and maximum of the readings in it."""

    bucket: datetime
    avg: float
    min: float
    max: float
    samples: int


@dataclass(frozen=True, slots=True)
class KpiRow:
    """Closed-loop KPIs of one worker or one grid over a period (seed 4.1 automatic assessment)."""

    scope: Literal["worker", "grid", "community"]
    id: str
    name: str
    tickets: int
    open: int
    mean_respond_s: float | None
    mean_resolve_s: float | None
    on_time_rate: float | None  # 0..1
    satisfaction: float | None  # mean rating 1..5
    reopen_rate: float | None  # 0..1


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    """One event a device reported (``device_events``): ``state`` is active, cleared or pulse."""

    at: datetime
    code: str
    state: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class DeviceAlarmEvent:
    """One change to an alarm of a device (``alarm_events``): raised, acknowledged, cleared, shelved, ..."""

    at: datetime
    key: str
    rule: str
    rule_name: str  # "中文 / English" as in the rule files, or the rule id
    kind: str  # twin.alarms.EventKind
    severity: str
    by: str | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class AlarmSpan:
    """A period in which an alarm of a device was active; ``end`` None: still active."""

    key: str
    rule_name: str
    severity: str
    start: datetime
    end: datetime | None


@dataclass(frozen=True, slots=True)
class DeviceTimeline:
    """A device's alarms and events within a period, newest first, and its alarms' active periods in it."""

    alarm_events: Sequence[DeviceAlarmEvent]
    events: Sequence[DeviceEvent]
    spans: Sequence[AlarmSpan]
    truncated: bool = False  # more happened in the period than the limit let through


@dataclass(frozen=True, slots=True)
class DeviceSeen:
    """One device of the inventory: its stored status and when it was last heard from (None: never)."""

    device: str
    last_seen: datetime | None
    status: str | None  # online | offline (device_status), None when never reported


@dataclass(frozen=True, slots=True)
class CareUnitView:
    """An elderly resident's home: visit level (seed 3.2), last activity and any open inactivity alarm."""

    unit: str
    building: str
    floor: int
    level: Literal["red", "yellow", "green"]
    last_activity: datetime | None
    inactivity_alarm: bool
    sensors_offline: int = 0


@runtime_checkable
class DashboardData(Protocol):
    """Everything the dashboard reads and does. Methods may raise :class:`DataUnavailable`
    (the part is not there) or :class:`ActionRefused` (state or permissions say no)."""

    # -- the community and its live state ----------------------------------------------------------
    def community(self) -> Community: ...

    def live(self) -> LiveView: ...

    def version(self) -> str:
        """A short tag that changes when alarms, the live roll-up or tickets change. Must be cheap:
        the dashboard polls it twice a second."""
        ...

    # -- alarms --------------------------------------------------------------------------------------
    def active_alarms(self) -> Sequence[AlarmView]:
        """Active alarms and cleared ones still waiting for acknowledgement, worst first."""
        ...

    def acknowledge(self, user: User, key: str, comment: str) -> None: ...

    def shelve(self, user: User, key: str, until: datetime) -> None: ...

    def unshelve(self, user: User, key: str) -> None:
        """End a shelving early; refused (``not_shelved``) when the alarm is not shelved."""
        ...

    def clear(self, user: User, key: str, comment: str) -> None:
        """Clear an active alarm by hand (it stays listed until acknowledged)."""
        ...

    def dispatch(self, user: User, key: str, note: str) -> str:
        """Open (or attach to) a ticket for the alarm; returns the ticket id."""
        ...

    # -- tickets -------------------------------------------------------------------------------------
    def tickets(self, user: User, *, include_closed: bool = False) -> Sequence[TicketView]:
        """The tickets ``user`` may see (a worker: their grids' tickets; an operator: all)."""
        ...

    def ticket(self, user: User, ticket_id: str) -> TicketView | None: ...

    def accept_ticket(self, user: User, ticket_id: str) -> None: ...

    def ticket_feedback(self, user: User, ticket_id: str, note: str, photo: Photo | None) -> None: ...

    def arrive_ticket(self, user: User, ticket_id: str, position: Position | None = None) -> None:
        """到场: the worker is on site; ``position``: where their phone was, if it told."""
        ...

    def check_sop_step(self, user: User, ticket_id: str, step: int, done: bool) -> None:
        """Tick (or untick) step ``step`` (0-based) of the ticket's SOP checklist; kept in its history."""
        ...

    def resolve_ticket(self, user: User, ticket_id: str, note: str, reason: str | None = None) -> None:
        """Resolve; while a life-safety alarm of the incident is active it is refused (``alarms_active``) unless
        ``reason`` (one of :data:`CLOSE_REASONS`) says why; ``other`` takes the note as its text."""
        ...

    def cancel_ticket(self, user: User, ticket_id: str, reason: str, code: str | None = None) -> None:
        """撤销 (operators, supervisors); while a life-safety alarm is active ``code`` (:data:`CLOSE_REASONS`)."""
        ...

    def reassign_ticket(self, user: User, ticket_id: str, assignee: str, reason: str) -> None: ...

    def escalate_ticket(self, user: User, ticket_id: str, reason: str) -> None: ...

    def reopen_ticket(self, user: User, ticket_id: str, reason: str) -> None:
        """A resolved ticket was not solved after all: back to work with fresh clocks."""
        ...

    def ticket_snapshot(self, user: User, ticket_id: str) -> bytes | None:
        """The 3D snapshot PNG attached to the ticket (alarm location highlighted), if any."""
        ...

    def ticket_photo(self, user: User, photo_id: str) -> tuple[bytes, str] | None: ...

    # -- devices -------------------------------------------------------------------------------------
    def device_latest(self, device_id: str) -> Mapping[str, tuple[float, datetime]]: ...

    def device_history(self, device_id: str, field: str, since: datetime, until: datetime,
                       bucket: timedelta) -> Sequence[HistoryPoint]: ...

    def device_timeline(self, device_id: str, since: datetime, until: datetime, limit: int = 200) -> DeviceTimeline:
        """The device's alarm changes and events in [since, until) (at most ``limit`` of each, newest first) and
        the periods its alarms were active that overlap the range."""
        ...

    def device_inventory(self) -> Sequence[DeviceSeen]:
        """Every device of the community with its last-heard time, in one query (the inventory page)."""
        ...

    # -- analysis ------------------------------------------------------------------------------------
    def kpis(self, since: datetime, until: datetime) -> Sequence[KpiRow]: ...

    def record_handoff(self, user: User, ticket_id: str, role: str, *, arrived: bool) -> None:
        """A partner called for the ticket (``arrived``: the partner is on site). Raises :class:`ActionRefused`."""
        ...

    def partner_kpis(self, user: User, since: datetime, until: datetime) -> Sequence[PartnerKpi]:
        """Partners called for the tickets created in [since, until): calls, arrivals, arrival times."""
        ...


    def hotspot_data(self, since: datetime, until: datetime) -> HotspotData:
        """Alarms raised and one-click reports made in [since, until) by source, place, category, local hour and
        device, with the categories' names (the /hotspots page; gateway/web/hotspots_data.py)."""
        ...

    def care_overview(self) -> Sequence[CareUnitView]: ...

    def outcomes(self, user: User, start: datetime, end: datetime, bucket: str) -> Outcomes:
        """The outcomes over [start, end) by ``bucket`` (day, week, month) of the grids ``user`` may see
        (/outcomes; gateway/outcomes)."""
        ...

    # -- history and audit (viz/history_model.py) ----------------------------------------------------
    def history(self) -> HistoryData:
        """Incidents, alarms and the audit log over time (the /history, /incident and /audit pages)."""
        ...

    def reports(self) -> ReportsData:
        """One-click reports (/report) and the supervisor's check (核查) of resolved ones (viz/report_model.py)."""
        ...

    def care_register(self) -> CareRegisterData:
        """The care register (/residents; personal data: viz/care_model.py)."""
        ...

    def patrols(self) -> PatrolData:
        """Patrols, check-ins and on-duty positions (/patrols, /patrol; viz/patrol_model.py)."""
        ...

    def assistant(self) -> AssistantData:
        """The knowledge assistant and the questions handed to a person (/assistant, the worker's knowledge box;
        viz/assistant_model.py)."""
        ...

    # -- sign-in (shared with the REST API) ----------------------------------------------------------
    def sign_in(self, username: str, password: str, client: str = "") -> Session | None:
        """A session, or None for a wrong username or password. ``client``: the browser's address
        (attempts are throttled per address and per account). Raises :class:`SignInRefused` when the
        attempt is refused before the password is checked."""
        ...

    def user_for_token(self, token: str) -> User | None:
        """The session's user; None when the token is unknown or expired. Raises
        :class:`DataUnavailable` when it cannot tell (the database is down)."""
        ...

    def sign_out(self, token: str) -> None: ...
