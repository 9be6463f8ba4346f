"""What became of the residents' questions (migration ``0021_assistant_outcomes.sql``): one row per answer shown on
the public building page, then the resident's "did this help?" and whether they handed it off. Does I/O.

No personal data: no client address, no question text (a handoff's ticket holds that), only the community, the day,
the entry shown, whether the assistant was sure, the emergency kind (:mod:`twin.assistant.urgent`) and the outcome.
The answer page carries the row's ``ref`` (a random token) in its feedback and handoff forms; feedback counts for
:data:`FEEDBACK_DAYS` after the answer. Rows go after :data:`RETENTION` (:func:`purge`, on the ticket service's tick
through :func:`gateway.ops.retention.purge_personal_data`).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import psycopg

RETENTION = timedelta(days=365)
FEEDBACK_DAYS = 2
SUMMARY_DAYS = 30
REF_RE = re.compile(r"^[A-Za-z0-9_\-]{16,43}$")


@dataclass(frozen=True, slots=True)
class EntryCount:
    entry: str
    shown: int  # answers that showed it first
    not_helped: int  # "did not help" or handed off


@dataclass(frozen=True, slots=True)
class Summary:
    """The last ``days`` days of one community's answers (``since``: the first day counted)."""

    days: int
    since: date
    answered: int
    confident: int
    helped: int  # "yes, that helped"
    not_helped: int  # "no", or handed off
    handoffs: int
    urgent: int  # answers about an emergency
    top: tuple[EntryCount, ...]  # the entries shown most
    unhelpful: tuple[EntryCount, ...]  # the entries that most often did not help: what to improve


def record(conn: psycopg.Connection[Any], community: str, day: date, entry: str | None, confident: bool,
           urgent: str | None) -> str:
    """Store an answer that was shown; its ``ref`` for the page's forms."""
    ref = secrets.token_urlsafe(16)
    conn.execute("INSERT INTO assistant_outcomes (ref, community, day, entry, confident, urgent) "
                 "VALUES (%s, %s, %s, %s, %s, %s)", (ref, community, day, entry, confident, urgent))
    return ref


def feedback(conn: psycopg.Connection[Any], community: str, ref: str, helped: bool, today: date) -> bool:
    """The resident's "did this help?" for the answer ``ref`` (the last word counts, but a handed-off answer did
    not help); False when there is no such recent answer of ``community``."""
    if not REF_RE.match(ref):
        return False
    return conn.execute("UPDATE assistant_outcomes SET helped = %s WHERE ref = %s AND community = %s AND day >= %s "
                        "AND NOT handed_off", (helped, ref, community, today - timedelta(days=FEEDBACK_DAYS))
                        ).rowcount > 0


def handed_off(conn: psycopg.Connection[Any], community: str, ref: str, today: date) -> bool:
    """The answer ``ref`` was handed to a grid worker (so it did not help); False when there is no such answer."""
    if not REF_RE.match(ref):
        return False
    return conn.execute("UPDATE assistant_outcomes SET handed_off = true, helped = false WHERE ref = %s "
                        "AND community = %s AND day >= %s",
                        (ref, community, today - timedelta(days=FEEDBACK_DAYS))).rowcount > 0


def summary(conn: psycopg.Connection[Any], community: str, today: date, days: int = SUMMARY_DAYS,
            top: int = 5) -> Summary:
    """The figures of the last ``days`` days (today included)."""
    since = today - timedelta(days=days - 1)
    row = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE confident), count(*) FILTER (WHERE helped), "
        "count(*) FILTER (WHERE NOT helped), count(*) FILTER (WHERE handed_off), "
        "count(*) FILTER (WHERE urgent IS NOT NULL) FROM assistant_outcomes WHERE community = %s AND day >= %s",
        (community, since)).fetchone()
    assert row is not None
    per_entry = ("SELECT entry, count(*), count(*) FILTER (WHERE NOT helped) FROM assistant_outcomes "
                 "WHERE community = %s AND day >= %s AND entry IS NOT NULL GROUP BY entry ")
    shown = conn.execute(per_entry + "ORDER BY 2 DESC, 1 LIMIT %s", (community, since, top)).fetchall()
    bad = conn.execute(per_entry + "HAVING count(*) FILTER (WHERE NOT helped) > 0 ORDER BY 3 DESC, 2 DESC, 1 "
                       "LIMIT %s", (community, since, top)).fetchall()
    answered, confident, helped, not_helped, handoffs, urgent = (int(x) for x in row)
    return Summary(days, since, answered, confident, helped, not_helped, handoffs, urgent,
                   top=tuple(EntryCount(e, int(n), int(no)) for e, n, no in shown),
                   unhelpful=tuple(EntryCount(e, int(n), int(no)) for e, n, no in bad))


def purge(conn: psycopg.Connection[Any], now: datetime) -> int:
    """Delete the rows older than :data:`RETENTION`; how many went."""
    return max(conn.execute("DELETE FROM assistant_outcomes WHERE day < %s",
                            ((now - RETENTION).date(),)).rowcount, 0)
