"""On-disk spool for gateway batches while the database is down. Does file I/O.

Append-only segment files of JSON lines, one batch a line, fsynced before the batch's messages are
acknowledged to the broker. Replayed oldest first when the database is back; a segment is deleted
only after every batch in it was committed, and a replay interrupted half-way is safe because the
database drops messages it already has (``message_keys``). Bounded: when ``max_bytes`` is reached,
:meth:`Spool.append` refuses and the gateway stops acknowledging (back-pressure to the broker).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SEGMENT_BYTES = 16 * 1024 * 1024


def _us(ts: datetime) -> int:
    return (ts - _EPOCH) // timedelta(microseconds=1)


def _dt(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


@dataclass(frozen=True, slots=True)
class SpoolBatch:
    keys: list[tuple[int, int, datetime]]
    readings: list[tuple[datetime, int, int, float, int]]
    events: list[tuple[datetime, int, str, str, str | None, int]]
    statuses: list[tuple[int, str, str | None, datetime]]
    dead: list[tuple[datetime, str, str, str, bytes]]

    def encode(self) -> bytes:
        return orjson.dumps({
            "k": [[d, s, _us(t)] for d, s, t in self.keys],
            "r": [[_us(t), d, m, v, f] for t, d, m, v, f in self.readings],
            "e": [[_us(t), d, c, s, x, q] for t, d, c, s, x, q in self.events],
            "s": [[d, s, r, _us(t)] for d, s, r, t in self.statuses],
            "d": [[_us(t), tp, r, x, base64.b64encode(p).decode()] for t, tp, r, x, p in self.dead],
        }) + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> SpoolBatch:
        o = orjson.loads(line)
        return cls(
            keys=[(d, s, _dt(t)) for d, s, t in o["k"]],
            readings=[(_dt(t), d, m, v, f) for t, d, m, v, f in o["r"]],
            events=[(_dt(t), d, c, s, x, q) for t, d, c, s, x, q in o["e"]],
            statuses=[(d, s, r, _dt(t)) for d, s, r, t in o["s"]],
            dead=[(_dt(t), tp, r, x, base64.b64decode(p)) for t, tp, r, x, p in o["d"]],
        )


class Spool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        directory.mkdir(parents=True, exist_ok=True)

    def _segments(self) -> list[Path]:
        return sorted(self.directory.glob("*.jsonl"))

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self._segments())

    def pending(self) -> bool:
        return any(p.stat().st_size > 0 for p in self._segments())

    def append(self, batch: SpoolBatch) -> bool:
        """Durably append; False (nothing written) when the spool is full."""
        data = batch.encode()
        segments = self._segments()
        total = sum(p.stat().st_size for p in segments)
        if total + len(data) > self.max_bytes:
            return False
        if segments and segments[-1].stat().st_size + len(data) <= SEGMENT_BYTES:
            target = segments[-1]
        else:
            nxt = int(segments[-1].stem) + 1 if segments else 1
            target = self.directory / f"{nxt:08d}.jsonl"
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return True

    def replay(self, write: Callable[[SpoolBatch], None]) -> int:
        """Write every spooled batch oldest first; delete each segment once all of it is written.

        Propagates the first exception from ``write`` (the rest stays spooled). Returns batches written.
        """
        n = 0
        for seg in self._segments():
            with seg.open("rb") as f:
                for line in f:
                    if line.strip():
                        write(SpoolBatch.decode(line))
                        n += 1
            seg.unlink()
        return n
