"""GET /api/v1/stream against the real Mosquitto and PostgreSQL: the web server (uvicorn, as `gridtwin serve`
runs it) relays alarm events and worker tickets from the broker to browsers as Server-Sent Events.

Each test has its own topic root and schema. Nothing waits a fixed time: a stream's `hello` (and, when the
hub was not subscribed yet, its `resync`) says the server is listening before anything is published, and
the broker's PUBACK says a message left before the stream is read.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import httpx2
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway import settings as settings_mod
from gateway.api.app import SYNC_THREADS
from gateway.api.auth import Users, configure_hashing
from gateway.settings import Settings
from gateway.storage import Storage
from gateway.tickets.service import TicketService
from gateway.web.composition import DashboardHandle, start_dashboard
from gateway.web.live import End, LiveEvent, LiveHub, Resync
from tests.support.brokers import Mosquitto, wait_until
from twin import contract
from twin.alarms import AlarmEvent, AlarmStatus, Dispatch, EventKind, Severity
from twin.community import Community
from twin.people import Role, User

pytestmark = pytest.mark.integration
USERS = {  # username: (role, grids, worker id)
    "op": (Role.OPERATOR, [], None),
    "ma": (Role.WORKER, ["G1"], "w1-1"),
    "zhang": (Role.WORKER, ["G2"], "w2-1"),
}
KEEPALIVE_S = 0.3  # short, so a test sees keep-alive comments and a closed stream's reader wakes up soon


@pytest.fixture(autouse=True, scope="module")
def _cheap_hashing() -> Iterator[None]:
    configure_hashing(time_cost=1, memory_kib=1024, parallelism=1)  # argon2's real cost is tested elsewhere
    yield
    configure_hashing()


# -- the SSE client -------------------------------------------------------------------------------------------


@dataclass
class Event:
    event: str
    id: str
    data: Any


@dataclass
class Stream:
    """``GET /api/v1/stream`` read line by line in a thread; events and the stream's end go to a queue."""

    base: str
    token: str | None
    params: dict[str, str] = field(default_factory=dict)
    cookie: str | None = None  # the dashboard's session cookie instead of a bearer header
    status: int = 0
    content_type: str = ""
    body: str = ""
    comments: int = 0
    closed: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._items: queue.Queue[Event | None] = queue.Queue()
        self._stop = threading.Event()
        self._opened = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        assert self._opened.wait(15), "no response to GET /api/v1/stream"
        if self._error is not None:
            raise self._error

    def _read(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if self.cookie is not None:
            headers["Cookie"] = f"gridtwin_session={self.cookie}"
        try:
            with httpx2.Client(timeout=httpx2.Timeout(15.0)) as client, client.stream(
                    "GET", f"{self.base}api/v1/stream", headers=headers, params=self.params) as r:
                self.status = r.status_code
                self.content_type = r.headers.get("content-type", "")
                if r.status_code != 200:
                    r.read()
                    self.body = r.text
                    self._opened.set()
                    return
                self._opened.set()
                name, ident, data = "message", "", []
                for line in r.iter_lines():
                    if self._stop.is_set():
                        return
                    if line.startswith(":"):
                        self.comments += 1
                    elif line == "":
                        if data:
                            self._items.put(Event(name, ident, json.loads("\n".join(data))))
                        name, data = "message", []
                    else:
                        key, _, value = line.partition(":")
                        value = value.removeprefix(" ")
                        if key == "event":
                            name = value
                        elif key == "data":
                            data.append(value)
                        elif key == "id":
                            ident = value
        except BaseException as exc:
            self._error = exc
            self._opened.set()
        finally:
            self.closed.set()
            self._items.put(None)

    def next(self, event: str | None = None, timeout: float = 15.0) -> Event:
        """The next event (of kind ``event``, skipping others); fails on timeout or the end of the stream."""
        end = time.monotonic() + timeout
        while True:
            try:
                item = self._items.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {event or 'event'} within {timeout} s") from None
            if item is None:
                self._items.put(None)
                raise AssertionError(f"the stream ended before a {event or 'event'} came ({self._error!r})")
            if event is None or item.event == event:
                return item

    def ready(self) -> Event:
        """Wait until the server is subscribed to the broker: ``hello`` says so, or a ``resync`` follows it."""
        hello = self.next("hello")
        if not hello.data["connected"]:
            assert self.next("resync").data["reason"] in ("connected", "reconnected")
        return hello

    def close(self) -> None:
        self._stop.set()  # the reader returns at the next line (a keep-alive comes every KEEPALIVE_S)
        self._thread.join(15)
        assert not self._thread.is_alive(), "the stream reader did not stop"


# -- the server and the broker ----------------------------------------------------------------------------------


@dataclass
class Web:
    handle: DashboardHandle
    tokens: dict[str, str]
    streams: list[Stream] = field(default_factory=list)

    @property
    def hub(self) -> LiveHub:
        assert self.handle.live is not None
        return self.handle.live

    def stream(self, user: str | None, **params: str) -> Stream:
        s = Stream(self.handle.url, self.tokens.get(user or "", "no-such-token") if user else None, params)
        self.streams.append(s)
        return s


def _serve(settings: Settings, community: Community, mqtt_url: str) -> Web:
    assert settings.db.url
    now = datetime.now(UTC)
    tokens = {}
    with Storage.connect(settings.db.url, schema=settings.db.schema_name) as st:
        users = Users(st.conn)
        for name, (role, grids, worker) in USERS.items():
            users.add(name, "stream-password", role, grids=grids, worker_id=worker)
            tokens[name], _ = users.issue_token(name, now, timedelta(hours=1))
    handle = start_dashboard(settings, community, settings.db.url, mqtt_url, port=0)
    assert handle.live is not None, "with a broker URL the server relays live updates"
    handle.live.keepalive_s = KEEPALIVE_S
    handle.live.backoff_max_s = 0.2  # the broker-restart test: reconnect soon after the broker is back
    return Web(handle, tokens)


@pytest.fixture
def web(settings: Settings, storage: Storage, sample: Community) -> Iterator[Web]:
    assert settings.mqtt.url
    w = _serve(settings, sample, settings.mqtt.url)
    yield w
    for s in w.streams:
        s.close()
    w.handle.shutdown()


class Publisher:
    """A paho client that publishes at QoS 1 and returns once the broker has the message (PUBACK)."""

    def __init__(self, url: str) -> None:
        a = contract.BrokerAddress.parse(url)
        self.c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"stream-test-{uuid.uuid4().hex[:8]}")
        self.c.connect(a.host, a.port, keepalive=30)
        self.c.loop_start()

    def __call__(self, topic: str, payload: bytes, qos: int = 1) -> None:
        info = self.c.publish(topic, payload, qos=1)
        info.wait_for_publish(10)
        assert info.is_published(), f"no PUBACK for {topic}"

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def publish(mqtt_url: str) -> Iterator[Publisher]:
    p = Publisher(mqtt_url)
    yield p
    p.close()


