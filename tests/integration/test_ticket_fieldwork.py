"""The worker on site (issue 15), against the real PostgreSQL: 到场 with the phone's position (stored with the
ticket, in its history, cleared when the ticket is reopened), the SOP checklist's ticks (kept, one event per change,
unticks too, only real steps, only by who may act, not once closed), and the REST API's validation of both."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from gateway.tickets.service import Forbidden, TicketNotFound
from tests.integration import test_api as ta
from tests.integration.test_api import T0, Env
from twin import tickets as tk
from twin.people import Role, User
from twin.tickets import InvalidInput, TicketError

pytestmark = pytest.mark.integration
env = ta.env  # the module-wide schema, users and API of test_api (pytest finds the fixture by name here)
MA = User("ma", "马刚", Role.WORKER, ("G1",), "w1-1")
ZHANG = User("zhang", "张刚磊", Role.WORKER, ("G2",), "w2-1")
OP = User("op", "值班员", Role.OPERATOR)


@pytest.fixture(autouse=True)
def _day_shift(env: Env) -> None:
    env.clock.now = T0


def _events(env: Env, tid: int, action: str) -> list[tuple[Any, ...]]:
    return env.storage.conn.execute("SELECT actor, detail FROM ticket_events WHERE ticket_id = %s AND action = %s "
                                    "ORDER BY id", (tid, action)).fetchall()


def test_arrival_keeps_the_phones_position_until_the_ticket_is_reopened(env: Env) -> None:
    tid = env.alarm()
    svc = env.service()
    svc.accept(MA, tid)
    env.clock.now = T0 + timedelta(minutes=12)
    t = svc.arrive(MA, tid, position=tk.Position.checked(30.27452, 120.15563, 14.5))
    assert (t.arrived_at, t.arrived_lat, t.arrived_lon, t.arrived_accuracy_m) == (env.clock.now, 30.27452, 120.15563,
                                                                                  14.5)
    again = svc.get(tid)  # stored, read back
    assert (again.arrived_lat, again.arrived_lon, again.arrived_accuracy_m) == (30.27452, 120.15563, 14.5)
    assert _events(env, tid, "arrive") == [("ma", {"position": {"lat": 30.27452, "lon": 120.15563,
                                                                "accuracy_m": 14.5}})]
    view = svc.view(again)
    assert view["arrived_position"] == {"lat": 30.27452, "lon": 120.15563, "accuracy_m": 14.5}
    assert "arrive" not in view["actions"]
    with pytest.raises(TicketError, match="already recorded"):
        svc.arrive(MA, tid)
    svc.resolve(MA, tid, "维保单位救出被困人员", reason="other", reason_note="电梯已停用待修")
    reopened = svc.reopen(OP, tid, "仍有人报告困人")
    assert (reopened.arrived_at, reopened.arrived_lat, reopened.arrived_lon, reopened.arrived_accuracy_m) == (
        None, None, None, None)


def test_arrival_without_a_position_and_bad_positions(env: Env) -> None:
    tid = env.alarm(device="B2-E1-M", building="B2")
    svc = env.service()
    for bad in [(91, 120, None), (30, 181, None), (30, 120, -1), (float("nan"), 120, None), (True, 120, None),
                ("30", 120, None), (30, 120, float("inf")), (30, 120, 1e9)]:
        with pytest.raises(InvalidInput):
            tk.Position.checked(*bad)
    t = svc.arrive(MA, tid)  # denied or no fix: on site all the same, and it counts as accepting
    assert t.arrived_at == T0 and t.accepted_at == T0 and t.arrived_lat is None
    assert _events(env, tid, "arrive") == [("ma", {})]
    # the database refuses a half or out-of-range position whoever writes it
    with pytest.raises(Exception, match="check constraint"):
        env.storage.conn.execute("UPDATE tickets SET arrived_lat = 30.1 WHERE id = %s", (tid,))
    env.storage.conn.rollback()
    with pytest.raises(Exception, match="check constraint"):
        env.storage.conn.execute("UPDATE tickets SET arrived_lat = 95, arrived_lon = 120 WHERE id = %s", (tid,))
    env.storage.conn.rollback()


def test_sop_ticks_are_kept_with_the_ticket_and_its_history(env: Env) -> None:
    tid = env.alarm(device="B6-E1-M", building="B6")
    svc = env.service()
    steps = svc.view(svc.get(tid))["sop"]["steps"]
    assert len(steps) >= 3
    svc.check_sop(MA, tid, 0, True)
    env.clock.now = T0 + timedelta(minutes=1)
    svc.check_sop(MA, tid, 2, True)
    svc.check_sop(MA, tid, 2, True)  # a double tap: nothing more
    env.clock.now = T0 + timedelta(minutes=2)
    svc.check_sop(MA, tid, 2, False)
    svc.check_sop(MA, tid, 1, False)  # unticking what was never ticked: nothing
    ticks = _events(env, tid, "sop_check")
    assert [(who, d["step"], d["done"]) for who, d in ticks] == [("ma", 0, True), ("ma", 2, True), ("ma", 2, False)]
    assert ticks[0][1]["sop"] == "sop_elevator_entrapment" and ticks[0][1]["text"] == steps[0]
    checks = svc.view(svc.get(tid))["sop"]["checks"]
    assert [(c["step"], c["done"], c["by"]) for c in checks] == [(0, True, "ma"), (2, False, "ma")]
    assert checks[1]["at"] == "2025-06-02T10:02:00+08:00"
    # the timeline (REST and the dashboard's history) holds them, the version is unchanged (no state changed)
    assert [e["action"] for e in svc.timeline(tid)].count("sop_check") == 3
    assert svc.get(tid).version == svc.get(tid).version


def test_sop_ticks_are_validated(env: Env) -> None:
    tid = env.alarm(device="B7-E1-M", building="B7")
    svc = env.service()
    n = len(svc.view(svc.get(tid))["sop"]["steps"])
    for bad in (n, -1, 999, True, "1", 1.0, None):
        with pytest.raises(InvalidInput, match="SOP step"):
            svc.check_sop(MA, tid, bad, True)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="true or false"):
        svc.check_sop(MA, tid, 0, "yes")  # type: ignore[arg-type]
    with pytest.raises(Forbidden):
        svc.check_sop(ZHANG, tid, 0, True)  # another grid's worker
    with pytest.raises(TicketNotFound):
        svc.check_sop(MA, 10**12, 0, True)
    svc.check_sop(OP, tid, 0, True)  # an operator may (as they may report progress)
    svc.cancel(OP, tid, "误报：测试", code="false_alarm")
    with pytest.raises(TicketError, match="checklist is closed"):
        svc.check_sop(MA, tid, 1, True)
    assert len(_events(env, tid, "sop_check")) == 1


def test_rest_arrive_with_a_position_and_sop_ticks(env: Env) -> None:
    tid = env.alarm(device="B11-E1-M", building="B11")
    c, ma = env.client, env.auth("ma")
    for body in ({"position": {"lat": 91, "lon": 120}}, {"position": {"lat": 30, "lon": -181}},
                 {"position": {"lat": 30, "lon": 120, "accuracy_m": -3}},
                 {"position": {"lat": 30, "lon": 120, "accuracy_m": 2e5}}, {"position": {"lat": "north", "lon": 1}},
                 {"position": {"lat": 30}}, {"position": {"lat": 30, "lon": 120, "alt": 5}}, {"where": "here"},
                 {"position": [30, 120]}):
        r = c.post(f"/api/v1/tickets/{tid}/arrive", json=body, headers=ma)
        assert r.status_code == 422, (body, r.text)
    r = c.post(f"/api/v1/tickets/{tid}/arrive", content=b'{"position": {"lat": NaN, "lon": 1}}',
               headers={**ma, "content-type": "application/json"})
    assert r.status_code in (400, 422), r.text
    assert env.service().get(tid).arrived_at is None  # nothing of that was recorded
    r = c.post(f"/api/v1/tickets/{tid}/arrive", headers=env.auth("zhang"),
               json={"position": {"lat": 30.2745, "lon": 120.1556}})
    assert r.status_code == 403
    r = c.post(f"/api/v1/tickets/{tid}/arrive", headers=ma,
               json={"note": "到达电梯厅", "position": {"lat": 30.2745, "lon": 120.1556, "accuracy_m": 8}})
    assert r.status_code == 200, r.text
    assert r.json()["arrived_position"] == {"lat": 30.2745, "lon": 120.1556, "accuracy_m": 8.0}
    arrive = next(e for e in r.json()["timeline"] if e["action"] == "arrive")
    assert arrive["detail"]["position"]["lat"] == 30.2745 and arrive["note"] == "到达电梯厅"

    n = len(r.json()["sop"]["steps"])
    r = c.put(f"/api/v1/tickets/{tid}/sop/1", json={"done": True}, headers=ma)
    assert r.status_code == 200, r.text
    assert [(x["step"], x["done"]) for x in r.json()["sop"]["checks"]] == [(1, True)]
    assert r.json()["timeline"][-1]["action"] == "sop_check"
    assert c.put(f"/api/v1/tickets/{tid}/sop/{n}", json={"done": True}, headers=ma).status_code == 422
    assert "SOP step" in c.put(f"/api/v1/tickets/{tid}/sop/{n}", json={"done": True}, headers=ma).json()["detail"]
    for body in ({"done": "yes"}, {"done": 1}, {}, {"done": True, "step": 2}):
        assert c.put(f"/api/v1/tickets/{tid}/sop/0", json=body, headers=ma).status_code == 422, body
    assert c.put(f"/api/v1/tickets/{tid}/sop/-1", json={"done": True}, headers=ma).status_code == 422
    assert c.put(f"/api/v1/tickets/{tid}/sop/x", json={"done": True}, headers=ma).status_code == 422
    assert c.put(f"/api/v1/tickets/{tid}/sop/0", json={"done": True}, headers=env.auth("zhang")).status_code == 403
    assert c.put(f"/api/v1/tickets/{tid}/sop/0", json={"done": True}).status_code == 401
    assert c.put("/api/v1/tickets/999999999/sop/0", json={"done": True}, headers=ma).status_code == 404
    r = c.put(f"/api/v1/tickets/{tid}/sop/1", json={"done": False}, headers=ma)
    assert r.status_code == 200 and [(x["step"], x["done"]) for x in r.json()["sop"]["checks"]] == [(1, False)]
