"""Rate limits of the residents' public POSTs shared by every gateway: a token bucket per (limit, client) in
PostgreSQL (migration ``0020_public_limits.sql``). Does I/O.

The same arithmetic as :class:`gateway.ratelimit.PerKeyLimiter` (``burst`` at once, then one every ``every_s``),
but one bucket for all gateways behind a load balancer, so a resident gets the limit once, not once per gateway:

- one statement per :meth:`SharedLimiter.take` (``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` enough tokens
  ``RETURNING``): the row lock orders concurrent takes, no read-then-write race;
- the database's clock (``now()``), so gateways whose clocks differ agree;
- the client key (the address the route sees: ``request.client.host``, which the web server takes from
  ``X-Forwarded-For`` only behind a trusted proxy) is stored as SHA-256 of a random per-database salt
  (``public_limit_salt``) and the address, never the address itself;
- a row goes once its bucket is full again (``full_at``; :func:`purge`, on the ticket service's tick through
  :func:`gateway.ops.retention.purge_personal_data`): at most ``burst * every_s`` after the last POST (10 min for
  the report form's 5 / 2 min). Deleting a full bucket changes nothing: a new row starts full.

:meth:`SharedLimiter.take` blocks on the database: call it from a worker thread (the public routes do, in the
thread they use for their other database work). A refused take writes nothing.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable
from typing import Any

import psycopg

from gateway.ratelimit import EveryFewSeconds, PerKeyLimiter
from gateway.storage import Storage, StorageError

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
MAX_KEY = 200  # an address is at most 45 characters; anything longer is cut (it is hashed anyway)

# tokens now: what was left, refilled for the time since, at most a full bucket (a clock step back refills nothing)
_HAVE = ("LEAST(%(burst)s::float8, l.tokens + GREATEST(0::float8, extract(epoch FROM now() - l.at)::float8) "
         "* %(rate)s::float8)")
_TAKE = (
    "WITH c AS (SELECT sha256(convert_to(salt || %(key)s::text, 'UTF8')) AS client FROM public_limit_salt) "
    "INSERT INTO public_limits AS l (name, client, tokens, at, full_at) "
    "SELECT %(name)s::text, c.client, %(burst)s::float8 - 1, now(), "
    "now() + make_interval(secs => 1 / %(rate)s::float8) FROM c "
    "ON CONFLICT (name, client) DO UPDATE SET "
    f"tokens = {_HAVE} - 1, at = now(), "
    f"full_at = now() + make_interval(secs => (%(burst)s::float8 - ({_HAVE} - 1)) / %(rate)s::float8) "
    f"WHERE {_HAVE} >= 1 "
    "RETURNING true")


def take(conn: psycopg.Connection[Any], name: str, key: str, burst: float, rate: float) -> bool:
    """One token from the bucket ``(name, key)`` (``burst`` tokens, refilled at ``rate`` per second), if it has
    one. One statement; the caller's connection (autocommit, or the caller commits)."""
    row = conn.execute(_TAKE, {"name": name, "key": key[:MAX_KEY], "burst": burst, "rate": rate}).fetchone()
    return row is not None


def purge(conn: psycopg.Connection[Any]) -> int:
    """Delete the buckets that are full again (as good as absent); how many went."""
    return max(conn.execute("DELETE FROM public_limits WHERE full_at <= now()").rowcount, 0)


class SharedLimiter:
    """``burst`` POSTs at once per client, then one every ``every_s``, counted in the database for all gateways.

    ``name`` tells limits apart (two routes that share a budget share a name); ``storage()`` is a pooled
    connection (:meth:`gateway.api.pool.StoragePool.storage`). :meth:`take` raises the database's errors
    (:class:`gateway.storage.StorageError`, :class:`psycopg.OperationalError`...): the caller refuses the POST;
    with ``fallback=True`` (for a POST that needs no database otherwise: the assistant's questions) it counts in
    memory, per gateway, while the database is unavailable.
    """

    def __init__(self, name: str, burst: int, every_s: float,
                 storage: Callable[[], contextlib.AbstractContextManager[Storage]], *, fallback: bool = False) -> None:
        if not NAME_RE.match(name):
            raise ValueError(f"limit name {name!r}: 1 to 40 of a-z, 0-9, _ starting with a letter")
        if not 1 <= burst <= 10_000:
            raise ValueError(f"limit {name}: burst must be 1..10000, not {burst}")
        if not 0.001 <= every_s <= 86_400:
            raise ValueError(f"limit {name}: every_s must be 0.001..86400 seconds, not {every_s}")
        self.name = name
        self.burst = float(burst)
        self.rate = 1.0 / every_s
        self.storage = storage
        self.fallback = PerKeyLimiter(burst, every_s) if fallback else None
        self._warn = EveryFewSeconds(60.0)

    def take(self, key: str) -> bool:
        """A token for ``key`` (the client address), if its bucket has one. Blocks: call from a worker thread."""
        try:
            with self.storage() as st:
                return take(st.conn, self.name, key, self.burst, self.rate)
        except (StorageError, psycopg.OperationalError, psycopg.InterfaceError) as exc:
            if self.fallback is None:
                raise
            if self._warn.due():
                log.warning("limit %s: database unavailable, counting in memory: %s", self.name,
                            str(exc).splitlines()[0] if str(exc) else exc)
            return self.fallback.take(key)
