"""On-disk spool for gateway batches while the database is down. Does file I/O.

Append-only segment files of JSON lines, one batch a line, fsynced before the batch's messages are
acknowledged to the broker. Replayed oldest first when the database is back; a segment is deleted
only after every batch in it was committed, and a replay interrupted half-way is safe because the
database drops messages it already has (``message_keys``). Bounded: when ``max_bytes`` is reached,
:meth:`Spool.append` refuses and the gateway stops acknowledging (back-pressure to the broker).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from gateway.ingest.batch import WriteBatch

log = logging.getLogger(__name__)
SEGMENT_BYTES = 16 * 1024 * 1024
SpoolBatch = WriteBatch  # a spooled batch is exactly what the writer would have committed


def write_durably(path: Path, data: bytes, *, append: bool = False) -> None:
    """Write (or append) ``data`` and fsync it before returning (owner-only file)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


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
        write_durably(target, data, append=True)
        return True

    def replay(self, write: Callable[[SpoolBatch], None]) -> int:
        """Write every spooled batch oldest first; delete each segment once all of it is written.

        Propagates the first exception from ``write`` (the rest stays spooled; what was written is
        skipped as duplicates next time: message keys and alarm event uids). A torn line (the process
        died while appending it, so its messages were never acknowledged and the broker redelivers
        them) is skipped. Returns batches written.
        """
        n = 0
        for seg in self._segments():
            with seg.open("rb") as f:
                for line in f:
                    if not line.strip():
                        continue
                    try:
                        batch = SpoolBatch.decode(line)
                    except (ValueError, KeyError, TypeError) as exc:
                        log.warning("spool %s: skipping a torn batch (%s)", seg.name, exc)
                        continue
                    write(batch)
                    n += 1
            seg.unlink()
        return n
