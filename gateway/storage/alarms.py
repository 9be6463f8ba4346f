"""Alarm tables: the current alarm per (rule, subject), its history (the dispatch outbox) and rule-engine state."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from gateway.ingest.batch import AlarmWrites, ClosedRow, clean_json, clean_text
from gateway.storage.db import Database
from twin.alarms import alarm_key


class AlarmTables(Database):
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
            snapshot = self._scalar("SELECT snapshot FROM rule_state WHERE community = %s", (community,))
        return dict(snapshot) if snapshot is not None else None

    def save_rule_state(self, community: str, snapshot: dict[str, Any], at: datetime | None = None) -> None:
        with self._errors("saving rule state"):
            self.conn.execute(
                "INSERT INTO rule_state (community, snapshot, saved_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (community) DO UPDATE SET snapshot = excluded.snapshot, saved_at = excluded.saved_at "
                "WHERE excluded.saved_at >= rule_state.saved_at",
                (community, Jsonb(clean_json(snapshot)), at or datetime.now(UTC)))
