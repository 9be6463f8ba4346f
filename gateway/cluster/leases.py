"""Community leases in PostgreSQL: who runs which community, with an epoch fencing token. Does I/O.

One row per community in ``community_leases``: ``holder`` runs that community (its MQTT session, rules,
live state) until ``expires_at`` unless it renews. Taking a lease is one atomic statement (an
``INSERT ... ON CONFLICT DO UPDATE ... WHERE expires_at < now()``), so two gateways can never both
get it; every takeover bumps ``epoch``. A gateway writes a community's alarms and rule state only in a
transaction that first checks, under a share lock on the lease row, that it still holds that epoch
(:func:`check_fence`): a stale holder (paused, partitioned, slow to notice) cannot overwrite what
the new holder does, and a takeover waits for a fenced write in progress to commit.

Live gateways announce themselves in ``gateway_nodes`` (one heartbeat row each, with the same
expiry), so each can compute its fair share: ``ceil(communities / live gateways)``.

All times are the database's (``now()``): gateways' clocks do not matter, only the database's.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

# The migrations 0010_community_leases and 0011_gateway_nodes create these tables when the gateway's
# storage starts; the lease store also creates them (IF NOT EXISTS) so it can run on a schema that
# storage has not migrated yet (a gateway whose database was down at start, the lease tests).
DDL = """
CREATE TABLE IF NOT EXISTS community_leases (
    community    text PRIMARY KEY,
    holder       text NOT NULL,
    epoch        bigint NOT NULL DEFAULT 1,
    acquired_at  timestamptz NOT NULL DEFAULT now(),
    renewed_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS gateway_nodes (
    node        text PRIMARY KEY,
    started_at  timestamptz NOT NULL DEFAULT now(),
    seen_at     timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
"""


class Fenced(Exception):
    """A write for communities whose lease this gateway no longer holds (at that epoch): refused.

    Deliberately not a ``psycopg.Error`` nor a ``ValueError``: storage does not mistake it for bad data.
    """

    def __init__(self, communities: set[str]) -> None:
        super().__init__(f"lease lost for {', '.join(sorted(communities))}: write refused (fenced)")
        self.communities = communities


@dataclass(frozen=True, slots=True)
class Lease:
    community: str
    holder: str
    epoch: int
    expires_at: datetime


def fenced_out(conn: psycopg.Connection[Any], holder: str, epochs: Mapping[str, int]) -> set[str]:
    """Inside the caller's transaction: the communities of ``epochs`` that ``holder`` does not hold at that
    epoch (empty: it holds them all). The lease rows stay share-locked until the transaction ends, so no
    takeover commits in between (a takeover waits, then sees our writes)."""
    if not epochs:
        return set()
    codes = sorted(epochs)
    rows = conn.execute(
        "SELECT community, holder, epoch FROM community_leases WHERE community = ANY(%s) "
        "ORDER BY community FOR SHARE", (codes,)).fetchall()
    held = {str(c): (str(h), int(e)) for c, h, e in rows}
    return {c for c in codes if held.get(c) != (holder, epochs[c])}


def check_fence(conn: psycopg.Connection[Any], holder: str, epochs: Mapping[str, int]) -> None:
    """Inside the caller's transaction: raise :class:`Fenced` unless ``holder`` holds every community of
    ``epochs`` at that epoch (:func:`fenced_out`; the lease rows stay share-locked until the end)."""
    lost = fenced_out(conn, holder, epochs)
    if lost:
        raise Fenced(lost)


class LeaseStore:
    """The lease and heartbeat rows of one gateway (``holder``), on its own connection (one thread)."""

    def __init__(self, url: str, *, schema: str, holder: str, lease_s: float, connect_timeout_s: float = 5.0) -> None:
        self.url = url
        self.schema = schema
        self.holder = holder
        self.lease_s = lease_s
        self.connect_timeout_s = connect_timeout_s
        self._conn: psycopg.Connection[Any] | None = None

    # -- connection --------------------------------------------------------------------------------

    @property
    def conn(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.url, autocommit=True,
                                         connect_timeout=max(1, round(self.connect_timeout_s)),
                                         options=f"-c search_path={self.schema},public",
                                         application_name=f"gridtwin-leases-{self.holder}"[:63])
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def reset(self) -> None:
        """Drop the connection after an error; the next call connects again."""
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    def ensure_tables(self) -> None:
        with self.conn.transaction():
            self.conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
            self.conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"gridtwin-leases:{self.schema}",))
            self.conn.execute(DDL)

    # -- gateways ----------------------------------------------------------------------------------

    def heartbeat(self) -> None:
        self.conn.execute(
            "INSERT INTO gateway_nodes (node, started_at, seen_at, expires_at) "
            "VALUES (%s, now(), now(), now() + make_interval(secs => %s)) "
            "ON CONFLICT (node) DO UPDATE SET seen_at = now(), expires_at = excluded.expires_at",
            (self.holder, self.lease_s))

    def leave(self) -> None:
        """This gateway stops: peers count it out at once (they take its communities' fair share)."""
        self.conn.execute("DELETE FROM gateway_nodes WHERE node = %s", (self.holder,))

    def live_nodes(self) -> list[str]:
        rows = self.conn.execute("SELECT node FROM gateway_nodes WHERE expires_at > now() ORDER BY node").fetchall()
        return [str(r[0]) for r in rows]

    def communities(self) -> list[str]:
        """Every community of the registry (what the cluster shares)."""
        return [str(r[0]) for r in self.conn.execute("SELECT code FROM communities ORDER BY code").fetchall()]

    def fair_share(self) -> int:
        """How many communities this gateway may hold: ceil(communities / live gateways, us included)."""
        nodes = set(self.live_nodes()) | {self.holder}
        return math.ceil(len(self.communities()) / len(nodes))

    # -- leases ------------------------------------------------------------------------------------

    def leases(self) -> list[Lease]:
        rows = self.conn.execute(
            "SELECT community, holder, epoch, expires_at FROM community_leases ORDER BY community").fetchall()
        return [Lease(str(c), str(h), int(e), x) for c, h, e, x in rows]

    def free(self) -> list[str]:
        """Communities nobody holds: no lease row yet, or an expired (or released) one."""
        rows = self.conn.execute(
            "SELECT c.code FROM communities c LEFT JOIN community_leases l ON l.community = c.code "
            "WHERE l.community IS NULL OR l.expires_at < now() ORDER BY c.code").fetchall()
        return [str(r[0]) for r in rows]

    def acquire(self, community: str) -> int | None:
        """Take ``community`` if nobody holds it (one atomic statement); its new epoch, or None."""
        row = self.conn.execute(
            "INSERT INTO community_leases (community, holder, epoch, acquired_at, renewed_at, expires_at) "
            "VALUES (%s, %s, 1, now(), now(), now() + make_interval(secs => %s)) "
            "ON CONFLICT (community) DO UPDATE SET holder = excluded.holder, epoch = community_leases.epoch + 1, "
            "acquired_at = now(), renewed_at = now(), expires_at = excluded.expires_at "
            "WHERE community_leases.expires_at < now() RETURNING epoch",
            (community, self.holder, self.lease_s)).fetchone()
        return int(row[0]) if row else None

    def renew(self, held: Mapping[str, int]) -> set[str]:
        """Extend the leases we hold at these epochs; return the communities we still hold.

        A lease that expired but nobody took is still ours (same epoch: nobody wrote in between)."""
        if not held:
            return set()
        codes = sorted(held)
        rows = self.conn.execute(
            "UPDATE community_leases l SET renewed_at = now(), expires_at = now() + make_interval(secs => %s) "
            "FROM unnest(%s::text[], %s::bigint[]) AS h(community, epoch) "
            "WHERE l.community = h.community AND l.epoch = h.epoch AND l.holder = %s RETURNING l.community",
            (self.lease_s, codes, [held[c] for c in codes], self.holder)).fetchall()
        return {str(r[0]) for r in rows}

    def release(self, community: str, epoch: int) -> bool:
        """Give ``community`` up now (expired at once, epoch kept for the fencing of the next holder)."""
        row = self.conn.execute(
            "UPDATE community_leases SET expires_at = now() - interval '1 second' "
            "WHERE community = %s AND holder = %s AND epoch = %s RETURNING 1",
            (community, self.holder, epoch)).fetchone()
        return row is not None
