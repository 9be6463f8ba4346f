"""The gateway's dispatch worker: alarm events become tickets for grid workers. Does I/O.

Runs in its own thread with its own database connection, so rendering a ticket's 3D snapshot (about
a second) or a slow ticket query never stalls ingest. The writer thread hands it the alarm events it
has committed (:meth:`DispatchWorker.submit`); the worker feeds them to
:class:`gateway.tickets.TicketService` in order and runs the SLA watchdog every
``tickets.watchdog_interval_s`` (warnings at 75%, escalation at breach, missing snapshots).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence

from gateway.settings import Settings
from gateway.storage import Storage, StorageError
from gateway.tickets import TicketService, render_snapshot
from twin.alarms import AlarmEvent
from twin.community import Community

log = logging.getLogger(__name__)
Publish = Callable[[str, bytes, int], None]
_STOP = object()


class DispatchWorker:
    def __init__(self, settings: Settings, db_url: str, communities: Sequence[Community], publish: Publish,
                 *, queue_max: int = 100_000) -> None:
        self.settings = settings
        self.db_url = db_url
        self.communities = list(communities)
        self.publish = publish
        self._queue: queue.Queue[tuple[str, AlarmEvent] | object] = queue.Queue(maxsize=queue_max)
        self._thread = threading.Thread(target=self._run, name="gridtwin-dispatch", daemon=True)
        self.tickets_touched = 0
        self.dropped = 0

    def start(self) -> None:
        self._thread.start()

    def submit(self, community: str, events: Sequence[AlarmEvent]) -> None:
        """Hand over committed alarm events (never blocks ingest: a full queue drops and counts)."""
        for e in events:
            try:
                self._queue.put_nowait((community, e))
            except queue.Full:
                self.dropped += 1

    def stop(self, timeout_s: float = 15.0) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout_s)

    def _connect(self) -> TicketService:
        db = self.settings.db
        storage = Storage.connect(self.db_url, schema=db.schema_name, retention_days=db.retention_days,
                                  partitions_ahead_days=db.partitions_ahead_days,
                                  connect_timeout_s=db.connect_timeout_s)
        return TicketService(storage, self.settings, self.communities, publish=self.publish,
                             snapshot=render_snapshot(), render_on_create=False)

    def _run(self) -> None:
        service: TicketService | None = None
        interval = self.settings.tickets.watchdog_interval_s
        next_tick = time.monotonic()
        pending: tuple[str, AlarmEvent] | None = None  # kept until the database took it
        while True:
            if pending is None:
                try:
                    item = self._queue.get(timeout=1.0)
                except queue.Empty:
                    item = None
                if item is _STOP:
                    if service is not None:
                        service.storage.close()
                    return
                pending = item if isinstance(item, tuple) else None
            try:
                if service is None:
                    service = self._connect()
                if pending is not None:
                    community, event = pending
                    if service.on_alarm_event(community, event) is not None:
                        self.tickets_touched += 1
                    pending = None
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + interval
                    service.tick()
            except StorageError as exc:
                log.warning("dispatch: %s (retrying)", exc)
                if service is not None:
                    service.storage.close()
                service = None
                time.sleep(1.0)
            except Exception:  # a bug on one event must not stop dispatch for every later alarm
                log.exception("dispatch failed on %s", pending)
                pending = None
