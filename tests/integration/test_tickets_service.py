"""The ticket service against the real PostgreSQL: alarms open and join tickets, SLA watchdog across a
restart, optimistic concurrency, photos, manual reports, `gridtwin report kpi` and `gridtwin users add`."""

from __future__ import annotations

import io
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest

from gateway import cli
from gateway.api.auth import Users
from gateway.settings import Settings
from gateway.storage import Storage
from gateway.tickets.service import Forbidden, Photo, PhotoRejected, TicketConflict, TicketNotFound, TicketService
from tests.support.api_env import T0, Clock, sample_community
from twin import tickets as tk
from twin.alarms import AlarmEvent, AlarmStatus, Dispatch, EventKind, Severity
from twin.community import Community
from twin.people import Role, User
from twin.tickets import InvalidInput, Priority, TicketError, TicketState

pytestmark = pytest.mark.integration
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64
OP = User("op", "值班员", Role.OPERATOR)
MA = User("ma", "马刚", Role.WORKER, ("G1",), "w1-1")
ZHANG = User("zhang", "张刚磊", Role.WORKER, ("G2",), "w2-1")


@dataclass
class Outbox:
    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, topic: str, payload: bytes, qos: int) -> None:
        assert qos == 1
        self.sent.append((topic, orjson.loads(payload)))

    def to(self, worker: str) -> list[dict[str, Any]]:
        return [m for t, m in self.sent if t.endswith(f"/workers/{worker}/tickets")]


@pytest.fixture(scope="module")
def community() -> Community:
    return sample_community()


@pytest.fixture
def storage(settings: Settings, community: Community) -> Iterator[Storage]:
    assert settings.db.url is not None
    st = Storage.connect(settings.db.url, schema=settings.db.schema_name)
    st.migrate()
    st.load_community(community)
    yield st
    st.close()


def make(storage: Storage, settings: Settings, community: Community, clock: Clock, outbox: Outbox | None = None,
         **kw: Any) -> TicketService:
    return TicketService(storage, settings, community, publish=outbox, clock=clock, **kw)


def alarm(rule: str = "elevator_entrapment", *, kind: EventKind = EventKind.RAISED, at: datetime = T0,
          subject: str = "B1-E1-M", building: str | None = "B1", floor: int | None = 1,
          device: str | None = "B1-E1-M", dispatch: Dispatch = Dispatch.URGENT,
          severity: Severity = Severity.CRITICAL, shelved: bool = False, count: int = 1) -> AlarmEvent:
    return AlarmEvent(kind, rule, subject, "device", severity, AlarmStatus.ACTIVE_UNACK, at, at, count, building,
                      floor, device, f"{rule} on {subject}", dispatch, None, shelved, received_at=at)


