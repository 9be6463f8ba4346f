"""Which communities this gateway runs: take, renew, rebalance and give up leases. Does I/O.

One thread per gateway. Every ``renew_s`` it renews its heartbeat and its leases; a lease it no longer
holds (taken over while it was paused or cut off) makes it stop that community at once, without saving.
Then it compares what it holds with its fair share, ``ceil(communities / live gateways)``: above it,
it gives one community up (cleanly: the host flushes and saves it, then the lease is released, so
the next owner starts from the saved state); below it, it takes free communities (never held, expired,
released) one atomic statement each. When it cannot reach the database it keeps running its
communities until its own deadline (the last successful renewal + ``lease_s - renew_s``, measured on
its monotonic clock), then stops them all, before any peer can take them over.

The host (the gateway) does the work of starting and stopping a community's pipeline; see
:class:`Host`. Both calls block until done.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

import psycopg

from gateway.cluster.leases import LeaseStore

log = logging.getLogger(__name__)


class Host(Protocol):
    def take(self, community: str, epoch: int) -> bool:
        """Start running ``community`` (restore its state, open its MQTT session); False if it could not."""

    def drop(self, community: str, *, save: bool) -> None:
        """Stop running ``community``: close its session, then (``save``) write its rule state, then forget it."""


class Ownership:
    def __init__(self, store: LeaseStore, host: Host, *, renew_s: float, lease_s: float,
                 on_fatal: Callable[[str], None] | None = None) -> None:
        self.on_fatal = on_fatal
        self.store = store
        self.host = host
        self.renew_s = renew_s
        self.lease_s = lease_s
        self.held: dict[str, int] = {}  # community -> epoch of our lease
        self._lock = threading.Lock()  # held, between the loop and stop()
        self._stop = threading.Event()
        self._renewed = time.monotonic()  # start of the last renewal that reached the database
        self._thread = threading.Thread(target=self._supervised, name="gridtwin-ownership", daemon=True)
        self.rounds = 0
        self.error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, *, release: bool = True, timeout_s: float = 30.0) -> None:
        """End the loop; then (``release``) stop every community cleanly and release its lease at once,
        so peers take over without waiting for expiry."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)
        with self._lock:
            held, self.held = dict(self.held), {}
        for community, epoch in sorted(held.items()):
            self.host.drop(community, save=release)
            if release:
                try:
                    self.store.release(community, epoch)
                    log.info("released community %s (epoch %d)", community, epoch)
                except psycopg.Error as exc:
                    log.warning("lease of %s not released (%s): it expires in %.0f s", community,
                                str(exc).strip().splitlines()[0] if str(exc).strip() else exc, self.lease_s)
                    self.store.reset()
        if release:
            try:
                self.store.leave()
            except psycopg.Error:
                self.store.reset()
        self.store.close()

    # -- the loop ----------------------------------------------------------------------------------

    def _supervised(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # never a silent death while holding leases: the process must exit
            log.critical("ownership thread died", exc_info=True)
            if self.on_fatal is not None:
                self.on_fatal(f"ownership thread died: {type(exc).__name__}: {exc}")

    def _run(self) -> None:
        first = True
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                if first:
                    self.store.ensure_tables()
                    self.store.heartbeat()
                    self._renewed = started
                    first = False
                    # peers starting with us show up within one renewal: do not grab everything first
                    self._stop.wait(self.renew_s)
                    continue
                self.round()
                self.error = None
            except psycopg.Error as exc:
                self.error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                log.warning("leases: %s", self.error)
                self.store.reset()
            self._check_deadline()
            self._stop.wait(max(0.0, self.renew_s - (time.monotonic() - started)))

    def round(self) -> None:
        """One renewal and rebalancing step (public for tests)."""
        self._renew()
        if self._stop.is_set():
            return
        share = self.store.fair_share()
        with self._lock:
            held = dict(self.held)
        if len(held) > share:
            community = max(held)
            log.info("holding %d communities, fair share %d: handing %s over", len(held), share, community)
            self.host.drop(community, save=True)
            with self._lock:
                self.held.pop(community, None)
            self.store.release(community, held[community])
        elif len(held) < share:
            for community in self.store.free():
                if len(self.held) >= share or self._stop.is_set():
                    break
                if community in held:
                    continue
                epoch = self.store.acquire(community)
                if epoch is None:
                    continue  # a peer was faster
                if not self.host.take(community, epoch):
                    self.store.release(community, epoch)
                    continue
                with self._lock:
                    self.held[community] = epoch
                log.info("took community %s (epoch %d)", community, epoch)
                if time.monotonic() - self._renewed > self.renew_s:
                    self._renew()
        self.rounds += 1

    def _renew(self) -> None:
        started = time.monotonic()
        self.store.heartbeat()
        with self._lock:
            held = dict(self.held)
        kept = self.store.renew(held)
        self._renewed = started
        for community in sorted(set(held) - kept):
            log.warning("lease of %s lost (taken over at a new epoch): stopping it without saving", community)
            with self._lock:
                self.held.pop(community, None)
            self.host.drop(community, save=False)

    def _check_deadline(self) -> None:
        """Not renewed for ``lease_s - renew_s``: a peer may take our leases soon; stop everything first."""
        if time.monotonic() - self._renewed < self.lease_s - self.renew_s:
            return
        with self._lock:
            held, self.held = dict(self.held), {}
        for community in sorted(held):
            log.warning("lease of %s not renewed for %.0f s (database unreachable?): stopping it", community,
                        time.monotonic() - self._renewed)
            self.host.drop(community, save=False)
