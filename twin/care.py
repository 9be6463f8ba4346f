"""The care register (关爱台账, seed 3.2): levels, visit schedules, due and overdue, who sees personal data. Pure.

Residents needing care (elderly living alone, disabled people, families in difficulty) have a level (policy
``twin/sop/policy_care_levels.yaml``): red is visited every week, yellow every two weeks, green every month.

**The schedule.** A visit is due one interval after the latest of: the resident's registration, their last visit,
their last level change (a level change restarts the clock with the new level's interval). Dates are the
community's local dates (its ``timezone``): a visit due on 12-09 may be made any time that local day, and is
overdue from local midnight at the start of 12-10. A month is a calendar month (01-31 -> 02-28/29). Only server
time is used (when the visit was logged, or the time the worker states, never a device's clock).

**Personal data** (name, phone, category, visit notes and checklists, level-change reasons) is seen only by the
workers and supervisors of the resident's grid, and admins. Operators see a masked name (``张**``), the unit,
floor, level, schedule and whether the resident has limited mobility (the fire SOP evacuates them first); workers
and supervisors of other grids do not see the resident at all (docs/care.md).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Annotated, Literal, get_args

from pydantic import AfterValidator

from twin.people import Role, User

__all__ = ["CATEGORIES", "CHECKS", "LEVELS", "Category", "Level", "Phone", "ResidentName", "Schedule", "Status",
           "add_interval", "due_date", "mask_name", "may_change_level", "may_log_visit", "may_see", "next_dates",
           "overdue_from", "schedule", "sees_personal", "status"]

Level = Literal["red", "yellow", "green"]
LEVELS: tuple[Level, ...] = get_args(Level)
Category = Literal["living_alone", "disabled", "hardship", "other"]  # 独居老人, 残疾人, 困难家庭, 其他
CATEGORIES: tuple[str, ...] = get_args(Category)
# the visit's health and needs checklist: each item answered yes (True) or no (False), or left out
CHECKS: tuple[str, ...] = ("well", "eating", "medication", "home_safe", "needs_medical", "needs_help", "mood_low")
INTERVAL_DAYS: dict[str, int] = {"red": 7, "yellow": 14}  # green: one calendar month
DUE_SOON_DAYS = 2
# How long a visit's personal details are kept (PIPL art. 19: no longer than the purpose needs; docs/care.md). The
# photo proves the visit to the supervisor checking the month; the note and checklist inform the next visits over a
# year of the resident's changes. The visit itself (when, by whom) stays while the resident is in the register.
PHOTO_RETENTION = timedelta(days=90)
NOTE_RETENTION = timedelta(days=365)
MAX_NAME = 40


def _check_name(v: str) -> str:
    v = v.strip()
    if not 1 <= len(v) <= MAX_NAME or not v.isprintable():
        raise ValueError(f"a resident's name is 1-{MAX_NAME} printable characters")
    return v


ResidentName = Annotated[str, AfterValidator(_check_name)]
_PHONE = re.compile(r"^\+?[0-9](?:[0-9 \-]*[0-9])?$")


def _check_phone(v: str) -> str:
    """A phone number as written (digits, single spaces or hyphens, a leading +; 3 to 20 digits), the same rule as
    the community file's contacts."""
    v = v.strip()
    if not _PHONE.match(v) or not 3 <= sum(ch.isdigit() for ch in v) <= 20 or "  " in v or "--" in v:
        raise ValueError(f"{v[:40]!r} is not a phone number: digits with optional spaces or hyphens and a leading +, "
                         "3 to 20 digits (e.g. '13900011201', '+86 139 0001 1201')")
    return v


Phone = Annotated[str, AfterValidator(_check_phone)]


# -- the schedule -----------------------------------------------------------------------------------------------


def add_interval(level: str, d: date) -> date:
    """The local date one visit interval of ``level`` after ``d`` (green: the same day next month, or its last)."""
    if level in INTERVAL_DAYS:
        return d + timedelta(days=INTERVAL_DAYS[level])
    if level != "green":
        raise ValueError(f"unknown care level {level!r}; one of {', '.join(LEVELS)}")
    y, m = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
    return date(y, m, min(d.day, calendar.monthrange(y, m)[1]))


def _require_aware(at: datetime) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("care times must be timezone-aware")


def due_date(level: str, registered_at: datetime, last_visit_at: datetime | None = None,
             level_changed_at: datetime | None = None, *, tz: tzinfo) -> date:
    """The local date by which the next visit is due (see the module's doc)."""
    anchors = [a for a in (registered_at, last_visit_at, level_changed_at) if a is not None]
    for a in anchors:
        _require_aware(a)
    return add_interval(level, max(anchors).astimezone(tz).date())


