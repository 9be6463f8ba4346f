"""Live alarms and tickets for browsers: one MQTT subscriber per web server process, fanned out to the
Server-Sent-Events streams of ``GET /api/v1/stream``. Does I/O (aiomqtt, on the server's event loop).

:class:`LiveHub` is started and stopped by the ASGI lifespan (:class:`gateway.web.asgi.WebApp`). Its task
connects to the broker with aiomqtt, subscribes to every community's alarm events
(``{root}/v1/alarms/+``) and every worker's tickets topic (``{root}/v1/workers/+/tickets``), validates
each message with the contract (:class:`twin.alarms.AlarmEvent`, :class:`twin.contract.AlarmRejected`,
:class:`twin.contract.CareStatusNotice`, :class:`twin.contract.TicketMessage`; a bad one is counted, logged
now and then, and skipped) and
offers it to every :class:`Subscription` whose user may see it (the REST API's rules: operators and
admins everything, workers and supervisors their grids, a worker also what is addressed to them).
When the broker goes away it reconnects with exponential backoff and jitter; the streams are told
(``status``: not connected) and, once it is subscribed again, told to ``resync``: what was published
in between is lost to them (a clean session), so they fetch the current state over REST.

Each subscription has a bounded queue. A subscriber that falls behind never slows the hub or the
others: when its queue is full, what it holds is dropped and replaced by one ``resync`` (memory stays
bounded; the browser refetches the snapshot). A browser that stops reading altogether is disconnected
by the response's send timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Literal

import aiomqtt
import orjson
from sse_starlette import ServerSentEvent

from gateway.mqtt.common import MqttError, tls_context
from gateway.ratelimit import EveryFewSeconds
from gateway.settings import MqttSettings
from twin import contract
from twin.alarms import AlarmEvent
from twin.community import Community
from twin.people import User

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 256 * 1024  # a ticket's whole view (readings, history, SOP) fits with room to spare
QUEUE_SIZE = 256  # events waiting for one browser; more and it is told to resync instead
MAX_SUBSCRIBERS = 1000  # streams per process; more are answered 503
KEEPALIVE_S = 15.0  # a comment line this often keeps proxies from closing an idle stream
SEND_TIMEOUT_S = 30.0  # a browser that has not taken an event for this long is disconnected
RETRY_MS = 3000  # how long a browser waits before it reconnects (the SSE `retry:` field)
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 15.0
RECENT = 64  # per stream: payloads remembered to drop the copy a ticket escalation sends to a second topic


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """One validated message from the broker, as every stream that may see it sends it."""

    kind: Literal["alarm", "ticket"]
    id: str  # the SSE event id: {hub boot}-{sequence}
    community: str | None
    grid: str | None  # whose grid it concerns (None: no building, or not a community this server knows)
    worker: str | None  # tickets: the worker whose topic it came on (it is addressed to them)
    data: str  # the JSON text of the event's `data:` line


@dataclass(frozen=True, slots=True)
class Resync:
    """Events were lost for this stream (it fell behind, or the hub reconnected): fetch the state again."""

    reason: Literal["overflow", "connected", "reconnected"]


@dataclass(frozen=True, slots=True)
class Status:
    """The hub lost the broker: no events until the ``resync`` that follows its return."""

    connected: bool


@dataclass(frozen=True, slots=True)
class End:
    """The server is shutting down: the stream ends (the browser reconnects to another worker or later)."""


Item = LiveEvent | Resync | Status | End


class HubUnavailable(Exception):
    """No stream can be opened now (the server is shutting down, or too many are open)."""


def visible(user: User, event: LiveEvent) -> bool:
    """Whether ``user`` may see ``event``: the REST API's rules (twin.people)."""
    if user.sees_everything():
        return True
    if event.kind == "ticket" and event.worker is not None and event.worker == user.worker_id:
        return True
    return event.grid is not None and event.grid in user.grids


