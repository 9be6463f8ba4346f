"""The gateway's spool path: while the database is down, batches go to the local spool; replayed when it is back.

:meth:`Outage._db_down` switches the writer to spooling; :meth:`Outage._spool_batch` appends a batch
with the alarm writes its rules produced (:class:`gateway.ingest.spool.Spool`: fsynced before the
batch's messages are acknowledged); :meth:`Outage._drain_spool` reconnects (at most once a second) and
replays the spool oldest first before any new batch is written, so per device the rows land in arrival
order. A replay interrupted half-way is safe: the database drops the messages it already has (message
keys) and the alarm events it already has (their uid).

Cluster mode: a spooled batch carries the lease epoch under which each community's alarm writes were
made, and :meth:`Outage._replay` passes the live path's fence at that epoch. A community whose lease
moved on meanwhile gets its readings and its alarm events (the only copy of acknowledged messages,
and alarms already announced), but not its alarm rows nor its rule state, which belong to the gateway
that runs it now (docs/scale-out.md). Mixin of :class:`gateway.ingest.pipeline.Gateway`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from gateway.cluster.leases import fenced_out
from gateway.ingest.batch import AlarmWrites, KeyRow, WriteBatch
from gateway.ingest.items import Stats, Step
from gateway.ingest.spool import Spool
from gateway.ingest.startcache import StartCache
from gateway.settings import Settings
from gateway.storage import DatabaseUnavailable, RulesStep, Storage
from gateway.tickets.dispatch import DispatchWorker

log = logging.getLogger(__name__)


class Outage:
    """Spool path of :class:`gateway.ingest.pipeline.Gateway` (see the module doc)."""

    settings: Settings
    cluster: bool
    node: str
    stats: Stats
    dispatch: DispatchWorker | None
    _epochs: dict[str, int]
    _spool: Spool
    _storage: Storage | None
    _cache: StartCache | None
    _db_down_since: float | None
    _last_db_try: float

    if TYPE_CHECKING:  # the other parts of the gateway
        def _connect_storage(self, timeout_s: float) -> Storage: ...
        def _write(self, batch: WriteBatch, step: Step | None = None, *, rules: RulesStep | None = None) -> None: ...
        def _guard(self, fn: Any) -> None: ...
        def reload_registry(self) -> None: ...

    def _db_down(self, exc: Exception) -> None:
        self.stats.db_errors += 1
        if self._db_down_since is None:
            self._db_down_since = time.monotonic()
            log.warning("%s; spooling to %s until it is back", exc, self._spool.directory)

    def _spool_batch(self, batch: WriteBatch, step: Step) -> bool:
        """Durably append ``batch`` with the alarm writes of its rules (run now, on everything: no duplicate
        check is possible) and, in cluster mode, the epoch of the lease each community's writes were made
        under. False (nothing written) when the spool is full."""
        alarms = [*batch.alarms, *step.writes(set())]
        fence = {a.community: self._epochs.get(a.community, -1) for a in alarms} if self.cluster else {}
        return self._spool.append(replace(batch, alarms=alarms, fence=fence))

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
            replayed = self._spool.replay(self._replay)
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


    def _replay(self, batch: WriteBatch) -> None:
        """Write one spooled batch (the spool's replay calls this, oldest first).

        Its rows are always written: their messages were acknowledged when spooled, so the spool holds
        the only copy, and their message keys make a second write a no-op. In cluster mode its alarm
        writes pass the live path's fence first, in the same transaction, at the epoch they were made
        under: a community still held at that epoch gets them all (the lease row stays share-locked, so a
        takeover waits and then restores from them); one whose lease moved on gets only its alarm events
        (announced when spooled: history and dispatch outbox, once each by uid), not the alarm rows nor
        the rule state of the gateway that runs it now, whose engine never saw these facts.
        """
        if not self.cluster or not batch.alarms:
            self._write(batch)
            return
        alarms = batch.alarms
        epochs = {a.community: batch.fence.get(a.community, -1) for a in alarms}
        checks: list[set[str]] = []

        def fenced(_dups: set[KeyRow]) -> list[AlarmWrites]:
            assert self._storage is not None
            lost = fenced_out(self._storage.conn, self.node, epochs)
            checks.append(lost)
            return [a.history_only() if a.community in lost else a for a in alarms]

        self._write(batch.with_alarms([]), rules=fenced)
        lost = checks[-1] if checks else set()
        if lost:
            moved = [a for a in alarms if a.community in lost]
            self.stats.spool_fenced += len(moved)
            log.warning("spool replay: the lease of %s moved on since these alarm writes were spooled: wrote "
                        "their %d alarm events, not their alarm rows nor rule state (the new owner's)",
                        ", ".join(sorted(lost)), sum(len(a.events) for a in moved))