def test_alarms_open_one_ticket_per_incident(storage: Storage, settings: Settings, community: Community) -> None:
    clock, out = Clock(), Outbox()
    svc = make(storage, settings, community, clock, out)
    t = svc.on_alarm_event(community, alarm())
    assert t is not None and t.state is TicketState.DISPATCHED
    assert (t.assignee, t.grid, t.priority, t.life_safety, t.collaborator) == ("w1-1", "G1", Priority.URGENT, True,
                                                                              "电梯维保单位")
    # entrapment (TSG T5002-2017): accept 5 min, rescuers on site 30 min, the trapped people out 1 h
    assert (t.respond_by, t.arrive_by, t.release_by) == (T0 + timedelta(minutes=5), T0 + timedelta(minutes=30),
                                                         T0 + timedelta(hours=1))
    assert t.keys == {"incident:elevator:B1-E1-M"}
    assert [m["event"] for m in out.to("w1-1")] == ["created"]
    # another alarm of the same lift within 30 min joins it; a repeat of the alarm is counted, not a new ticket
    door = alarm("elevator_stop_outside_door_zone", at=T0 + timedelta(minutes=10), severity=Severity.MAJOR)
    joined = svc.on_alarm_event("sunshine", door)
    assert joined is not None and joined.id == t.id and joined.title == t.title  # the entrapment stays the worst
    svc.on_alarm_event(community, alarm(kind=EventKind.UPDATED, at=T0 + timedelta(minutes=11), count=4))
    v = svc.view(svc.get(t.id))
    assert [(a["rule"], a["count"], a["life_safety"]) for a in v["alarms"]] == [
        ("elevator_entrapment", 4, True), ("elevator_stop_outside_door_zone", 1, False)]
    assert v["incident"]["active_life_safety"] == ["elevator_entrapment@B1-E1-M"]
    # a fire alarm on the same floor is another incident (another crew, another partner) ...
    smoke = svc.on_alarm_event(community, alarm("fire_prealarm", subject="B1-F1-SD1", device="B1-F1-SD1",
                                                at=T0 + timedelta(minutes=12), severity=Severity.MAJOR))
    assert smoke is not None and smoke.id != t.id and smoke.category == "fire" and smoke.collaborator == "消防控制室"
    # ... so is another floor's leak, and the other lift
    other = svc.on_alarm_event(community, alarm("water_leak", subject="B1-F5-WL", device="B1-F5-WL", floor=5,
                                                dispatch=Dispatch.GENERAL, severity=Severity.MINOR))
    assert other is not None and other.id not in (t.id, smoke.id) and other.priority is Priority.GENERAL
    lift2 = svc.on_alarm_event(community, alarm("elevator_power_failure", subject="B1-E2-M", device="B1-E2-M",
                                                severity=Severity.MAJOR))
    assert lift2 is not None and lift2.id not in (t.id, smoke.id, other.id)
    # the same alarm raising again while its ticket is open always joins it
    again = svc.on_alarm_event(community, alarm(at=T0 + timedelta(hours=3)))
    assert again is not None and again.id == t.id
    # rules that do not dispatch, shelved alarms, other event kinds: no ticket
    assert svc.on_alarm_event(community, alarm("heat_rise", dispatch=Dispatch.NONE, subject="x")) is None
    assert svc.on_alarm_event(community, alarm("gas_level1", subject="y", shelved=True)) is None
    assert svc.on_alarm_event(community, alarm(kind=EventKind.ACKNOWLEDGED)) is None
    assert len(svc.list_for(OP)) == 4


def test_a_ticket_starts_when_its_alarm_arrives_whatever_the_device_clock_said(
        storage: Storage, settings: Settings, community: Community) -> None:
    clock, out = Clock(), Outbox()  # 10:00 in Shanghai: w1-1 (08:00-18:00) is on duty, w1-2 (18:00-08:00) is not
    svc = make(storage, settings, community, clock, out)
    device_time = T0 - timedelta(hours=3)  # 07:00 by a wrong device clock (or a replay): w1-2's shift
    for received in (None, T0):  # the gateway stamps received_at; without it, the service's clock
        b = "B1" if received else "B2"  # two buildings of grid G1: two incidents
        e = replace(alarm(at=device_time, subject=f"{b}-E1-M", device=f"{b}-E1-M", building=b), received_at=received)
        t = svc.on_alarm_event(community, e)
        assert t is not None and (t.created_at, t.received_at, t.occurred_at) == (T0, T0, device_time)
        assert t.assignee == "w1-1" and t.respond_by == T0 + timedelta(minutes=5)
    assert svc.tick(T0) == []  # nothing breached at birth
    assert [m["event"] for m in out.to("w1-1")] == ["created", "created"]
    v = svc.view(svc.get(t.id))
    assert (v["occurred_at"], v["received_at"]) == ("2025-06-02T07:00:00+08:00", "2025-06-02T10:00:00+08:00")


def test_an_escalated_alarm_raises_its_ticket_and_a_cleared_one_is_noted(
        storage: Storage, settings: Settings, community: Community) -> None:
    clock, out = Clock(), Outbox()
    svc = make(storage, settings, community, clock, out)
    leak = alarm("water_leak", subject="B3-F2-WL", building="B3", floor=2, device=None, dispatch=Dispatch.GENERAL,
                 severity=Severity.MINOR)
    t = svc.on_alarm_event(community, leak)
    assert t is not None and t.priority is Priority.GENERAL and t.assignee == "w2-1"
    later = T0 + timedelta(minutes=30)
    up = svc.on_alarm_event(community, replace_kind(leak, EventKind.ESCALATED, Severity.MAJOR, later))
    assert up is not None and up.priority is Priority.URGENT
    assert up.respond_by == later + timedelta(hours=2)
    assert svc.on_alarm_event(community, replace_kind(leak, EventKind.CLEARED, Severity.MAJOR, later)) is not None
    actions = [e["action"] for e in svc.timeline(t.id)]
    assert actions == ["create", "dispatch", "priority", "alarm_cleared"]
    assert [m["event"] for m in out.to("w2-1")] == ["created", "priority_raised", "alarm_cleared"]


