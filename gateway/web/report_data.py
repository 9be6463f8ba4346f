"""The dashboard's one-click reports and supervisors' checks (:class:`viz.report_model.ReportsData`) on the
dispatch service and :mod:`gateway.reports.store`. Does I/O."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from gateway.api.pool import StoragePool
from gateway.reports import store
from gateway.storage import Storage
from gateway.web.database import connection
from gateway.web.ticket_desk import refusals
from twin.community import Community
from twin.people import User
from twin.tickets.reports import ReportCategory, Verification
from viz.data import ActionRefused
from viz.report_model import CheckItem, StaffReport


class StorageReports:
    """:class:`viz.report_model.ReportsData` for one community; ``make_service(storage)`` builds the ticket service
    (MQTT delivery to the worker's phone included) on a pooled connection."""

    def __init__(self, community: Community, make_service: Callable[[Storage], Any], *, pool: StoragePool | None = None,
                 db_url: str | None = None, schema: str = "gridtwin") -> None:
        self._community = community
        self._make = make_service
        self._own_pool = pool is None
        if pool is None:
            if db_url is None:
                raise ValueError("StorageReports needs a pool or a db_url")
            pool = StoragePool(db_url, schema=schema, max_size=2, name="gridtwin-reports")
        self._pool = pool

    def close(self) -> None:
        if self._own_pool:
            self._pool.close()

    @contextlib.contextmanager
    def _service(self, what: str) -> Iterator[Any]:
        with connection(self._pool, what) as st, refusals():
            yield self._make(st)

    def categories(self) -> Sequence[ReportCategory]:
        return store.categories().items

    def submit(self, user: User, report: StaffReport) -> str:
        from gateway.tickets.service import Photo

        photo = Photo(report.photo.content_type, report.photo.content) if report.photo else None
        new = store.NewReport(report.category, report.building, report.floor, report.unit or None, report.text,
                              None, photo)
        with self._service("storing a report") as svc:
            t, _token = store.submit(svc, self._community, new, reporter=user)
        return str(t.id)

    def pending_checks(self, user: User) -> Sequence[CheckItem]:
        with self._service("listing reports to check") as svc:
            ts = store.pending_checks(svc, user)
        return [CheckItem(str(t.id), t.title, t.building, t.floor, t.assignee, t.resolved_at) for t in ts
                if t.community == self._community.id]

    def check(self, user: User, ticket_id: str) -> str | None:
        tid = _ticket_id(ticket_id)
        if tid is None:
            return None
        from gateway.tickets.service import Forbidden, TicketNotFound

        with self._service(f"reading the check of ticket {ticket_id}") as svc:
            try:
                t = svc.get(tid, user)
            except (TicketNotFound, Forbidden):
                return None
            status = store.check_state(svc, t)
        return None if status is Verification.NONE else status.value

    def verify(self, user: User, ticket_id: str, passed: bool, reason: str = "") -> None:
        tid = _ticket_id(ticket_id)
        if tid is None:
            raise ActionRefused("not_found", ticket_id[:40])
        with self._service(f"checking ticket {ticket_id}") as svc:
            svc.get(tid, user)
            store.verify(svc, user, tid, passed, reason)


def _ticket_id(text: str) -> int | None:
    return int(text) if text.isdigit() and 0 < len(text) <= 18 else None
