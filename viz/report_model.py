"""What the one-click report page (``/report``) and the supervisor's check panel need from the data source: a
small typed interface (:class:`ReportsData`, reached through ``DashboardData.reports()``). Pure (no I/O).

The real one is ``gateway.web.report_data.StorageReports`` (the dispatch service underneath). Methods may raise
:class:`viz.data.DataUnavailable` or :class:`viz.data.ActionRefused` (``bad_input``, ``forbidden``, ``not_found``,
``illegal_transition``, ``conflict``, ``too_large``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from twin.people import User
from twin.tickets.reports import ReportCategory, default_categories
from viz.data import Photo
from viz.i18n import t

_LABELS: dict[str, ReportCategory] = {}


def report_title(lang: str, title: str) -> str | None:
    """A one-click report's ticket title (stored in Chinese: ``消防通道堵塞（居民上报）``) in ``lang``; None when
    ``title`` is no report's."""
    if not _LABELS:
        _LABELS.update({c.zh: c for c in default_categories().items})
    for kind in ("resident", "staff"):
        zh = t("zh", f"report.ticket.{kind}", label="")
        if title.endswith(zh) and (c := _LABELS.get(title[: -len(zh)])) is not None:
            return t(lang, f"report.ticket.{kind}", label=c.label(lang))
    return None


@dataclass(frozen=True, slots=True)
class StaffReport:
    """A report from the ``/report`` page, as typed (the data source checks it all again)."""

    category: str  # a ReportCategory id
    building: str
    floor: int | None
    unit: str
    text: str
    photo: Photo | None = None


@dataclass(frozen=True, slots=True)
class CheckItem:
    """A resolved report waiting for the supervisor's check (核查)."""

    ticket_id: str
    title: str
    building: str | None
    floor: int | None
    assignee: str | None
    resolved_at: datetime | None


@runtime_checkable
class ReportsData(Protocol):
    def categories(self) -> Sequence[ReportCategory]:
        """Every category (staff may pick the staff-only ones too), in the file's order."""
        ...

    def submit(self, user: User, report: StaffReport) -> str:
        """Store the report as a ticket, dispatched to the building's grid worker; returns the ticket id."""
        ...

    def pending_checks(self, user: User) -> Sequence[CheckItem]:
        """Resolved reports waiting for ``user``'s check (a supervisor: their grids'; operators: all)."""
        ...

    def check(self, user: User, ticket_id: str) -> str | None:
        """Where the ticket's check stands (``twin.tickets.reports.Verification`` values); None when the ticket
        is not a checked report or not the user's to see."""
        ...

    def verify(self, user: User, ticket_id: str, passed: bool, reason: str = "") -> None:
        """核查: pass closes it as usual; fail (with ``reason``) sends it back to the worker."""
        ...
