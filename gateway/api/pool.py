"""Database connections of the web process: a :class:`psycopg_pool.ConnectionPool` handing out
:class:`~gateway.storage.Storage` objects. Does I/O.

One :class:`StoragePool` serves the REST API and the dashboard of a process (the composition root
shares it). Each connection is opened in autocommit mode with the schema first on its
``search_path`` (the ``configure`` callback); a connection idle for more than ``CHECK_IDLE_S`` is
checked before it is handed out, and a broken one is replaced by a fresh one without the request
noticing. While the database is unreachable, requests fail at once with
:class:`~gateway.storage.DatabaseUnavailable` (for ``DOWN_FOR_S`` after each failed connection attempt)
instead of each waiting for a connection that cannot come; the web layers answer 503.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Iterator
from time import monotonic
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolTimeout

from gateway.settings import Settings
from gateway.storage import DatabaseUnavailable, Storage, StorageError

log = logging.getLogger(__name__)

Conn = psycopg.Connection[TupleRow]
DOWN_FOR_S = 1.0  # after a failed connection attempt, fail requests at once for this long
CHECK_IDLE_S = 1.0  # a connection idle longer than this is checked (one empty round trip) before use
WAIT_S = 5.0  # longest a request waits for a free connection before it is answered 503
PROBE_SLICE_S = 0.05  # after a broken connection: how often the waiting request looks whether the database is down


class _Pool(ConnectionPool[Conn]):
    """:class:`ConnectionPool` that tells its owner about every connection attempt (it makes them in its
    worker threads and otherwise only logs a failure)."""

    def __init__(self, owner: StoragePool, *args: Any, **kwargs: Any) -> None:
        self._owner = owner
        super().__init__(*args, **kwargs)

    def _connect(self, timeout: float | None = None) -> Conn:
        try:
            conn = super()._connect(timeout)
        except Exception:
            self._owner.connect_failed()
            raise
        self._owner.connected()
        return conn


class StoragePool:
    """Pooled :class:`Storage` objects of one database and schema; thread-safe.

    ``min_size``/``max_size``: connections kept open / at most; ``wait_s``: how long a request waits for
    a free one. Use ``with pool.storage() as st:``; the connection goes back to the pool afterwards
    (rolled back if a transaction was left open, replaced if broken). :meth:`close` at shutdown.
    """

    def __init__(self, url: str, *, schema: str = "gridtwin", retention_days: int = 30,
                 partitions_ahead_days: int = 3, min_size: int = 1, max_size: int = 4,
                 connect_timeout_s: float = 5.0, wait_s: float = WAIT_S, name: str = "gridtwin-web") -> None:
        self.url = url
        self.schema = schema
        self._retention_days = retention_days
        self._partitions_ahead_days = partitions_ahead_days
        self._wait_s = wait_s
        self._down_until = 0.0
        self._used_at: weakref.WeakKeyDictionary[Conn, float] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        search_path = sql.SQL("SET search_path TO {}, public").format(sql.Identifier(schema))

        def configure(conn: Conn) -> None:
            conn.execute(search_path)

        self._pool = _Pool(self, url, min_size=min(min_size, max_size), max_size=max_size, open=False, name=name,
                           kwargs={"autocommit": True, "connect_timeout": max(1, round(connect_timeout_s)),
                                   "application_name": "gridtwin"},
                           configure=configure, timeout=wait_s, max_idle=300.0,
                           reconnect_timeout=max(2.0, 2 * DOWN_FOR_S))
        try:
            self._pool.open(wait=False)
        except psycopg.ProgrammingError as exc:  # malformed conninfo
            raise StorageError(f"bad database URL: {str(exc).splitlines()[0]}") from None

    # -- the pool's reports -----------------------------------------------------------------------------

    def connect_failed(self) -> None:
        with self._lock:
            self._down_until = monotonic() + DOWN_FOR_S

    def connected(self) -> None:
        with self._lock:
            self._down_until = 0.0

    @property
    def down(self) -> bool:
        """The last connection attempt failed a moment ago."""
        return monotonic() < self._down_until

    # -- use --------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def storage(self) -> Iterator[Storage]:
        """A :class:`Storage` on a pooled connection for the duration of the block."""
        conn = self._get()
        try:
            yield Storage(conn, self.url, self.schema, self._retention_days, self._partitions_ahead_days)
        finally:
            self._used_at[conn] = monotonic()
            self._pool.putconn(conn)

    def _get(self) -> Conn:
        deadline = monotonic() + self._wait_s
        suspect = False  # a connection was broken: the database may be down, look often
        while True:
            if self.down:
                raise DatabaseUnavailable(self.url, "the database was unreachable a moment ago")
            remaining = deadline - monotonic()
            if remaining <= 0:
                raise StorageError("no database connection became free in time")
            try:
                conn = self._pool.getconn(timeout=min(remaining, PROBE_SLICE_S) if suspect else remaining)
            except PoolTimeout:
                if suspect:
                    continue
                raise DatabaseUnavailable(self.url, "no connection") if self.down else \
                    StorageError("no database connection became free in time") from None
            if monotonic() - self._used_at.get(conn, 0.0) <= CHECK_IDLE_S or self._healthy(conn):
                return conn
            suspect = True
            self._pool.putconn(conn)  # broken: the pool drops it and opens a new one

    @staticmethod
    def _healthy(conn: Conn) -> bool:
        try:
            ConnectionPool.check_connection(conn)
        except psycopg.Error:
            return False
        return True

    def stats(self) -> dict[str, int]:
        return self._pool.get_stats()

    def close(self) -> None:
        self._pool.close()


def pool_for(settings: Settings, url: str, *, schema: str | None = None, max_size: int | None = None) -> StoragePool:
    """A :class:`StoragePool` as the settings say (``db.schema``, ``db.pool_size``, ``db.connect_timeout_s``)."""
    return StoragePool(url, schema=schema or settings.db.schema_name, retention_days=settings.db.retention_days,
                       partitions_ahead_days=settings.db.partitions_ahead_days,
                       max_size=max_size or settings.db.pool_size, connect_timeout_s=settings.db.connect_timeout_s)