@dataclass(eq=False)
class Subscription:
    """One open stream: its user, optional community filter and bounded queue."""

    user: User
    community: str | None
    size: int
    queue: asyncio.Queue[Item] = field(init=False)
    dropped: int = 0  # events discarded because the stream fell behind
    _recent: deque[int] = field(init=False)

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(max(2, self.size))
        self._recent = deque(maxlen=RECENT)

    def wants(self, event: LiveEvent) -> bool:
        if self.community is not None and event.community != self.community:
            return False
        if not visible(self.user, event):
            return False
        if event.kind == "ticket":  # an escalation sends one message to the assignee's and the supervisor's topic
            key = hash(event.data)
            if key in self._recent:
                return False
            self._recent.append(key)
        return True

    def offer(self, item: Item) -> None:
        """Queue ``item`` without waiting; a full queue is emptied and replaced by one ``resync``."""
        try:
            self.queue.put_nowait(item)
            return
        except asyncio.QueueFull:
            pass
        while not self.queue.empty():
            old = self.queue.get_nowait()
            if isinstance(old, End):
                self.queue.put_nowait(old)  # the end stays the end
                return
            if isinstance(old, LiveEvent):
                self.dropped += 1
        self.queue.put_nowait(Resync("overflow"))
        self.queue.put_nowait(item)


