"""Web Push to the phones of the people a ticket message is for. Does I/O (PostgreSQL, HTTP).

A worker turns notifications on in the phone page (``viz/assets/push.js``): the browser subscribes at its push
service with our VAPID public key (:func:`keys`) and the page stores the subscription (``POST
/api/v1/push/subscriptions``, :func:`save_subscription`). For each ticket message on a worker's MQTT topic the
notifier (:mod:`gateway.notify.service`) sends that worker's subscriptions a notification (pywebpush: the
payload encrypted for the browser, aes128gcm, and signed with VAPID): title, a few lines and the ticket's link,
which ``/sw.js`` shows and opens on a tap. A subscription the push service says is gone (404/410) is deleted;
a failed send is retried like a webhook's.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
import psycopg
from cryptography.hazmat.primitives import serialization
from psycopg.rows import class_row
from py_vapid import Vapid

from gateway.notify.formats import EVENT_ZH, summary
from twin.people import User

log = logging.getLogger(__name__)
MAX_ENDPOINT = 1000
TTL_S = 3600  # a push service keeps an undelivered notification this long (a phone switched off for an hour)
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
B64URL = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")
URL_CHARS = re.compile(r"^[\x21-\x7e]+$")  # a URL as browsers send it: printable ASCII, no spaces or controls


class BadSubscription(ValueError):
    """A subscription the browser did not make: says which field and why."""


@dataclass(frozen=True, slots=True)
class Subscription:
    endpoint: str
    person: str  # whose tickets: the id of their worker topic
    username: str
    p256dh: str
    auth: str

    def info(self) -> dict[str, Any]:
        """pywebpush's ``subscription_info``."""
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}


def _b64url(data: str, field: str, size: int) -> str:
    if not B64URL.match(data):
        raise BadSubscription(f"keys.{field} is not base64url")
    try:
        raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    except (binascii.Error, ValueError):
        raise BadSubscription(f"keys.{field} is not base64url") from None
    if len(raw) != size:
        raise BadSubscription(f"keys.{field} must be {size} bytes, got {len(raw)}")
    return data


def check_endpoint(endpoint: str) -> None:
    if len(endpoint) > MAX_ENDPOINT:
        raise BadSubscription(f"endpoint is longer than {MAX_ENDPOINT} characters")
    if not URL_CHARS.match(endpoint):
        raise BadSubscription("endpoint must be a URL of printable ASCII characters (no spaces or control characters)")


def check_subscription(endpoint: str, p256dh: str, auth: str, *, allow_http_loopback: bool = False) -> None:
    """A PushSubscription as browsers make it: an https endpoint (``http://`` only to this machine when
    ``allow_http_loopback``), a P-256 public key (65 bytes) and a 16-byte auth secret, base64url."""
    check_endpoint(endpoint)
    u = urlsplit(endpoint)
    local = u.scheme == "http" and allow_http_loopback and (u.hostname or "") in LOOPBACK
    if not (u.scheme == "https" or local) or not u.hostname:
        raise BadSubscription("endpoint must be the https:// URL of a push service")
    _b64url(p256dh, "p256dh", 65)
    _b64url(auth, "auth", 16)
    if not base64.urlsafe_b64decode(p256dh + "=" * (-len(p256dh) % 4)).startswith(b"\x04"):
        raise BadSubscription("keys.p256dh must be an uncompressed P-256 point")


def keys(conn: psycopg.Connection) -> tuple[Vapid, str]:
    """The VAPID key pair and its public key (base64url), made on first use and kept in ``push_keys``."""
    row = conn.execute("SELECT private_pem, public_key FROM push_keys WHERE id = 1").fetchone()
    if row is None:
        v = Vapid()
        v.generate_keys()
        point = v.public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        public = base64.urlsafe_b64encode(point).rstrip(b"=").decode()
        conn.execute("INSERT INTO push_keys (id, private_pem, public_key) VALUES (1, %s, %s) "
                     "ON CONFLICT (id) DO NOTHING", (v.private_pem().decode(), public))
        row = conn.execute("SELECT private_pem, public_key FROM push_keys WHERE id = 1").fetchone()
        assert row is not None
    return Vapid.from_pem(row[0].encode()), str(row[1])


def person_of(user: User) -> str:
    """The id the user's tickets are published under: a worker's community id, else the username."""
    return user.worker_id or user.username


def save_subscription(conn: psycopg.Connection, user: User, endpoint: str, p256dh: str, auth: str) -> None:
    """Store (or move to ``user``) a browser's subscription."""
    conn.execute("INSERT INTO push_subscriptions (endpoint, person, username, p256dh, auth) "
                 "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (endpoint) DO UPDATE SET person = EXCLUDED.person, "
                 "username = EXCLUDED.username, p256dh = EXCLUDED.p256dh, auth = EXCLUDED.auth, failures = 0",
                 (endpoint, person_of(user), user.username, p256dh, auth))


def delete_subscription(conn: psycopg.Connection, username: str, endpoint: str) -> bool:
    cur = conn.execute("DELETE FROM push_subscriptions WHERE endpoint = %s AND username = %s", (endpoint, username))
    return cur.rowcount > 0


def subscriptions(conn: psycopg.Connection, person: str) -> list[Subscription]:
    """The browsers subscribed for ``person`` (the id in their worker topic)."""
    with conn.cursor(row_factory=class_row(Subscription)) as cur:
        return cur.execute("SELECT endpoint, person, username, p256dh, auth FROM push_subscriptions "
                           "WHERE person = %s ORDER BY created_at", (person,)).fetchall()


def payload(message: Mapping[str, Any]) -> bytes:
    """What ``/sw.js`` shows: a title, the body lines and the ticket page to open (a path on this site)."""
    ticket = message.get("ticket") or {}
    event = str(message.get("event") or message.get("type") or "")
    lines = summary(message).splitlines()
    title = f"{EVENT_ZH.get(event, event)} #{ticket.get('id')}"
    return orjson.dumps({"title": title, "body": "\n".join(lines[:4]), "url": f"/worker/ticket/{ticket.get('id')}",
                         "tag": f"ticket-{ticket.get('id')}"})
