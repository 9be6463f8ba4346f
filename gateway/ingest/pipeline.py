"""The gateway service: MQTT in, validation, batched binary COPY out. Does I/O.

Threads: the MQTT transport's reader thread (:mod:`gateway.mqtt.transport`: our fast MQTT 3.1.1 client,
or paho) runs :meth:`Gateway._on_message`, which validates each message (pure,
:mod:`gateway.ingest.validate`) and puts the result on a bounded queue; when the queue is full the reader
thread blocks, so the broker stops sending to us (back-pressure instead of memory growth).
One writer thread owns the database connection: it drains the queue into batches (``batch_size``
or ``flush_interval_s``, whichever first), COPYs them, stores rejects as dead letters, tells devices
why on their error topic, and runs partition maintenance and the 1-minute rollup between batches.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from gateway.alarms.service import AlarmService
from gateway.cluster import sessions
from gateway.cluster.leases import Fenced, LeaseStore, check_fence
from gateway.cluster.ownership import Ownership
from gateway.ingest.batch import AlarmWrites, KeyRow, WriteBatch, dead_row
from gateway.ingest.items import (
    _STOP,
    DEAD_LETTER_BURST,
    DEAD_LETTER_EVERY_S,
    ERROR_REPLY_BURST,
    ERROR_REPLY_EVERY_S,
    LINGER_S,
    STALL_S,
    Command,
    Item,
    Produced,
    Stats,
    Step,
)
from gateway.ingest.membership import ClusterMember, Control
from gateway.ingest.metrics import GatewayMetrics
from gateway.ingest.spool import Spool
from gateway.ingest.startcache import StartCache
from gateway.ingest.validate import Accepted, Registry, Rejected, Validator
from gateway.mqtt.transport import FastTransport, MqttError, PahoTransport, Transport, transport_options
from gateway.ratelimit import PerKeyLimiter
from gateway.settings import Settings
from gateway.storage import DatabaseUnavailable, Storage, StorageError
from gateway.tickets.dispatch import DispatchWorker
from twin import contract
from twin.alarms import AlarmEvent
from twin.community import Community
from twin.state import LiveState

__all__ = ["BrokerUnavailable", "Gateway", "GatewayFailed", "Item", "PortBusy", "Stats"]
log = logging.getLogger(__name__)


class GatewayFailed(Exception):
    """A thread the gateway cannot work without died; the process must exit so a supervisor restarts it."""


class PortBusy(Exception):
    """The metrics port is taken (checked before connecting to the broker)."""


class BrokerUnavailable(Exception):
    def __init__(self, url: str, reason: str) -> None:
        super().__init__(
            f"cannot reach the MQTT broker at {url}: {reason}. Start it (`gridtwin services up`) "
            "or set GRIDTWIN_MQTT_URL."
        )


class Gateway(ClusterMember):
    """Run with :meth:`start` / :meth:`stop`, or :meth:`run_forever`."""

    def __init__(self, settings: Settings, mqtt_url: str, db_url: str, *, mqtt5: bool = True) -> None:
        if settings.mqtt.shared_group:
            raise ValueError("GRIDTWIN_MQTT_SHARED_GROUP is not supported ($share splits a community's devices "
                             "across gateways, which breaks its rules): set GRIDTWIN_CLUSTER_ENABLED=true on each "
                             "gateway instead (docs/scale-out.md)")
        self.settings = settings
        self.mqtt_url = mqtt_url
        self.db_url = db_url
        # Cluster mode (docs/scale-out.md): this gateway runs only the communities whose lease it holds,
        # each through its own persistent MQTT session; off, it runs every community as one process.
        self.cluster = settings.cluster.enabled
        self.node = settings.cluster.node_id or f"{socket.gethostname()}-{os.getpid()}"
        self._epochs: dict[str, int] = {}  # cluster: community -> epoch of the lease we hold (writer thread)
        self._sessions: dict[str, Transport] = {}  # cluster: community -> its MQTT session
        self._sessions_lock = threading.Lock()
        self._control: queue.SimpleQueue[Control] = queue.SimpleQueue()  # take/drop, run by the writer
        self._ownership: Ownership | None = None
        # MQTT 3.1.1 unless asked for 5 (and the broker speaks it): what we need (persistent session,
        # QoS 1, $share groups on Mosquitto/EMQX) works in 3.1.1, which our fast transport speaks.
        self.mqtt5 = mqtt5 and settings.mqtt.protocol == "5"
        self.stats = Stats()
        gw = settings.gateway
        self._queue: queue.Queue[Item | object] = queue.Queue(maxsize=gw.queue_max)
        self._spool = Spool(settings.data_dir / "spool" / settings.mqtt.client_id, gw.spool_max_bytes)
        self._db_down_since: float | None = None
        self._last_db_try = 0.0
        self._saves = 0
        self._batch_started: float | None = None  # monotonic receive time of the oldest message being written
        self._replies = PerKeyLimiter(ERROR_REPLY_BURST, ERROR_REPLY_EVERY_S)
        self._dead_budget = PerKeyLimiter(DEAD_LETTER_BURST, DEAD_LETTER_EVERY_S)
        self.metrics = GatewayMetrics(self.stats, backlog=self._queue.qsize, spool_bytes=self._spool.size_bytes,
                                      health=self.health)
        self._cache_path = settings.data_dir / "cache" / f"{settings.mqtt.client_id}.json"
        self._cache: StartCache | None = None  # set when started without the database
        self._storage: Storage | None = None
        try:
            self._storage = self._connect_storage(settings.db.connect_timeout_s)
            self._storage.migrate()
            registry = Registry.build(self._storage.devices(), self._storage.metric_ids())
            newest = self._storage.newest_per_device()
        except DatabaseUnavailable as exc:
            # start anyway from what the last good start saved: validate, spool, raise alarms, catch up later
            self._cache = StartCache.load(self._cache_path)
            if self._cache is None:
                raise DatabaseUnavailable(db_url, f"{exc}; and no start-up cache at {self._cache_path} "
                                                  "(a gateway must have started once with the database)") from None
            log.warning("%s; starting from the registry saved %s, spooling until the database is back", exc,
                        self._cache.saved_at)
            self._db_down_since = time.monotonic()
            registry = Registry.build(self._cache.devices, self._cache.metrics)
            newest = {}
        self._validator = Validator(
            registry,
            root=settings.mqtt.topic_root,
            max_bytes=gw.max_payload_bytes,
            max_fields=gw.max_fields,
            max_future_s=gw.max_future_s,
            max_age_s=settings.db.retention_days * 86400.0,
            newest=newest,
        )
        self.live: dict[str, LiveState] = {}
        self.alarms: dict[str, AlarmService] = {}
        self.dispatch: DispatchWorker | None = None  # tickets for grid workers, started by start()
        self._filters = self._subscription_filters()
        self._client = self._make_client()
        self._all_communities: list[Community] = []
        if not self.cluster:
            self._restore_live_state()
        elif self._storage is not None:
            self._all_communities = [Community.model_validate(d) for c in self._storage.community_codes()
                                     if (d := self._storage.community_document(c)) is not None]
        self._save_start_cache()
        self._writer = threading.Thread(target=self._supervised_writer, name="gridtwin-writer", daemon=True)
        self.failed = threading.Event()  # set when the writer or the dispatch worker died
        self.failure: str | None = None
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._idle = threading.Event()

    def _connect_storage(self, timeout_s: float) -> Storage:
        db = self.settings.db
        return Storage.connect(self.db_url, schema=db.schema_name, retention_days=db.retention_days,
                               partitions_ahead_days=db.partitions_ahead_days, connect_timeout_s=timeout_s)

    # -- MQTT side ----------------------------------------------------------------------------------

    def _subscription_filters(self) -> list[str]:
        mq = self.settings.mqtt
        if self.cluster:  # the node's own connection only publishes; communities come through their sessions
            return [f"{mq.topic_root}/v{contract.SCHEMA_VERSION}/_gateway/{self.node}/status"]
        return [*contract.subscription(mq.topic_root), contract.alarm_commands_topic(mq.topic_root, "+")]

    def _make_client(self, community: str | None = None) -> Transport:
        """Our fast MQTT 3.1.1 transport unless MQTT 5 or GRIDTWIN_MQTT_TRANSPORT=paho asks for paho.

        ``community`` (cluster mode): that community's own persistent session, the same client id on every
        gateway; else the gateway's connection (in cluster mode only for publishing)."""
        mq = self.settings.mqtt
        if community is None:
            client_id, filters = mq.client_id, self._filters
            on_message: Callable[[str, bytes, int, int], None] = self._on_message
            on_connect: Callable[[], None] = self._on_connect
        else:
            client_id, filters = sessions.client_id(mq.topic_root, community), sessions.filters(mq.topic_root,
                                                                                                 community)
            on_message = lambda t, p, m, q: self._on_message(t, p, m, q, community)  # noqa: E731
            on_connect = lambda: log.info("community %s: session %s subscribed", community, client_id)  # noqa: E731
        subscriptions = [(f, int(mq.qos)) for f in filters]
        if mq.transport == "fast" and not self.mqtt5:
            return FastTransport(self.mqtt_url, client_id=client_id, subscriptions=subscriptions,
                                 on_message=on_message, on_connect=on_connect,
                                 on_disconnect=self._on_disconnect, keepalive=mq.keepalive,
                                 clean_session=False,  # persistent session: queued QoS1 messages survive our restart
                                 **transport_options(mq, self.mqtt_url, status=community is None))
        if mq.transport == "fast":
            log.info("MQTT 5 needs the paho transport: using paho")
        return PahoTransport(self.mqtt_url, client_id=client_id, subscriptions=subscriptions,
                             on_message=on_message, on_connect=on_connect,
                             on_disconnect=self._on_disconnect, keepalive=mq.keepalive, mqtt5=self.mqtt5,
                             **transport_options(mq, self.mqtt_url, status=community is None))

    def _on_connect(self) -> None:
        log.info("connected to %s, subscribed to %s", contract.BrokerAddress.parse(self.mqtt_url).redacted(),
                 self._filters)
        self._connected.set()

    def _on_disconnect(self, reason: str) -> None:
        self._connected.clear()
        if not self._stopping.is_set():
            log.warning("disconnected from broker (%s); reconnecting", reason)

    def _on_message(self, topic: str, payload: bytes, mid: int, qos: int, src: str | None = None) -> None:
        # Never let one message break intake: the validator turns every problem into a Rejected.
        self.stats.received += 1
        community = contract.parse_alarm_commands_topic(self.settings.mqtt.topic_root, topic)
        if community is not None:
            self._idle.clear()
            self._queue.put(Item(Command(community, payload), mid, qos, time.monotonic(), src))
            return
        try:
            result = self._validator.check(topic, payload, datetime.now(UTC))
        except Exception as exc:  # a bug in our validator must not stop the reader thread
            log.exception("validator failed on %s", topic)
            result = Rejected(topic, None, "internal", f"{type(exc).__name__}", payload[:1024], None)
        self._idle.clear()
        self._queue.put(Item(result, mid, qos, time.monotonic(), src))  # blocks when full: back-pressure

    # -- writer side --------------------------------------------------------------------------------

    def _supervised_writer(self) -> None:
        try:
            self._write_loop()
        except BaseException as exc:  # never a silent death with ingest frozen: exit, a supervisor restarts us
            log.critical("writer thread died; nothing is stored or acknowledged any more", exc_info=True)
            self._fail(f"writer thread died: {type(exc).__name__}: {exc}")

    def _fail(self, reason: str) -> None:
        if self.failure is None:
            self.failure = reason
        self.failed.set()

    def oldest_unwritten_s(self) -> float:
        """Age of the oldest message received but not yet committed or spooled (0 when none)."""
        now = time.monotonic()
        started = self._batch_started
        if started is not None:
            return now - started
        try:
            head = self._queue.queue[0]
        except IndexError:
            return 0.0
        return now - head.received if isinstance(head, Item) else 0.0

    def health(self) -> dict[str, Any]:
        """What /healthz reports: ok only while every thread lives and messages are being written."""
        writer = self._writer.is_alive()
        dispatch = self.dispatch.alive() if self.dispatch is not None else None
        oldest = self.oldest_unwritten_s()
        ok = writer and dispatch is not False and self.failure is None and oldest < STALL_S
        return {
            "status": "ok" if ok else "failing",
            "threads": {"writer": writer, "dispatch": dispatch},
            "broker_connected": self._connected.is_set(),
            "database": "up" if self._db_down_since is None else "down: spooling",
            "oldest_unwritten_s": round(oldest, 3),
            "backlog": self._queue.qsize(),
            "spool_bytes": self._spool.size_bytes(),
            "failure": self.failure,
            **({"node": self.node, "communities": sorted(self._epochs),
                "leases": self._ownership.error or "ok" if self._ownership else "not started"} if self.cluster else {}),
        }

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

    def _restore_live_state(self) -> None:
        """Rebuild each community's live state and alarm service: from the database, or (started during
        an outage) from the start-up cache. No blank cold start."""
        st, cache = self._storage, self._cache
        codes = st.community_codes() if st is not None else list(cache.communities) if cache else []
        for code in codes:
            if code in self.live:
                continue
            doc = st.community_document(code) if st is not None else cache.communities.get(code) if cache else None
            if doc is None:
                continue
            snapshot = st.load_rule_state(code) if st is not None else cache.rule_state.get(code) if cache else None
            self._add_community(Community.model_validate(doc), snapshot)

    def _add_community(self, community: Community, snapshot: dict[str, Any] | None) -> None:
        """Live state (from the database when it is up) and alarm service of one community."""
        state = LiveState(community)
        if self._storage is not None and self._db_down_since is None:
            state.restore(*self._storage.live_snapshot(community.id))
        self.live[community.id] = state
        self.alarms[community.id] = AlarmService(community, snapshot, root=self.settings.mqtt.topic_root,
                                                 publish=self._publish, live=state,
                                                 site_rules=self.settings.rules.files)

    def _save_start_cache(self) -> None:
        """Remember the registry, communities and engine snapshots for a start during a database outage."""
        st = self._storage
        if st is None:
            return
        try:
            communities = {c: d for c in st.community_codes() if (d := st.community_document(c)) is not None}
            cache = StartCache(list(self._validator.registry.devices.values()), dict(self._validator.registry.metrics),
                               communities, {code: svc.engine.snapshot() for code, svc in self.alarms.items()},
                               datetime.now(UTC).isoformat())
            cache.save(self._cache_path)
        except (StorageError, OSError) as exc:
            log.warning("start-up cache not saved: %s", exc)

    def _apply_live(self, items: list[Accepted]) -> None:
        received = datetime.now(UTC)  # heartbeats count from receipt: a slow device clock is not silence
        for item in items:
            state = self.live.get(item.device.community)
            if state is None:
                continue
            code = item.device.code
            for ts, values in item.samples:
                state.reading(code, ts, values, received=received)
            for ts, _dev, ev, st, _detail, _seq in item.events:
                state.event(code, ts, ev, st, received=received)
            for _dev, st, _reason, at in item.statuses:
                if not item.samples and not item.events:  # explicit status message (or last will)
                    state.status(code, at, online=st == "online", received=received)

    def _run_rules(self, items: list[Accepted], commands: list[Command]) -> Produced:
        """Feed facts and operators' commands to each community's rules; return the alarm changes."""
        events: dict[str, list[AlarmEvent]] = {}
        for item in items:
            svc = self.alarms.get(item.device.community)
            if svc is None:
                continue
            code = item.device.code
            out = events.setdefault(item.device.community, [])
            if item.samples:
                out += svc.on_readings(code, item.samples)
            for ts, _dev, ev, st, _detail, _seq in item.events:
                out += svc.on_event(code, ts, ev, st)
            if not item.samples and not item.events:
                for _dev, st, _reason, at in item.statuses:
                    out += svc.on_status(code, at, st == "online")
        for cmd in commands:
            svc = self.alarms.get(cmd.community)
            if svc is not None:
                events.setdefault(cmd.community, []).extend(svc.command(cmd.payload))
        return [(self.alarms[code], evs) for code, evs in events.items() if evs]

    def _tick_rules(self) -> None:
        produced: Produced = [(svc, evs) for svc in self.alarms.values() if (evs := svc.tick())]
        if produced:
            try:
                self._commit(WriteBatch([], [], [], [], []), Step(produced))
            except Fenced as exc:
                self._lost(exc.communities)

    def _save_rule_state(self) -> None:
        if self._storage is None or self._db_down_since is not None or self._spool.pending():
            return  # the spool holds newer snapshots with its alarm writes
        for code, svc in list(self.alarms.items()):
            self._save_one(code, svc)
        self._saves += 1
        if self._saves % 6 == 0:  # every minute: what a start during an outage would begin from
            self._save_start_cache()

    def _save_one(self, code: str, svc: AlarmService) -> None:
        """Save one community's rule state; in cluster mode only while we hold its lease (fenced)."""
        assert self._storage is not None
        if not self.cluster:
            svc.save_state(self._storage)
            return
        try:
            with self._storage.conn.transaction():
                check_fence(self._storage.conn, self.node, {code: self._epochs.get(code, -1)})
                svc.save_state(self._storage)
        except Fenced as exc:
            self._lost(exc.communities)

    def _reload_rules(self) -> None:
        for svc in self.alarms.values():
            svc.maybe_reload()

    def _publish(self, topic: str, payload: bytes, qos: int) -> None:
        self._client.publish(topic, payload, qos=qos)

    def _restore_new_communities(self) -> None:
        if not self.cluster and self._storage is not None and self._db_down_since is None \
                and set(self._storage.community_codes()) - set(self.live):
            self._restore_live_state()

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

    def _ack(self, items: list[Item]) -> None:
        if not self.cluster:
            self._client.ack_many([i.mid for i in items if i.qos > 0])
            return
        by_session: dict[str, list[int]] = {}
        for i in items:
            if i.qos > 0 and i.src is not None:
                by_session.setdefault(i.src, []).append(i.mid)
        with self._sessions_lock:
            clients = {c: self._sessions.get(c) for c in by_session}
        for c, mids in by_session.items():
            client = clients[c]
            if client is not None:  # a session already closed: the next owner gets these again (dropped as duplicates)
                client.ack_many(mids)

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
            if self._spool.append(batch.with_alarms([*batch.alarms, *step.writes(set())])):
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

    def _write(self, batch: WriteBatch, step: Step | None = None) -> None:
        """One transaction; on a data error, again with every device isolated (never raises for data)."""
        t0 = time.perf_counter()
        if self._storage is None:
            raise DatabaseUnavailable(self.db_url, "not connected yet")
        try:
            result = self._storage.write_batch(batch, self._rules_step(step))
        except DatabaseUnavailable:
            raise
        except StorageError as exc:
            self.stats.poisoned_batches += 1
            log.error("a batch of %d messages failed for a data reason (%s): writing it device by device", len(batch),
                      exc)
            if step is not None and step.done:  # the rules already ran on it: keep what they produced
                batch, step = batch.with_alarms([*batch.alarms, *step.writes(set())]), None
            result = self._storage.write_batch(batch, self._rules_step(step), isolate=True)
            for unit, why in result.poisoned:
                log.error("stored as a dead letter (storage_rejected): %s: %s", unit.topic_hint(), why)
            self.stats.rejected["storage_rejected"] += len(result.poisoned)
        self.stats.duplicates += result.duplicates
        self.stats.last_write_s = time.perf_counter() - t0
        self.metrics.write_seconds.observe(self.stats.last_write_s)

    def _rules_step(self, step: Step | None) -> Callable[[set[KeyRow]], list[AlarmWrites]] | None:
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

    def _tell_device(self, r: Rejected) -> None:
        assert r.device_topic is not None
        payload = contract.error_bytes(r.reason, r.detail, topic=r.topic, seq=r.seq, at=r.at or datetime.now(UTC))
        self._client.publish(r.device_topic, payload, qos=0)

    # -- lifecycle ----------------------------------------------------------------------------------

    def _start_dispatch(self) -> None:
        # cluster mode: every gateway dispatches every community's alarm events (each exactly once: the
        # outbox rows are taken FOR UPDATE), so tickets flow while a community changes hands
        communities = self._all_communities if self.cluster else [svc.community for svc in self.alarms.values()]
        if self.settings.tickets.enabled and communities:
            self.dispatch = DispatchWorker(self.settings, self.db_url, communities, self._publish, on_fatal=self._fail)
            self.dispatch.start()

    def start(self, timeout_s: float = 10.0) -> None:
        addr = contract.BrokerAddress.parse(self.mqtt_url)
        port = self.settings.gateway.metrics_port
        if port is not None:  # before taking over the broker session: a busy port must not cost messages
            try:
                self.metrics.serve(port)
            except OSError as exc:
                raise PortBusy(f"cannot serve /metrics on port {port}: {exc.strerror or exc}") from None
        # Long-lived start-up objects (registry, community, live state) need no more GC passes, and
        # a busy intake makes many short-lived tuples: collect young objects less often.
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        self._writer.start()
        self._start_dispatch()
        try:
            self._client.start(timeout_s)
        except MqttError as exc:
            self._shutdown_writer()
            if self.dispatch is not None:
                self.dispatch.stop()
            self.metrics.close()
            raise BrokerUnavailable(addr.redacted(), str(exc) or type(exc).__name__) from None
        if not self._connected.wait(timeout_s):
            self.stop()
            raise BrokerUnavailable(addr.redacted(), "no CONNACK (wrong credentials or not an MQTT broker?)")
        if self.cluster:
            cl, db = self.settings.cluster, self.settings.db
            store = LeaseStore(self.db_url, schema=db.schema_name, holder=self.node, lease_s=cl.lease_s,
                               connect_timeout_s=min(db.connect_timeout_s, cl.renew_s))
            self._ownership = Ownership(store, self, renew_s=cl.renew_s, lease_s=cl.lease_s, on_fatal=self._fail)
            self._ownership.start()
            log.info("cluster node %s: taking its share of communities (lease %.0f s, renewed every %.1f s)",
                     self.node, cl.lease_s, cl.renew_s)

    def wait_idle(self, timeout_s: float = 10.0) -> bool:
        """True once everything received so far has been written (for tests and demo summaries)."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self._queue.empty() and self._idle.is_set():
                return True
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._ownership is not None:  # hand every community over cleanly while the writer still runs
            self._ownership.stop(release=True)
        with self._sessions_lock:
            left, self._sessions = list(self._sessions.values()), {}
        for client in left:
            client.stop()
        self._client.stop()
        self._shutdown_writer()
        if self.dispatch is not None:
            self.dispatch.stop()
        self.metrics.close()
        if self._storage is not None:
            self._storage.close()

    def _shutdown_writer(self) -> None:
        if self._writer.is_alive():
            self._queue.put(_STOP)
            self._writer.join(timeout=30)

    def run_forever(self, stop: threading.Event, report_every_s: float = 10.0) -> None:
        """Run until ``stop`` is set; raise :class:`GatewayFailed` if a vital thread died meanwhile."""
        self.start()
        last = dict(self.stats.snapshot())
        next_report = time.monotonic() + report_every_s
        while not stop.wait(0.5):
            if self.failed.is_set():
                self.stop()
                raise GatewayFailed(self.failure or "a gateway thread died")
            if time.monotonic() >= next_report:
                next_report = time.monotonic() + report_every_s
                snap = self.stats.snapshot()
                if snap != last:
                    log.info("gateway: %s", snap)
                    last = snap
        self.stop()
