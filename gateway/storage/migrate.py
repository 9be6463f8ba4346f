"""Schema migrations: numbered SQL files, applied once, in order, and checked against what was applied.

Files live in ``gateway/storage/migrations/``, one migration per number:

* ``NNNN_name.sql`` runs on every backend;
* ``NNNN_name.postgres.sql`` / ``NNNN_name.timescaledb.sql`` run only on that backend, after the
  common file (a migration may have any of the three).

``{retention_days}`` in a file is replaced by the configured retention period before it runs.

Each migration runs in its own transaction and is recorded in ``schema_version`` with the SHA-256 of
the text it ran (the common file followed by the backend's file, before placeholders are filled; for
a single-file migration, the checksum of that file). A migration whose files changed after it was
applied is refused with the file names: add a new migration instead. Databases migrated before
checksums existed get them recorded on the next run.

All of it runs under a session-level advisory lock per schema, so N gateways starting together
migrate once: the others wait, then find nothing left to do.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from gateway.storage.db import Backend, MigrationError, first_line

log = logging.getLogger(__name__)


BACKENDS: tuple[Backend, ...] = ("timescaledb", "postgres")
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
FILE_NAME = re.compile(r"(?P<version>\d{4})_(?P<name>[a-z0-9_]+)(?:\.(?P<backend>postgres|timescaledb))?\.sql")
RETENTION_PLACEHOLDER = "{retention_days}"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    common: str = ""
    timescaledb: str = ""
    postgres: str = ""

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"

    def files(self, backend: Backend) -> list[str]:
        """The files this migration runs on ``backend``, for messages."""
        out = [f"{self.label}.sql"] if self.common else []
        if self._variant(backend):
            out.append(f"{self.label}.{backend}.sql")
        return out

    def text(self, backend: Backend) -> str:
        """The SQL as written (placeholders not filled): what the checksum covers."""
        return self.common + self._variant(backend)

    def checksum(self, backend: Backend) -> str:
        return hashlib.sha256(self.text(backend).encode()).hexdigest()

    def statement(self, backend: Backend, retention_days: int) -> str:
        return self.text(backend).replace(RETENTION_PLACEHOLDER, str(int(retention_days)))

    def _variant(self, backend: Backend) -> str:
        return self.timescaledb if backend == "timescaledb" else self.postgres


def load_migrations(directory: Path = MIGRATIONS_DIR) -> tuple[Migration, ...]:
    """Read every ``*.sql`` file of ``directory`` into migrations, ordered by number.

    A file whose name does not follow the convention, or two names for one number, is an error
    (a misnamed file silently skipped would leave the schema behind).
    """
    parts: dict[int, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.sql")):
        match = FILE_NAME.fullmatch(path.name)
        if match is None:
            raise MigrationError(f"migration file {path.name} is not named NNNN_name.sql, "
                                 "NNNN_name.postgres.sql or NNNN_name.timescaledb.sql")
        version, name = int(match["version"]), match["name"]
        entry = parts.setdefault(version, {"version": version, "name": name})
        if entry["name"] != name:
            raise MigrationError(f"migration {version:04d} has two names: {entry['name']} and {name}")
        # newline=None reads CRLF checkouts as LF: the checksum does not depend on the platform
        entry[match["backend"] or "common"] = path.read_text(encoding="utf-8")
    if not parts:
        raise MigrationError(f"no migration files in {directory}")
    return tuple(Migration(**parts[v]) for v in sorted(parts))


def apply_migrations(conn: psycopg.Connection[Any], *, schema: str, backend: Backend, retention_days: int,
                     migrations: Sequence[Migration]) -> list[str]:
    """Verify applied migrations and apply pending ones (``conn`` in autocommit); return what was applied."""
    key = f"gridtwin-migrate:{schema}"
    if not _scalar(conn, "SELECT pg_try_advisory_lock(hashtext(%s))", (key,)):
        log.info("another process is migrating schema %s; waiting for it", schema)
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (key,))
    try:
        _prepare(conn, schema, backend)
        recorded = _verify(conn, schema, migrations)
        applied = []
        for m in migrations:
            if m.version in recorded:
                continue
            try:
                with conn.transaction():
                    conn.execute(m.statement(backend, retention_days).encode())
                    conn.execute(
                        "INSERT INTO schema_version (version, name, backend, checksum) VALUES (%s, %s, %s, %s)",
                        (m.version, m.name, backend, m.checksum(backend)),
                    )
            except psycopg.OperationalError:
                raise
            except psycopg.Error as exc:
                raise MigrationError(f"migration {', '.join(m.files(backend))} failed on schema {schema} "
                                     f"(rolled back; earlier ones stay applied): {first_line(exc)}") from exc
            applied.append(f"{m.label} ({backend})")
        return applied
    finally:
        with contextlib.suppress(psycopg.Error):  # a lost connection released it anyway
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))


def _prepare(conn: psycopg.Connection[Any], schema: str, backend: Backend) -> None:
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    if backend == "timescaledb":
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY, name text NOT NULL, "
        "backend text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(), checksum text)"
    )
    conn.execute("ALTER TABLE schema_version ADD COLUMN IF NOT EXISTS checksum text")  # tables from before


def _verify(conn: psycopg.Connection[Any], schema: str, migrations: Sequence[Migration]) -> set[int]:
    """Check recorded checksums against the files (recording missing ones); return the applied versions."""
    known = {m.version: m for m in migrations}
    rows = conn.execute("SELECT version, name, backend, checksum FROM schema_version ORDER BY version").fetchall()
    adopted = []
    for version, name, recorded_backend, checksum in rows:
        m = known.get(version)
        if m is None:
            log.warning("schema %s has migration %04d_%s, which this version of gridtwin does not know "
                        "(migrated by a newer one?)", schema, version, name)
            continue
        if recorded_backend not in BACKENDS:
            raise MigrationError(f"schema {schema}: migration {m.label} is recorded for an unknown backend "
                                 f"{recorded_backend!r}")
        expected = m.checksum(recorded_backend)
        if checksum is None:
            adopted.append((expected, version))
        elif checksum != expected:
            raise MigrationError(
                f"migration {', '.join(m.files(recorded_backend))} changed after it was applied to schema {schema} "
                f"(recorded sha256 {checksum[:12]}..., the file now gives {expected[:12]}...). Restore the file "
                "as it was and put the change in a new migration."
            )
    if adopted:
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany("UPDATE schema_version SET checksum = %s WHERE version = %s", adopted)
        log.info("schema %s: recorded checksums of %d migrations applied before checksums existed",
                 schema, len(adopted))
    return {version for version, *_ in rows}


def _scalar(conn: psycopg.Connection[Any], query: str, args: tuple[Any, ...]) -> Any:
    row = conn.execute(query.encode(), args).fetchone()
    return row[0] if row else None


MIGRATIONS: tuple[Migration, ...] = load_migrations()
