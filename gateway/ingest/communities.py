"""The communities the gateway runs: each one's live state and rules engine, on the writer thread. Does I/O.

Restored at start from the database (or, started during an outage, from the start-up cache), fed with
every batch's facts (:meth:`Communities._apply_live`, :meth:`Communities._run_rules`), ticked every
second for the rules' timers, and saved every 10 s (in cluster mode under the lease's fence). A
community loaded while the gateway runs is picked up within 30 s. Mixin of
:class:`gateway.ingest.pipeline.Gateway`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.alarms.service import AlarmService
from gateway.cluster.leases import Fenced, check_fence
from gateway.ingest.batch import WriteBatch
from gateway.ingest.items import Command, Produced, Step
from gateway.ingest.spool import Spool
from gateway.ingest.startcache import StartCache
from gateway.ingest.validate import Accepted, Validator
from gateway.settings import Settings
from gateway.storage import Storage, StorageError
from twin.alarms import AlarmEvent
from twin.community import Community
from twin.state import LiveState

log = logging.getLogger(__name__)


class Communities:
    """Live state and rules of :class:`gateway.ingest.pipeline.Gateway` (see the module doc)."""

    settings: Settings
    cluster: bool
    node: str
    live: dict[str, LiveState]
    alarms: dict[str, AlarmService]
    _storage: Storage | None
    _cache: StartCache | None
    _cache_path: Path
    _db_down_since: float | None
    _spool: Spool
    _saves: int
    _validator: Validator
    _epochs: dict[str, int]

    if TYPE_CHECKING:  # the other parts of the gateway
        def _publish(self, topic: str, payload: bytes, qos: int) -> None: ...
        def _commit(self, batch: WriteBatch, step: Step) -> bool: ...
        def _lost(self, communities: set[str]) -> None: ...

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
            for ts, _dev, ev, st, detail, _seq in item.events:
                out += svc.on_event(code, ts, ev, st, detail)
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

    def _restore_new_communities(self) -> None:
        if not self.cluster and self._storage is not None and self._db_down_since is None \
                and set(self._storage.community_codes()) - set(self.live):
            self._restore_live_state()