def alarm(device: str = "B1-E1-M", building: str = "B1", floor: int = 1, *, rule: str = "elevator_entrapment",
          kind: EventKind = EventKind.RAISED, at: datetime | None = None) -> AlarmEvent:
    at = at or datetime.now(UTC)
    return AlarmEvent(kind, rule, device, "device", Severity.CRITICAL, AlarmStatus.ACTIVE_UNACK, at, at, 1,
                      building, floor, device, f"{rule} at {device}", Dispatch.URGENT)


def send_alarm(publish: Callable[[str, bytes], None], root: str, e: AlarmEvent, community: str = "sunshine") -> None:
    publish(contract.alarms_topic(root, community), json.dumps(e.to_json()).encode())


# -- the tests ------------------------------------------------------------------------------------------------


def test_alarms_and_tickets_arrive_as_events(web: Web, publish: Publisher, settings: Settings, storage: Storage,
                                            sample: Community, topic_root: str) -> None:
    s = web.stream("op")
    assert s.status == 200 and s.content_type.startswith("text/event-stream")
    hello = s.ready()
    assert hello.data["user"] == "op" and hello.id.startswith(web.hub.boot)

    raised = alarm()
    send_alarm(publish, topic_root, raised)
    got = s.next("alarm")
    assert got.data == {"community": "sunshine", **raised.to_json()}  # the contract's alarm event, with its community

    # a ticket, as the ticket service delivers it to the assignee's topic through the broker
    svc = TicketService(storage, settings, sample, publish=publish)
    ticket = svc.on_alarm_event(sample, alarm(at=datetime.now(UTC) + timedelta(seconds=1)))
    assert ticket is not None
    t = s.next("ticket")
    assert t.data["v"] == 1 and t.data["type"] == "ticket" and t.data["event"] == "created"
    assert t.data["ticket"]["id"] == ticket.id and t.data["ticket"]["location"]["community"] == "sunshine"
    assert t.data["ticket"]["location"]["grid"] == "G1"
    seq = [int(e.id.rsplit("-", 1)[1]) for e in (hello, got, t)]
    assert seq == sorted(seq) and len(set(seq)) == 3, seq  # an id per event, in order

    assert wait_until(lambda: s.comments >= 2, 10), "no keep-alive comments"
    assert web.hub.received == 2 and web.hub.rejected == 0


def test_the_stream_needs_a_token(web: Web) -> None:
    for s in (web.stream(None), web.stream("someone")):  # no token; a token nobody issued
        assert s.status == 401, s.status
        assert "token" in json.loads(s.body)["detail"]
    unknown = web.stream("op", community="atlantis")
    assert unknown.status == 404
    bad = web.stream("op", community="../etc")
    assert bad.status == 422
    assert web.hub.subscribers == 0  # nothing was subscribed for any of them


