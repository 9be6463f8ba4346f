"""The gateway service: MQTT in, validation, batched binary COPY out. Does I/O.

:class:`Gateway` builds and supervises the parts, each in its own module:

- receive side (:mod:`gateway.ingest.receive`): the MQTT transport's reader thread validates each
  message and puts it on a bounded queue (back-pressure to the broker when full); acknowledgements and
  error replies go back through it;
- write path (:mod:`gateway.ingest.writer`): one writer thread owns the database connection, drains the
  queue into batches and commits each in one transaction (COPY, duplicates dropped, the rules' alarm
  writes with them), then acknowledges;
- spool path (:mod:`gateway.ingest.outage`): while the database is down the writer spools batches to
  disk, and replays them when it is back;
- communities (:mod:`gateway.ingest.communities`): each community's live state and rules engine;
- cluster mode (:mod:`gateway.ingest.membership`): take and drop communities on the ownership
  thread's demand (docs/scale-out.md).

This module keeps construction, health and the lifecycle (start, stop, supervision of the threads).
"""

from __future__ import annotations

import gc
import logging
import os
import queue
import socket
import threading
import time
from typing import Any

from gateway.alarms.service import AlarmService
from gateway.cluster.leases import LeaseStore
from gateway.cluster.ownership import Ownership
from gateway.ingest.communities import Communities
from gateway.ingest.items import (
    _STOP,
    DEAD_LETTER_BURST,
    DEAD_LETTER_EVERY_S,
    ERROR_REPLY_BURST,
    ERROR_REPLY_EVERY_S,
    STALL_S,
    Item,
    Stats,
)
from gateway.ingest.membership import ClusterMember, Control
from gateway.ingest.metrics import GatewayMetrics
from gateway.ingest.outage import Outage
from gateway.ingest.receive import Receiver
from gateway.ingest.spool import Spool
from gateway.ingest.startcache import StartCache
from gateway.ingest.validate import Registry, Validator
from gateway.ingest.writer import Writer
from gateway.mqtt.transport import MqttError, Transport
from gateway.notify.service import Notifier
from gateway.ratelimit import PerKeyLimiter
from gateway.settings import Settings
from gateway.storage import DatabaseUnavailable, Storage
from gateway.tickets.dispatch import DispatchWorker
from twin import contract
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


class Gateway(Receiver, Writer, Outage, Communities, ClusterMember):
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
        self._sessions_lost_closed = 0  # cluster: lost sessions counted by community sessions since closed
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
                                      health=self.health, sessions_lost=self.sessions_lost)
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
        self.notifier: Notifier | None = None  # ticket messages to webhooks, when any is configured
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

    def sessions_lost(self) -> int:
        """MQTT reconnects that found no session on the broker, so what it had queued for us is lost: the
        gateway's own connection and (cluster mode) every community session, closed ones included."""
        with self._sessions_lock:
            return self._client.sessions_lost + self._sessions_lost_closed + sum(
                s.sessions_lost for s in self._sessions.values())

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

    # -- lifecycle ----------------------------------------------------------------------------------

    def _start_dispatch(self) -> None:
        # cluster mode: every gateway dispatches every community's alarm events (each exactly once: the
        # outbox rows are taken FOR UPDATE), so tickets flow while a community changes hands. The worker
        # follows the registry, so it runs even with none known yet (a start from the cache, an empty one)
        communities = self._all_communities if self.cluster else [svc.community for svc in self.alarms.values()]
        if self.settings.tickets.enabled:
            self.dispatch = DispatchWorker(self.settings, self.db_url, communities, self._publish, on_fatal=self._fail)
            self.dispatch.start()
        if self.settings.tickets.enabled and (self.settings.notify.webhooks or self.settings.notify.web_push):
            self.notifier = Notifier(self.settings, self.mqtt_url, db_url=self.db_url, shared=self.cluster)

    def start(self, timeout_s: float = 10.0) -> None:
        addr = contract.BrokerAddress.parse(self.mqtt_url)
        port = self.settings.gateway.metrics_port
        if port is not None:  # before taking over the broker session: a busy port must not cost messages
            try:
                self.metrics.serve(port)
            except OSError as exc:
                self._close_storage()
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
            self._close_storage()
            raise BrokerUnavailable(addr.redacted(), str(exc) or type(exc).__name__) from None
        if not self._connected.wait(timeout_s):
            self.stop()
            raise BrokerUnavailable(addr.redacted(), "no CONNACK (wrong credentials or not an MQTT broker?)")
        if self.notifier is not None:  # once the broker is there: its own session, on the same broker
            self.notifier.start(timeout_s)
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
        if self.notifier is not None:
            self.notifier.stop()
        self.metrics.close()
        self._close_storage()

    def _close_storage(self) -> None:
        """The writer's connection, at the end (also when start fails: nothing else would close it)."""
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
