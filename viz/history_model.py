"""Incident, alarm and audit history: what the pages ask for (queries), what they get back (rows), the data source's
interface for it (:class:`HistoryData`), the parsing and validation of the parameters a browser sends, and the
CSV text of an export. Pure (no I/O here).

Time ranges are a preset (last 24 h, 7, 30 or 90 days) or two local dates (the community's timezone), both ends
included, at most :data:`MAX_SPAN_DAYS` apart. A bad parameter raises :class:`QueryError`, whose ``key`` and
``values`` name the message in the string catalogue (``hist.err.*``): the pages show it, the CSV routes answer
400 with it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Generic, Literal, Protocol, TypeVar

T = TypeVar("T")

Kind = Literal["incidents", "alarms"]
PRESETS: Mapping[str, timedelta] = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30),
                                    "90d": timedelta(days=90)}
DEFAULT_PRESET = "7d"
MAX_SPAN_DAYS = 366
PAGE_SIZES = (25, 50, 100)
DEFAULT_PAGE_SIZE = 25
MAX_PAGE = 10_000
MAX_TEXT = 100
MAX_EXPORT_ROWS = 50_000  # a CSV holds at most this many rows (the export says so in its last line when cut)
CATEGORIES = ("fire", "elevator", "gas", "water", "care", "environment", "other")  # twin.tickets.policy.CATEGORIES
SEVERITIES = ("critical", "major", "minor", "warning")
TICKET_STATES = ("accepted", "dispatched", "handling", "feedback", "evaluated", "escalated", "reopened", "cancelled")
OPEN_TICKET_STATES = ("accepted", "dispatched", "handling", "escalated", "reopened")
INCIDENT_STATES = ("open", "closed", *TICKET_STATES)
ALARM_STATES = ("active", "cleared")
INCIDENT_SORTS = ("created", "title", "category", "severity", "state", "place", "assignee", "resolved")
ALARM_SORTS = ("raised", "rule", "severity", "state", "place", "cleared", "count")
# who did what: alarm actions, ticket actions, sign-ins (the audit page's action filter and labels)
ALARM_ACTIONS = ("acknowledged", "shelved", "unshelved", "cleared")
TICKET_ACTIONS = ("create", "dispatch", "accept", "progress", "arrive", "release", "resolve", "cancel", "reopen",
                  "escalate", "reassign", "rate", "upgrade")
SIGN_IN_ACTIONS = ("sign_in", "sign_in_failed")
AUDIT_ACTIONS = ALARM_ACTIONS + TICKET_ACTIONS + SIGN_IN_ACTIONS
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class QueryError(ValueError):
    """A parameter the history pages cannot use; ``key`` names the catalogue message (``hist.err.<key>``)."""

    def __init__(self, key: str, **values: object) -> None:
        super().__init__(f"{key}: {values}" if values else key)
        self.key = key
        self.values = values


@dataclass(frozen=True, slots=True)
class TimeRange:
    since: datetime
    until: datetime  # exclusive


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """One page of incidents or alarms. ``grids``: the grids the asker may see (None: all)."""

    kind: Kind
    since: datetime
    until: datetime
    text: str = ""
    category: str = ""
    severity: str = ""
    state: str = ""
    sort: str = ""
    desc: bool = True
    page: int = 0
    size: int = DEFAULT_PAGE_SIZE
    grids: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class AuditQuery:
    since: datetime
    until: datetime
    user: str = ""
    action: str = ""
    page: int = 0
    size: int = DEFAULT_PAGE_SIZE


@dataclass(frozen=True, slots=True)
class Paged(Generic[T]):
    rows: tuple[T, ...]
    total: int


@dataclass(frozen=True, slots=True)
class IncidentRow:
    """One incident (one ticket) in the history."""

    id: int
    created_at: datetime
    title: str
    category: str
    priority: str
    severity: str  # the worst of its alarms ("" when it has none: a resident's report)
    state: str
    building: str | None
    floor: int | None
    device: str | None
    assignee: str | None
    resolved_at: datetime | None
    alarms: int
    rule_name: str = ""  # its rule's name, "中文 / English" (empty: a resident's report)


@dataclass(frozen=True, slots=True)
class AlarmRow:
    """One raising of an alarm (an alarm raised again later is another row), and what became of it."""

    id: int
    key: str
    rule: str
    severity: str
    raised_at: datetime
    cleared_at: datetime | None
    cleared_by: str | None
    acked_at: datetime | None
    acked_by: str | None
    building: str | None
    floor: int | None
    device: str | None
    count: int
    ticket: int | None
    rule_name: str = ""  # "中文 / English" from the rule files, or the rule id

    @property
    def state(self) -> str:
        return "cleared" if self.cleared_at is not None else "active"


@dataclass(frozen=True, slots=True)
class AlarmStep:
    """One stored event of an alarm (raised, acknowledged, shelved, unshelved, cleared, escalated, ...)."""

    at: datetime
    key: str
    rule: str
    kind: str
    severity: str
    by: str | None
    detail: str
    device: str | None
    rule_name: str = ""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """Who did what, when: ``target`` is an alarm key, a ticket number or empty (a sign-in)."""

    at: datetime
    user: str
    action: str
    source: Literal["alarm", "ticket", "sign_in"]
    target: str
    detail: str
    ticket: int | None = None
    target_name: str = ""  # an alarm's rule name ("中文 / English")


class HistoryData(Protocol):
    """What the history, incident and audit pages read (``gateway.web.history_data.StorageHistoryData``)."""

    def incidents(self, q: HistoryQuery) -> Paged[IncidentRow]: ...

    def alarm_history(self, q: HistoryQuery) -> Paged[AlarmRow]: ...

    def incident_steps(self, ticket_id: int) -> Sequence[AlarmStep]:
        """Every stored event of the ticket's alarms from shortly before it opened to shortly after it closed."""
        ...

    def incident_window(self, ticket_id: int) -> tuple[datetime, datetime] | None:
        """First alarm (or creation) and last alarm/close of the ticket, None when there is no such ticket."""
        ...

    def audit(self, q: AuditQuery) -> Paged[AuditEntry]: ...

    def people(self) -> Mapping[str, str]:
        """Username or worker id -> display name, for showing users by name."""
        ...