def overdue_from(due: date, tz: tzinfo) -> datetime:
    """The instant a visit due on local date ``due`` becomes overdue: the next local midnight (aware, in ``tz``)."""
    nxt = due + timedelta(days=1)
    return datetime.combine(nxt, time(0), tzinfo=tz)


def next_dates(level: str, due: date, n: int = 4) -> list[date]:
    """The planned visit dates: ``due`` and the ``n - 1`` after it at the level's interval (if each is kept)."""
    out = [due]
    while len(out) < n:
        out.append(add_interval(level, out[-1]))
    return out


Status = Literal["overdue", "due_today", "due_soon", "ok"]


@dataclass(frozen=True, slots=True)
class Schedule:
    level: str
    due: date  # local date the next visit is due by
    overdue_at: datetime  # when it is overdue (aware)
    status: Status
    days_overdue: int  # whole local days past the due date (0 unless overdue)

    @property
    def overdue(self) -> bool:
        return self.status == "overdue"


def status(due: date, now: datetime, tz: tzinfo) -> tuple[Status, int]:
    """(status, days overdue) of a visit due on ``due`` at ``now``."""
    _require_aware(now)
    today = now.astimezone(tz).date()
    if today > due:
        return "overdue", (today - due).days
    if today == due:
        return "due_today", 0
    if (due - today).days <= DUE_SOON_DAYS:
        return "due_soon", 0
    return "ok", 0


def schedule(level: str, registered_at: datetime, last_visit_at: datetime | None, level_changed_at: datetime | None,
             now: datetime, tz: tzinfo) -> Schedule:
    """Where a resident's visits stand at ``now``."""
    due = due_date(level, registered_at, last_visit_at, level_changed_at, tz=tz)
    st, days = status(due, now, tz)
    return Schedule(level, due, overdue_from(due, tz), st, days)


# -- who sees what ----------------------------------------------------------------------------------------------


def mask_name(name: str | None) -> str:
    """``张**`` for 张建国: the first character, the rest as ``*`` (at least one); empty stays empty."""
    if not name:
        return ""
    return name[0] + "*" * max(1, len(name) - 1)


def may_see(user: User, grid: str | None) -> bool:
    """Whether ``user`` may know the resident is in the register at all (masked or not)."""
    return user.sees_everything() or (grid is not None and grid in user.grids)


def sees_personal(user: User, grid: str | None) -> bool:
    """Whether ``user`` sees the resident's personal data: the grid's workers and supervisors, and admins."""
    if user.role is Role.ADMIN:
        return True
    return user.role in (Role.WORKER, Role.SUPERVISOR) and grid is not None and grid in user.grids


def may_log_visit(user: User, grid: str | None) -> bool:
    """Visits are logged by the grid's workers and supervisors (and admins)."""
    return sees_personal(user, grid)


def may_change_level(user: User, grid: str | None) -> bool:
    """A level is changed (with a reason) by the grid's workers and supervisors (and admins)."""
    return sees_personal(user, grid)


def check_answers(answers: Iterable[tuple[str, bool]]) -> dict[str, bool]:
    """The visit checklist as stored: known items only (ValueError names an unknown one)."""
    out: dict[str, bool] = {}
    for code, value in answers:
        if code not in CHECKS:
            raise ValueError(f"unknown checklist item {code!r}; known: {', '.join(CHECKS)}")
        if not isinstance(value, bool):
            raise ValueError(f"checklist item {code!r} is answered true or false")
        out[code] = value
    return out


# -- what a viewer is shown -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResidentView:
    """A resident as ``viewer`` may see them: ``personal`` False means the name is masked and the phone and
    category are left out."""

    id: int
    community: str
    unit: str
    building: str
    floor: int
    grid: str | None
    level: str
    schedule: Schedule
    mobility_limited: bool
    personal: bool
    name: str  # full, or masked (张**); "" when the register has no name
    category: str | None
    phone: str | None
    last_visit_at: datetime | None
    version: int
    overdue_ticket: int | None = None  # the ticket raised for the current overdue visit, if any


@dataclass(frozen=True, slots=True)
class VisitView:
    id: int
    visited_at: datetime
    recorded_at: datetime
    visitor: str
    note: str
    checks: dict[str, bool]
    has_photo: bool


@dataclass(frozen=True, slots=True)
class LevelChangeView:
    at: datetime
    by: str
    from_level: str
    to_level: str
    reason: str
