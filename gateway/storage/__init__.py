"""PostgreSQL / TimescaleDB storage: migrations, registry, telemetry writes and queries. Does I/O.

This package is the only place that knows which backend it runs on. With the ``timescaledb``
extension, ``telemetry`` is a hypertable (compressed after 2 days, dropped after the retention
period) and ``telemetry_1m`` is a continuous aggregate. On plain PostgreSQL, ``telemetry`` is
range-partitioned by day (partitions created ahead of time and on demand, old ones dropped by
:meth:`Storage.maintain`) and ``telemetry_1m`` is a rollup table refreshed by
:meth:`Storage.refresh_rollup`. Callers see the same table names and the same methods either way.

Parts, each a class :class:`Storage` combines (one connection, one schema):

* :mod:`~gateway.storage.db`: the connection, errors, password redaction;
* :mod:`~gateway.storage.migrate` and ``migrations/``: numbered SQL migrations;
* :mod:`~gateway.storage.registry`: communities, buildings, devices, metric names;
* :mod:`~gateway.storage.partitions`: daily partitions, retention, the one-minute rollup;
* :mod:`~gateway.storage.telemetry`: readings, events, statuses, dead letters;
* :mod:`~gateway.storage.alarms`: alarms, their history (the dispatch outbox), rule-engine state;
* :mod:`~gateway.storage.writes`: the gateway's one-transaction batch write with exactly-once keys.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.storage.alarms import AlarmTables
from gateway.storage.db import (
    Backend,
    DatabaseUnavailable,
    MigrationError,
    StorageError,
    UnknownDevice,
    fetch_rows,
    fetch_value,
    fetch_values,
    redact,
)
from gateway.storage.migrate import MIGRATIONS, Migration, apply_migrations, load_migrations
from gateway.storage.registry import DeviceRef, LoadReport
from gateway.storage.telemetry import FLAG_LATE, LatestReading
from gateway.storage.writes import DEDUPE_WINDOW, BatchWriter, RulesStep, WriteResult

__all__ = [
    "DEDUPE_WINDOW", "FLAG_LATE", "MIGRATIONS", "AlarmTables", "Backend", "DatabaseUnavailable", "DeviceRef",
    "LatestReading", "LoadReport", "Migration", "MigrationError", "RulesStep", "Storage", "StorageError",
    "UnknownDevice", "WriteResult", "fetch_rows", "fetch_value", "fetch_values", "load_migrations", "redact",
]


class Storage(BatchWriter):
    """One database (and schema) of gridtwin. Open with :meth:`connect`; not thread-safe: one per thread."""

    def schema_version(self) -> int:
        with self._errors("reading schema version"):
            if not self._scalar("SELECT to_regclass(%s) IS NOT NULL", (f"{self.schema}.schema_version",)):
                return 0
            return int(self._scalar("SELECT coalesce(max(version), 0) FROM schema_version"))

    def migrate(self, migrations: Sequence[Migration] = MIGRATIONS) -> list[str]:
        """Apply pending migrations in order, each in its own transaction; return what was applied.

        Raises :class:`MigrationError` when an applied migration's file has changed since.
        """
        with self._errors("migrating"):
            applied = apply_migrations(self.conn, schema=self.schema, backend=self.backend,
                                       retention_days=self.retention_days, migrations=migrations)
            self._sync_metrics()
        if self.backend == "postgres":
            self.maintain()
        return applied
