"""The notifier: every ticket message a worker receives on MQTT, also posted to the configured webhooks. Does I/O.

It is a subscriber like a worker's phone (in cluster mode a shared subscription, ``$share/{root}-notify/...``,
so that of N gateways one posts each message): a persistent MQTT session (``{client_id}-notify``, clean session off)
on ``{root}/v1/workers/+/tickets`` at QoS 1 with manual acknowledgement, so a message is acknowledged to the
broker only once every channel that wants it has taken it (or given up on it), and messages published while
the notifier is down wait on the broker. Each message goes to each webhook whose filters (events,
priorities, grids) it passes, POSTed with the channel's format (:mod:`gateway.notify.formats`); a failed
attempt (no answer in ``timeout_s``, a network error, an HTTP 5xx or 429) is retried after 1, 2, 4 ... 60 s
with jitter, up to ``attempts`` times; a 4xx other than 429 is the receiver refusing the message (logged,
not retried). Messages are handled one at a time in arrival order. A bad message (not a ticket message of the
contract) is logged, counted and acknowledged: it cannot stop the ones after it.

Hand-written around the stdlib's ``urllib.request``: a JSON POST with a time limit needs no HTTP library.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import orjson
import psycopg
import requests
from pydantic import ValidationError
from pywebpush import WebPushException, webpush

from gateway.mqtt.common import MqttError, transport_options
from gateway.mqtt.paho_transport import PahoTransport
from gateway.notify import push
from gateway.notify.formats import Request, request
from gateway.ratelimit import EveryFewSeconds
from gateway.settings import NOTIFY_EVENTS, Settings, WebhookSettings
from gateway.storage import Storage, StorageError
from twin import contract

log = logging.getLogger(__name__)
BACKOFF_MAX_S = 60.0
PUSH_ATTEMPTS = 4

Post = Callable[[Request, float], int]  # the request, its time limit -> HTTP status (raises OSError when no answer)


def post(req: Request, timeout_s: float) -> int:
    """POST with the stdlib; the HTTP status (4xx/5xx too), or OSError when the receiver did not answer."""
    http = urllib.request.Request(req.url, data=req.body, headers=dict(req.headers), method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(http, timeout=timeout_s) as resp:  # noqa: S310 - the URL's scheme is checked
            resp.read(65536)
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)


def wants(channel: WebhookSettings, message: contract.TicketMessage, raw: Mapping[str, Any]) -> bool:
    """Whether the channel's filters pass the message."""
    event = message.event or message.type
    if channel.events and event not in channel.events:
        return False
    priority = (raw.get("ticket") or {}).get("priority")
    if channel.priorities and priority not in channel.priorities:
        return False
    return not channel.grids or message.grid in channel.grids


