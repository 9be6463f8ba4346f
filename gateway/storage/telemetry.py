"""Readings, device events, statuses and dead letters: binary COPY writes and the reads of current state.

Row layout: one narrow row per reading, ``(ts, device_id int4, metric_id int2, value float8,
flags int2)``; 24 bytes of data per row, no text, so binary COPY is cheap and TimescaleDB
compresses it well (segment by device and metric, order by time).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from gateway.ingest.batch import dead_row
from gateway.storage.db import UnknownDevice
from gateway.storage.partitions import Partitions
from gateway.storage.registry import Registry

FLAG_LATE = 1  # the reading arrived after newer ones from the same device


@dataclass(frozen=True, slots=True)
class LatestReading:
    metric: str
    value: float
    ts: datetime
    flags: int



class Telemetry(Partitions, Registry):
    def _copy(self, what: str, statement: str, types: list[str], rows: Iterable[Sequence[Any]],
              after: Callable[[psycopg.Cursor[Any]], None] | None = None) -> None:
        with self._errors(what), self.conn.transaction(), self.conn.cursor() as cur:
            with cur.copy(statement) as cp:
                cp.set_types(types)
                for r in rows:
                    cp.write_row(r)
            if after is not None:
                after(cur)

    def write_readings(self, rows: Sequence[Sequence[Any]]) -> None:
        """Append readings with one binary COPY, and advance ``latest_values``, in one transaction."""
        if not rows:
            return
        if self.backend == "postgres":
            self.ensure_partitions({ts.date() for ts, *_ in rows})
        self._copy(f"writing {len(rows)} readings",
                   "COPY telemetry (ts, device_id, metric_id, value, flags) FROM STDIN (FORMAT BINARY)",
                   ["timestamptz", "int4", "int2", "float8", "int2"], (r[:5] for r in rows),
                   lambda cur: self._upsert_latest(cur, rows))

    @staticmethod
    def _upsert_latest(cur: psycopg.Cursor[Any], rows: Sequence[Sequence[Any]]) -> None:
        newest: dict[tuple[int, int], tuple[float, datetime]] = {}  # (device, metric) -> (value, ts)
        for ts, device_id, metric_id, value, *_ in rows:
            prev = newest.get((device_id, metric_id))
            if prev is None or ts >= prev[1]:
                newest[device_id, metric_id] = (value, ts)
        # binary COPY into a per-session temp table: arrays in parameters are dumped as text (slow)
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS _latest_in (device_id int4, metric_id int2, value float8, "
                    "ts timestamptz) ON COMMIT DELETE ROWS")
        with cur.copy("COPY _latest_in FROM STDIN (FORMAT BINARY)") as cp:
            cp.set_types(["int4", "int2", "float8", "timestamptz"])
            for (device_id, metric_id), (value, ts) in newest.items():
                cp.write_row((device_id, metric_id, value, ts))
        cur.execute(
            "INSERT INTO latest_values (device_id, metric_id, value, ts) SELECT device_id, metric_id, value, ts "
            "FROM _latest_in ON CONFLICT (device_id, metric_id) DO UPDATE SET value = excluded.value, "
            "ts = excluded.ts WHERE excluded.ts >= latest_values.ts"
        )

    @staticmethod
    def _upsert_status(cur: psycopg.Cursor[Any], rows: Sequence[tuple[int, str, str | None, datetime]]) -> None:
        latest: dict[int, tuple[int, str, str | None, datetime]] = {}
        for device_id, state, reason, at in rows:  # the newest fact per device wins within the batch
            prev = latest.get(device_id)
            if prev is None or at >= prev[3]:
                latest[device_id] = (device_id, state, reason, at)
        device_ids, states, reasons, times = zip(*latest.values(), strict=True)
        cur.execute(
            "INSERT INTO device_status (device_id, state, reason, changed_at, last_seen) "
            "SELECT d, s, r, t, t FROM unnest(%s::int4[], %s::text[], %s::text[], %s::timestamptz[]) AS x(d, s, r, t) "
            "ON CONFLICT (device_id) DO UPDATE SET state = excluded.state, reason = excluded.reason, "
            "changed_at = CASE WHEN device_status.state = excluded.state THEN device_status.changed_at "
            "ELSE excluded.changed_at END, last_seen = greatest(device_status.last_seen, excluded.last_seen) "
            "WHERE excluded.changed_at >= device_status.changed_at",
            (list(device_ids), list(states), list(reasons), list(times)),
        )

    def write_dead_letters(self, rows: Sequence[tuple[datetime, str, str, str, bytes]]) -> None:
        """Store rejected messages: (at, topic, reason, detail, raw payload already truncated by the caller)."""
        rows = [dead_row(*r) for r in rows]
        if rows:
            self._copy(f"writing {len(rows)} dead letters",
                       "COPY dead_letters (at, topic, reason, detail, payload) FROM STDIN (FORMAT BINARY)",
                       ["timestamptz", "text", "text", "text", "bytea"], rows)

    def write_events(self, rows: Sequence[tuple[datetime, int, str, str, str | None, int]]) -> None:
        """Store device events: (ts, device_id, code, state, detail, seq)."""
        if rows:
            self._copy(f"writing {len(rows)} events",
                       "COPY device_events (ts, device_id, code, state, detail, seq) FROM STDIN (FORMAT BINARY)",
                       ["timestamptz", "int4", "text", "text", "text", "int8"], rows)

    def write_status(self, rows: Sequence[tuple[int, str, str | None, datetime]]) -> None:
        """Upsert device online/offline: (device_id, state, reason, at). Newer facts win."""
        if rows:
            with self._errors(f"writing {len(rows)} status changes"), self.conn.transaction(), \
                    self.conn.cursor() as cur:
                self._upsert_status(cur, rows)

    def latest(self, device_code: str, community: str | None = None) -> list[LatestReading]:
        """Latest value of each metric of one device, with the flags of the row it came from."""
        with self._errors(f"reading latest values of {device_code}"):
            dev = self._device_id(device_code, community)
            if dev is None:
                raise UnknownDevice(device_code)
            rows = self._typed(
                LatestReading,
                "SELECT m.name AS metric, l.value, l.ts, coalesce((SELECT max(t.flags) FROM telemetry t WHERE "
                "t.device_id = l.device_id AND t.metric_id = l.metric_id AND t.ts = l.ts), 0) AS flags "
                "FROM latest_values l JOIN metrics m ON m.id = l.metric_id WHERE l.device_id = %s",
                (dev,))
        return sorted(rows, key=lambda r: r.metric)

    def live_snapshot(self, community: str) -> tuple[list[tuple[str, str, float, datetime]],
                                                     list[tuple[str, str, datetime]],
                                                     list[tuple[str, str, datetime]]]:
        """Stored facts to rebuild :class:`twin.state.LiveState`: latest values, statuses, active events."""
        with self._errors(f"reading live state of {community}"):
            latest = self.conn.execute(
                "SELECT d.code, m.name, l.value, l.ts FROM latest_values l JOIN devices d ON d.id = l.device_id "
                "JOIN communities c ON c.id = d.community_id JOIN metrics m ON m.id = l.metric_id "
                "WHERE c.code = %s AND d.retired_at IS NULL", (community,)).fetchall()
            statuses = self.conn.execute(
                "SELECT d.code, s.state, s.last_seen FROM device_status s JOIN devices d ON d.id = s.device_id "
                "JOIN communities c ON c.id = d.community_id WHERE c.code = %s", (community,)).fetchall()
            events = self.conn.execute(
                "SELECT code, ev, ts FROM (SELECT DISTINCT ON (e.device_id, e.code) d.code, e.code AS ev, e.ts, "
                "e.state FROM device_events e JOIN devices d ON d.id = e.device_id JOIN communities c "
                "ON c.id = d.community_id WHERE c.code = %s AND e.state <> 'pulse' "
                "ORDER BY e.device_id, e.code, e.ts DESC) x WHERE state = 'active'", (community,)).fetchall()
        return latest, statuses, events

    def newest_per_device(self) -> dict[int, datetime]:
        """Newest stored reading time of each device (seeds late-data flagging after a restart)."""
        with self._errors("reading newest timestamps"):
            return dict(self.conn.execute("SELECT device_id, max(ts) FROM latest_values GROUP BY 1").fetchall())

    def count_readings(self) -> int:
        with self._errors("counting readings"):
            return int(self._scalar("SELECT count(*) FROM telemetry"))

    def dead_letter_counts(self) -> dict[str, int]:
        with self._errors("counting dead letters"):
            return dict(self.conn.execute("SELECT reason, count(*) FROM dead_letters GROUP BY 1").fetchall())

    def prune_dead_letters(self) -> int:
        """Drop dead letters older than the retention period (they are kept for diagnosis, not forever)."""
        with self._errors("pruning dead letters"):
            cur = self.conn.execute("DELETE FROM dead_letters WHERE at < now() - make_interval(days => %s)",
                                    (self.retention_days,))
        return cur.rowcount
