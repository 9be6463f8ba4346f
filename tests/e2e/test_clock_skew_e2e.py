"""No clock may fake an alarm or a breach (issue 11): devices whose clocks run 290 s fast or an hour slow,
through the real broker, gateway and database, raise no alarm they should not, and their tickets are born
on server time (not breached, handed to the worker on duty now); plus the event clock on its own."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from gateway.alarms.service import EventClock
from gateway.cli_base import sample_community_path
from gateway.ingest.pipeline import Gateway
from gateway.settings import Settings
from gateway.storage import Storage
from simulators import publisher
from tests.support.brokers import wait_until
from twin import community as community_mod
from twin import contract
from twin.alarms import AlarmEvent, AlarmStatus, Dispatch, EventKind, Severity

pytestmark = pytest.mark.integration
SAMPLE = community_mod.parse(sample_community_path().read_text(encoding="utf-8"))
CST = timezone(timedelta(hours=8))
FAST = "B3-B1-GAS"  # its clock runs 290 s ahead (the gateway accepts up to 5 min)
SLOW = "B2-E1-M"  # an elevator of grid G1 whose clock runs an hour behind
SKEW_FAST = timedelta(seconds=290)
SKEW_SLOW = timedelta(hours=-1)


# -- the event clock alone ------------------------------------------------------------------------------


@dataclass
class Wall:
    now: datetime
    mono: float = 1000.0

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.mono += seconds


T = datetime(2025, 6, 2, 2, 0, tzinfo=UTC)


def test_a_fast_device_cannot_push_the_event_clock_past_server_time() -> None:
    wall = Wall(T)
    clock = EventClock(wall, wall.monotonic)
    clock.saw(T - timedelta(seconds=1))
    clock.saw(T + SKEW_FAST)  # accepted by the gateway (< 5 min ahead), but not a time the rules may use
    assert clock.now() == T
    wall.advance(10)
    assert clock.now() == T + timedelta(seconds=10)


def test_a_replay_in_the_past_still_drives_the_event_clock() -> None:
    wall = Wall(T)
    clock = EventClock(wall, wall.monotonic)
    past = T - timedelta(hours=3)
    clock.saw(past)
    wall.advance(0.5)
    clock.saw(past + timedelta(seconds=30))  # a replay at 60x: 30 simulated seconds in half a second
    assert clock.now() == past + timedelta(seconds=30)
    wall.advance(2)
    assert clock.now() == past + timedelta(seconds=32)  # between messages it moves with the wall
    assert clock.server() == T + timedelta(seconds=2.5)


def test_events_are_stamped_with_the_server_time_they_were_received() -> None:
    wall = Wall(T)
    clock = EventClock(wall, wall.monotonic)
    e = AlarmEvent(EventKind.RAISED, "r", "d", "device", Severity.MAJOR, AlarmStatus.ACTIVE_UNACK, T - SKEW_FAST,
                   T, 1, "B1", 1, "d", "x", Dispatch.URGENT)
    (stamped,) = clock.received([e])
    assert stamped.received_at == T and stamped.at == e.at


# -- through the broker, the gateway and the database ------------------------------------------------


def _shift_around(c: community_mod.Community, now: datetime) -> community_mod.Community:
    """Grid G1 with w1-1 on duty from 30 min ago to 30 min ahead (China Standard Time) and w1-2 the rest of
    the day, so the worker on duty now differs from the one on duty an hour ago."""
    local = now.astimezone(CST).replace(second=0, microsecond=0)
    start, end = (local - timedelta(minutes=30)).time(), (local + timedelta(minutes=30)).time()
    grids = []
    for g in c.grids:
        if g.id == "G1":
            w1, w2 = g.workers
            grids.append(g.model_copy(update={"workers": [w1.model_copy(update={"on_duty": (start, end)}),
                                                          w2.model_copy(update={"on_duty": (end, start)})]}))
        else:
            grids.append(g)
    return c.model_copy(update={"grids": grids})


def _wait(pred: Callable[[], object], timeout: float = 20.0) -> bool:
    return wait_until(pred, timeout, 0.1)


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def test_skewed_device_clocks_fake_no_alarm_and_no_breach(settings: Settings) -> None:
    assert settings.mqtt.url and settings.db.url
    s = settings.model_copy(update={"tickets": settings.tickets.model_copy(update={"watchdog_interval_s": 0.5})})
    root = s.mqtt.topic_root
    now = datetime.now(UTC)
    community = _shift_around(SAMPLE, now)
    lifts = [d.id for d in community.devices if d.kind == "elevator"]
    assert SLOW in lifts and len(lifts) == 19
    st = Storage.connect(settings.db.url, schema=s.db.schema_name)
    st.migrate()
    st.load_community(community)
    gw = Gateway(s, settings.mqtt.url, settings.db.url)
    gw.start()
    pub = publisher.Publisher(settings.mqtt.url, client_id=f"skew-{root}", qos=1)

    def send(device: str, channel: contract.Channel, payload: bytes) -> None:
        pub.publish(publisher.Message(contract.topic(root, community.id, device, channel), payload))

    idle: dict[str, bool | int | float] = {"floor": 1, "direction": 0, "door_open": False, "running": False,
                                           "load": 0, "in_service": True}
    try:
        sent = datetime.now(UTC)
        sent = sent.replace(microsecond=sent.microsecond // 1000 * 1000)  # what a ts in ms can say
        for lift in lifts:  # every lift reports, on time
            if lift != SLOW:
                send(lift, contract.Channel.TELEMETRY, contract.telemetry_bytes(_ms(sent), 1, idle))
        send(FAST, contract.Channel.TELEMETRY, contract.telemetry_bytes(_ms(sent + SKEW_FAST), 1, {"lel": 2.0}))
        slow_at = sent + SKEW_SLOW
        send(SLOW, contract.Channel.TELEMETRY, contract.telemetry_bytes(_ms(slow_at), 1, idle))
        send(SLOW, contract.Channel.EVENT, orjson.dumps({"v": 1, "ts": _ms(slow_at) + 1000, "seq": 2,
                                                         "code": "entrapment", "state": "active"}))
        pub.flush()
        assert _wait(lambda: st.conn.execute("SELECT count(*) FROM tickets").fetchone()[0] == 1), \
            gw.stats.snapshot()
        time.sleep(3.0)  # several rule ticks (1 s) and watchdog runs (0.5 s)
        assert gw.wait_idle(10)
        assert not gw.stats.rejected, gw.stats.rejected

        raised = st.conn.execute("SELECT key FROM alarm_events WHERE kind = 'raised' ORDER BY id").fetchall()
        assert [r[0] for r in raised] == [f"elevator_entrapment@{SLOW}"]  # no one went "silent"
        raised_at, event = st.conn.execute(
            "SELECT a.raised_at, e.event FROM alarms a JOIN alarm_events e ON e.key = a.key "
            "WHERE a.rule = 'elevator_entrapment'").fetchone()
        assert abs((raised_at - sent).total_seconds()) < 30  # the alarm's time is the gateway's, ...
        assert datetime.fromisoformat(event["occurred_at"]) == slow_at + timedelta(seconds=1)  # ... the device's kept

        row = st.conn.execute(
            "SELECT state, assignee, breaches, escalations, alerts, created_at, received_at, occurred_at, respond_by, "
            "arrive_by, release_by FROM tickets WHERE rule = 'elevator_entrapment'").fetchone()
        (state, assignee, breaches, escalations, alerts, created, received, occurred, respond_by, arrive_by,
         release_by) = row
        assert (state, breaches, escalations, alerts) == ("dispatched", 0, 0, [])  # not breached at birth
        assert assignee == "w1-1"  # on duty now; w1-2 was on duty at the device's time
        assert created == received and abs((received - sent).total_seconds()) < 30
        assert occurred == slow_at + timedelta(seconds=1)
        # every clock runs from when the gateway received the alarm: accept in 5 min, on site in 30 (TSG T5002),
        # the trapped people out in 1 h (twin/incidents_defaults.yaml)
        assert respond_by - received == timedelta(minutes=5)
        assert (arrive_by - received, release_by - received) == (timedelta(minutes=30), timedelta(hours=1))
        assert respond_by > datetime.now(UTC)
        assert st.conn.execute("SELECT count(*) FROM tickets").fetchone()[0] == 1
    finally:
        pub.close()
        gw.stop()
        st.close()
