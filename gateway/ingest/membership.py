"""The gateway's side of cluster mode: start and stop one community's pipeline on demand. Does I/O.

:class:`gateway.cluster.ownership.Ownership` (its own thread) decides which communities this gateway
runs and calls :meth:`ClusterMember.take` / :meth:`ClusterMember.drop`. The community's state (rules
engine, live state) belongs to the writer thread, so both hand the state work to the writer through a
control queue it serves between batches, and wait for it:

- take: the writer restores the community's live state and rules engine from the database (silence
  clocks paused over the takeover gap, :func:`gateway.cluster.sessions.pause_silence`) and records
  the lease epoch (refused while the spool still holds batches: they are replayed first, so a restore
  includes what they commit); then the community's own persistent MQTT session is opened, and the broker hands
  over what it queued while nobody held it.
- drop: the session is closed first (nothing more arrives, no later acknowledgement reaches the broker),
  then the writer saves the rule state under the fence (``save``: a clean hand-over) and forgets the
  community. Messages of that community still queued in memory are then neither written nor
  acknowledged: the broker gives them to the next owner, whose rules see them once.

A write the fence refuses (:class:`gateway.cluster.leases.Fenced`: the lease was taken over) makes the
writer drop those communities at once, without saving (:meth:`ClusterMember._lost`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.cluster import sessions
from gateway.mqtt.transport import MqttError, Transport
from gateway.storage import StorageError
from twin.community import Community

if TYPE_CHECKING:
    from gateway.alarms.service import AlarmService
    from gateway.ingest.spool import Spool
    from gateway.settings import Settings
    from gateway.storage import Storage
    from twin.state import LiveState

log = logging.getLogger(__name__)
CONTROL_WAIT_S = 30.0  # longest a take or drop waits for the writer


@dataclass(eq=False)
class Control:
    kind: str  # "take" or "drop"
    community: str
    epoch: int = 0
    save: bool = False
    ok: bool = False
    cancelled: bool = False
    done: threading.Event = field(default_factory=threading.Event)


class ClusterMember:
    """Mixin of :class:`gateway.ingest.pipeline.Gateway` for cluster mode (see the module doc)."""

    settings: Settings
    node: str
    alarms: dict[str, AlarmService]
    live: dict[str, LiveState]
    _storage: Storage | None
    _db_down_since: float | None
    _spool: Spool
    _epochs: dict[str, int]
    _sessions: dict[str, Transport]
    _sessions_lock: threading.Lock
    _sessions_lost_closed: int
    _control: queue.SimpleQueue[Control]
    _writer: threading.Thread

    if TYPE_CHECKING:  # the other parts of the gateway
        def _make_client(self, community: str | None = None) -> Transport: ...
        def _add_community(self, community: Community, snapshot: dict[str, Any] | None) -> None: ...
        def _save_one(self, code: str, svc: AlarmService) -> None: ...

    # -- called by the ownership thread --------------------------------------------------------------

    def take(self, community: str, epoch: int) -> bool:
        req = self._ask(Control("take", community, epoch))
        if not req.ok:
            return False
        client = self._make_client(community)
        with self._sessions_lock:
            self._sessions[community] = client
        try:
            client.start(10.0)
        except MqttError as exc:
            log.warning("community %s: cannot open its MQTT session (%s); giving it back", community, exc)
            self.drop(community, save=False)
            return False
        return True

    def drop(self, community: str, *, save: bool) -> None:
        client = self._forget_session(community)
        if client is not None:
            client.stop()
        self._ask(Control("drop", community, save=save))
        log.info("community %s stopped%s", community, " (rule state saved)" if save else "")

    def _forget_session(self, community: str) -> Transport | None:
        """Take ``community``'s MQTT session out of the table (the caller stops it), keeping its count of
        lost sessions for ``gridtwin_mqtt_sessions_lost``."""
        with self._sessions_lock:
            client = self._sessions.pop(community, None)
            if client is not None:
                self._sessions_lost_closed += client.sessions_lost
        return client

    def _ask(self, req: Control) -> Control:
        if not self._writer.is_alive():
            req.ok = False
            return req
        self._control.put(req)
        if not req.done.wait(CONTROL_WAIT_S):
            req.cancelled = True
            log.warning("the writer did not %s community %s within %.0f s", req.kind, req.community, CONTROL_WAIT_S)
            if req.kind == "take":
                self._control.put(Control("drop", req.community))  # in case it does it later
        return req

    # -- the writer thread ---------------------------------------------------------------------------

    def _serve_control(self) -> None:
        while True:
            try:
                req = self._control.get_nowait()
            except queue.Empty:
                return
            if req.kind == "take" and not req.cancelled:
                req.ok = self._take_now(req.community, req.epoch)
            elif req.kind == "drop":
                self._drop_now(req.community, save=req.save)
                req.ok = True
            req.done.set()

    def _take_now(self, code: str, epoch: int) -> bool:
        st = self._storage
        if st is None or self._db_down_since is not None:
            return False
        if self._spool.pending():  # replayed first, under the epochs it was spooled at (a restore must see it)
            log.info("community %s not taken yet: the spool is being replayed", code)
            return False
        try:
            doc = st.community_document(code)
            if doc is None:
                return False
            snapshot = sessions.pause_silence(st.load_rule_state(code), time.time())
            self.live.pop(code, None)
            self._add_community(Community.model_validate(doc), snapshot)
        except (StorageError, ValueError) as exc:
            log.error("community %s not taken: %s", code, exc)
            self.live.pop(code, None)
            self.alarms.pop(code, None)
            return False
        self._epochs[code] = epoch
        return True

    def _drop_now(self, code: str, *, save: bool) -> None:
        svc = self.alarms.get(code)
        if save and svc is not None and code in self._epochs and self._storage is not None \
                and self._db_down_since is None:
            try:
                self._save_one(code, svc)
            except StorageError as exc:
                log.warning("community %s: rule state not saved at hand-over: %s", code, exc)
        self._epochs.pop(code, None)
        self.alarms.pop(code, None)
        self.live.pop(code, None)

    def _lost(self, communities: set[str]) -> None:
        """A fenced write was refused: another gateway holds these now. Stop them at once, save nothing."""
        for code in sorted(communities):
            if code not in self._epochs:
                continue
            log.warning("community %s: lease lost (a write was fenced); stopping it", code)
            self._drop_now(code, save=False)
            client = self._forget_session(code)
            if client is not None:  # not on this thread: a session's reader may wait on our full queue
                threading.Thread(target=client.stop, name=f"gridtwin-close-{code}", daemon=True).start()