def replace_kind(e: AlarmEvent, kind: EventKind, severity: Severity, at: datetime) -> AlarmEvent:
    from dataclasses import replace

    return replace(e, kind=kind, severity=severity, at=at, received_at=at)


def test_the_sla_watchdog_survives_a_restart(settings: Settings, community: Community, storage: Storage) -> None:
    clock, out = Clock(), Outbox()
    svc = make(storage, settings, community, clock, out)
    t = svc.on_alarm_event(community, alarm())
    assert t is not None
    assert svc.tick(T0 + timedelta(seconds=224)) == []  # 75 % of 5 min is 3 min 45 s
    warned = svc.tick(T0 + timedelta(seconds=225))
    assert [(i, a.key) for i, a in warned] == [(t.id, "warn:respond")]
    assert svc.tick(T0 + timedelta(seconds=226)) == []  # once
    storage.close()  # the gateway stops in the middle of an open SLA ...

    assert settings.db.url is not None
    with Storage.connect(settings.db.url, schema=settings.db.schema_name) as st2:  # ... and starts again
        clock2, out2 = Clock(T0 + timedelta(minutes=5)), Outbox()
        svc2 = make(st2, settings, community, clock2, out2)
        assert svc2.tick(T0 + timedelta(minutes=5)) == []  # exactly at the deadline: not yet
        breached = svc2.tick(T0 + timedelta(minutes=5, seconds=1))
        assert [a.key for _i, a in breached] == ["breach:respond"]
        after = svc2.get(t.id)
        assert (after.state, after.escalated_to, after.breaches) == (TicketState.ESCALATED, "s-1", 1)
        assert [m["event"] for m in out2.to("w1-1")] == ["escalated"]
        assert [m["event"] for m in out2.to("s-1")] == ["escalated"]  # the supervisor hears of it
        assert out2.to("s-1")[0]["alert"]["clock"] == "respond"
        # accepting late still works; the resolve clock goes on from the stored deadline
        clock2.now = T0 + timedelta(minutes=8)
        svc2.accept(MA, t.id, "到场")
        assert [a.key for _i, a in svc2.tick(T0 + timedelta(minutes=23))] == ["warn:arrive"]  # 75 % of 30 min
        clock2.now = T0 + timedelta(minutes=26)
        svc2.arrive(MA, t.id, "维保人员到达")  # on site in time: the arrival clock stops
        assert svc2.tick(T0 + timedelta(minutes=31)) == []
        assert [a.key for _i, a in svc2.tick(T0 + timedelta(minutes=45))] == ["warn:release"]
        clock2.now = T0 + timedelta(minutes=50)
        svc2.release(MA, t.id, "盘车放人，2人已救出")
        assert svc2.tick(T0 + timedelta(minutes=61)) == []
        assert [a.key for _i, a in svc2.tick(T0 + timedelta(days=3))] == ["breach:resolve"]
        timeline = [(e["action"], e["by"]) for e in svc2.timeline(t.id)]
        assert timeline == [("create", "system"), ("dispatch", "system"), ("warn", "watchdog"),
                            ("escalate", "watchdog"), ("accept", "ma"), ("warn", "watchdog"), ("arrive", "ma"),
                            ("warn", "watchdog"), ("release", "ma"), ("escalate", "watchdog")]
        after = svc2.get(t.id)
        assert (after.arrived_at, after.released_at) == (T0 + timedelta(minutes=26), T0 + timedelta(minutes=50))


def test_concurrent_updates_cannot_overwrite_each_other(settings: Settings, community: Community,
                                                        storage: Storage) -> None:
    clock = Clock()
    svc = make(storage, settings, community, clock)
    t = svc.on_alarm_event(community, alarm())
    assert t is not None
    with pytest.raises(TicketConflict, match="version"):
        svc.accept(MA, t.id, version=t.version - 1)  # the client saw an older version
    assert settings.db.url is not None
    with Storage.connect(settings.db.url, schema=settings.db.schema_name) as other:
        svc_b = make(other, settings, community, clock)
        read, written = threading.Event(), threading.Event()
        errors: list[BaseException] = []

        def slow_accept(ticket: tk.Ticket, now: datetime) -> tk.Ticket:
            read.set()  # A has read the ticket ...
            assert written.wait(10)  # ... B changes it meanwhile ...
            return tk.accept(ticket, now)

        def run_a() -> None:
            try:
                svc.act(MA, t.id, "accept", slow_accept, "A", version=None)
            except TicketConflict as exc:
                errors.append(exc)

        a = threading.Thread(target=run_a)
        a.start()
        assert read.wait(10)
        svc_b.cancel(OP, t.id, "误报: 维保测试", code="false_alarm")  # its entrapment alarm is still active
        written.set()
        a.join(10)
    assert len(errors) == 1 and "changed meanwhile" in str(errors[0])  # ... and A's write is refused
    final = svc.get(t.id)
    assert final.state is TicketState.CANCELLED and final.cancel_reason == "误报: 维保测试"
    assert [e["action"] for e in svc.timeline(t.id)] == ["create", "dispatch", "cancel"]


