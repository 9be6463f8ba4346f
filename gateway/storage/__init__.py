"""PostgreSQL / TimescaleDB storage: migrations, registry, telemetry writes and queries. Does I/O.

This is the only module that knows which backend it runs on. With the ``timescaledb`` extension,
``telemetry`` is a hypertable (compressed after 2 days, dropped after the retention period) and
``telemetry_1m`` is a continuous aggregate. On plain PostgreSQL, ``telemetry`` is range-partitioned
by day (partitions created ahead of time and on demand, old ones dropped by :meth:`Storage.maintain`)
and ``telemetry_1m`` is a rollup table refreshed by :meth:`Storage.refresh_rollup`. Callers see the
same table names and the same methods either way.

Row layout: one narrow row per reading, ``(ts, device_id int4, metric_id int2, value float8,
flags int2)``; 24 bytes of data per row, no text, so binary COPY is cheap and TimescaleDB
compresses it well (segment by device and metric, order by time).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb

from gateway.ingest.batch import AlarmWrites, ClosedRow, KeyRow, WriteBatch, clean_json, clean_text, dead_row
from gateway.storage.db import DatabaseUnavailable, MigrationError, StorageError, UnknownDevice, first_line, redact
from gateway.storage.migrate import MIGRATIONS, Backend, Migration, apply_migrations, load_migrations
from twin import catalogue
from twin.alarms import alarm_key
from twin.community import Community

__all__ = [
    "DEDUPE_WINDOW", "FLAG_LATE", "MIGRATIONS", "Backend", "DatabaseUnavailable", "DeviceRef", "LatestReading",
    "LoadReport", "Migration", "MigrationError", "RulesStep", "Storage", "StorageError", "UnknownDevice",
    "WriteResult", "load_migrations", "redact",
]

log = logging.getLogger(__name__)

FLAG_LATE = 1  # the reading arrived after newer ones from the same device


@dataclass(slots=True)
class WriteResult:
    duplicates: int = 0
    alarms: list[AlarmWrites] = field(default_factory=list)  # committed with the rows
    poisoned: list[tuple[WriteBatch, str]] = field(default_factory=list)  # units stored as dead letters, and why


@dataclass(frozen=True, slots=True)
class LoadReport:
    """What `community load` changed, per section: ids added, changed and removed."""

    community: str
    added: dict[str, list[str]]
    changed: dict[str, list[str]]
    removed: dict[str, list[str]]

    def lines(self) -> list[str]:
        out = [f"community {self.community}:"]
        for section in ("buildings", "devices"):
            a, c, r = (self.added.get(section, []), self.changed.get(section, []), self.removed.get(section, []))
            out.append(f"  {section}: {len(a)} added, {len(c)} changed, {len(r)} removed")
            for label, ids in (("+", a), ("~", c), ("-", r)):
                if ids:
                    out.append(f"    {label} {', '.join(ids[:20])}{' ...' if len(ids) > 20 else ''}")
        return out


@dataclass(frozen=True, slots=True)
class DeviceRef:
    id: int
    community: str
    code: str
    kind: str


@dataclass(frozen=True, slots=True)
class LatestReading:
    metric: str
    value: float
    ts: datetime
    flags: int


Row = tuple[datetime, int, int, float, int, int]  # (ts, device id, metric id, value, flags, seq)
RulesStep = Callable[[set[KeyRow]], list[AlarmWrites]]
DEDUPE_WINDOW = timedelta(days=2)  # message keys kept this long; older items are matched by their stored rows


class Storage:
    """One database (and schema) of gridtwin. Open with :meth:`connect`; not thread-safe: one per thread."""

    def __init__(self, conn: psycopg.Connection[tuple[Any, ...]], url: str, schema: str, retention_days: int,
                 partitions_ahead_days: int) -> None:
        self.conn = conn
        self.url = url
        self.schema = schema
        self.retention_days = retention_days
        self.partitions_ahead_days = partitions_ahead_days
        self._partition_days: set[date] = set()
        self._backend: Backend | None = None

    # -- connection ---------------------------------------------------------------------------------

    @classmethod
    def connect(cls, url: str, *, schema: str = "gridtwin", retention_days: int = 30,
                partitions_ahead_days: int = 3, connect_timeout_s: float = 5.0) -> Storage:
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

    def __enter__(self) -> Storage:
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

    # -- backend and migrations ---------------------------------------------------------------------

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

    def schema_version(self) -> int:
        with self._errors("reading schema version"):
            row = self.conn.execute(
                "SELECT to_regclass(%s) IS NOT NULL", (f"{self.schema}.schema_version",)
            ).fetchone()
            if not row or not row[0]:
                return 0
            v = self.conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
        return int(v[0]) if v else 0

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

    def _sync_metrics(self) -> None:
        names = sorted({name for name, _unit in catalogue.all_metric_names()})
        with self.conn.cursor() as cur:
            cur.executemany("INSERT INTO metrics (name) VALUES (%s) ON CONFLICT (name) DO NOTHING",
                            [(n,) for n in names])

    def metric_ids(self) -> dict[str, int]:
        with self._errors("reading metrics"):
            return {name: mid for mid, name in self.conn.execute("SELECT id, name FROM metrics").fetchall()}

    # -- partitions and retention (plain PostgreSQL) ------------------------------------------------

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
            rows = self.conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = to_regclass('telemetry')"
            ).fetchall()
        out = {}
        for (name,) in rows:
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
                wm = self.conn.execute(
                    "SELECT until FROM rollup_watermark WHERE name = 'telemetry_1m' FOR UPDATE"
                ).fetchone()
                start = since or (wm[0] if wm else until - timedelta(days=self.retention_days))
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

    # -- registry -----------------------------------------------------------------------------------

    def load_community(self, community: Community) -> LoadReport:
        """Insert or update the community's registry rows; retire what the file no longer lists."""
        doc = orjson.loads(community.model_dump_json())
        added: dict[str, list[str]] = {"buildings": [], "devices": []}
        changed: dict[str, list[str]] = {"buildings": [], "devices": []}
        removed: dict[str, list[str]] = {"buildings": [], "devices": []}
        with self._errors(f"loading community {community.id}"), self.conn.transaction():
            row = self.conn.execute(
                "INSERT INTO communities (code, name, origin_lat, origin_lon, document) VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (code) DO UPDATE SET name = excluded.name, origin_lat = excluded.origin_lat, "
                "origin_lon = excluded.origin_lon, document = excluded.document, loaded_at = now() RETURNING id",
                (community.id, community.name, community.origin[0], community.origin[1], Jsonb(doc)),
            ).fetchone()
            assert row is not None
            cid = row[0]
            old_b = {r[0]: r[1:] for r in self.conn.execute(
                "SELECT code, name, grid, floors_above, floors_below, floor_height, use, footprint, retired_at "
                "FROM buildings WHERE community_id = %s", (cid,)).fetchall()}
            bids: dict[str, int] = {}
            for b in community.buildings:
                fp = [list(p) for p in b.footprint]
                new = (b.name, b.grid, b.floors_above, b.floors_below, float(b.floor_height), b.use, fp, None)
                prev = old_b.get(b.id)
                if prev is None:
                    added["buildings"].append(b.id)
                elif (*prev[:4], float(prev[4]), *prev[5:]) != new:
                    changed["buildings"].append(b.id)
                r = self.conn.execute(
                    "INSERT INTO buildings (community_id, code, name, grid, floors_above, floors_below, floor_height,"
                    " use, footprint) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (community_id, code) DO UPDATE"
                    " SET name=excluded.name, grid=excluded.grid, floors_above=excluded.floors_above,"
                    " floors_below=excluded.floors_below, floor_height=excluded.floor_height, use=excluded.use,"
                    " footprint=excluded.footprint, retired_at=NULL RETURNING id",
                    (cid, b.id, b.name, b.grid, b.floors_above, b.floors_below, b.floor_height, b.use,
                     Jsonb(fp)),
                ).fetchone()
                assert r is not None
                bids[b.id] = r[0]
                self.conn.execute("DELETE FROM floors WHERE building_id = %s", (r[0],))
                with self.conn.cursor() as cur:
                    cur.executemany("INSERT INTO floors (building_id, number) VALUES (%s, %s)",
                                    [(r[0], f) for f in b.floors])
            for code, prev in old_b.items():
                if code not in bids and prev[-1] is None:
                    removed["buildings"].append(code)
            self.conn.execute(
                "UPDATE buildings SET retired_at = now() WHERE community_id = %s AND NOT (code = ANY(%s)) "
                "AND retired_at IS NULL", (cid, list(bids)))

            old_d = {r[0]: r[1:] for r in self.conn.execute(
                "SELECT d.code, d.kind, b.code, d.floor, d.attrs, d.retired_at FROM devices d "
                "LEFT JOIN buildings b ON b.id = d.building_id WHERE d.community_id = %s", (cid,)).fetchall()}
            codes = []
            for d in community.devices:
                attrs = {k: v for k, v in orjson.loads(d.model_dump_json()).items()
                         if k not in ("id", "kind", "building", "floor") and v is not None}
                prev = old_d.get(d.id)
                if prev is None:
                    added["devices"].append(d.id)
                elif prev != (d.kind, d.building, d.floor, attrs, None):
                    changed["devices"].append(d.id)
                self.conn.execute(
                    "INSERT INTO devices (community_id, code, kind, building_id, floor, attrs) VALUES "
                    "(%s,%s,%s,%s,%s,%s) ON CONFLICT (community_id, code) DO UPDATE SET kind=excluded.kind, "
                    "building_id=excluded.building_id, floor=excluded.floor, attrs=excluded.attrs, retired_at=NULL",
                    (cid, d.id, d.kind, bids.get(d.building) if d.building else None, d.floor,
                     Jsonb(attrs)),
                )
                codes.append(d.id)
            for code, prev in old_d.items():
                if code not in codes and prev[-1] is None:
                    removed["devices"].append(code)
            self.conn.execute(
                "UPDATE devices SET retired_at = now() WHERE community_id = %s AND NOT (code = ANY(%s)) "
                "AND retired_at IS NULL", (cid, codes))
        return LoadReport(community.id, added, changed, removed)

    def devices(self) -> list[DeviceRef]:
        """Every active device of every community."""
        with self._errors("reading devices"):
            rows = self.conn.execute(
                "SELECT d.id, c.code, d.code, d.kind FROM devices d JOIN communities c ON c.id = d.community_id "
                "WHERE d.retired_at IS NULL"
            ).fetchall()
        return [DeviceRef(*r) for r in rows]

    def community_codes(self) -> list[str]:
        with self._errors("listing communities"):
            return [r[0] for r in self.conn.execute("SELECT code FROM communities ORDER BY code").fetchall()]

    def community_document(self, code: str | None = None) -> dict[str, Any] | None:
        with self._errors("reading community"):
            if code is None:
                row = self.conn.execute("SELECT document FROM communities ORDER BY loaded_at DESC LIMIT 1").fetchone()
            else:
                row = self.conn.execute("SELECT document FROM communities WHERE code = %s", (code,)).fetchone()
        return row[0] if row else None

    # -- telemetry ----------------------------------------------------------------------------------

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
            self.ensure_partitions({r[0].date() for r in rows})
        self._copy(f"writing {len(rows)} readings",
                   "COPY telemetry (ts, device_id, metric_id, value, flags) FROM STDIN (FORMAT BINARY)",
                   ["timestamptz", "int4", "int2", "float8", "int2"], (r[:5] for r in rows),
                   lambda cur: self._upsert_latest(cur, rows))

    @staticmethod
    def _upsert_latest(cur: psycopg.Cursor[Any], rows: Sequence[Sequence[Any]]) -> None:
        newest: dict[tuple[int, int], Sequence[Any]] = {}
        for r in rows:
            key = (r[1], r[2])
            prev = newest.get(key)
            if prev is None or r[0] >= prev[0]:
                newest[key] = r
        # binary COPY into a per-session temp table: arrays in parameters are dumped as text (slow)
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS _latest_in (device_id int4, metric_id int2, value float8, "
                    "ts timestamptz) ON COMMIT DELETE ROWS")
        with cur.copy("COPY _latest_in FROM STDIN (FORMAT BINARY)") as cp:
            cp.set_types(["int4", "int2", "float8", "timestamptz"])
            for r in newest.values():
                cp.write_row((r[1], r[2], r[3], r[0]))
        cur.execute(
            "INSERT INTO latest_values (device_id, metric_id, value, ts) SELECT device_id, metric_id, value, ts "
            "FROM _latest_in ON CONFLICT (device_id, metric_id) DO UPDATE SET value = excluded.value, "
            "ts = excluded.ts WHERE excluded.ts >= latest_values.ts"
        )

    @staticmethod
    def _upsert_status(cur: psycopg.Cursor[Any], rows: Sequence[tuple[int, str, str | None, datetime]]) -> None:
        latest: dict[int, tuple[int, str, str | None, datetime]] = {}
        for r in rows:  # the newest fact per device wins within the batch
            prev = latest.get(r[0])
            if prev is None or r[3] >= prev[3]:
                latest[r[0]] = r
        vals = list(latest.values())
        cur.execute(
            "INSERT INTO device_status (device_id, state, reason, changed_at, last_seen) "
            "SELECT d, s, r, t, t FROM unnest(%s::int4[], %s::text[], %s::text[], %s::timestamptz[]) AS x(d, s, r, t) "
            "ON CONFLICT (device_id) DO UPDATE SET state = excluded.state, reason = excluded.reason, "
            "changed_at = CASE WHEN device_status.state = excluded.state THEN device_status.changed_at "
            "ELSE excluded.changed_at END, last_seen = greatest(device_status.last_seen, excluded.last_seen) "
            "WHERE excluded.changed_at >= device_status.changed_at",
            ([r[0] for r in vals], [r[1] for r in vals], [r[2] for r in vals], [r[3] for r in vals]),
        )

    def write_batch(self, batch: WriteBatch, rules: RulesStep | None = None, *, isolate: bool = False,
                    dedupe_window: timedelta = DEDUPE_WINDOW) -> WriteResult:
        """Write one gateway batch in ONE transaction, skipping messages already stored.

        ``batch.keys`` are (device id, seq, ts) of every message item; readings and events whose key
        was stored before (a QoS 1 redelivery after a crash, a device retry) are dropped here, so a
        batch replayed after a failure has exactly-once effect. Keys are kept for ``dedupe_window``;
        an item older than that is a duplicate when its device already has stored rows at that
        exact time (readings) or that (seq, ts) (events).

        ``rules`` (the transactional outbox) is called inside the transaction once the rows are in,
        with the set of duplicate keys; the alarm writes it returns (with any already in
        ``batch.alarms``, from the spool) commit in the same transaction.

        ``isolate``: write each device's rows (and each dead letter) under its own savepoint; a unit
        the database refuses is stored as a ``storage_rejected`` dead letter instead, and the rest
        commits (the writer's answer to a batch that failed for a data reason: no input stops ingest).

        Raises :class:`DatabaseUnavailable` when the connection is the problem and
        :class:`StorageError` when the data is (never with ``isolate``, short of a bug).
        """
        if self.backend == "postgres" and batch.readings:
            self.ensure_partitions({r[0].date() for r in batch.readings})
        result = WriteResult()
        alarms = list(batch.alarms)
        with self._errors(f"writing a batch of {len(batch.readings)} readings"), self.conn.transaction(), \
                self.conn.cursor() as cur:
            if not isolate:
                dups = self._insert_keys(cur, batch.keys, dedupe_window) if batch.keys else set()
                self._write_rows(cur, batch, dups)
            else:
                dups = set()
                for unit in batch.device_groups():
                    if unit.alarms:
                        continue
                    try:
                        with self.conn.transaction():
                            unit_dups = (self._insert_keys(cur, unit.keys, dedupe_window, precheck=True)
                                         if unit.keys else set())
                            self._write_rows(cur, unit, unit_dups)
                        dups |= unit_dups
                    except psycopg.OperationalError:
                        raise
                    except (psycopg.Error, UnicodeError, ValueError, OverflowError) as exc:
                        result.poisoned.append((unit, first_line(exc)))
                now = datetime.now(UTC)
                poison = [dead_row(now, unit.topic_hint(), "storage_rejected", f"the database refused it: {why}",
                                   unit.encode()) for unit, why in result.poisoned]
                if poison:
                    self._write_rows(cur, WriteBatch([], [], [], [], poison), set())
            result.duplicates = len(dups)
            if rules is not None:
                alarms += rules(dups)
            if alarms:
                if not isolate:
                    self._write_alarm_writes(cur, alarms)
                else:
                    try:
                        with self.conn.transaction():
                            self._write_alarm_writes(cur, alarms)
                    except psycopg.OperationalError:
                        raise
                    except (psycopg.Error, UnicodeError, ValueError, OverflowError) as exc:
                        log.critical("alarm writes refused by the database (%s); kept as a dead letter", exc)
                        text = orjson.dumps([a.to_json() for a in alarms], default=str)
                        self._write_rows(cur, WriteBatch([], [], [], [], [dead_row(
                            datetime.now(UTC), "(alarm writes)", "alarm_write_failed", first_line(exc), text)]), set())
            result.alarms = alarms
        return result

    def _write_rows(self, cur: psycopg.Cursor[Any], batch: WriteBatch, dups: set[KeyRow]) -> None:
        readings, events = batch.readings, batch.events
        if dups:
            readings = [r for r in readings if (r[1], r[5], r[0]) not in dups]
            events = [e for e in events if (e[1], e[5], e[0]) not in dups]
        if readings:
            with cur.copy("COPY telemetry (ts, device_id, metric_id, value, flags) FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(["timestamptz", "int4", "int2", "float8", "int2"])
                for r in readings:
                    cp.write_row(r[:5])
            self._upsert_latest(cur, readings)
        if events:
            with cur.copy("COPY device_events (ts, device_id, code, state, detail, seq) FROM STDIN "
                          "(FORMAT BINARY)") as cp:
                cp.set_types(["timestamptz", "int4", "text", "text", "text", "int8"])
                for e in events:
                    cp.write_row(e)
        if batch.dead:
            with cur.copy("COPY dead_letters (at, topic, reason, detail, payload) FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(["timestamptz", "text", "text", "text", "bytea"])
                for d in batch.dead:
                    cp.write_row(d)
        if batch.statuses:
            self._upsert_status(cur, batch.statuses)

    @staticmethod
    def _insert_keys(kc: psycopg.Cursor[Any], keys: Sequence[KeyRow], window: timedelta, *,
                     precheck: bool = False) -> set[KeyRow]:
        """Insert the batch's message keys; return those stored before.

        Fast path: one INSERT ... ON CONFLICT, and only when its count says some keys were there
        already, find which (rows this transaction inserted carry its xid). ``precheck`` (used under
        savepoints, whose rows carry a sub-transaction's xid instead) looks them up before inserting.
        """
        dups: set[KeyRow] = set()
        kc.execute("CREATE TEMP TABLE IF NOT EXISTS _keys_in (device_id int4, seq int8, ts timestamptz) "
                   "ON COMMIT DELETE ROWS")
        if precheck:
            kc.execute("DELETE FROM _keys_in")
        with kc.copy("COPY _keys_in FROM STDIN (FORMAT BINARY)") as cp:
            cp.set_types(["int4", "int8", "timestamptz"])
            for k in keys:
                cp.write_row(k)
        if precheck:
            kc.execute("SELECT k.device_id, k.seq, k.ts FROM _keys_in k JOIN message_keys m USING (device_id, seq, ts)")
            dups = {(r[0], r[1], r[2]) for r in kc.fetchall()}
            kc.execute("INSERT INTO message_keys (device_id, seq, ts) SELECT DISTINCT device_id, seq, ts "
                       "FROM _keys_in ON CONFLICT DO NOTHING")
        else:
            # insert the new keys; what comes back is what was already there (or twice in the batch)
            kc.execute(
                "WITH ins AS (INSERT INTO message_keys (device_id, seq, ts) SELECT DISTINCT device_id, seq, ts "
                "FROM _keys_in ON CONFLICT DO NOTHING RETURNING 1) "
                "SELECT (SELECT count(*) FROM _keys_in) - (SELECT count(*) FROM ins)"
            )
            row = kc.fetchone()
            if row and int(row[0]):  # rare: which keys were stored before? (rows we inserted carry our xid)
                kc.execute(
                    "SELECT k.device_id, k.seq, k.ts FROM _keys_in k "
                    "JOIN message_keys m USING (device_id, seq, ts) "
                    "WHERE m.xmin::text::bigint <> txid_current() % (2^32)::bigint"
                )
                dups = {(r[0], r[1], r[2]) for r in kc.fetchall()}
        horizon = datetime.now(UTC) - window
        if any(k[2] < horizon for k in keys):
            # beyond the key window (keys pruned): a stored row of that device at that time is the original
            kc.execute(
                "SELECT k.device_id, k.seq, k.ts FROM _keys_in k WHERE k.ts < %s AND ("
                "EXISTS (SELECT 1 FROM telemetry t WHERE t.device_id = k.device_id AND t.ts = k.ts) OR "
                "EXISTS (SELECT 1 FROM device_events e WHERE e.device_id = k.device_id AND e.ts = k.ts "
                "AND e.seq = k.seq))", (horizon,))
            dups |= {(r[0], r[1], r[2]) for r in kc.fetchall()}
        return dups

    def _write_alarm_writes(self, cur: psycopg.Cursor[Any], writes: Sequence[AlarmWrites]) -> None:
        """Alarm rows, their history (the dispatch outbox, idempotent by uid) and engine snapshots."""
        cols = ["key", "community", "rule", "subject", "subject_type", "severity", "status", "dispatch", "building",
                "floor", "device", "raised_at", "last_seen", "count", "detail", "acked_at", "acked_by",
                "ack_comment", "cleared_at", "cleared_by", "shelved_until", "flapping"]
        text_cols = ("detail", "acked_by", "ack_comment", "cleared_by")
        upd = ", ".join(f"{c} = excluded.{c}" for c in cols if c != "key")
        latest: dict[str, dict[str, Any]] = {}
        closed: list[ClosedRow] = []
        history: list[tuple[Any, ...]] = []
        for w in writes:
            for r in w.rows:  # several changes of one alarm: the last state wins
                latest[r["key"]] = {**r, **{c: clean_text(r[c]) for c in text_cols if r.get(c) is not None}}
            closed += w.closed
            for uid, e in w.events:
                history.append((uid, datetime.fromisoformat(e["at"]), w.community, alarm_key(e["rule"], e["subject"]),
                                e["kind"], e["severity"], e.get("status"), clean_text(e["by"]) if e.get("by") else None,
                                clean_text(e["detail"]), Jsonb(clean_json(e))))
        if latest:
            cur.executemany(
                f"INSERT INTO alarms ({', '.join(cols)}, updated_at) VALUES "
                f"({', '.join('%(' + c + ')s' for c in cols)}, now()) "
                f"ON CONFLICT (key) DO UPDATE SET {upd}, updated_at = now()",
                list(latest.values()),
            )
        for key, status, kind, at, by, detail in closed:
            cur.execute(
                "UPDATE alarms SET status = %s, updated_at = now(), "
                "cleared_at = CASE WHEN %s = 'cleared' THEN %s ELSE cleared_at END, "
                "cleared_by = CASE WHEN %s = 'cleared' THEN %s ELSE cleared_by END, "
                "acked_at = CASE WHEN %s = 'acknowledged' THEN %s ELSE acked_at END, "
                "acked_by = CASE WHEN %s = 'acknowledged' THEN %s ELSE acked_by END, "
                "detail = CASE WHEN %s = 'cleared' THEN %s ELSE detail END WHERE key = %s",
                (status, kind, at, kind, by and clean_text(by), kind, at, kind, by and clean_text(by), kind,
                 clean_text(detail), key))
        if history:
            cur.executemany(
                "INSERT INTO alarm_events (uid, at, community, key, kind, severity, status, by, detail, event) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (uid) DO NOTHING", history)
        for w in writes:
            if w.state is not None:
                cur.execute(
                    "INSERT INTO rule_state (community, snapshot, saved_at) VALUES (%s, %s, %s) "
                    "ON CONFLICT (community) DO UPDATE SET snapshot = excluded.snapshot, saved_at = excluded.saved_at "
                    "WHERE excluded.saved_at >= rule_state.saved_at",
                    (w.community, Jsonb(clean_json(w.state)), w.state_at or datetime.now(UTC)))

    def write_alarms(self, writes: Sequence[AlarmWrites]) -> None:
        """Commit alarm writes that came with no readings (timers, operators' commands) in one transaction."""
        if writes:
            with self._errors(f"writing {sum(len(w.events) for w in writes)} alarm events"), \
                    self.conn.transaction(), self.conn.cursor() as cur:
                self._write_alarm_writes(cur, writes)

    def active_alarms(self, community: str) -> list[dict[str, Any]]:
        with self._errors("reading alarms"), self.conn.cursor(row_factory=dict_row) as cur:
            cur.execute("SELECT * FROM alarms WHERE community = %s AND status IN ('active_unack', 'active_ack') "
                        "ORDER BY raised_at", (community,))
            return list(cur.fetchall())

    def load_rule_state(self, community: str) -> dict[str, Any] | None:
        with self._errors("reading rule state"):
            row = self.conn.execute("SELECT snapshot FROM rule_state WHERE community = %s", (community,)).fetchone()
        return dict(row[0]) if row else None

    def save_rule_state(self, community: str, snapshot: dict[str, Any], at: datetime | None = None) -> None:
        with self._errors("saving rule state"):
            self.conn.execute(
                "INSERT INTO rule_state (community, snapshot, saved_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (community) DO UPDATE SET snapshot = excluded.snapshot, saved_at = excluded.saved_at "
                "WHERE excluded.saved_at >= rule_state.saved_at",
                (community, Jsonb(clean_json(snapshot)), at or datetime.now(UTC)))

    def prune_message_keys(self, older_than: timedelta = DEDUPE_WINDOW) -> int:
        with self._errors("pruning message keys"):
            cur = self.conn.execute("DELETE FROM message_keys WHERE ts < now() - %s", (older_than,))
        return cur.rowcount

    def prune_dead_letters(self) -> int:
        """Drop dead letters older than the retention period (they are kept for diagnosis, not forever)."""
        with self._errors("pruning dead letters"):
            cur = self.conn.execute("DELETE FROM dead_letters WHERE at < now() - make_interval(days => %s)",
                                    (self.retention_days,))
        return cur.rowcount

    def newest_per_device(self) -> dict[int, datetime]:
        """Newest stored reading time of each device (seeds late-data flagging after a restart)."""
        with self._errors("reading newest timestamps"):
            return dict(self.conn.execute("SELECT device_id, max(ts) FROM latest_values GROUP BY 1").fetchall())

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
            rows = self.conn.execute(
                "SELECT m.name, l.value, l.ts, coalesce((SELECT max(t.flags) FROM telemetry t WHERE "
                "t.device_id = l.device_id AND t.metric_id = l.metric_id AND t.ts = l.ts), 0) "
                "FROM latest_values l JOIN metrics m ON m.id = l.metric_id WHERE l.device_id = %s",
                (dev,),
            ).fetchall()
        return sorted((LatestReading(*r) for r in rows), key=lambda r: r.metric)

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

    def _device_id(self, device_code: str, community: str | None) -> int | None:
        q = "SELECT d.id FROM devices d JOIN communities c ON c.id = d.community_id WHERE d.code = %s"
        args: tuple[Any, ...] = (device_code,)
        if community:
            q += " AND c.code = %s"
            args = (device_code, community)
        rows = self.conn.execute(q, args).fetchall()
        if len(rows) > 1:
            raise StorageError(f"device {device_code!r} exists in several communities; name the community")
        return rows[0][0] if rows else None

    def count_readings(self) -> int:
        with self._errors("counting readings"):
            row = self.conn.execute("SELECT count(*) FROM telemetry").fetchone()
        return int(row[0]) if row else 0

    def dead_letter_counts(self) -> dict[str, int]:
        with self._errors("counting dead letters"):
            return dict(self.conn.execute("SELECT reason, count(*) FROM dead_letters GROUP BY 1").fetchall())
