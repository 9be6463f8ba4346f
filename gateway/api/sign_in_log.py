"""Sign-ins for the audit log: one ``sign_in_events`` row per attempt whose password was checked. Does I/O.

The dashboard's sign-in (:mod:`gateway.web.sign_in`) and the REST API's login call :func:`record_sign_in` on the
connection that checked the password. A failure to record is logged and never stops a sign-in.
"""

from __future__ import annotations

import logging
from typing import Literal

import psycopg

log = logging.getLogger(__name__)

Via = Literal["dashboard", "api"]


def record_sign_in(conn: psycopg.Connection, username: str, ok: bool, client: str, via: Via) -> None:
    """Store one attempt (``username`` as typed, cut to 64 characters; ``client``: the address)."""
    try:
        with conn.transaction():
            conn.execute("INSERT INTO sign_in_events (username, ok, client, via) VALUES (%s, %s, %s, %s)",
                         (username[:64], ok, client[:64], via))
    except psycopg.Error as exc:
        log.warning("sign-in of %r not recorded for the audit log: %s", username[:64], str(exc).splitlines()[0:1])