def test_worker_actions_photos_and_permissions(settings: Settings, community: Community, storage: Storage) -> None:
    clock, out = Clock(), Outbox()
    svc = make(storage, settings, community, clock, out)
    t = svc.on_alarm_event(community, alarm("gas_level1", subject="B1-F3-GAS", device="B1-F3-GAS", floor=3,
                                            severity=Severity.MAJOR))
    assert t is not None and t.life_safety and t.category == "gas" and t.collaborator == "燃气公司"
    assert t.respond_by == T0 + timedelta(minutes=5)  # gas level 1 is life-safety too
    with pytest.raises(Forbidden, match="grid G1"):
        svc.accept(ZHANG, t.id)
    with pytest.raises(Forbidden, match="operator"):
        svc.cancel(MA, t.id, "x")
    with pytest.raises(TicketError, match="cannot resolve"):
        svc.resolve(MA, t.id, "done")
    clock.now = T0 + timedelta(minutes=20)
    t = svc.accept(MA, t.id, "正在赶往现场")
    with pytest.raises(PhotoRejected) as big:
        svc.progress(MA, t.id, "x", photo=Photo("image/jpeg", JPEG + b"\x00" * settings.tickets.photo_max_bytes))
    assert big.value.status == 413
    with pytest.raises(PhotoRejected) as wrong:
        svc.progress(MA, t.id, "x", photo=Photo("image/png", JPEG))  # says PNG, is JPEG
    assert wrong.value.status == 415
    with pytest.raises(PhotoRejected) as gif:
        svc.progress(MA, t.id, "x", photo=Photo("image/gif", b"GIF89a"))
    assert gif.value.status == 415
    with pytest.raises(InvalidInput, match="note or a photo"):
        svc.progress(MA, t.id, "  ")
    t = svc.progress(MA, t.id, "已关阀通风", photo=Photo("image/jpeg", JPEG))
    clock.now = T0 + timedelta(minutes=50)
    with pytest.raises(tk.AlarmsStillActive, match="gas_level1@B1-F3-GAS"):
        svc.resolve(MA, t.id, "软管老化，已更换")  # the detector still reads gas
    svc.on_alarm_event(community, replace(alarm("gas_level1", subject="B1-F3-GAS", device="B1-F3-GAS", floor=3,
                                                severity=Severity.MAJOR, at=T0 + timedelta(minutes=45)),
                                          kind=EventKind.CLEARED))
    t = svc.resolve(MA, t.id, "软管老化，已更换")
    assert t.state is TicketState.FEEDBACK and t.close_reason is None
    events = svc.timeline(t.id)
    fb = next(e for e in events if e["action"] == "progress")
    assert fb["by"] == "ma" and fb["note"] == "已关阀通风" and fb["at"] == "2025-06-02T10:20:00+08:00"
    photo_id = int(fb["photo_url"].rsplit("/", 1)[1])
    assert svc.photo(t.id, photo_id).data == JPEG
    with pytest.raises(TicketNotFound):
        svc.rate("nope-token", 5)
    t = svc.rate(t.rate_token, 4, "处理及时")
    assert t.state is TicketState.EVALUATED and t.rating == 4
    with pytest.raises(TicketError, match="already been rated"):
        svc.rate(t.rate_token, 5)
    assert [m["event"] for m in out.to("w1-1")][-4:] == ["progress", "alarm_cleared", "resolve", "rated"]


