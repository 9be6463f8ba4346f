"""The gateway's batch write: readings, events, statuses, dead letters and alarm writes in ONE transaction,
with message keys so that a redelivered or replayed message has exactly-once effect."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg

from gateway.ingest.batch import AlarmWrites, KeyRow, WriteBatch, dead_row
from gateway.storage.alarms import AlarmTables
from gateway.storage.db import first_line
from gateway.storage.telemetry import Telemetry

log = logging.getLogger(__name__)


@dataclass(slots=True)
class WriteResult:
    duplicates: int = 0
    alarms: list[AlarmWrites] = field(default_factory=list)  # committed with the rows
    poisoned: list[tuple[WriteBatch, str]] = field(default_factory=list)  # units stored as dead letters, and why



RulesStep = Callable[[set[KeyRow]], list[AlarmWrites]]
DEDUPE_WINDOW = timedelta(days=2)  # message keys kept this long; older items are matched by their stored rows


class BatchWriter(Telemetry, AlarmTables):
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
            self.ensure_partitions({ts.date() for ts, *_ in batch.readings})
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
            readings = [r for r in readings if _message_key(r) not in dups]
            events = [e for e in events if _message_key(e) not in dups]
        if readings:
            with cur.copy("COPY telemetry (ts, device_id, metric_id, value, flags) FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(["timestamptz", "int4", "int2", "float8", "int2"])
                for ts, device_id, metric_id, value, flags, _seq in readings:
                    cp.write_row((ts, device_id, metric_id, value, flags))
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
            dups = set(kc.fetchall())  # rows are (device_id, seq, ts): key rows
            kc.execute("INSERT INTO message_keys (device_id, seq, ts) SELECT DISTINCT device_id, seq, ts "
                       "FROM _keys_in ON CONFLICT DO NOTHING")
        else:
            # insert the new keys; what comes back is what was already there (or twice in the batch)
            kc.execute(
                "WITH ins AS (INSERT INTO message_keys (device_id, seq, ts) SELECT DISTINCT device_id, seq, ts "
                "FROM _keys_in ON CONFLICT DO NOTHING RETURNING 1) "
                "SELECT (SELECT count(*) FROM _keys_in) - (SELECT count(*) FROM ins)"
            )
            (already_stored,) = kc.fetchone() or (0,)
            if already_stored:  # rare: which keys were stored before? (rows we inserted carry our xid)
                kc.execute(
                    "SELECT k.device_id, k.seq, k.ts FROM _keys_in k "
                    "JOIN message_keys m USING (device_id, seq, ts) "
                    "WHERE m.xmin::text::bigint <> txid_current() % (2^32)::bigint"
                )
                dups = set(kc.fetchall())
        horizon = datetime.now(UTC) - window
        if any(ts < horizon for _device_id, _seq, ts in keys):
            # beyond the key window (keys pruned): a stored row of that device at that time is the original
            kc.execute(
                "SELECT k.device_id, k.seq, k.ts FROM _keys_in k WHERE k.ts < %s AND ("
                "EXISTS (SELECT 1 FROM telemetry t WHERE t.device_id = k.device_id AND t.ts = k.ts) OR "
                "EXISTS (SELECT 1 FROM device_events e WHERE e.device_id = k.device_id AND e.ts = k.ts "
                "AND e.seq = k.seq))", (horizon,))
            dups |= set(kc.fetchall())
        return dups

    def prune_message_keys(self, older_than: timedelta = DEDUPE_WINDOW) -> int:
        with self._errors("pruning message keys"):
            cur = self.conn.execute("DELETE FROM message_keys WHERE ts < now() - %s", (older_than,))
        return cur.rowcount


def _message_key(row: Sequence[Any]) -> KeyRow:
    """(device id, seq, ts) of a reading ``(ts, device, metric, value, flags, seq)`` or an event
    ``(ts, device, code, state, detail, seq)``."""
    ts, device_id, *_, seq = row
    return device_id, seq, ts
