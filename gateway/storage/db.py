"""The connection to one schema, storage errors, and messages without passwords."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from datetime import date
from typing import Any, Literal, LiteralString, Self, TypeVar

import psycopg
from psycopg.rows import RowFactory, class_row, scalar_row, tuple_row

Backend = Literal["timescaledb", "postgres"]
RowT = TypeVar("RowT")


class StorageError(Exception):
    """A database operation failed; the message says what and against which database."""


class DatabaseUnavailable(StorageError):
    def __init__(self, url: str, reason: str) -> None:
        super().__init__(
            f"cannot reach PostgreSQL at {redact(url)}: {reason}. Start it (`gridtwin services up`) "
            "or set GRIDTWIN_DB_URL."
        )
        self.url = url


class UnknownDevice(StorageError):
    def __init__(self, code: str) -> None:
        super().__init__(f"unknown device {code!r}: load its community first (`gridtwin community load FILE`)")
        self.code = code


class MigrationError(StorageError):
    """A migration cannot be applied, or one already applied no longer matches its file."""


def redact(url: str) -> str:
    """Hide a password in a URL for messages and logs."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}{':***' if ':' in creds else ''}@{host}"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Database:
    """A connection to one gridtwin schema, and the error translation every storage part uses.

    :class:`gateway.storage.Storage` combines this with the parts (registry, telemetry, ...). Open
    with :meth:`connect`; not thread-safe: one per thread.
    """

    def __init__(self, conn: psycopg.Connection[tuple[Any, ...]], url: str, schema: str, retention_days: int,
                 partitions_ahead_days: int) -> None:
        self.conn = conn
        self.url = url
        self.schema = schema
        self.retention_days = retention_days
        self.partitions_ahead_days = partitions_ahead_days
        self._partition_days: set[date] = set()
        self._backend: Backend | None = None

    @classmethod
    def connect(cls, url: str, *, schema: str = "gridtwin", retention_days: int = 30,
                partitions_ahead_days: int = 3, connect_timeout_s: float = 5.0) -> Self:
        try:
            conn = psycopg.connect(
                url,
                autocommit=True,
                connect_timeout=max(1, round(connect_timeout_s)),
                options=f"-c search_path={schema},public",
                row_factory=tuple_row,
                application_name="gridtwin",
            )
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(url, first_line(exc)) from None
        except psycopg.ProgrammingError as exc:  # malformed conninfo
            raise StorageError(f"bad database URL {redact(url)}: {first_line(exc)}") from None
        return cls(conn, url, schema, retention_days, partitions_ahead_days)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(self.url, f"{what}: {first_line(exc)}") from exc
        except psycopg.Error as exc:
            raise StorageError(f"{what} failed on {redact(self.url)}: {first_line(exc)}") from exc
        except (UnicodeError, ValueError, OverflowError) as exc:  # a value psycopg could not send
            raise StorageError(f"{what} failed: {type(exc).__name__}: {first_line(exc)}") from exc

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            with self._errors("detecting TimescaleDB"):
                row = self.conn.execute(
                    "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb' UNION ALL "
                    "SELECT 2 FROM pg_available_extensions WHERE name = 'timescaledb'"
                ).fetchall()
            self._backend = "timescaledb" if row else "postgres"
        return self._backend

    def _scalar(self, query: LiteralString, args: Sequence[Any] = ()) -> Any:
        return fetch_value(self.conn, query, args)

    def _scalars(self, query: LiteralString, args: Sequence[Any] = ()) -> list[Any]:
        return fetch_values(self.conn, query, args)

    def _typed(self, row_type: type[RowT], query: LiteralString, args: Sequence[Any] = ()) -> list[RowT]:
        return fetch_rows(self.conn, class_row(row_type), query, args)


# Typed reads on any connection (the storage parts and the services that share a Storage's connection).


def fetch_value(conn: psycopg.Connection[Any], query: LiteralString, args: Sequence[Any] = ()) -> Any:
    """The first column of the first row (None when there is no row)."""
    with conn.cursor(row_factory=scalar_row) as cur:
        return cur.execute(query, args).fetchone()


def fetch_values(conn: psycopg.Connection[Any], query: LiteralString, args: Sequence[Any] = ()) -> list[Any]:
    """The first column of every row."""
    with conn.cursor(row_factory=scalar_row) as cur:
        return cur.execute(query, args).fetchall()


def fetch_rows(conn: psycopg.Connection[Any], row_factory: RowFactory[RowT], query: LiteralString,
               args: Sequence[Any] = ()) -> list[RowT]:
    """Rows made by ``row_factory``: ``class_row(SomeDataclass)`` (fields named as the query's columns), ..."""
    with conn.cursor(row_factory=row_factory) as cur:
        return cur.execute(query, args).fetchall()
