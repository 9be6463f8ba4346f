"""The gateway's spool path: while the database is down, batches go to the local spool; replayed when it is back.

:meth:`Outage._db_down` switches the writer to spooling (:class:`gateway.ingest.spool.Spool`: fsynced
before the batch's messages are acknowledged); :meth:`Outage._drain_spool` reconnects (at most once a
second) and replays the spool oldest first before any new batch is written, so per device the rows
land in arrival order. A replay interrupted half-way is safe: the database drops the messages it
already has (message keys) and the alarm events it already has (their uid). Mixin of
:class:`gateway.ingest.pipeline.Gateway`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from gateway.ingest.batch import WriteBatch
from gateway.ingest.items import Stats, Step
from gateway.ingest.spool import Spool
from gateway.ingest.startcache import StartCache
from gateway.settings import Settings
from gateway.storage import DatabaseUnavailable, Storage
from gateway.tickets.dispatch import DispatchWorker

log = logging.getLogger(__name__)


class Outage:
    """Spool path of :class:`gateway.ingest.pipeline.Gateway` (see the module doc)."""

    settings: Settings
    stats: Stats
    dispatch: DispatchWorker | None
    _spool: Spool
    _storage: Storage | None
    _cache: StartCache | None
    _db_down_since: float | None
    _last_db_try: float

    if TYPE_CHECKING:  # the other parts of the gateway
        def _connect_storage(self, timeout_s: float) -> Storage: ...
        def _write(self, batch: WriteBatch, step: Step | None = None) -> None: ...
        def _guard(self, fn: Any) -> None: ...
        def reload_registry(self) -> None: ...

    def _db_down(self, exc: Exception) -> None:
        self.stats.db_errors += 1
        if self._db_down_since is None:
            self._db_down_since = time.monotonic()
            log.warning("%s; spooling to %s until it is back", exc, self._spool.directory)

    def _drain_spool(self) -> bool:
        """Try to reconnect and replay the spool in order. True when the database took everything."""
        now = time.monotonic()
        if self._db_down_since is not None and now - self._last_db_try < 1.0:
            return False
        self._last_db_try = now
        try:
            if self._db_down_since is not None:
                if self._storage is not None:
                    with contextlib.suppress(Exception):
                        self._storage.close()
                    self._storage = None
                storage = self._connect_storage(min(self.settings.db.connect_timeout_s, 2.0))
                if self._cache is not None:  # started during the outage: this is our first connection
                    storage.migrate()
                self._storage = storage
            replayed = self._spool.replay(self._write)
        except DatabaseUnavailable as exc:
            self._db_down(exc)
            return False
        if self._db_down_since is not None:
            log.info("database is back after %.1fs; replayed %d spooled batches",
                     now - self._db_down_since, replayed)
            if self.dispatch is not None:
                self.dispatch.wake()
        self._db_down_since = None
        if self._cache is not None:  # the registry may have changed while we ran from the cache
            self._cache = None
            self._guard(self.reload_registry)
        return True