def test_the_dashboard_session_cookie_opens_the_stream_and_heartbeats_come(web: Web) -> None:
    """A browser's EventSource sends no header: the session cookie (the same token) opens the stream; a bad
    one is refused like a bad bearer token. An idle stream gets `heartbeat` events the page can see."""
    s = Stream(web.handle.url, None, cookie=web.tokens["op"])
    web.streams.append(s)
    assert s.status == 200
    assert s.ready().data["user"] == "op"
    beat = s.next("heartbeat", timeout=10)
    assert beat.data == {"v": 1, "connected": True}
    bad = Stream(web.handle.url, None, cookie="no-such-token")
    web.streams.append(bad)
    assert bad.status == 401, bad.status


def test_each_user_sees_what_the_api_lets_them_see(web: Web, publish: Publisher, topic_root: str) -> None:
    op, zhang = web.stream("op"), web.stream("zhang", community="sunshine")
    op.ready()
    zhang.ready()
    in_g1, in_g2 = alarm("B1-E1-M", "B1"), alarm("B3-E1-M", "B3", at=datetime.now(UTC) + timedelta(seconds=1))
    send_alarm(publish, topic_root, in_g1)
    send_alarm(publish, topic_root, in_g2)
    send_alarm(publish, topic_root, alarm(at=datetime.now(UTC) + timedelta(seconds=2)), community="elsewhere")
    assert [op.next("alarm").data["building"] for _ in range(2)] == ["B1", "B3"]
    assert op.next("alarm").data["community"] == "elsewhere"  # an operator sees every community under the root
    assert zhang.next("alarm").data["building"] == "B3"  # grid G2's worker: not B1 (G1), not another community
    # a rejected operator command is for operators only
    publish(contract.alarms_topic(topic_root, "sunshine"),
            json.dumps({"kind": "rejected", "key": "x@B3-E1-M", "detail": "no such alarm"}).encode())
    send_alarm(publish, topic_root, alarm("B3-E2-M", "B3", at=datetime.now(UTC) + timedelta(seconds=3)))
    assert op.next("alarm").data == {"community": "sunshine", "kind": "rejected", "key": "x@B3-E1-M",
                                     "detail": "no such alarm"}
    assert op.next("alarm").data["subject"] == zhang.next("alarm").data["subject"] == "B3-E2-M"
    # a care unit's resident away: for operators and the unit's grid (B1-1201 is in G1, B3-2001 in G2)
    for unit in ("B1-1201", "B3-2001"):
        publish(contract.alarms_topic(topic_root, "sunshine"), json.dumps(
            {"kind": "care_status", "unit": unit, "away": True, "by": "op", "comment": "住院", "until": None,
             "at": datetime.now(UTC).isoformat()}).encode())
    assert [op.next("alarm").data["unit"] for _ in range(2)] == ["B1-1201", "B3-2001"]
    care = zhang.next("alarm").data
    assert care["kind"] == "care_status" and care["unit"] == "B3-2001" and care["away"] is True

    op.close()
    assert wait_until(lambda: web.hub.subscribers == 1, 10), "a closed stream stays subscribed"
    zhang.close()
    assert wait_until(lambda: web.hub.subscribers == 0, 10), "a closed stream stays subscribed"


def test_open_streams_do_not_use_up_the_api(web: Web) -> None:
    """The API admits 16 requests at once; a stream leaves that count once it is authenticated, so more open
    streams than that still leave the API answering."""
    streams = [web.stream("op") for _ in range(SYNC_THREADS + 2)]
    for s in streams:
        assert s.status == 200
        s.ready()
    assert web.hub.subscribers == len(streams)
    r = httpx2.get(f"{web.handle.url}api/v1/me", headers={"Authorization": f"Bearer {web.tokens['op']}"}, timeout=15)
    assert r.status_code == 200 and r.json()["username"] == "op"