def test_manual_reports_and_reassignment(settings: Settings, community: Community, storage: Storage) -> None:
    clock, out = Clock(T0 + timedelta(hours=13)), Outbox()  # 23:00 local: the night shift
    svc = make(storage, settings, community, clock, out)
    with pytest.raises(Forbidden):
        svc.create_manual(MA, community="sunshine", title="x", building="B1")
    with pytest.raises(InvalidInput, match="no floor 0"):
        svc.create_manual(OP, community="sunshine", title="x", building="B1", floor=0)
    t = svc.create_manual(OP, community="sunshine", title="楼道堆物堵塞", description="住户来电：6楼楼道堆满纸箱",
                          building="B1", floor=6, contact="13900000000", category="fire")
    assert (t.source, t.reporter, t.assignee, t.assignee_role) == ("manual", "op", "w1-2", "on_duty")
    assert t.respond_by == clock.now + timedelta(hours=24)
    nobody = svc.create_manual(OP, community="sunshine", title="小区门口路灯不亮")
    assert nobody.state is TicketState.ACCEPTED and nobody.assignee is None
    with pytest.raises(InvalidInput, match="no worker"):
        svc.reassign(OP, nobody.id, "ghost", "test")
    moved = svc.reassign(OP, nobody.id, "w1-1", "门口属第1网格")
    assert (moved.state, moved.assignee, moved.grid) == (TicketState.DISPATCHED, "w1-1", "G1")
    again = svc.reassign(OP, t.id, "w1-1", "w1-2 请假")
    assert again.assignee == "w1-1"
    assert out.to("w1-2")[-1]["type"] == "ticket_withdrawn"
    assert [x.id for x in svc.list_for(MA, open_only=True)] == [nobody.id, t.id]  # newest first
    # an alarm on the reported floor joins the manual ticket (same incident)
    joined = svc.on_alarm_event(community, alarm("fire_prealarm", subject="B1-F6-SD1", device="B1-F6-SD1", floor=6,
                                                 at=clock.now + timedelta(minutes=5), severity=Severity.MAJOR))
    assert joined is not None and joined.id == t.id and joined.priority is Priority.URGENT


def test_users_and_tokens(storage: Storage) -> None:
    users = Users(storage.conn)
    storage.migrate()
    assert users.add("ma", "correct horse", Role.WORKER, grids=["G1"], worker_id="w1-1", display_name="马刚")
    with pytest.raises(Exception, match="exists"):
        users.add("ma", "correct horse", Role.WORKER, grids=["G1"], worker_id="w1-1")
    with pytest.raises(Exception, match="8 to 1024"):
        users.add("li", "short", Role.OPERATOR)
    with pytest.raises(Exception, match="worker-id"):
        users.add("li", "long enough", Role.WORKER, grids=["G1"])
    assert users.authenticate("ma", "wrong password") is None and users.authenticate("nobody", "x" * 9) is None
    ma = users.authenticate("ma", "correct horse")
    assert ma == User("ma", "马刚", Role.WORKER, ("G1",), "w1-1")
    token, expires = users.issue_token("ma", T0, timedelta(hours=1))
    assert users.user_for_token(token, T0 + timedelta(minutes=59)) == ma
    with pytest.raises(Exception, match="expired"):
        users.user_for_token(token, expires)
    stored = storage.conn.execute("SELECT token_hash, (SELECT password_hash FROM users) FROM api_tokens").fetchone()
    assert stored is not None and token not in stored[0]
    assert stored[1].startswith("$argon2id$v=19$m=65536,t=3,p=4$")  # RFC 9106 low-memory profile
    assert not users.add("ma", "new password!", Role.SUPERVISOR, grids=["G1", "G2"], update=True)
    with pytest.raises(Exception, match="unknown or revoked"):  # a changed user's sessions end
        users.user_for_token(token, T0)


