"""The gateway's dispatch worker: alarm events become tickets for grid workers. Does I/O.

The outbox reader (docs/alarm-path.md). The writer commits each alarm event to ``alarm_events`` in
the same transaction as the readings that raised it (or spools both while the database is down);
this worker takes the oldest event not yet dispatched, applies it with
:class:`gateway.tickets.service.TicketService`, and marks it dispatched in the same transaction as the ticket
change. So a crash anywhere (before, during or after) ends with each event applied exactly once:
nothing waits in memory. Several gateways may run it on one database: ``FOR UPDATE`` makes them
take events one at a time, in commit order of the row lock.

It serves every community of the registry, not only those its gateway runs: in cluster mode every
gateway dispatches every community, so tickets flow while a community changes hands. It follows the
registry (:meth:`DispatchWorker._refresh`, before each look at the outbox): a community loaded after
start gets its events dispatched too, and one it knew stays served while events of it wait.

It runs in its own thread with its own connection, so a slow ticket query never stalls ingest, and
runs the SLA watchdog every ``tickets.watchdog_interval_s`` (warnings at 75%, escalation at breach,
missing snapshots, rendered here off the alarm path).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import class_row

from gateway.ingest.batch import clean_text
from gateway.settings import Settings
from gateway.storage import DatabaseUnavailable, Storage, StorageError, fetch_rows
from gateway.tickets.service import TicketService, render_snapshot
from twin.alarms import AlarmEvent
from twin.community import Community

log = logging.getLogger(__name__)
Publish = Callable[[str, bytes, int], None]
POLL_S = 1.0  # look for events committed elsewhere (spool replay, another gateway) at least this often


@dataclass(frozen=True, slots=True)
class PendingAlarmEvent:
    """An alarm event in the outbox, not yet dispatched."""

    id: int
    community: str
    event: dict[str, Any]


class DispatchWorker:
    def __init__(self, settings: Settings, db_url: str, communities: Sequence[Community], publish: Publish,
                 *, on_fatal: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.db_url = db_url
        self.communities = list(communities)
        self.publish = publish
        self.on_fatal = on_fatal
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervised, name="gridtwin-dispatch", daemon=True)
        self._unreadable: set[str] = set()  # communities whose document does not parse (logged once)
        self.tickets_touched = 0
        self.dispatched = 0
        self.failed = 0  # events a bug made us skip (kept with their error in alarm_events.dispatch_error)
        self.last_error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def wake(self) -> None:
        """New alarm events were committed: look now instead of at the next poll."""
        self._wake.set()

    def stop(self, timeout_s: float = 15.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _connect(self) -> TicketService:
        db = self.settings.db
        storage = Storage.connect(self.db_url, schema=db.schema_name, retention_days=db.retention_days,
                                  partitions_ahead_days=db.partitions_ahead_days,
                                  connect_timeout_s=db.connect_timeout_s)
        return TicketService(storage, self.settings, self.communities, publish=self.publish,
                             snapshot=render_snapshot() if self.settings.tickets.snapshots else None,
                             render_on_create=False)

    def _supervised(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # the thread must not die silently: the process exits, a supervisor restarts it
            log.critical("dispatch worker died", exc_info=True)
            if self.on_fatal is not None:
                self.on_fatal(f"dispatch worker died: {type(exc).__name__}: {exc}")

    def _run(self) -> None:
        service: TicketService | None = None
        interval = self.settings.tickets.watchdog_interval_s
        next_tick = time.monotonic()
        while not self._stop.is_set():
            try:
                if service is None:
                    service = self._connect()
                codes = self._refresh(service)
                while not self._stop.is_set() and self._dispatch_one(service, codes):
                    pass
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + interval
                    service.tick()
            except StorageError as exc:
                log.warning("dispatch: %s (retrying)", exc)
                if service is not None:
                    service.storage.close()
                service = None
                self._stop.wait(1.0)
                continue
            self._wake.wait(POLL_S)
            self._wake.clear()
        if service is not None:
            service.storage.close()

    def _refresh(self, service: TicketService) -> list[str]:
        """The communities to dispatch: those known so far and every one in the registry now (one small
        query; a document is read once, when its community first appears)."""
        for code in service.storage.community_codes():
            if code in service.communities or code in self._unreadable:
                continue
            doc = service.storage.community_document(code)
            if doc is None:
                continue
            try:
                community = Community.model_validate(doc)
            except ValueError as exc:
                self._unreadable.add(code)
                log.error("dispatch: community %s cannot be read (%s); its alarm events wait", code,
                          (str(exc).splitlines() or [type(exc).__name__])[0])
                continue
            service.communities[code] = community
            self.communities.append(community)
            log.info("dispatch: community %s is dispatched too (loaded since start)", code)
        return sorted(service.communities)

    def _dispatch_one(self, service: TicketService, communities: list[str]) -> bool:
        """Apply the oldest undispatched event and mark it, in one transaction. False: none left."""
        conn = service.conn
        try:
            with conn.transaction():
                pending = fetch_rows(
                    conn, class_row(PendingAlarmEvent),
                    "SELECT id, community, event FROM alarm_events WHERE dispatched_at IS NULL "
                    "AND community = ANY(%s) ORDER BY id LIMIT 1 FOR UPDATE", (communities,))
                if not pending:
                    return False
                event_id, community, data = pending[0].id, pending[0].community, pending[0].event
                error: str | None = None
                try:
                    with conn.transaction():  # a savepoint: a failure here still marks the event
                        if service.on_alarm_event(community, _event(data)) is not None:
                            self.tickets_touched += 1
                except (DatabaseUnavailable, psycopg.OperationalError):
                    raise
                except Exception as exc:
                    if isinstance(exc.__cause__, psycopg.OperationalError):
                        raise  # the connection, not this event: retry it on a new one
  # a bug or bad data on one event must not block every later alarm
                    log.exception("dispatch failed on alarm event %s", event_id)
                    error = clean_text(f"{type(exc).__name__}: {exc}", 500)
                    self.failed += 1
                    self.last_error = error
                conn.execute("UPDATE alarm_events SET dispatched_at = now(), dispatch_error = %s WHERE id = %s",
                             (error, event_id))
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(self.db_url, str(exc).strip().splitlines()[0] if str(exc).strip() else "") \
                from exc
        except psycopg.Error as exc:
            raise StorageError(f"dispatching alarm events failed: {exc}") from exc
        self.dispatched += 1
        return True


def _event(data: Any) -> AlarmEvent:
    return AlarmEvent.from_json(dict(data))
