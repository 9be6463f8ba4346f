"""What the gateway's writer commits in one transaction, and its on-disk form for the spool. Pure.

A :class:`WriteBatch` holds the rows of a group of messages (message keys, readings, events,
statuses, dead letters) and the alarm writes the rules produced from them (:class:`AlarmWrites`:
current alarm rows, their history events, the engine snapshot). Readings and the alarms they raised
commit together or not at all (the transactional outbox, docs/alarm-path.md), and while the database
is down they are spooled together, in one line of JSON (in cluster mode with the lease epoch each
community's alarm writes were made under, ``fence``, which their replay checks).

Every text that reaches PostgreSQL goes through :func:`clean_text` / :func:`clean_json`: NUL cannot
be stored in ``text`` or ``jsonb`` at all, so one hostile string must not make a write fail.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
KeyRow = tuple[int, int, datetime]  # (device id, seq, ts) of one message item
ReadingRow = tuple[datetime, int, int, float, int, int]  # (ts, device id, metric id, value, flags, seq)
EventRow = tuple[datetime, int, str, str, str | None, int]  # (ts, device id, code, state, detail, seq)
StatusRow = tuple[int, str, str | None, datetime]  # (device id, state, reason, at)
DeadRow = tuple[datetime, str, str, str, bytes]  # (at, topic, reason, detail, payload)
ClosedRow = tuple[str, str, str, datetime, str | None, str]  # (key, status, event kind, at, by, detail)

MAX_DEAD_TOPIC = 256
MAX_DEAD_DETAIL = 512
MAX_DEAD_PAYLOAD = 1024
_UNSTORABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_ALARM_TIMES = ("raised_at", "last_seen", "acked_at", "cleared_at", "shelved_until")


def clean_text(value: str, limit: int | None = None) -> str:
    """``value`` safe for a PostgreSQL text column: control characters escaped, optionally capped."""
    if _UNSTORABLE.search(value):
        value = _UNSTORABLE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                                else f"\\u{ord(m.group()):04x}", value)
    if limit is not None and len(value) > limit:
        value = value[: limit - 1] + "…"
    return value


def clean_json(value: Any) -> Any:
    """A JSON value safe for ``jsonb`` (which refuses ``\\u0000``): every string through :func:`clean_text`."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(str(k)): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    return value


def dead_row(at: datetime, topic: str, reason: str, detail: str, payload: bytes) -> DeadRow:
    """A dead letter with every field capped and storable (topic and detail come from outside)."""
    return (at, clean_text(topic, MAX_DEAD_TOPIC), clean_text(reason, 64), clean_text(detail, MAX_DEAD_DETAIL),
            bytes(payload[:MAX_DEAD_PAYLOAD]))


def _us(ts: datetime) -> int:
    return (ts - _EPOCH) // timedelta(microseconds=1)


