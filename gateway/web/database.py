"""The dashboard's database access: pooled :class:`~gateway.storage.Storage` objects, and database
failures turned into what the dashboard shows (:class:`viz.data.DatabaseDown`, :class:`viz.data.DataUnavailable`).
Does I/O.

Connection details (host, port, user) go to the server log, never to a browser.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import psycopg

from gateway.api.pool import StoragePool
from gateway.ratelimit import EveryFewSeconds
from gateway.storage import DatabaseUnavailable, Storage, StorageError
from viz.data import DatabaseDown, DataUnavailable

log = logging.getLogger("gateway.web.dashboard_data")
_down_log = EveryFewSeconds(10.0)


@contextlib.contextmanager
def connection(pool: StoragePool, what: str) -> Iterator[Storage]:
    """A pooled :class:`Storage` for ``what`` (e.g. "reading alarms"), with :func:`failures` around its use."""
    with failures(what), pool.storage() as st:
        yield st


@contextlib.contextmanager
def failures(what: str) -> Iterator[None]:
    """A database failure becomes :class:`DatabaseDown` (unreachable) or :class:`DataUnavailable` naming
    only ``what`` failed (the dashboard says so instead of failing); the details go to the log."""
    try:
        yield
    except (DatabaseUnavailable, psycopg.OperationalError, psycopg.InterfaceError) as exc:
        if _down_log.due():
            log.warning("dashboard: %s: database unavailable: %s", what, first_line(exc))
        raise DatabaseDown() from exc
    except (StorageError, psycopg.Error) as exc:
        log.warning("dashboard: %s failed: %s", what, first_line(exc))
        raise DataUnavailable(f"{what} failed") from exc


def first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__