# -- parameters ------------------------------------------------------------------------------------------


def parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text.strip()[:10])
    except ValueError:
        raise QueryError("bad_date", value=text[:20]) from None


def time_range(preset: str | None, start: str | None, end: str | None, now: datetime, tz: tzinfo) -> TimeRange:
    """A preset (``24h`` ... ``90d``), or ``start``/``end`` local dates (``YYYY-MM-DD``, both days included)."""
    if preset and preset != "custom":
        span = PRESETS.get(preset)
        if span is None:
            raise QueryError("bad_preset", value=preset[:20])
        return TimeRange(now - span, now)
    if not start or not end:
        raise QueryError("dates_needed")
    d0, d1 = parse_date(start), parse_date(end)
    if d1 < d0:
        raise QueryError("dates_order")
    if (d1 - d0).days + 1 > MAX_SPAN_DAYS:
        raise QueryError("dates_span", days=MAX_SPAN_DAYS)
    since = datetime.combine(d0, time(0), tz)
    until = datetime.combine(d1 + timedelta(days=1), time(0), tz)
    return TimeRange(since, until)


def _choice(value: str | None, allowed: Iterable[str], what: str) -> str:
    v = (value or "").strip()
    if v and v not in allowed:
        raise QueryError("bad_choice", what=what, value=v[:30])
    return v


def _int(value: str | None, default: int, lo: int, hi: int, what: str) -> int:
    if value is None or str(value).strip() == "":
        return default
    text = str(value).strip()
    if not text.isdigit() or not lo <= int(text) <= hi:
        raise QueryError("bad_number", what=what, value=text[:20])
    return int(text)


def clean_text(value: str | None) -> str:
    text = " ".join((value or "").split())
    if len(text) > MAX_TEXT:
        raise QueryError("text_long", n=MAX_TEXT)
    if not text.isprintable():
        raise QueryError("text_bad")
    return text


def history_query(args: Mapping[str, str | None], now: datetime, tz: tzinfo,
                  grids: tuple[str, ...] | None = None) -> HistoryQuery:
    """The query of the history page (or its CSV export) from its parameters; raises :class:`QueryError`."""
    kind = _choice(args.get("kind") or "incidents", ("incidents", "alarms"), "kind")
    rng = time_range(args.get("range") or (None if args.get("start") else DEFAULT_PRESET), args.get("start"),
                     args.get("end"), now, tz)
    sorts = INCIDENT_SORTS if kind == "incidents" else ALARM_SORTS
    return HistoryQuery(
        kind="alarms" if kind == "alarms" else "incidents", since=rng.since, until=rng.until,
        text=clean_text(args.get("q")), category=_choice(args.get("category"), CATEGORIES, "category"),
        severity=_choice(args.get("severity"), SEVERITIES, "severity"),
        state=_choice(args.get("state"), INCIDENT_STATES if kind == "incidents" else ALARM_STATES, "state"),
        sort=_choice(args.get("sort"), sorts, "sort"), desc=_choice(args.get("dir") or "desc", ("asc", "desc"),
                                                                   "dir") == "desc",
        page=_int(args.get("page"), 0, 0, MAX_PAGE, "page"),
        size=_int(args.get("size"), DEFAULT_PAGE_SIZE, 1, max(PAGE_SIZES), "size"), grids=grids)


def audit_query(args: Mapping[str, str | None], now: datetime, tz: tzinfo) -> AuditQuery:
    rng = time_range(args.get("range") or (None if args.get("start") else DEFAULT_PRESET), args.get("start"),
                     args.get("end"), now, tz)
    user = clean_text(args.get("user"))
    return AuditQuery(since=rng.since, until=rng.until, user=user,
                      action=_choice(args.get("action"), AUDIT_ACTIONS, "action"),
                      page=_int(args.get("page"), 0, 0, MAX_PAGE, "page"),
                      size=_int(args.get("size"), DEFAULT_PAGE_SIZE, 1, max(PAGE_SIZES), "size"))


def for_export(q: HistoryQuery | AuditQuery) -> HistoryQuery | AuditQuery:
    """The same filter, every row (up to :data:`MAX_EXPORT_ROWS`) from the first."""
    return replace(q, page=0, size=MAX_EXPORT_ROWS)


def pages(total: int, size: int) -> int:
    return max(1, -(-total // max(1, size)))


# -- CSV -------------------------------------------------------------------------------------------------


def safe_cell(value: object) -> str:
    """A cell a spreadsheet shows as text: one starting like a formula (= + - @, tab, CR) gets a leading '."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def csv_text(header: Sequence[str], rows: Iterable[Sequence[object]],
             note: Callable[[], str | None] | None = None) -> str:
    """UTF-8 CSV with a BOM (Excel then reads Chinese correctly), CRLF line ends, every cell made safe."""
    out = io.StringIO()
    out.write("\ufeff")
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow([safe_cell(h) for h in header])
    for r in rows:
        w.writerow([safe_cell(c) for c in r])
    last = note() if note is not None else None
    if last:
        w.writerow([safe_cell(last)])
    return out.getvalue()