def _dt(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _opt_iso(v: Any) -> datetime | None:
    return None if v is None else datetime.fromisoformat(v)


@dataclass(frozen=True, slots=True)
class AlarmWrites:
    """Alarm changes of one community from one step of its rules engine, to commit atomically."""

    community: str
    rows: list[dict[str, Any]]  # current row of each alarm that still exists (table ``alarms``)
    closed: list[ClosedRow]  # alarms that are over: their row gets the final status
    events: list[tuple[str, dict[str, Any]]]  # (uid, AlarmEvent JSON): history and the dispatch outbox
    state: dict[str, Any] | None = None  # the engine snapshot after this step (table ``rule_state``)
    state_at: datetime | None = None  # when the snapshot was taken: an older one never overwrites a newer

    def to_json(self) -> dict[str, Any]:
        return {
            "c": self.community,
            "rows": [{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in r.items()} for r in self.rows],
            "closed": [[k, s, kind, at.isoformat(), by, d] for k, s, kind, at, by, d in self.closed],
            "events": [[u, e] for u, e in self.events],
            "state": self.state,
            "state_at": self.state_at.isoformat() if self.state_at else None,
        }

    def history_only(self) -> AlarmWrites:
        """Only the alarm events (history and dispatch outbox, idempotent by uid), without the current alarm
        rows and the engine snapshot, which belong to whoever runs the community now."""
        return AlarmWrites(self.community, [], [], list(self.events))

    @classmethod
    def from_json(cls, o: dict[str, Any]) -> AlarmWrites:
        rows = []
        for stored in o["rows"]:
            r = dict(stored)
            for k in _ALARM_TIMES:
                r[k] = _opt_iso(r.get(k))
            rows.append(r)
        return cls(
            community=o["c"], rows=rows,
            closed=[(k, s, kind, datetime.fromisoformat(at), by, d) for k, s, kind, at, by, d in o["closed"]],
            events=[(u, e) for u, e in o["events"]], state=o.get("state"), state_at=_opt_iso(o.get("state_at")),
        )


@dataclass(frozen=True, slots=True)
class WriteBatch:
    keys: list[KeyRow]
    readings: list[ReadingRow]
    events: list[EventRow]
    statuses: list[StatusRow]
    dead: list[DeadRow]
    alarms: list[AlarmWrites] = field(default_factory=list)
    # cluster mode, in the spool: community -> epoch of the lease under which its alarm writes were made
    fence: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.keys) + len(self.statuses) + len(self.dead) + sum(len(a.events) for a in self.alarms)

    def with_alarms(self, alarms: list[AlarmWrites]) -> WriteBatch:
        return replace(self, alarms=alarms)

    def device_groups(self) -> list[WriteBatch]:
        """This batch split into units that fail or succeed alone: one per device, one per dead letter.

        The alarm writes stay with the first unit (they are ours, already sanitised).
        """
        devices: dict[int, WriteBatch] = {}

        def unit(dev: int) -> WriteBatch:
            b = devices.get(dev)
            if b is None:
                b = devices[dev] = WriteBatch([], [], [], [], [])
            return b

        for k in self.keys:
            unit(k[0]).keys.append(k)
        for r in self.readings:
            unit(r[1]).readings.append(r)
        for e in self.events:
            unit(e[1]).events.append(e)
        for s in self.statuses:
            unit(s[0]).statuses.append(s)
        units = list(devices.values()) + [WriteBatch([], [], [], [], [d]) for d in self.dead]
        if self.alarms:
            units = [WriteBatch([], [], [], [], [], list(self.alarms)), *units]
        return units

    def topic_hint(self) -> str:
        """What to file a refused unit under in ``dead_letters``: its device id, or a dead letter's topic."""
        for rows in (self.keys, self.statuses):
            if rows:
                return f"(device {rows[0][0]})"
        if self.readings or self.events:
            return f"(device {(self.readings or self.events)[0][1]})"
        return self.dead[0][1] if self.dead else "(batch)"

    def encode(self) -> bytes:
        return orjson.dumps({
            "k": [[d, s, _us(t)] for d, s, t in self.keys],
            "r": [[_us(t), d, m, v, f, q] for t, d, m, v, f, q in self.readings],
            "e": [[_us(t), d, c, s, x, q] for t, d, c, s, x, q in self.events],
            "s": [[d, s, r, _us(t)] for d, s, r, t in self.statuses],
            "d": [[_us(t), tp, r, x, base64.b64encode(p).decode()] for t, tp, r, x, p in self.dead],
            "a": [a.to_json() for a in self.alarms],
            "f": self.fence,
        }) + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> WriteBatch:
        o = orjson.loads(line)
        return cls(
            keys=[(d, s, _dt(t)) for d, s, t in o["k"]],
            readings=[(_dt(t), d, m, v, f, q) for t, d, m, v, f, q in o["r"]],
            events=[(_dt(t), d, c, s, x, q) for t, d, c, s, x, q in o["e"]],
            statuses=[(d, s, r, _dt(t)) for d, s, r, t in o["s"]],
            dead=[(_dt(t), tp, r, x, base64.b64decode(p)) for t, tp, r, x, p in o["d"]],
            alarms=[AlarmWrites.from_json(a) for a in o.get("a", [])],
            fence={str(c): int(e) for c, e in o.get("f", {}).items()},
        )
