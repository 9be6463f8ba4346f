"""Patrols and location against the real database through the REST API: QR and position check-ins (with a problem
raising a ticket), due/missed status, validation, who may post and see positions, the 30-day purge, the rate limit
and the nearest on-duty worker for an urgent ticket."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.patrols.store import signing_key
from gateway.settings import Settings
from gateway.storage import Storage
from gateway.tickets.service import TicketService
from tests.conftest import DB_URL
from tests.support.api_env import ROOT, T0, ApiEnv, api_env
from twin import patrols as pt
from twin.community import Community
from twin.people import Role

pytestmark = pytest.mark.integration
USERS = {"op": (Role.OPERATOR, [], None), "ma": (Role.WORKER, ["G1"], "w1-1"), "sun": (Role.WORKER, ["G1"], "w1-2"),
         "zhang": (Role.WORKER, ["G2"], "w2-1"), "sup1": (Role.SUPERVISOR, ["G1"], "s-1"),
         "sup2": (Role.SUPERVISOR, ["G2"], "s-2")}


class Env(ApiEnv):
    def fix(self, x: float, y: float, **extra: Any) -> dict[str, Any]:
        lat, lon = pt.to_latlon(self.community.origin, x, y)
        return {"lat": lat, "lon": lon, "accuracy_m": 8, **extra}


def two_months_of_patrols(storage: Storage, _settings: Settings, _community: Community) -> None:
    storage.conn.execute("UPDATE schema_version SET applied_at = %s WHERE version = 17", (T0 - timedelta(days=60),))
    storage.conn.commit()  # as if patrols had been recorded for two months


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    with api_env(Env, "t_patrol", USERS, prepare=two_months_of_patrols) as e:
        yield e


def qr(env: Env, checkpoint: str) -> str:
    return pt.token(signing_key(env.storage.conn), env.community.id, checkpoint)


def test_checkins_by_qr_and_position_make_patrols_done_and_a_problem_raises_a_ticket(env: Env) -> None:
    env.at(T0)
    status = env.call("GET", "sup1", "/patrols/status").json()
    assert {c["grid"] for c in status["checkpoints"]} == {"G1"}
    door = next(c for c in status["checkpoints"] if c["checkpoint"] == "fire_door.B1")
    assert door["state"] == "due" and door["missed"]  # nobody patrolled yesterday
    r = env.call("POST", "ma", "/patrols/checkins", json={"token": qr(env, "fire_door.B1")})
    assert r.status_code == 201 and r.json()["how"] == "qr", r.text
    r = env.call("POST", "ma", "/patrols/checkins", json={"checkpoint": "fire_lane.B1", "position": env.fix(16, 8),
                                                          "result": "problem", "note": "消防通道被电动车堵住"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["how"] == "position" and body["distance_m"] < 2 and body["ticket"]
    [(building, category, title, grid)] = env.storage.conn.execute(
        "SELECT building, category, title, grid FROM tickets WHERE id = %s", (body["ticket"],)).fetchall()
    assert (building, category, grid) == ("B1", "fire", "G1") and "消防通道" in title
    by_id = {c["checkpoint"]: c for c in env.call("GET", "ma", "/patrols/status").json()["checkpoints"]}
    assert by_id["fire_door.B1"]["state"] == by_id["fire_lane.B1"]["state"] == "done"
    assert by_id["fire_lane.B1"]["last"]["result"] == "problem"
    env.at(T0 + timedelta(days=1))  # the next day: B1's door was done, B2's missed
    by_id = {c["checkpoint"]: c for c in env.call("GET", "sup1", "/patrols/status").json()["checkpoints"]}
    assert by_id["fire_door.B1"]["previous"] == "done" and by_id["fire_door.B1"]["state"] == "due"
    b2 = next(k for k, v in by_id.items() if k.startswith("fire_door.") and k != "fire_door.B1")
    assert by_id[b2]["missed"]
    plans = env.call("GET", "zhang", "/patrols/plans").json()
    assert {p["id"] for p in plans["plans"]} >= {"elevator"} and {c["grid"] for c in plans["checkpoints"]} == {"G2"}


@pytest.mark.parametrize("body, status, why", [
    ({"token": "fire_door.B1~AAAAAAAAAAAAAAAA"}, 422, "not a checkpoint"),
    ({"token": "bad token"}, 422, ""),
    ({"checkpoint": "fire_door.B1"}, 422, "position"),
    ({"checkpoint": "fire_door.B1", "position": {"lat": 91, "lon": 0}}, 422, ""),
    ({"checkpoint": "fire_door.B1", "position": {"lat": 30.2741, "lon": 120.1551, "accuracy_m": -1}}, 422, ""),
    ({"checkpoint": "nope.B1", "position": {"lat": 30.2741, "lon": 120.1551}}, 422, "no checkpoint"),
    ({"checkpoint": "fire_door.B1", "result": "problem"}, 422, ""),
    ({"checkpoint": "fire_door.B1", "extra": 1}, 422, ""),
])
def test_bad_checkins_are_refused_with_the_reason(env: Env, body: dict[str, Any], status: int, why: str) -> None:
    env.at(T0)
    r = env.call("POST", "ma", "/patrols/checkins", json=body)
    assert r.status_code == status and why in r.text, r.text


def test_checkin_rules_distance_grid_time_and_notes(env: Env) -> None:
    env.at(T0)
    far = env.call("POST", "ma", "/patrols/checkins", json={"checkpoint": "fire_door.B1", "position": env.fix(15, 90)})
    assert far.status_code == 422 and "m from" in far.text
    other = next(p for p in pt.checkpoints(env.community, pt.default_plans()) if p.grid == "G2")
    assert env.call("POST", "ma", "/patrols/checkins", json={"token": qr(env, other.id)}).status_code == 403
    assert env.call("POST", "op", "/patrols/checkins", json={"token": qr(env, "fire_door.B1")}).status_code == 403
    future = (T0 + timedelta(minutes=5)).isoformat()
    r = env.call("POST", "ma", "/patrols/checkins", json={"token": qr(env, "fire_door.B1"), "at": future})
    assert r.status_code == 422 and "future" in r.text
    r = env.call("POST", "ma", "/patrols/checkins", json={"token": qr(env, "fire_door.B1"), "result": "problem"})
    assert r.status_code == 422 and "note" in r.text
    assert env.call("GET", "ma", "/patrols/status", params={"grid": "G2"}).status_code == 403


def test_positions_only_own_only_on_duty_validated_and_seen_by_the_grid(env: Env) -> None:
    env.at(T0 + timedelta(days=3))
    assert env.call("POST", "ma", "/patrols/positions", json=env.fix(10, 10)).status_code == 202
    r = env.call("POST", "sun", "/patrols/positions", json=env.fix(10, 10))  # the night shift at 10:00
    assert r.status_code == 403 and "off duty" in r.text
    assert env.call("POST", "sup1", "/patrols/positions", json=env.fix(10, 10)).status_code == 403
    assert env.call("POST", "ma", "/patrols/positions", json={**env.fix(0, 0), "worker": "w2-1"}).status_code == 422
    for bad in ({"lat": 91, "lon": 0}, {"lat": 0, "lon": 181}, {**env.fix(0, 0), "accuracy_m": 900},
                {**env.fix(0, 0), "at": (env.clock.now + timedelta(minutes=3)).isoformat()},
                {**env.fix(0, 0), "at": (env.clock.now - timedelta(minutes=30)).isoformat()},
                {**env.fix(0, 0), "at": "2025-06-02T10:00:00"}, {"lat": 30.5, "lon": 120.1551}):
        r = env.call("POST", "sun", "/patrols/positions", json=bad)  # checked before the shift is
        assert r.status_code == 422, (bad, r.text)
    assert env.call("POST", "zhang", "/patrols/positions", json=env.fix(120, 20)).status_code == 202
    mine = env.call("GET", "ma", "/patrols/trails").json()["workers"]
    assert set(mine) == {"w1-1"}
    assert set(env.call("GET", "sup1", "/patrols/trails").json()["workers"]) == {"w1-1"}
    assert set(env.call("GET", "sup2", "/patrols/trails").json()["workers"]) == {"w2-1"}
    assert set(env.call("GET", "op", "/patrols/trails").json()["workers"]) == {"w1-1", "w2-1"}
    assert env.call("GET", "sup1", "/patrols/trails", params={"grid": "G2"}).status_code == 403


def test_the_nearest_on_duty_worker_is_suggested_for_an_urgent_ticket(env: Env) -> None:
    env.at(T0 + timedelta(days=4))
    env.call("POST", "ma", "/patrols/positions", json=env.fix(60, 60))
    env.call("POST", "zhang", "/patrols/positions", json=env.fix(100, 10))
    t = env.call("POST", "op", "/tickets", json={"title": "B1 起火", "category": "fire", "priority": "urgent",
                                                 "building": "B1"})
    assert t.status_code in (200, 201), t.text
    found = env.call("GET", "op", "/patrols/nearest", params={"ticket": t.json()["id"]}).json()["workers"]
    assert [w["worker_id"] for w in found] == ["w1-1", "w2-1"]  # B1 is at (15, 7): ma is 70 m away, zhang 86 m
    assert [w["worker_id"] for w in env.call("GET", "sup2", "/patrols/nearest",
                                             params={"building": "B1"}).json()["workers"]] == ["w2-1"]
    assert env.call("GET", "ma", "/patrols/nearest", params={"building": "B1"}).status_code == 403
    env.at(env.clock.now + timedelta(minutes=11))  # positions older than 10 minutes do not count
    assert env.call("GET", "op", "/patrols/nearest", params={"building": "B1"}).json()["workers"] == []


def test_positions_are_purged_after_30_days_and_posting_is_rate_limited(env: Env) -> None:
    env.at(T0 + timedelta(days=5))
    env.storage.conn.execute("INSERT INTO worker_positions (community, worker, worker_id, at, recorded_at, x, y) "
                             "VALUES ('sunshine', 'ma', 'w1-1', %s, %s, 1, 1)", (T0 - timedelta(days=40),) * 2)
    env.storage.conn.commit()
    old = "SELECT count(*) FROM worker_positions WHERE at < %s"
    assert env.storage.conn.execute(old, (T0 - timedelta(days=30),)).fetchone() == (1,)
    codes = [env.call("POST", "ma", "/patrols/positions", json=env.fix(5, 5)).status_code for _ in range(5)]
    assert codes[0] == 202 and 429 in codes
    env.storage.conn.commit()
    assert env.storage.conn.execute(old, (T0 - timedelta(days=30),)).fetchone() == (0,)
    env.storage.conn.execute("INSERT INTO worker_positions (community, worker, worker_id, at, recorded_at, x, y) "
                             "VALUES ('sunshine', 'ma', 'w1-1', %s, %s, 1, 1)", (T0 - timedelta(days=31),) * 2)
    env.storage.conn.commit()
    TicketService(env.storage, env.settings, env.community, clock=env.clock, render_on_create=False).tick()
    assert env.storage.conn.execute(old, (T0 - timedelta(days=30),)).fetchone() == (0,)  # the periodic job's purge


def test_the_patrol_sheet_prints_signed_codes_the_api_accepts(env: Env, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    from gateway import cli
    from gateway.patrols.sheet import entries
    from gateway.reports.qrsheet import qr_image, qr_position

    monkeypatch.setenv("GRIDTWIN_DB_URL", DB_URL)
    monkeypatch.setenv("GRIDTWIN_DB_SCHEMA", env.storage.schema)
    out = tmp_path / "patrol.png"
    assert cli.main(["patrol-sheet", "--community", str(ROOT / "twin" / "sample_community.yaml"), "--base-url",
                     "https://wuye.example.cn", "--out", str(out), "--plan", "elevator", "--grid", "G2"]) == 0
    items = entries(env.community, "https://wuye.example.cn", signing_key(env.storage.conn), plan="elevator",
                    grid="G2")
    assert items and all(e.checkpoint.startswith("elevator.") for e in items)
    page = Image.open(out).convert("1")
    qr = qr_image(items[0].url)
    x, y = qr_position(0, qr.width)
    assert page.crop((x, y, x + qr.width, y + qr.height)).tobytes() == qr.tobytes()
    env.at(T0 + timedelta(days=6))
    r = env.call("POST", "zhang", "/patrols/checkins", json={"token": items[0].url.rsplit("/", 1)[1]})
    assert r.status_code == 201, r.text
    assert cli.main(["patrol-sheet", "--community", str(ROOT / "twin" / "sample_community.yaml"), "--base-url",
                     "ftp://x", "--out", str(out)]) == 2
