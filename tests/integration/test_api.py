"""The REST API against the real PostgreSQL and Mosquitto: login and tokens, role separation, bad input gets the
right 4xx, the entrapment path end to end (alarm -> ticket on the worker's MQTT topic with SOP and 3D snapshot ->
accept -> resolve -> the resident's rating -> KPIs)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.tickets.service import render_snapshot
from tests.conftest import MQTT_URL
from tests.support.api_env import PASSWORD, T0, ApiEnv, api_env
from twin import contract
from twin.alarms import AlarmEvent, AlarmStatus, Dispatch, EventKind, Severity
from twin.people import Role

pytestmark = pytest.mark.integration
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 200
USERS = {  # username: (role, grids, worker id)
    "op": (Role.OPERATOR, [], None),
    "admin": (Role.ADMIN, [], None),
    "ma": (Role.WORKER, ["G1"], "w1-1"),
    "zhang": (Role.WORKER, ["G2"], "w2-1"),
    "sup": (Role.SUPERVISOR, ["G1", "G2", "G3"], "s-1"),
}


class Env(ApiEnv):
    def alarm(self, rule: str = "elevator_entrapment", device: str = "B1-E1-M", building: str = "B1", floor: int = 1,
              dispatch: Dispatch = Dispatch.URGENT, **kw: Any) -> int:
        at = self.clock.now
        ev = AlarmEvent(EventKind.RAISED, rule, device, "device", Severity.CRITICAL, AlarmStatus.ACTIVE_UNACK, at, at,
                        1, building, floor, device, f"{rule} at {device}", dispatch)
        t = self.service(**kw).on_alarm_event(self.community, ev)
        assert t is not None
        return t.id


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    """One schema, community and set of users for the module (argon2 hashing is deliberately slow)."""
    with api_env(Env, "t_api", USERS, tickets={"photo_max_bytes": 4096}) as e:
        yield e


@pytest.fixture(autouse=True)
def _day_shift(env: Env) -> None:
    env.clock.now = T0


def test_login_tokens_expire_and_are_checked(env: Env) -> None:
    c = env.client
    r = c.post("/api/v1/auth/login", json={"username": "ma", "password": "wrong password"})
    assert r.status_code == 401 and r.json()["detail"] == "wrong username or password"
    r = c.post("/api/v1/auth/login", json={"username": "ma", "password": PASSWORD})
    token = r.json()["token"]
    assert r.json()["user"] == {"username": "ma", "display_name": "ma", "role": "worker", "grids": ["G1"],
                                "worker_id": "w1-1"}
    assert c.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).json()["worker_id"] == "w1-1"
    assert c.get("/api/v1/tickets").status_code == 401
    assert "missing bearer token" in c.get("/api/v1/tickets").json()["detail"]
    assert c.get("/api/v1/tickets", headers={"Authorization": "Bearer nonsense"}).status_code == 401
    assert c.get("/api/v1/tickets", headers={"Authorization": "Basic bWE6eA=="}).status_code == 401
    env.clock.now = T0 + timedelta(minutes=env.settings.api.token_ttl_min)
    r = c.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and "expired" in r.json()["detail"] and r.headers["www-authenticate"] == "Bearer"
    env.clock.now = T0
    assert c.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"}).status_code == 204
    assert c.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_role_separation(env: Env) -> None:
    c = env.client
    g1 = env.alarm("gas_level1", "B2-F3-GAS", "B2", 3)
    g2 = env.alarm("gas_level1", "B3-F3-GAS", "B3", 3)
    mine = {t["id"] for t in c.get("/api/v1/tickets", headers=env.auth("ma")).json()["tickets"]}
    theirs = {t["id"] for t in c.get("/api/v1/tickets", headers=env.auth("zhang")).json()["tickets"]}
    everything = {t["id"] for t in c.get("/api/v1/tickets", headers=env.auth("op")).json()["tickets"]}
    assert g1 in mine and g2 not in mine and g2 in theirs and g1 not in theirs and {g1, g2} <= everything
    r = c.get(f"/api/v1/tickets/{g2}", headers=env.auth("ma"))
    assert r.status_code == 403 and "grid G2" in r.json()["detail"]
    assert c.post(f"/api/v1/tickets/{g2}/accept", headers=env.auth("ma")).status_code == 403
    assert c.get(f"/api/v1/tickets/{g2}/snapshot.png", headers=env.auth("ma")).status_code == 403
    for path, body in ((f"/api/v1/tickets/{g1}/cancel", {"reason": "x"}),
                       (f"/api/v1/tickets/{g1}/reassign", {"assignee": "w1-2", "reason": "x"}),
                       ("/api/v1/tickets", {"title": "x"}), ("/api/v1/users", {"username": "zz", "password": "p" * 9,
                                                                                "role": "admin"})):
        r = c.post(path, json=body, headers=env.auth("ma"))
        assert r.status_code == 403, (path, r.text)
    assert c.get("/api/v1/kpi?from=2025-06-01&to=2025-06-30", headers=env.auth("ma")).status_code == 403
    assert c.get("/api/v1/users", headers=env.auth("op")).status_code == 403
    assert {u["username"] for u in c.get("/api/v1/users", headers=env.auth("admin")).json()["users"]} == set(USERS)
    # the supervisor sees and moves tickets of their grids; the operator sees the private rating link
    r = c.post(f"/api/v1/tickets/{g2}/reassign", json={"assignee": "w3-1", "reason": "w2-1 在处理困人"},
               headers=env.auth("sup"))
    assert r.status_code == 200 and r.json()["assignee"]["id"] == "w3-1" and "rate_url" not in r.json()
    assert c.get(f"/api/v1/tickets/{g2}", headers=env.auth("op")).json()["rate_url"].startswith(
        "http://127.0.0.1:8050/api/v1/rate/")


def test_bad_input_gets_the_right_4xx(env: Env) -> None:
    c = env.client
    tid = env.alarm("water_leak", "B1-F5-WL", "B1", 5, Dispatch.GENERAL)
    ma = env.auth("ma")
    h = {**ma, "Content-Type": "application/json"}
    r = c.post(f"/api/v1/tickets/{tid}/resolve", content=b'{"note": "done"', headers=h)
    assert r.status_code == 400 and r.json()["detail"].startswith("malformed JSON")
    r = c.post(f"/api/v1/tickets/{tid}/resolve", json={"note": "done", "colour": "red"}, headers=ma)
    assert r.status_code == 422 and "colour" in r.json()["detail"]
    r = c.post(f"/api/v1/tickets/{tid}/resolve", json={"note": "done"}, headers=ma)
    assert r.status_code == 409 and "cannot resolve" in r.json()["detail"] and "accept" in r.json()["detail"]
    r = c.post(f"/api/v1/tickets/{tid}/accept", json={"version": 1}, headers=ma)
    assert r.status_code == 409 and "changed meanwhile" in r.json()["detail"]
    r = c.post(f"/api/v1/tickets/{tid}/accept", json={"note": "a\x00b"}, headers=ma)
    assert r.status_code == 422 and "NUL" in r.json()["detail"]
    r = c.post(f"/api/v1/tickets/{tid}/accept", json={"note": "收到", "version": 2}, headers=ma)
    assert r.status_code == 200 and r.json()["state"] == "handling" and r.json()["version"] == 3
    assert c.post(f"/api/v1/tickets/{tid}/accept", headers=ma).status_code == 409
    fb = f"/api/v1/tickets/{tid}/feedback"
    r = c.post(fb, data={"note": "x"}, files={"photo": ("big.jpg", JPEG * 40, "image/jpeg")}, headers=ma)
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    r = c.post(fb, data={"note": "x"}, files={"photo": ("a.gif", b"GIF89a....", "image/gif")}, headers=ma)
    assert r.status_code == 415 and "image/jpeg" in r.json()["detail"]
    r = c.post(fb, data={"note": "x"}, files={"photo": ("a.jpg", b"<html>not a photo", "image/jpeg")}, headers=ma)
    assert r.status_code == 415
    r = c.post(fb, content=b"x" * 200_000, headers={**ma, "Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413
    r = c.post(fb, data={"note": "已关闭进户阀门"}, files={"photo": ("a.jpg", JPEG, "image/jpeg")}, headers=ma)
    assert r.status_code == 200
    photo = next(e for e in r.json()["timeline"] if e["action"] == "progress")["photo_url"]
    got = c.get(photo, headers=ma)
    assert got.status_code == 200 and got.content == JPEG and got.headers["content-type"] == "image/jpeg"
    assert c.get(photo, headers=env.auth("zhang")).status_code == 403
    assert c.get("/api/v1/tickets/999999", headers=ma).status_code == 404
    assert c.get("/api/v1/tickets/0", headers=ma).status_code == 422
    assert c.get(f"/api/v1/tickets/{2**70}", headers=ma).status_code == 422
    assert c.get("/api/v1/tickets?limit=100000", headers=ma).status_code == 422
    assert c.get(f"/api/v1/tickets/{tid}/snapshot.png", headers=ma).status_code == 404  # none was rendered
    r = c.post(f"/api/v1/tickets/{tid}/cancel", json={"reason": " "}, headers=env.auth("op"))
    assert r.status_code == 422
    r = c.post("/api/v1/tickets", json={"title": "x", "building": "B1", "floor": 0}, headers=env.auth("op"))
    assert r.status_code == 422 and "no floor 0" in r.json()["detail"]
    r = c.post("/api/v1/tickets", json={"title": "x", "building": "B99"}, headers=env.auth("op"))
    assert r.status_code == 422 and "B99" in r.json()["detail"]
    assert c.post("/api/v1/rate/no-such-token", json={"rating": 5}).status_code == 404
    tok = env.service().get(tid).rate_token
    r = c.post(f"/api/v1/rate/{tok}", json={"rating": 5})
    assert r.status_code == 409 and "once it is resolved" in r.json()["detail"]
    assert c.post(f"/api/v1/rate/{tok}", json={"rating": 9}).status_code == 422
    assert c.get("/api/v1/kpi?from=2025-06-30&to=2025-06-01", headers=env.auth("op")).status_code == 422
    assert c.get("/api/v1/kpi?from=0001-01-01&to=2025-06-01", headers=env.auth("op")).status_code == 422
    assert c.post("/api/v1/auth/login", content=b"[]", headers={"Content-Type": "application/json"}).status_code == 422
    assert c.post("/api/v1/auth/login", content=b"x" * 100_000,
                  headers={"Content-Type": "application/json"}).status_code == 413


def test_knowledge_search(env: Env) -> None:
    c = env.client
    r = c.get("/api/v1/knowledge", params={"q": "电梯困人"}, headers=env.auth("ma"))
    assert r.status_code == 200 and r.json()["results"][0]["id"] == "sop_elevator_entrapment"
    assert len(c.get("/api/v1/knowledge", headers=env.auth("ma")).json()["results"]) >= 10
    doc = c.get("/api/v1/knowledge/sop_gas_leak", headers=env.auth("ma")).json()
    assert doc["title_zh"] == "燃气泄漏报警处置" and len(doc["steps"]) >= 5
    assert c.get("/api/v1/knowledge/nope", headers=env.auth("ma")).status_code == 404
    assert c.get("/api/v1/knowledge?q=x").status_code == 401


def test_entrapment_end_to_end_through_the_broker(env: Env, tmp_path: Path) -> None:
    """A raised entrapment alarm becomes a life-safety ticket for G1's on-duty worker, delivered on their MQTT
    topic with the SOP and the 3D snapshot; the worker accepts and resolves in the app, the resident rates it,
    and the KPIs show it."""
    s = env.settings
    addr = contract.BrokerAddress.parse(MQTT_URL)
    topic = contract.worker_topic(s.mqtt.topic_root, "w1-1")
    received: list[dict[str, Any]] = []
    snapshot_seen = threading.Event()
    phone = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"phone-{s.mqtt.topic_root}")

    def on_message(_c: object, _u: object, msg: paho.MQTTMessage) -> None:
        m = orjson.loads(msg.payload)
        received.append(m)
        if m["ticket"]["snapshot_url"]:
            snapshot_seen.set()

    phone.on_message = on_message
    phone.connect(addr.host, addr.port)
    phone.subscribe(topic, qos=1)
    phone.loop_start()
    gw = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"gw-{s.mqtt.topic_root}")
    gw.connect(addr.host, addr.port)
    gw.loop_start()
    try:
        time.sleep(0.3)

        def publish(t: str, payload: bytes, qos: int) -> None:
            gw.publish(t, payload, qos=qos).wait_for_publish(5)

        tid = env.alarm(publish=publish, snapshot=render_snapshot((640, 480)))
        assert snapshot_seen.wait(20), received
    finally:
        phone.loop_stop()
        phone.disconnect()
        gw.loop_stop()
        gw.disconnect()
    created, *_, latest = received
    assert created["event"] == "created" and latest["event"] == "snapshot"
    t = latest["ticket"]
    assert t["id"] == tid and t["title"] == "电梯困人 · 阳光社区 1号楼 1层" and t["life_safety"] is True
    assert t["location"]["building_name"] == "1号楼" and t["location"]["grid"] == "G1"
    assert t["assignee"] == {"id": "w1-1", "name": "马刚", "role": "on_duty"}
    assert t["collaborator"] == "电梯维保单位"
    assert t["deadlines"]["respond_by"] == "2025-06-02T10:05:00+08:00"
    # entrapment (TSG T5002-2017): rescuers on site within 30 min, the trapped people out within 1 h
    assert t["deadlines"]["arrive_by"] == "2025-06-02T10:30:00+08:00"
    assert t["deadlines"]["release_by"] == "2025-06-02T11:00:00+08:00"
    assert t["deadlines"]["resolve_by"] == "2025-06-03T10:00:00+08:00"
    assert t["sop"]["id"] == "sop_elevator_entrapment" and "不要扒门" in t["sop"]["steps"][0]
    assert [a["rule"] for a in t["alarms"]] == ["elevator_entrapment"]
    assert t["actions"] == ["accept", "arrive", "cancel", "escalate", "reassign", "release"]
    (tmp_path / "ticket.json").write_bytes(orjson.dumps(latest, option=orjson.OPT_INDENT_2))

    c, ma = env.client, env.auth("ma")
    png = c.get(t["snapshot_url"], headers=ma)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n") and len(png.content) > 5000
    inbox = c.get("/api/v1/tickets?open_only=true", headers=ma).json()["tickets"]
    assert tid in [x["id"] for x in inbox]
    env.clock.now = T0 + timedelta(minutes=3)
    r = c.post(f"/api/v1/tickets/{tid}/accept", json={"note": "已到达电梯厅，维保人员在路上"}, headers=ma)
    assert r.status_code == 200 and r.json()["state"] == "handling"
    env.clock.now = T0 + timedelta(minutes=18)
    r = c.post(f"/api/v1/tickets/{tid}/arrive", json={"note": "维保人员到场"}, headers=ma)
    assert r.status_code == 200 and r.json()["arrived_at"] == "2025-06-02T10:18:00+08:00"
    env.clock.now = T0 + timedelta(minutes=24)
    r = c.post(f"/api/v1/tickets/{tid}/release", headers=ma)
    assert r.status_code == 200 and r.json()["released_at"] == "2025-06-02T10:24:00+08:00"
    assert "release" not in r.json()["actions"] and "arrive" not in r.json()["actions"]
    resolve = {"note": "维保单位盘车救出2人，无人受伤；电梯停用待修"}
    r = c.post(f"/api/v1/tickets/{tid}/resolve", json=resolve, headers=ma)  # the lift still reports entrapment
    assert r.status_code == 409 and r.json()["active_alarms"] == ["elevator_entrapment@B1-E1-M"]
    assert set(r.json()["reasons"]) == {"false_alarm", "device_fault", "other"}
    r = c.post(f"/api/v1/tickets/{tid}/resolve", json={**resolve, "reason": "other"}, headers=ma)
    assert r.status_code == 422 and "needs a note" in r.json()["detail"]
    fault = {"reason": "device_fault", "reason_note": "轿厢困人信号未复位，维保单位已报修"}
    r = c.post(f"/api/v1/tickets/{tid}/resolve", json={**resolve, **fault}, headers=ma)
    assert r.status_code == 200 and r.json()["state"] == "feedback"
    assert r.json()["close_reason"]["code"] == "device_fault"
    rate_url = c.get(f"/api/v1/tickets/{tid}", headers=env.auth("op")).json()["rate_url"]
    path = rate_url.removeprefix("http://127.0.0.1:8050")
    page = c.get(path, headers={"Accept": "text/html"})
    assert page.status_code == 200 and "提交评价" in page.text and "维保单位盘车救出2人" in page.text
    assert c.get(path).json()["can_rate"] is True
    r = c.post(path, json={"rating": 5, "comment": "来得很快"})
    assert r.status_code == 200 and r.json()["state"] == "evaluated"
    assert c.post(path, json={"rating": 1}).status_code == 409
    kpi = c.get("/api/v1/kpi", params={"from": "2025-06-02", "to": "2025-06-02"}, headers=env.auth("op")).json()
    w = next(row for row in kpi["rows"] if row["scope"] == "worker" and row["key"] == "w1-1")
    assert w["name"] == "马刚" and w["resolved"] >= 1 and w["satisfaction"] == 5.0 and w["on_time_rate"] == 1.0
    md = c.get("/api/v1/kpi", params={"from": "2025-06-02", "to": "2025-06-02", "format": "md"},
               headers=env.auth("sup"))
    assert md.status_code == 200 and "| worker | w1-1 | 马刚 |" in md.text
    timeline = [e["action"] for e in c.get(f"/api/v1/tickets/{tid}", headers=ma).json()["timeline"]]
    assert timeline == ["create", "dispatch", "accept", "arrive", "release", "resolve", "rate"]
    stats = c.get("/api/v1/stats/false-alarms", params={"from": "2025-06-02", "to": "2025-06-02"},
                  headers=env.auth("op")).json()
    assert {"device": "B1-E1-M", "kind": "elevator", "rule": "elevator_entrapment", "alarms": 1, "false_alarm": 0,
            "device_fault": 1, "other": 0, "false_alarm_rate": 0.0} in stats["rows"]
    assert c.get("/api/v1/stats/false-alarms", params={"from": "2025-06-02", "to": "2025-06-02"},
                 headers=ma).status_code == 403


def test_openapi_spec_is_served(env: Env) -> None:
    spec = env.client.get("/api/v1/openapi.json").json()
    assert spec["info"]["title"] == "gridtwin API"
    paths = set(spec["paths"])
    assert {"/api/v1/auth/login", "/api/v1/tickets", "/api/v1/tickets/{ticket_id}/accept",
            "/api/v1/tickets/{ticket_id}/feedback", "/api/v1/rate/{token}", "/api/v1/kpi",
            "/api/v1/knowledge"} <= paths
