"""Daily partitions, retention and the one-minute rollup of ``telemetry``.

On TimescaleDB, ``telemetry`` is a hypertable with its own compression and retention policies and
``telemetry_1m`` a continuous aggregate, so most of this is a no-op there. On plain PostgreSQL,
``telemetry`` is range-partitioned by day (created ahead and on demand, dropped past retention by
:meth:`Partitions.maintain`) and ``telemetry_1m`` a table brought up to date by
:meth:`Partitions.refresh_rollup`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

import psycopg
from psycopg import sql

from gateway.storage.db import Database


class Partitions(Database):
    def ensure_partitions(self, days: Iterable[date]) -> None:
        """Create daily partitions for ``days`` if missing (no-op on TimescaleDB)."""
        if self.backend != "postgres":
            return
        missing = sorted(set(days) - self._partition_days)
        if not missing:
            return
        with self._errors("creating telemetry partitions"):
            for day in missing:
                name = sql.Identifier(f"telemetry_p{day:%Y%m%d}")
                lo = datetime(day.year, day.month, day.day, tzinfo=UTC)
                # IF NOT EXISTS does not cover another gateway creating it at the same moment
                with contextlib.suppress(psycopg.errors.DuplicateTable, psycopg.errors.UniqueViolation), \
                        self.conn.transaction():
                    self.conn.execute(
                        sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF telemetry FOR VALUES FROM ({}) TO ({})")
                        .format(name, sql.Literal(lo), sql.Literal(lo + timedelta(days=1)))
                    )
                self._partition_days.add(day)

    def maintain(self, now: datetime | None = None) -> dict[str, list[str]]:
        """Create partitions ahead, drop those past retention. Returns created/dropped names."""
        now = now or datetime.now(UTC)
        if self.backend != "postgres":
            return {"created": [], "dropped": []}
        today = now.date()
        wanted = [today + timedelta(days=i) for i in range(-1, self.partitions_ahead_days + 1)]
        before = set(self._existing_partitions())
        self.ensure_partitions(wanted)
        cutoff = today - timedelta(days=self.retention_days)
        dropped = []
        with self._errors("dropping expired partitions"):
            for name, day in self._existing_partitions().items():
                if day < cutoff:
                    self.conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
                    self._partition_days.discard(day)
                    dropped.append(name)
            self.conn.execute("DELETE FROM telemetry_1m WHERE bucket < %s",
                              (datetime(cutoff.year, cutoff.month, cutoff.day, tzinfo=UTC),))
        created = sorted(set(self._existing_partitions()) - before)
        return {"created": created, "dropped": dropped}

    def _existing_partitions(self) -> dict[str, date]:
        with self._errors("listing partitions"):
            names: list[str] = self._scalars(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = to_regclass('telemetry')")
        out = {}
        for name in names:
            with contextlib.suppress(ValueError):
                out[name] = datetime.strptime(name[len("telemetry_p"):], "%Y%m%d").date()
        self._partition_days |= set(out.values())
        return out

    def refresh_rollup(self, since: datetime | None = None, until: datetime | None = None) -> int:
        """Bring ``telemetry_1m`` up to date from ``since`` (default: its watermark). Returns buckets written."""
        until = until or datetime.now(UTC)
        with self._errors("refreshing telemetry_1m"):
            if self.backend == "timescaledb":
                self.conn.execute("CALL refresh_continuous_aggregate('telemetry_1m', %s, %s)", (since, until))
                return -1
            with self.conn.transaction():
                watermark = self._scalar("SELECT until FROM rollup_watermark WHERE name = 'telemetry_1m' FOR UPDATE")
                start = since or watermark or until - timedelta(days=self.retention_days)
                cur = self.conn.execute(
                    """
                    INSERT INTO telemetry_1m (bucket, device_id, metric_id, samples, avg_value, min_value, max_value)
                    SELECT date_bin('1 minute', ts, timestamptz '2000-01-01'), device_id, metric_id,
                           count(*), avg(value), min(value), max(value)
                    FROM telemetry
                    WHERE ts >= date_bin('1 minute', %(start)s::timestamptz, timestamptz '2000-01-01')
                      AND ts < %(until)s
                    GROUP BY 1, 2, 3
                    ON CONFLICT (device_id, metric_id, bucket) DO UPDATE SET
                        samples = excluded.samples, avg_value = excluded.avg_value,
                        min_value = excluded.min_value, max_value = excluded.max_value
                    """,
                    {"start": start, "until": until},
                )
                self.conn.execute(
                    "INSERT INTO rollup_watermark (name, until) VALUES ('telemetry_1m', "
                    "date_bin('1 minute', %(u)s::timestamptz, timestamptz '2000-01-01')) "
                    "ON CONFLICT (name) DO UPDATE SET until = excluded.until",
                    {"u": until},
                )
                return cur.rowcount
