"""What ``gridtwin demo`` tells a person and where it says the dashboard is.

:func:`served_settings` makes the links the system hands out (the resident's rating link) point at the
dashboard the demo really serves, unless ``api.public_url`` was set; :class:`DemoStatus` turns the
gateway's counters and the database's alarms and tickets into a short line, printed only when something
a person watching would care about changed (alarms, tickets, rejected messages, database trouble).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.settings import Settings

DEMO_HOST = "127.0.0.1"


def served_url(port: int, host: str = DEMO_HOST) -> str:
    """The dashboard's base URL (no trailing slash) when served on ``host:port``."""
    return f"http://{host}:{port}"


def served_settings(s: Settings, url: str) -> Settings:
    """``s`` with ``api.public_url`` = ``url`` (the base the dashboard is served at), unless the settings
    set it (a site behind a proxy knows its public address better than we do)."""
    if "public_url" in s.api.model_fields_set:
        return s
    return s.model_copy(update={"api": s.api.model_copy(update={"public_url": url})})


@dataclass(frozen=True, slots=True)
class Counts:
    """What the status line reports."""

    alarms: int | None  # active alarms (None: the database could not be read)
    critical: int  # of which critical
    tickets: int | None  # open tickets
    readings: int  # readings stored since the start
    rejected: int  # messages rejected at the edge since the start
    db_errors: int  # failed writes (the spool keeps the data)
    spooled: int  # batches waiting in the spool for the database

    def key(self) -> tuple[int, ...]:
        """What must change for a new line: not the readings, which grow all the time."""
        return (-1 if self.alarms is None else self.alarms, self.critical, -1 if self.tickets is None else self.tickets,
                self.rejected, self.db_errors, self.spooled > 0)


def counts(snapshot: dict[str, Any], alarms: int | None, critical: int, tickets: int | None) -> Counts:
    rejected = snapshot.get("rejected") or {}
    return Counts(alarms=alarms, critical=critical, tickets=tickets, readings=int(snapshot.get("readings_written", 0)),
                  rejected=sum(int(v) for v in rejected.values()), db_errors=int(snapshot.get("db_errors", 0)),
                  spooled=int(snapshot.get("spooled", 0)))


def status_line(c: Counts, at: datetime) -> str:
    """One short line for a person, e.g.
    ``12:03:05  2 active alarms (1 critical), 1 open ticket; 48,210 readings stored``."""
    if c.alarms is None or c.tickets is None:
        head = "alarms and tickets unknown (the database cannot be read)"
    else:
        head = f"{c.alarms} active alarm{'s' if c.alarms != 1 else ''}"
        if c.critical:
            head += f" ({c.critical} critical)"
        head += f", {c.tickets} open ticket{'s' if c.tickets != 1 else ''}"
    parts = [head, f"{c.readings:,} readings stored"]
    if c.rejected:
        parts.append(f"{c.rejected:,} messages rejected")
    if c.db_errors or c.spooled:
        parts.append(f"database trouble: {c.db_errors} failed writes, {c.spooled} batches spooled")
    return f"{at:%H:%M:%S}  " + "; ".join(parts)


class DemoStatus:
    """Remembers what was last printed; :meth:`update` returns a line only when something changed."""

    def __init__(self) -> None:
        self._last: tuple[int, ...] | None = None

    def update(self, c: Counts, at: datetime) -> str | None:
        if c.key() == self._last:
            return None
        self._last = c.key()
        return status_line(c, at)


ALARMS_SQL = ("SELECT count(*), count(*) FILTER (WHERE severity = 'critical') FROM alarms "
              "WHERE status IN ('active_unack', 'active_ack')")
TICKETS_SQL = "SELECT count(*) FROM tickets WHERE state = ANY(%s)"


def read_counts(conn: Any, snapshot: dict[str, Any]) -> Counts:
    """The counts from the gateway's ``snapshot`` and the database (``conn``: autocommit, the schema's path)."""
    from twin.tickets.model import OPEN_STATES

    alarms, critical = conn.execute(ALARMS_SQL).fetchone()
    (tickets,) = conn.execute(TICKETS_SQL, ([s.value for s in OPEN_STATES],)).fetchone()
    return counts(snapshot, int(alarms), int(critical), int(tickets))