class LiveHub:
    """The process's MQTT subscriber for live alarms and tickets; see the module docstring.

    ``url``: the broker (``mqtt://`` or ``mqtts://`` with ``mqtt.ca_file`` / ``cert_file`` / ``key_file``);
    ``communities``: the ones this server knows (to find an alarm's grid). The attributes ``keepalive_s``,
    ``send_timeout_s``, ``backoff_min_s`` and ``backoff_max_s`` may be changed before streams open.
    """

    def __init__(self, mqtt: MqttSettings, url: str, communities: Iterable[Community] = (), *,
                 queue_size: int = QUEUE_SIZE, max_subscribers: int = MAX_SUBSCRIBERS,
                 keepalive_s: float = KEEPALIVE_S, send_timeout_s: float = SEND_TIMEOUT_S,
                 backoff_min_s: float = BACKOFF_MIN_S, backoff_max_s: float = BACKOFF_MAX_S) -> None:
        self.mqtt = mqtt
        self.url = url
        self.address = contract.BrokerAddress.parse(url)
        self.root = mqtt.topic_root
        self.communities = {c.id: c for c in communities}
        self.queue_size = queue_size
        self.max_subscribers = max_subscribers
        self.keepalive_s = keepalive_s
        self.send_timeout_s = send_timeout_s
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.client_id = f"gridtwin-web-live-{secrets.token_hex(4)}"
        self.boot = secrets.token_hex(4)  # event ids of this process: a browser's Last-Event-ID from another is stale
        self.connected = False
        self.connects = 0  # successful subscriptions so far
        self.received = 0  # valid messages fanned out
        self.rejected = 0  # messages that failed validation
        self._seq = 0
        self._subs: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._warn_broker = EveryFewSeconds(10.0)  # an outage logs a line now and then
        self._warn_message = EveryFewSeconds(10.0)  # so does a flood of bad messages
        self._grids = {(c.id, b.id): c.grid_of(b) for c in self.communities.values() for b in c.buildings}
        self._care_units = {(c.id, u.unit): u.building for c in self.communities.values() for u in c.care_units}

    # -- lifecycle (the ASGI lifespan) --------------------------------------------------------------------

    async def start(self) -> None:
        """Start the subscriber task on the running loop; returns at once (the broker may come later)."""
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._closing = False
        self._task = self._loop.create_task(self._run(), name="gridtwin-live-hub")

    async def stop(self) -> None:
        """End every stream, disconnect from the broker and stop the task."""
        self._end_all()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.connected = False

    def end_streams(self, *, refuse_new: bool = True) -> None:
        """From any thread: end every open stream now and refuse new ones (a server about to shut down);
        ``refuse_new=False``: browsers may come back at once (a network cut, as the browser tests make)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop stopped meanwhile: nothing streams any more
            loop.call_soon_threadsafe(self._end_all, refuse_new)

    def _end_all(self, refuse_new: bool = True) -> None:
        if refuse_new:
            self._closing = True
        for sub in list(self._subs):
            sub.offer(End())

    # -- streams ------------------------------------------------------------------------------------------

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def admit(self) -> None:
        """Raise :class:`HubUnavailable` if no stream can be opened now (answer 503 before the stream starts)."""
        if self._closing or self._task is None:
            raise HubUnavailable("the server is shutting down")
        if len(self._subs) >= self.max_subscribers:
            raise HubUnavailable(f"{self.max_subscribers} live streams are open on this server")

    def subscribe(self, user: User, community: str | None = None, *, queue_size: int | None = None) -> Subscription:
        """A new subscription (on the event loop); raises :class:`HubUnavailable`. :meth:`events` makes and
        ends its own; call :meth:`unsubscribe` for one made here."""
        self.admit()
        sub = Subscription(user, community, queue_size or self.queue_size)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    async def events(self, user: User, community: str | None = None) -> AsyncIterator[ServerSentEvent]:
        """One stream as Server-Sent Events: ``hello`` first, then ``alarm``, ``ticket``, ``status`` and
        ``resync`` until the server ends it, and a ``heartbeat`` after every ``keepalive_s`` without an event
        (the dashboard's "last updated" indicator turns red when neither comes for a while). It is
        subscribed only while the generator runs (from its first step until it ends, or is closed when the
        browser goes away), so a stream that never starts leaves nothing behind."""
        try:
            sub = self.subscribe(user, community)
        except HubUnavailable:
            return  # the server began to shut down after admit(): an empty stream, the browser comes back
        try:
            yield ServerSentEvent(_json({"v": 1, "connected": self.connected, "community": community,
                                         "user": user.username, "keepalive_s": self.keepalive_s}),
                                  event="hello", id=self._id(), retry=RETRY_MS)
            while True:
                try:
                    item = await asyncio.wait_for(sub.queue.get(), self.keepalive_s)
                except TimeoutError:  # idle: a heartbeat the page can see (comments never reach EventSource)
                    yield ServerSentEvent(_json({"v": 1, "connected": self.connected}), event="heartbeat")
                    continue
                if isinstance(item, End):
                    return
                if isinstance(item, LiveEvent):
                    yield ServerSentEvent(item.data, event=item.kind, id=item.id)
                elif isinstance(item, Resync):
                    yield ServerSentEvent(_json({"v": 1, "reason": item.reason, "connected": self.connected}),
                                          event="resync", id=self._id())
                else:
                    yield ServerSentEvent(_json({"v": 1, "connected": item.connected}), event="status", id=self._id())
        finally:
            self.unsubscribe(sub)

    # -- the broker ---------------------------------------------------------------------------------------

    def _id(self) -> str:
        return f"{self.boot}-{self._seq}"

    def _next_id(self) -> str:
        self._seq += 1
        return self._id()

    def _client(self) -> aiomqtt.Client:
        a = self.address
        protocol = aiomqtt.ProtocolVersion.V5 if self.mqtt.protocol == "5" else aiomqtt.ProtocolVersion.V311
        tls = tls_context(self.mqtt.ca_file, self.mqtt.cert_file, self.mqtt.key_file) if a.tls else None
        return aiomqtt.Client(a.host, a.port, username=a.username, password=a.password, identifier=self.client_id,
                              protocol=protocol, clean_session=True if protocol is aiomqtt.ProtocolVersion.V311
                              else None, keepalive=self.mqtt.keepalive, tls_context=tls, timeout=10,
                              max_queued_incoming_messages=10_000, logger=log)

    async def _run(self) -> None:
        delay = self.backoff_min_s
        while True:
            try:
                async with self._client() as client:
                    await self._subscribe(client)
                    delay = self.backoff_min_s
                    async for message in client.messages:
                        self.on_message(str(message.topic), message.payload)
            except (aiomqtt.MqttError, MqttError) as exc:
                if self._warn_broker.due():
                    log.warning("live updates: MQTT broker %s: %s (reconnecting)", self.address.redacted(), exc)
            except Exception:  # a bug here must not end live updates for good
                log.exception("live updates: the MQTT subscriber failed (reconnecting)")
            if self.connected:
                self.connected = False
                self._broadcast(Status(False))
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(self.backoff_max_s, max(delay, 0.05) * 2)

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        filters = [contract.alarm_events_filter(self.root), contract.worker_tickets_filter(self.root)]
        granted = await client.subscribe([(f, 1) for f in filters])
        refused = [f for f, code in zip(filters, granted, strict=False) if _code(code) >= 0x80]
        if refused:
            raise MqttError(f"the broker refused the subscription to {', '.join(refused)}: check the account's ACL "
                            "(the dashboard account reads alarms/+ and workers/+/tickets)")
        reason: Literal["connected", "reconnected"] = "reconnected" if self.connects else "connected"
        self.connects += 1
        self.connected = True
        log.info("live updates: subscribed to %s on %s", ", ".join(filters), self.address.redacted())
        self._broadcast(Resync(reason))  # whatever a stream fetched before now may be stale

    def _broadcast(self, item: Item) -> None:
        for sub in list(self._subs):
            sub.offer(item)

    def on_message(self, topic: str, payload: object) -> None:
        """Validate one message and offer it to the streams that may see it; a bad one is skipped."""
        try:
            event = self._event(topic, payload)
        except contract.ContractError as exc:
            self.rejected += 1
            if self._warn_message.due():
                log.warning("live updates: skipped a message on %s (%d skipped so far): %s", topic, self.rejected, exc)
            return
        if event is None:
            return
        self.received += 1
        for sub in list(self._subs):
            if sub.wants(event):
                sub.offer(event)

    def _event(self, topic: str, payload: object) -> LiveEvent | None:
        if not isinstance(payload, bytes | bytearray):
            raise contract.ContractError("bad_json", "payload is not bytes")
        raw = bytes(payload)
        if len(raw) > MAX_PAYLOAD_BYTES:
            raise contract.ContractError("too_large", f"payload is {len(raw)} bytes, limit {MAX_PAYLOAD_BYTES}")
        community = contract.parse_alarms_topic(self.root, topic)
        if community is not None:
            data, building = decode_alarm(raw)
            if data.get("kind") == "care_status":  # a resident away or back: for whoever serves the unit's building
                building = self._care_units.get((community, str(data["unit"])))
            return LiveEvent("alarm", self._next_id(), community, self._grid(community, building), None,
                             _json({"community": community, **data}))
        worker = contract.parse_worker_topic(self.root, topic)
        if worker is not None:
            msg, whole = contract.decode_ticket_message(raw, max_bytes=MAX_PAYLOAD_BYTES)
            return LiveEvent("ticket", self._next_id(), msg.community, msg.grid, worker, _json(whole))
        return None  # a topic the filters match but the contract does not name (e.g. a bad id): not ours

    def _grid(self, community: str, building: str | None) -> str | None:
        return None if building is None else self._grids.get((community, building))


def decode_alarm(raw: bytes) -> tuple[dict[str, object], str | None]:
    """A message from an alarm-events topic as the stream sends it (an alarm event in its canonical form, a
    command rejection or a care-status notice) and the building it concerns; raises
    :class:`twin.contract.ContractError`."""
    data = contract.json_object(raw)
    if data.get("kind") == "rejected":
        return contract.validate(contract.AlarmRejected, data).model_dump(), None
    if data.get("kind") == "care_status":  # the building comes from the community's care units
        return contract.validate(contract.CareStatusNotice, data).model_dump(), None
    try:
        e = AlarmEvent.from_json(data)
    except (KeyError, ValueError, TypeError) as exc:
        raise contract.ContractError("bad_schema", f"not an alarm event: {type(exc).__name__}: {exc}") from None
    texts = {"rule": e.rule, "subject": e.subject, "detail": e.detail}
    optional = {"building": e.building, "device": e.device, "by": e.by}
    bad = [k for k, v in texts.items() if not isinstance(v, str)]
    bad += [k for k, v in optional.items() if v is not None and not isinstance(v, str)]
    if e.floor is not None and (isinstance(e.floor, bool) or not isinstance(e.floor, int)):
        bad.append("floor")
    if bad:
        raise contract.ContractError("bad_schema", f"alarm event field(s) of the wrong type: {', '.join(bad)}")
    return e.to_json(), e.building


def _code(granted: object) -> int:
    """A SUBACK code from aiomqtt: an int (MQTT 3.1.1) or a paho ReasonCode (MQTT 5)."""
    value = getattr(granted, "value", granted)
    return value if isinstance(value, int) else 0x80


def _json(data: object) -> str:
    return orjson.dumps(data).decode()