def test_a_bad_message_is_skipped_and_the_stream_goes_on(web: Web, publish: Publisher, topic_root: str,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    s = web.stream("op")
    s.ready()
    alarms, tickets = contract.alarms_topic(topic_root, "sunshine"), contract.worker_topic(topic_root, "w1-1")
    bad = [
        (alarms, b"not json"),
        (alarms, b"[1, 2]"),
        (alarms, json.dumps({"kind": "raised", "rule": "x"}).encode()),  # an alarm event without its fields
        (alarms, json.dumps({**alarm().to_json(), "floor": "ten"}).encode()),
        (alarms, json.dumps({**alarm().to_json(), "severity": "apocalyptic"}).encode()),
        (alarms, json.dumps({"kind": "care_status", "unit": "B1-1201", "away": "yes", "by": "op", "at": "x"}).encode()),
        (tickets, json.dumps({"v": 1, "type": "ticket", "ticket": {"title": "no id"}}).encode()),
        (tickets, json.dumps({"v": 2, "type": "ticket", "ticket": {"id": 1, "title": "t"}}).encode()),
        (tickets, b"\xff\xfe"),
        (tickets, b"{" + b" " * (300 * 1024) + b"}"),  # larger than any ticket message
    ]
    for topic, payload in bad:
        publish(topic, payload)
    good = alarm()
    send_alarm(publish, topic_root, good)
    assert s.next("alarm").data == {"community": "sunshine", **good.to_json()}
    assert web.hub.rejected == len(bad) and web.hub.received == 1
    assert any("skipped a message" in r.getMessage() for r in caplog.records)
    withdrawn = {"v": 1, "type": "ticket_withdrawn", "at": "2025-06-02T10:00:00+08:00",
                 "ticket": {"id": 7, "title": "电梯困人", "community": "sunshine", "grid": "G1"}, "reason": "busy"}
    publish(tickets, json.dumps(withdrawn).encode())
    assert s.next("ticket").data == withdrawn


def test_the_stream_survives_a_broker_restart(tmp_path: Path, schema: str, topic_root: str, storage: Storage,
                                              sample: Community, db_url: str) -> None:
    broker = Mosquitto(tmp_path / "broker")
    own = settings_mod.load(env={}, mqtt={"url": broker.url, "topic_root": topic_root}, db={"url": db_url,
                                                                                          "schema": schema})
    web = _serve(own, sample, broker.url)
    publish: Publisher | None = None
    try:
        s = web.stream("op")
        s.ready()
        broker.stop()
        assert s.next("status").data == {"v": 1, "connected": False}  # the browser can show "not live"
        broker.start()
        assert s.next("resync").data == {"v": 1, "reason": "reconnected", "connected": True}  # refetch the state
        publish = Publisher(broker.url)
        e = alarm()
        send_alarm(publish, topic_root, e)
        assert s.next("alarm").data == {"community": "sunshine", **e.to_json()}
        assert web.hub.connects == 2
    finally:
        for st in web.streams:
            st.close()
        if publish is not None:
            publish.close()
        web.handle.shutdown()
        broker.stop()


def test_shutdown_ends_open_streams_at_once(settings: Settings, storage: Storage, sample: Community) -> None:
    assert settings.mqtt.url
    web = _serve(settings, sample, settings.mqtt.url)
    s = web.stream("op")
    s.ready()
    started = time.monotonic()
    web.handle.shutdown()
    took = time.monotonic() - started
    assert s.closed.wait(5), "the stream is still open after the server stopped"
    assert took < 5, f"shutdown waited {took:.1f} s for an open stream (uvicorn's graceful timeout is 10 s)"
    s.close()


def test_a_subscriber_that_falls_behind_is_told_to_resync(settings: Settings, sample: Community,
                                                          topic_root: str) -> None:
    """One slow stream: its queue stays bounded and it is told to resync; a fast one gets every event."""
    assert settings.mqtt.url
    op = User("op", "op", Role.OPERATOR)

    async def main() -> None:
        hub = LiveHub(settings.mqtt, settings.mqtt.url, [sample], queue_size=4)
        await hub.start()
        try:
            fast, slow = hub.subscribe(op, queue_size=64), hub.subscribe(op)
            for sub in (fast, slow):  # the hub is subscribed: a message published from now on reaches it
                assert await asyncio.wait_for(sub.queue.get(), 15) == Resync("connected")
            base = datetime.now(UTC)
            sent = [alarm(at=base + timedelta(seconds=i)) for i in range(12)]
            a = contract.BrokerAddress.parse(settings.mqtt.url)
            async with aiomqtt.Client(a.host, a.port, identifier=f"stream-test-{uuid.uuid4().hex[:8]}") as client:
                for e in sent:
                    await client.publish(contract.alarms_topic(topic_root, "sunshine"),
                                         json.dumps(e.to_json()).encode(), qos=1)
            got = [await asyncio.wait_for(fast.queue.get(), 15) for _ in sent]
            assert [json.loads(g.data)["at"] for g in got if isinstance(g, LiveEvent)] == [e.at.isoformat()
                                                                                         for e in sent]
            held = []
            while not slow.queue.empty():
                held.append(slow.queue.get_nowait())
            assert held[0] == Resync("overflow") and len(held) <= 4, held
            last = held[-1]
            assert isinstance(last, LiveEvent) and json.loads(last.data)["at"] == sent[-1].at.isoformat()
            assert slow.dropped >= len(sent) - 4
        finally:
            await hub.stop()
        assert isinstance(fast.queue.get_nowait(), End)  # stop() ends every stream

    asyncio.run(main())
