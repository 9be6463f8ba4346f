"""The gateway's write path: the writer thread batches what the receive side queued and commits it. Does I/O.

One writer thread owns the database connection: it drains the queue into batches (``batch_size`` or
``flush_interval_s``, whichever first), writes each in one transaction (binary COPY of readings and
events, message keys that drop duplicates, dead letters for rejects, and the alarm writes the rules
produce from the same facts: :meth:`gateway.storage.Storage.write_batch`), acknowledges the batch's
messages only after the commit, tells devices why a message was refused, and runs partition
maintenance, the 1-minute rollup and the rules' timers between batches. In cluster mode every write of
a community's rules is fenced by its lease (:func:`gateway.cluster.leases.check_fence`). While the
database is down the batch goes to the spool instead (:mod:`gateway.ingest.outage`). Mixin of
:class:`gateway.ingest.pipeline.Gateway`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gateway.alarms.service import AlarmService
from gateway.cluster.leases import Fenced, check_fence
from gateway.ingest.batch import AlarmWrites, KeyRow, WriteBatch, dead_row
from gateway.ingest.items import _STOP, LINGER_S, Command, Item, Produced, Stats, Step
from gateway.ingest.metrics import GatewayMetrics
from gateway.ingest.spool import Spool
from gateway.ingest.validate import Accepted, Registry, Rejected, Validator
from gateway.ratelimit import PerKeyLimiter
from gateway.settings import Settings
from gateway.storage import DatabaseUnavailable, RulesStep, Storage, StorageError
from gateway.tickets.dispatch import DispatchWorker
from twin.state import LiveState

log = logging.getLogger(__name__)


class Writer:
    """Write path of :class:`gateway.ingest.pipeline.Gateway` (see the module doc)."""

    settings: Settings
    db_url: str
    cluster: bool
    node: str
    stats: Stats
    metrics: GatewayMetrics
    live: dict[str, LiveState]
    alarms: dict[str, AlarmService]
    dispatch: DispatchWorker | None
    _queue: queue.Queue[Item | object]
    _spool: Spool
    _storage: Storage | None
    _db_down_since: float | None
    _batch_started: float | None
    _dead_budget: PerKeyLimiter
    _replies: PerKeyLimiter
    _validator: Validator
    _epochs: dict[str, int]
    _stopping: threading.Event
    _idle: threading.Event

    if TYPE_CHECKING:  # the other parts of the gateway
        def _ack(self, items: list[Item]) -> None: ...
        def _tell_device(self, r: Rejected) -> None: ...
        def _serve_control(self) -> None: ...
        def _lost(self, communities: set[str]) -> None: ...
        def _db_down(self, exc: Exception) -> None: ...
        def _drain_spool(self) -> bool: ...
        def _spool_batch(self, batch: WriteBatch, step: Step) -> bool: ...
        def _apply_live(self, items: list[Accepted]) -> None: ...
        def _run_rules(self, items: list[Accepted], commands: list[Command]) -> Produced: ...
        def _tick_rules(self) -> None: ...
        def _reload_rules(self) -> None: ...
        def _save_rule_state(self) -> None: ...
        def _save_start_cache(self) -> None: ...
        def _restore_new_communities(self) -> None: ...

    def _write_loop(self) -> None:
        gw = self.settings.gateway
        next_rollup = time.monotonic() + gw.rollup_interval_s
        next_maintain = time.monotonic() + 3600
        next_registry = time.monotonic() + 30
        next_tick = time.monotonic() + 5
        next_rules = time.monotonic() + 1
        next_save = time.monotonic() + 10
        next_reload = time.monotonic() + 2
        while True:
            batch: list[Item] = []
            stop = False
            # Block for the first message, then take what keeps arriving until the stream pauses for
            # `linger` (the broker's in-flight window is spent: it waits for our acks, which follow the
            # commit), the batch is full, or the oldest message has waited `flush_interval_s`.
            try:
                first = self._queue.get(timeout=gw.flush_interval_s)
            except queue.Empty:
                first = None
            if first is _STOP:
                stop = True
            elif first is not None:
                assert isinstance(first, Item)
                batch.append(first)
                deadline = time.monotonic() + gw.flush_interval_s
                while len(batch) < gw.batch_size:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        try:
                            item = self._queue.get(timeout=min(LINGER_S, left))
                        except queue.Empty:
                            break
                    if item is _STOP:
                        stop = True
                        break
                    assert isinstance(item, Item)
                    batch.append(item)
            if self.cluster:
                self._serve_control()
            if batch:
                self._flush(batch)
            elif self._spool.pending() or self._db_down_since is not None:
                self._drain_spool()  # also reconnects after an outage with nothing spooled
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + 5
                wall = datetime.now(UTC)
                for state in self.live.values():
                    state.tick(wall)
            if self._queue.empty():
                self._idle.set()
            if now >= next_rollup:
                next_rollup = now + gw.rollup_interval_s
                self._quietly("refresh_rollup")
            if now >= next_maintain:
                next_maintain = now + 3600
                self._quietly("maintain")
                self._quietly("prune_message_keys")
                self._quietly("prune_dead_letters")
            if now >= next_rules:
                next_rules = now + 1
                self._tick_rules()
            if now >= next_reload:
                next_reload = now + 2
                self._reload_rules()
            if now >= next_save or stop:
                next_save = now + 10
                self._guard(self._save_rule_state)
            if now >= next_registry:
                next_registry = now + 30
                self._guard(self.reload_registry)
                self._guard(self._restore_new_communities)
            if stop:
                return

    def _flush(self, items: list[Item]) -> None:
        if self.cluster:  # a community we gave up or lost: never written nor acknowledged, its next owner gets it
            items = [i for i in items if i.src in self._epochs]
            if not items:
                return
        self._batch_started = min(i.received for i in items)
        accepted: list[Accepted] = []
        seen: set[tuple[int, int, datetime]] = set()
        for i in items:  # duplicates inside one batch (a retry right after the original)
            if isinstance(i.result, Accepted):
                if i.result.keys and all(k in seen for k in i.result.keys):
                    self.stats.duplicates += 1
                    continue
                seen.update(i.result.keys)
                accepted.append(i.result)
        rejects = [i.result for i in items if isinstance(i.result, Rejected)]
        commands = [i.result for i in items if isinstance(i.result, Command)]
        now = datetime.now(UTC)
        batch = WriteBatch(
            keys=[k for a in accepted for k in a.keys],
            readings=[r for a in accepted for r in a.readings],
            events=[e for a in accepted for e in a.events],
            statuses=[s for a in accepted for s in a.statuses],
            dead=[dead_row(r.at or now, r.topic, r.reason, r.detail, r.payload) for r in rejects
                  if self._dead_budget.take(r.reason)],
        )
        dropped = len(rejects) - len(batch.dead)
        if dropped:
            self.stats.dead_letters_dropped += dropped
        step = Step(None, lambda dups: self._run_rules(
            [a for a in accepted if not (a.keys and all(k in dups for k in a.keys))], commands),
            frozenset(i.src for i in items if i.src is not None))
        try:
            committed = self._commit(batch, step)
        except Fenced as exc:  # nothing written, no rule ran: the rest goes again without the lost communities
            self._batch_started = None
            self._lost(exc.communities)
            rest = [i for i in items if i.src not in exc.communities]
            if rest:
                self._flush(rest)
            return
        if not committed:
            self._batch_started = None
            return  # shutting down with the database down and the spool full: left unacknowledged
        # committed or durably spooled: now the broker may forget these messages (one write for all)
        self._ack(items)
        self._batch_started = None
        self._apply_live(accepted)
        self.stats.batches += 1
        self.metrics.batch_size.observe(len(items))
        self.stats.accepted += len(accepted)
        self.stats.readings_written += len(batch.readings)
        self.stats.events_written += len(batch.events)
        for r in rejects:
            self.stats.rejected[r.reason] += 1
            if r.device_topic:
                if self._replies.take(r.device_topic):
                    self._tell_device(r)
                else:
                    self.stats.error_replies_suppressed += 1

    def _commit(self, batch: WriteBatch, step: Step) -> bool:
        """Commit rows and the alarms their rules raise in one transaction; if the database is down, spool
        both together; if the spool is full, wait (back-pressure). Then announce the alarm changes.

        False only when stopping with nothing stored (the caller must not acknowledge).
        """
        while True:
            if not self._spool.pending() and self._db_down_since is None:
                try:
                    self._write(batch, step)
                    break
                except DatabaseUnavailable as exc:
                    self._db_down(exc)
            elif self._drain_spool() and not self._spool.pending():
                continue  # the database is back and the backlog is written: write this batch directly
            # database down: the rules run now on everything (no duplicate check is possible); their
            # alarm writes are spooled with the rows, and committed with them when the database is back
            if self._spool_batch(batch, step):
                self.stats.spooled += 1
                break
            if self._stopping.is_set():
                log.error("database down and spool full at shutdown: %d messages left unacknowledged",
                          len(batch.keys))
                return False
            time.sleep(1.0)  # spool full: hold the batch; the queue fills and the broker holds the rest
        for svc, evs in step.produced or []:
            self.stats.alarm_events += len(evs)
            svc.announce(evs)
        if step.produced and self.dispatch is not None:
            self.dispatch.wake()
        return True

    def _write(self, batch: WriteBatch, step: Step | None = None, *, rules: RulesStep | None = None) -> None:
        """One transaction; on a data error, again with every device isolated (never raises for data).

        ``rules`` instead of ``step`` (the spool's fenced replay): what runs in the transaction once the rows
        are in; run again, in the new transaction, by the isolated write."""
        t0 = time.perf_counter()
        if self._storage is None:
            raise DatabaseUnavailable(self.db_url, "not connected yet")
        try:
            result = self._storage.write_batch(batch, rules if rules is not None else self._rules_step(step))
        except DatabaseUnavailable:
            raise
        except StorageError as exc:
            self.stats.poisoned_batches += 1
            log.error("a batch of %d messages failed for a data reason (%s): writing it device by device", len(batch),
                      exc)
            if step is not None and step.done:  # the rules already ran on it: keep what they produced
                batch, step = batch.with_alarms([*batch.alarms, *step.writes(set())]), None
            result = self._storage.write_batch(batch, rules if rules is not None else self._rules_step(step),
                                               isolate=True)
            for unit, why in result.poisoned:
                log.error("stored as a dead letter (storage_rejected): %s: %s", unit.topic_hint(), why)
            self.stats.rejected["storage_rejected"] += len(result.poisoned)
        self.stats.duplicates += result.duplicates
        self.stats.last_write_s = time.perf_counter() - t0
        self.metrics.write_seconds.observe(self.stats.last_write_s)

    def _rules_step(self, step: Step | None) -> RulesStep | None:
        """What runs inside the write transaction: the rules; in cluster mode first the fence, so a gateway
        that lost a lease writes nothing for that community and its rules never run on these facts."""
        if step is None or not self.cluster:
            return step.writes if step is not None else None
        storage, epochs = self._storage, {c: self._epochs.get(c, -1) for c in step.communities}
        assert storage is not None

        def fenced(dups: set[KeyRow]) -> list[AlarmWrites]:
            check_fence(storage.conn, self.node, epochs)
            return step.writes(dups)
        return fenced

    def reload_registry(self) -> None:
        """Pick up devices loaded, changed or retired since start (the writer thread, every 30 s)."""
        if self._storage is None or self._db_down_since is not None:
            return
        registry = Registry.build(self._storage.devices(), self._storage.metric_ids())
        if registry != self._validator.registry:
            self._validator.registry = registry
            self._save_start_cache()

    def _quietly(self, method: str) -> None:
        """Run a housekeeping method of the storage; skipped while the database is down."""
        if self._storage is None or self._db_down_since is not None:
            return
        self._guard(getattr(self._storage, method))

    def _guard(self, fn: Any) -> None:
        try:
            fn()
        except StorageError as exc:
            log.warning("%s", exc)