class Notifier:
    """Start with :meth:`start`, end with :meth:`stop`. ``counts``: sent, failed (gave up), refused (4xx),
    skipped (filtered out), bad (not a ticket message), per channel where it applies."""

    def __init__(self, settings: Settings, mqtt_url: str, *, db_url: str | None = None, shared: bool = False,
                 post: Post = post, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.db_url = db_url if settings.notify.web_push else None
        self.channels = list(settings.notify.webhooks)
        self.link_base = settings.api.public_url
        self.counts: Counter[str] = Counter()
        self._bad_log = EveryFewSeconds(10.0)  # at most one line per 10 s about messages that are not tickets
        self._post = post
        self._clock = clock
        self._inbox: queue.Queue[tuple[str, bytes, int] | None] = queue.Queue()
        self._db: Storage | None = None  # the notifier thread's connection (Web Push subscriptions)
        self._vapid: Any = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notifier", daemon=True)
        topic_filter = contract.worker_tickets_filter(settings.mqtt.topic_root)
        if shared:  # N gateways: each message to one of their notifiers, not to each
            topic_filter = f"$share/{settings.mqtt.topic_root}-notify/{topic_filter}"
        self.transport = PahoTransport(
            mqtt_url, client_id=f"{settings.mqtt.client_id}-notify"[:64],
            subscriptions=[(topic_filter, 1)],
            on_message=self._on_message, **transport_options(settings.mqtt, mqtt_url, status=False))

    def start(self, timeout_s: float = 10.0) -> None:
        """Connect and subscribe; returns once the broker granted the subscription (or after ``timeout_s``,
        logged: the transport keeps trying, and the persistent session keeps what arrives meanwhile)."""
        self._thread.start()
        try:
            self.transport.start(timeout_s)
        except MqttError as exc:  # the broker went away since the gateway connected: try again in the background
            log.warning("notifier: cannot connect to the broker (%s); retrying", exc)
            threading.Thread(target=self._connect_later, name="notifier-connect", daemon=True).start()
            return
        if not self.transport.subscribed.wait(timeout_s):
            log.warning("notifier: no subscription to the workers' topics after %.0f s (still trying)", timeout_s)
        log.info("notifier: Web Push %s; webhooks: %s", "on" if self.db_url else "off",
                 ", ".join(c.name for c in self.channels) or "none")

    def _connect_later(self) -> None:
        delay = 1.0
        while not self._stop.wait(delay * random.uniform(0.8, 1.2)):
            try:
                self.transport.start()
                return
            except MqttError:
                delay = min(delay * 2, BACKOFF_MAX_S)

    def stop(self) -> None:
        """Stop after the message in hand (its remaining retries are abandoned; unacknowledged, the broker
        delivers it again next time)."""
        self._stop.set()
        self._inbox.put(None)
        if self._thread.is_alive():
            self._thread.join(15)
        self.transport.stop()
        self._close_db()

    def _on_message(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        self._inbox.put((topic, payload, mid if qos else 0))

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self._inbox.get()
            if item is None:
                return
            topic, payload, mid = item
            try:
                done = self._handle(topic, payload)
            except Exception:  # a defect here must not end notifications: log it and go on
                log.exception("notifier: message on %s not handled", topic)
                done = True
            if done and mid:
                self.transport.ack_many([mid])

    def _handle(self, topic: str, payload: bytes) -> bool:
        """Send the message to every channel that wants it; False when stopped before it was done."""
        try:
            raw = orjson.loads(payload)
            message = contract.TicketMessage.model_validate(raw)
        except (orjson.JSONDecodeError, ValidationError) as exc:
            self.counts["bad"] += 1
            if self._bad_log.due():  # a device or a bug flooding the topic must not flood the log
                log.warning("notifier: not a ticket message on %s (%d so far): %s", topic, self.counts["bad"],
                            str(exc).splitlines()[0][:200])
            return True
        for channel in self.channels:
            if not wants(channel, message, raw):
                self.counts[f"skipped:{channel.name}"] += 1
                continue
            if not self._send(channel, raw):
                return False
        worker = contract.parse_worker_topic(self.settings.mqtt.topic_root, topic)
        if self.db_url is not None and worker is not None and (message.event or message.type) in NOTIFY_EVENTS:
            return self._push(worker, raw)
        return True

    def _push(self, worker: str, raw: Mapping[str, Any]) -> bool:
        """Web Push to each of the worker's subscribed browsers; False only when stopped meanwhile. One
        connection (and the VAPID key, read once) serves every message; a broken one is replaced next time."""
        try:
            if self._db is None:
                self._db = Storage.connect(self.db_url or "", schema=self.settings.db.schema_name)
            st = self._db
            subs = push.subscriptions(st.conn, worker)
            if not subs:
                return True
            if self._vapid is None:
                self._vapid, _public = push.keys(st.conn)
            body = push.payload(raw)
            for sub in subs:
                if not self._push_one(st, self._vapid, sub, body):
                    return False
        except (StorageError, psycopg.Error) as exc:  # no database: the phone still has its MQTT message
            self.counts["failed:push"] += 1
            log.warning("notifier: no Web Push for %s (database: %s)", worker, str(exc).splitlines()[0][:200])
            self._close_db()
        return True

    def _close_db(self) -> None:
        if self._db is not None:
            with contextlib.suppress(psycopg.Error):
                self._db.close()
            self._db = None

    def _push_one(self, st: Storage, vapid: Any, sub: push.Subscription, body: bytes) -> bool:
        delay = 1.0
        for attempt in range(1, PUSH_ATTEMPTS + 1):
            try:
                webpush(sub.info(), data=body.decode(), vapid_private_key=vapid, ttl=push.TTL_S, timeout=5,
                        vapid_claims={"sub": self.settings.notify.push_contact})
                st.conn.execute("UPDATE push_subscriptions SET last_sent_at = now(), failures = 0 WHERE endpoint = %s",
                                (sub.endpoint,))
                self.counts["sent:push"] += 1
                return True
            except WebPushException as exc:
                status = exc.response.status_code if exc.response is not None else 0
            except (OSError, requests.RequestException) as exc:
                status = 0
                log.info("notifier: push to %s failed: %s", sub.username, exc)
            if status in (404, 410):  # the browser unsubscribed, or the push service forgot it
                st.conn.execute("DELETE FROM push_subscriptions WHERE endpoint = %s", (sub.endpoint,))
                self.counts["gone:push"] += 1
                return True
            if 400 <= status < 500 and status != 429:
                self.counts["refused:push"] += 1
                log.warning("notifier: push service refused a notification for %s: HTTP %s", sub.username, status)
                return True
            st.conn.execute("UPDATE push_subscriptions SET failures = failures + 1 WHERE endpoint = %s",
                            (sub.endpoint,))
            if attempt < PUSH_ATTEMPTS and self._stop.wait(delay * random.uniform(0.8, 1.2)):
                return False
            delay = min(delay * 2, BACKOFF_MAX_S)
        self.counts["failed:push"] += 1
        return True

    def _send(self, channel: WebhookSettings, raw: Mapping[str, Any]) -> bool:
        """One message to one channel, with retries; False only when stopped meanwhile."""
        delay = 1.0
        for attempt in range(1, channel.attempts + 1):
            req = request(channel.format, channel.url, raw, secret=channel.secret, link_base=self.link_base,
                          now_ms=int(self._clock() * 1000))
            try:
                status = self._post(req, channel.timeout_s)
                why = f"HTTP {status}"
            except OSError as exc:
                status, why = 0, str(exc) or type(exc).__name__
            if 200 <= status < 300:
                self.counts[f"sent:{channel.name}"] += 1
                return True
            if 400 <= status < 500 and status != 429:
                self.counts[f"refused:{channel.name}"] += 1
                log.warning("notifier: %s refused ticket %s: %s", channel.name, raw["ticket"].get("id"), why)
                return True
            if attempt == channel.attempts:
                break
            log.info("notifier: %s attempt %d failed (%s), again in %.0f s", channel.name, attempt, why, delay)
            if self._stop.wait(delay * random.uniform(0.8, 1.2)):
                return False
            delay = min(delay * 2, BACKOFF_MAX_S)
        self.counts[f"failed:{channel.name}"] += 1
        log.error("notifier: gave up on ticket %s for %s after %d attempts", raw["ticket"].get("id"), channel.name,
                  channel.attempts)
        return True
