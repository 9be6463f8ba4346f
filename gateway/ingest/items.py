"""What flows through the gateway's writer: received items, the rules' part of a commit, counters. Pure.

Split out of :mod:`gateway.ingest.pipeline` (which re-exports these names).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.alarms.service import AlarmService
from gateway.ingest.batch import AlarmWrites, KeyRow
from gateway.ingest.validate import Accepted, Rejected
from twin.alarms import AlarmEvent


@dataclass
class Stats:
    """Counters since start; read by `gridtwin gateway` logs, /metrics and tests."""

    received: int = 0
    accepted: int = 0
    readings_written: int = 0
    events_written: int = 0
    batches: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    db_errors: int = 0
    duplicates: int = 0
    spooled: int = 0
    alarm_events: int = 0
    poisoned_batches: int = 0  # batches a data error made the writer retry device by device
    error_replies_suppressed: int = 0  # error replies not sent (per-device rate limit)
    dead_letters_dropped: int = 0  # rejects counted but not stored (per-reason storage budget)
    spool_fenced: int = 0  # spooled alarm writes replayed as alarm events only: their lease had moved on
    last_write_s: float = 0.0

    def snapshot(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "accepted": self.accepted,
            "readings_written": self.readings_written,
            "events_written": self.events_written,
            "batches": self.batches,
            "rejected": dict(self.rejected),
            "db_errors": self.db_errors,
            "duplicates": self.duplicates,
            "spooled": self.spooled,
            "alarm_events": self.alarm_events,
            "poisoned_batches": self.poisoned_batches,
            "error_replies_suppressed": self.error_replies_suppressed,
            "dead_letters_dropped": self.dead_letters_dropped,
            "spool_fenced": self.spool_fenced,
        }


_STOP = object()
LINGER_S = 0.003  # close a batch when no message arrived for this long
STALL_S = 60.0  # /healthz fails when a received message has waited this long to be stored
ERROR_REPLY_BURST, ERROR_REPLY_EVERY_S = 10, 10.0  # per device: 10 error replies at once, then one per 10 s
DEAD_LETTER_BURST, DEAD_LETTER_EVERY_S = 1000, 0.06  # per reason: ~1,000 stored a minute, the rest counted
Produced = list[tuple[AlarmService, list[AlarmEvent]]]


class Step:
    """The rules' part of one commit. The engine runs once however often the write is tried: its
    writes are computed the first time they are asked for and reused (spool, retry, isolation)."""

    def __init__(self, produced: Produced | None, run: Callable[[set[KeyRow]], Produced] | None = None,
                 communities: frozenset[str] | None = None) -> None:
        self.produced = produced
        # the communities this commit writes for (cluster mode fences their leases before the rules run)
        self.communities = communities if communities is not None else frozenset(
            svc.community.id for svc, _evs in produced or [])
        self._run = run
        self._writes: list[AlarmWrites] | None = None

    @property
    def done(self) -> bool:
        return self.produced is not None

    def writes(self, duplicates: set[KeyRow]) -> list[AlarmWrites]:
        if self._writes is None:
            if self.produced is None:
                self.produced = self._run(duplicates) if self._run is not None else []
            self._writes = [w for svc, evs in self.produced if (w := svc.writes(evs)) is not None]
        return self._writes


@dataclass(frozen=True, slots=True)
class Command:
    """An operator's alarm command (acknowledge, shelve, ...) for one community's alarm service."""

    community: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Item:
    """One received message on its way to the writer, with what is needed to acknowledge it."""

    result: Accepted | Rejected | Command
    mid: int
    qos: int
    received: float = 0.0  # time.monotonic() when it came off the wire (oldest-unwritten age)
    src: str | None = None  # cluster mode: the community whose MQTT session delivered it (and acknowledges it)