def test_report_kpi_and_users_add_commands(settings: Settings, community: Community, storage: Storage,
                                           monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    clock = Clock()
    svc = make(storage, settings, community, clock)
    t = svc.on_alarm_event(community, alarm())
    assert t is not None
    clock.now = T0 + timedelta(minutes=4)
    svc.accept(MA, t.id)
    clock.now = T0 + timedelta(minutes=25)
    svc.on_alarm_event(community, replace(alarm(at=T0 + timedelta(minutes=20)), kind=EventKind.CLEARED))
    svc.resolve(MA, t.id, "维保单位已救出2人")
    svc.rate(t.rate_token, 5)
    monkeypatch.setenv("GRIDTWIN_DB_URL", str(settings.db.url))
    monkeypatch.setenv("GRIDTWIN_DB_SCHEMA", settings.db.schema_name)
    monkeypatch.setenv("GRIDTWIN_MQTT_URL", str(settings.mqtt.url))
    assert cli.main(["report", "kpi", "--from", "2025-06-01", "--to", "2025-06-02", "--format", "csv"]) == 0
    csv_out = capsys.readouterr().out.splitlines()
    assert csv_out[0].startswith("scope,key,name,tickets")
    assert csv_out[1].startswith("worker,w1-1,马刚,1,0,1,0,4.0,0.42,1.0,1,5.0,1.0,0.0,0")
    assert cli.main(["report", "kpi", "--from", "2025-06-02", "--to", "2025-06-02"]) == 0
    md = capsys.readouterr().out
    assert "| grid | G1 | 第1网格 | 1 |" in md and "| community | sunshine | 阳光社区 | 1 |" in md
    assert cli.main(["report", "kpi", "--from", "2025-06-03", "--to", "2025-06-02"]) == 2
    monkeypatch.setattr(sys, "stdin", io.StringIO("a long password\n"))
    assert cli.main(["users", "add", "sun", "--role", "worker", "--grid", "G1", "--worker-id", "w1-2"]) == 0
    assert "added user sun" in capsys.readouterr().out
    assert Users(storage.conn).authenticate("sun", "a long password") is not None
    assert cli.main(["users", "add", "sun", "--role", "worker", "--grid", "G1", "--worker-id", "w1-2",
                     "--password", "another one"]) == 2
    assert "exists" in capsys.readouterr().err


def test_snapshots_inline_or_from_the_watchdog(settings: Settings, community: Community, storage: Storage,
                                               caplog: pytest.LogCaptureFixture) -> None:
    clock, out = Clock(), Outbox()
    calls: list[int] = []

    def snap(c: Community, t: tk.Ticket) -> bytes | None:
        calls.append(t.id)
        if t.building == "B2":
            raise RuntimeError("no OpenGL here")
        return b"\x89PNG\r\n\x1a\n" + t.title.encode()

    inline = make(storage, settings, community, clock, out, snapshot=snap)
    a = inline.on_alarm_event(community, alarm())
    assert a is not None and inline.photo(a.id, kind="snapshot").data.startswith(b"\x89PNG")
    assert [m["event"] for m in out.to("w1-1")] == ["created", "snapshot"]
    assert out.to("w1-1")[1]["ticket"]["snapshot_url"] == f"/api/v1/tickets/{a.id}/snapshot.png"
    later = make(storage, settings, community, clock, out, snapshot=snap, render_on_create=False)
    b = later.on_alarm_event(community, alarm("gas_level1", subject="B3-F3-GAS", device="B3-F3-GAS", building="B3",
                                              floor=3))
    c = later.on_alarm_event(community, alarm("gas_level1", subject="B2-F3-GAS", device="B2-F3-GAS", building="B2",
                                              floor=3))
    assert b is not None and c is not None and calls == [a.id]
    later.tick(T0)  # the watchdog renders what is missing; a failing renderer is noted, not fatal
    assert sorted(calls) == sorted([a.id, b.id, c.id])
    assert later.view(later.get(b.id))["snapshot_url"] and later.view(later.get(c.id))["snapshot_url"] is None
    assert "no OpenGL here" in caplog.text
    later.tick(T0)
    assert len(calls) == 3  # not retried on every tick


# -- incidents -----------------------------------------------------------------------------------------------------


def _scenario(name: str, community: Community) -> list[AlarmEvent]:
    """A scenario replayed offline by the rules engine, its events stamped as received from T0 on (server time)."""
    from simulators.engine import plan_messages
    from simulators.scenario import compile_plan
    from twin.rules import DEFAULTS_FILE, Engine, load_rules, replay

    rules = load_rules([(str(DEFAULTS_FILE), DEFAULTS_FILE.read_text(encoding="utf-8"))], community)
    plan = compile_plan(name, community)
    start = T0.timestamp() - 3600
    msgs = [(m.t, m.topic, m.payload) for m in plan_messages(plan, community, "gridtwin", start=start, seed=1)]
    events = list(replay(Engine(rules, community), msgs, root="gridtwin", until=start + plan.duration))
    first = events[0].at
    return [replace(e, received_at=T0 + (e.at - first)) for e in events]


def test_a_fire_is_one_ticket_upgraded_when_it_is_confirmed(storage: Storage, settings: Settings,
                                                            community: Community) -> None:
    clock, out = Clock(), Outbox()
    svc = make(storage, settings, community, clock, out)
    events = _scenario("fire", community)
    touched = {t.id for e in events if (t := svc.on_alarm_event(community, e)) is not None}
    (ticket,) = svc.list_for(OP)
    assert touched == {ticket.id}
    assert ticket.title == "火警确认(同层两路信号) · 阳光社区 1号楼 3层"
    assert (ticket.priority, ticket.rule, ticket.life_safety, ticket.category) == (
        Priority.URGENT, "fire_confirmed", True, "fire")
    created = ticket.created_at
    assert ticket.respond_by == created + timedelta(minutes=3) and ticket.resolve_by == created + timedelta(hours=1)
    v = svc.view(ticket)
    raised = [e for e in events if e.kind is EventKind.RAISED and e.dispatch is not Dispatch.NONE]
    assert {a["key"] for a in v["alarms"]} == {e.key for e in raised}  # the timeline: every alarm of the fire
    assert {a["floor"] for a in v["alarms"]} == {3, -1}
    assert v["incident"]["key"] == "fire:B1"
    timeline = svc.timeline(ticket.id)
    upgrades = [e for e in timeline if e["action"] == "upgrade"]
    assert upgrades and "火警预警(单探测器)" in upgrades[0]["note"]
    assert any("火警确认(同层两路信号)" in e["note"] for e in upgrades)
    assert any(e["detail"].get("title") == ticket.title for e in upgrades)
    assert out.to(ticket.assignee or "")[0]["event"] == "created"
    assert {m["event"] for m in out.to(ticket.assignee or "")[1:]} <= {"alarm_attached", "alarm_cleared"}
    # the dashboard's alarm list finds the ticket of each alarm
    assert svc.alarm_tickets("sunshine", [e.key for e in raised] + ["nope@x"]) == {e.key: ticket.id for e in raised}


def test_49_silent_devices_are_one_ticket_for_one_worker(storage: Storage, settings: Settings,
                                                         community: Community) -> None:
    clock, out = Clock(), Outbox()
    svc = make(storage, settings, community, clock, out)
    devices = [d for d in community.devices if d.building == "B1" and d.kind in ("smoke_detector",
                                                                                  "manual_call_point")][:49]
    assert len(devices) == 49
    for i, d in enumerate(devices):
        svc.on_alarm_event(community, alarm("fire_device_offline", subject=d.id, device=d.id, floor=d.floor,
                                            at=T0 + timedelta(seconds=10 * i), dispatch=Dispatch.GENERAL,
                                            severity=Severity.MAJOR))
    (t,) = svc.list_for(OP)
    assert t.title == "通信或供电中断 · 阳光社区 1号楼 · 49台设备" and t.priority is Priority.GENERAL
    assert svc.view(t)["incident"]["devices"] == [d.id for d in devices]
    assert [m["event"] for m in out.to("w1-1")].count("created") == 1


def test_an_alarm_of_a_resolved_incident_reopens_its_ticket(storage: Storage, settings: Settings,
                                                           community: Community) -> None:
    clock, out = Clock(), Outbox()
    svc = make(storage, settings, community, clock, out)
    first = alarm("gas_level1", subject="B1-B1-GAS", device="B1-B1-GAS", floor=-1, severity=Severity.MAJOR)
    t = svc.on_alarm_event(community, first)
    assert t is not None
    svc.on_alarm_event(community, replace(first, kind=EventKind.CLEARED, at=T0 + timedelta(minutes=3),
                                          received_at=T0 + timedelta(minutes=3)))
    clock.now = T0 + timedelta(minutes=4)
    svc.accept(MA, t.id)
    t = svc.resolve(MA, t.id, "通风后浓度归零，阀门已关")
    assert t.state is TicketState.FEEDBACK
    # the same detector alarms again two hours later: the incident is back, not a second ticket
    back_at = T0 + timedelta(hours=2)
    clock.now = back_at
    again = svc.on_alarm_event(community, replace(first, at=back_at, received_at=back_at))
    assert again is not None and again.id == t.id
    assert (again.state, again.reopens, again.assignee) == (TicketState.DISPATCHED, 1, "w1-1")
    assert again.clock_start == back_at and again.respond_by == back_at + timedelta(minutes=5)
    actions = [e["action"] for e in svc.timeline(t.id)]
    assert actions[-3:] == ["reopen", "dispatch", "attach"]
    assert "同一事件再次报警" in svc.timeline(t.id)[-3]["note"]
    assert [m["event"] for m in out.to("w1-1")][-1] == "reopened"
    assert len(svc.list_for(OP)) == 1
    # once rated and more than a day past its resolution, the incident is a new one
    svc.on_alarm_event(community, replace(first, kind=EventKind.CLEARED, at=back_at + timedelta(minutes=1),
                                          received_at=back_at + timedelta(minutes=1)))
    svc.accept(MA, t.id)
    t = svc.resolve(MA, t.id, "更换软管")
    svc.rate(t.rate_token, 5)
    late = back_at + timedelta(hours=25)
    clock.now = late
    new = svc.on_alarm_event(community, replace(first, at=late, received_at=late))
    assert new is not None and new.id != t.id and svc.get(t.id).state is TicketState.EVALUATED


def test_close_refused_while_a_life_safety_alarm_is_active_unless_a_reason_is_given(
        storage: Storage, settings: Settings, community: Community) -> None:
    clock, out = Clock(), Outbox()
    svc = make(storage, settings, community, clock, out)
    pre = alarm("fire_prealarm", subject="B1-F3-SD1", device="B1-F3-SD1", floor=3, severity=Severity.MAJOR)
    t = svc.on_alarm_event(community, pre)
    assert t is not None and t.respond_by == T0 + timedelta(minutes=3)
    clock.now = T0 + timedelta(minutes=2)
    svc.accept(MA, t.id, "到场确认")
    with pytest.raises(tk.AlarmsStillActive, match="fire_prealarm@B1-F3-SD1") as refused:
        svc.resolve(MA, t.id, "无明火")
    assert refused.value.alarms == ("fire_prealarm@B1-F3-SD1",)
    with pytest.raises(InvalidInput, match="needs a note"):
        svc.resolve(MA, t.id, "无明火", reason="other")
    assert svc.get(t.id).state is TicketState.HANDLING  # nothing was written
    done = svc.resolve(MA, t.id, "无明火，厨房油烟触发", reason="false_alarm")
    assert (done.state, done.close_reason) == (TicketState.FEEDBACK, "false_alarm")
    v = svc.view(done)
    assert v["close_reason"] == {"code": "false_alarm", "label": "误报 / false alarm", "note": None}
    assert [(a["key"], a["close_reason"]) for a in v["alarms"]] == [("fire_prealarm@B1-F3-SD1", "false_alarm")]
    assert svc.timeline(t.id)[-1]["detail"]["active_life_safety"] == ["fire_prealarm@B1-F3-SD1"]
    # an operator cancelling a ticket whose life-safety alarm is active says what it was
    gas = svc.on_alarm_event(community, alarm("gas_level2", subject="B3-B1-GAS", device="B3-B1-GAS", building="B3",
                                              floor=-1))
    assert gas is not None
    with pytest.raises(tk.AlarmsStillActive):
        svc.cancel(OP, gas.id, "探头故障")
    svc.cancel(OP, gas.id, "探头故障，燃气公司确认无泄漏", code="device_fault")
    # a worker may say what an alarm was after it cleared too: then the reason is about all of the ticket's alarms
    leak = alarm("water_leak", subject="B1-B1-LEAK", device="B1-B1-LEAK", floor=-1, dispatch=Dispatch.GENERAL,
                 severity=Severity.MINOR)
    wet = svc.on_alarm_event(community, leak)
    assert wet is not None
    svc.on_alarm_event(community, replace(leak, kind=EventKind.CLEARED, at=T0 + timedelta(minutes=5)))
    svc.accept(MA, wet.id)
    svc.resolve(MA, wet.id, "空调冷凝水", reason="other", reason_note="空调冷凝水滴落，非管道漏水")
    # every reason counts, per device and rule
    stats = svc.false_alarms(T0 - timedelta(hours=1), T0 + timedelta(hours=1), community="sunshine")
    assert [(r.device, r.kind, r.rule, r.alarms, r.false_alarm, r.device_fault, r.other) for r in stats] == [
        ("B1-F3-SD1", "smoke_detector", "fire_prealarm", 1, 1, 0, 0), ("B3-B1-GAS", "gas", "gas_level2", 1, 0, 1, 0),
        ("B1-B1-LEAK", "water_leak", "water_leak", 1, 0, 0, 1)]
    assert svc.false_alarms(T0 - timedelta(hours=1), T0 + timedelta(hours=1), user=ZHANG)[0].device == "B3-B1-GAS"
