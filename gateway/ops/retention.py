"""Personal data past its retention period, removed on the ticket service's tick (every gateway runs it; the
statements are idempotent). Does I/O.

- workers' positions: 30 days (:data:`twin.patrols.RETENTION`, docs/patrols.md);
- care visits' photos after 90 days, notes and health/needs checklists after a year (:data:`twin.care.PHOTO_RETENTION`,
  :data:`twin.care.NOTE_RETENTION`, docs/care.md); the visit itself (when, by whom) stays with the resident.
- the residents' rate-limit buckets (hashed client addresses) once they are full again, by the database's clock
  (:func:`gateway.web.public_limits.purge`): minutes after the client's last POST;
- the outcomes of the residents' questions to the assistant after a year (:data:`gateway.assistant.outcomes.RETENTION`;
  they hold no personal data, but nothing needs them longer).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from gateway.assistant.outcomes import purge as purge_outcomes
from gateway.patrols.store import purge_positions
from gateway.web.public_limits import purge as purge_limits
from twin import care

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Purged:
    positions: int
    visit_photos: int
    visit_notes: int
    limits: int = 0
    assistant_outcomes: int = 0


def purge_personal_data(conn: psycopg.Connection[Any], now: datetime) -> Purged:
    """Delete or clear what is past its period as of ``now``; how much went (logged when anything did)."""
    positions = purge_positions(conn, now)
    photos = conn.execute("UPDATE care_visits SET photo = NULL, photo_type = NULL "
                          "WHERE photo IS NOT NULL AND visited_at < %s", (now - care.PHOTO_RETENTION,)).rowcount
    notes = conn.execute("UPDATE care_visits SET note = '', checks = '{}'::jsonb "
                         "WHERE (note <> '' OR checks <> '{}'::jsonb) AND visited_at < %s",
                         (now - care.NOTE_RETENTION,)).rowcount
    done = Purged(positions, max(photos, 0), max(notes, 0), purge_limits(conn), purge_outcomes(conn, now))
    if done.visit_photos or done.visit_notes:
        log.info("retention: cleared %d care visit photos and %d visit notes", done.visit_photos, done.visit_notes)
    return done
