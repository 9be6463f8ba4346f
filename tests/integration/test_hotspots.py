"""Hotspots against the real PostgreSQL: alarms raised (some ticketed and cancelled as false alarms) and one-click
reports (tests/integration/hotspots_seed.py) counted per place over a period by gateway.web.hotspots_data, and
``GET /api/v1/hotspots`` with its refusals (bad dates, too long a period, unknown community, wrong role)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from gateway.web.hotspots_data import MAX_DAYS, check_period, groups, hotspots
from tests.integration.hotspots_seed import Seeded, seed
from tests.support.api_env import ApiEnv, Clock, api_env
from twin.people import Role

pytestmark = pytest.mark.integration
NOW = datetime(2026, 5, 31, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai
USERS = {"op": (Role.OPERATOR, [], None), "ma": (Role.WORKER, ["G1"], "w1-1"), "sup1": (Role.SUPERVISOR, ["G1"], None)}


@dataclass
class Env(ApiEnv):
    seeded: Seeded


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    with api_env(Env, "t_hot", USERS, clock=Clock(NOW), pool_size=2, tickets={"snapshots": False},
                 prepare=lambda storage, settings, c: {"seeded": seed(storage, settings, c, NOW)}) as e:
        yield e


def test_alarms_and_reports_are_counted_per_place_with_false_alarms_and_hints(env: Env) -> None:
    c = env.community
    spots = hotspots(env.pool, c, NOW - timedelta(days=30), NOW)
    rows = [(h.building, h.floor, h.count, h.sensor, h.reports, h.top_category) for h in spots]
    assert rows[:3] == [("B3", 1, 6, 1, 5, "fire_lane"), ("B9", 12, 4, 0, 4, "falling_objects"),
                        ("B5", 2, 4, 4, 0, "fire_prealarm")]
    assert ("B11", None, 2, 2, 0, "hydrant_pressure_low") in rows  # a building-wide alarm: no floor
    by = {(h.building, h.floor): h for h in spots}
    assert [x.code for x in by[("B3", 1)].hints] == ["repeat"]
    assert by[("B3", 1)].hint == "消防通道堵塞反复发生 5 次：建议源头治理（物业/执法）"
    assert [x.code for x in by[("B9", 12)].hints] == ["repeat", "night"]  # 22:30-02:30 local
    assert by[("B9", 12)].night == 4
    b5 = by[("B5", 2)]  # three of the four pre-alarms were cancelled as false through the ticket service
    assert (b5.false_alarms, b5.device) == (3, "B5-F2-SD1")
    assert [x.code for x in b5.hints] == ["false_alarms", "one_device"]
    assert by[("B7", 3)].night == 2 and by[("B7", 3)].hints == ()  # two alarms: too few for any rule
    total = sum(h.count for h in spots)
    assert total == env.seeded.alarms + env.seeded.reports - 1  # all but the alarm 45 days ago


def test_the_period_decides_what_counts(env: Env) -> None:
    c = env.community
    week = {(h.building, h.floor): h.count for h in hotspots(env.pool, c, NOW - timedelta(days=7), NOW)}
    assert week[("B3", 1)] == 4 and ("B12", 6) not in week  # 3 reports in the week + the smoke alarm
    quarter = {(h.building, h.floor): h.count for h in hotspots(env.pool, c, NOW - timedelta(days=90), NOW)}
    assert quarter[("B12", 6)] == 1
    hours = {g.hour for g in groups(env.pool, c, NOW - timedelta(days=30), NOW) if g.category == "falling_objects"}
    assert hours == {22, 23, 1, 2}  # local hours, not UTC
    assert hotspots(env.pool, c, NOW + timedelta(days=1), NOW + timedelta(days=2)) == []


@pytest.mark.parametrize(("start", "end", "message"), [
    (datetime(2026, 5, 1), datetime(2026, 5, 2), "time zone"),  # naive on purpose
    (NOW, NOW, "must end after it starts"),
    (NOW, NOW - timedelta(days=1), "must end after it starts"),
    (NOW - timedelta(days=MAX_DAYS + 1), NOW, f"longer than {MAX_DAYS} days"),
])
def test_a_bad_period_is_refused(start: datetime, end: datetime, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_period(start, end)


def test_api_hotspots_and_its_refusals(env: Env) -> None:
    with TestClient(env.app) as c:
        r = c.get("/api/v1/hotspots", params={"from": "2026-05-01", "to": "2026-05-31"}, headers=env.auth("op"))
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["community"], body["timezone"]) == (env.community.id, "Asia/Shanghai")
        first = body["hotspots"][0]
        assert (first["building"], first["floor"], first["count"], first["sensor"], first["reports"]) == (
            "B3", 1, 6, 1, 5)
        assert first["hints"][0]["code"] == "repeat" and first["hint"].startswith("消防通道堵塞")
        assert body["sensor"] + body["reports"] == sum(h["count"] for h in body["hotspots"])
        top = c.get("/api/v1/hotspots", params={"from": "2026-05-01", "to": "2026-05-31", "top": 2,
                                                "community": env.community.id}, headers=env.auth("op")).json()
        assert len(top["hotspots"]) == 2
        mine = c.get("/api/v1/hotspots", params={"from": "2026-05-01", "to": "2026-05-31"}, headers=env.auth("sup1"))
        assert mine.status_code == 200
        assert {h["building"] for h in mine.json()["hotspots"]} == {"B2", "B7", "B11"}  # G1's only
        bad = [({"from": "2026-05-31", "to": "2026-05-01"}, "before from"),
               ({"from": "2026-13-01", "to": "2026-05-01"}, "from"),
               ({"from": "1999-01-01", "to": "2026-05-01"}, "2000..2999"),
               ({"from": "2024-01-01", "to": "2026-05-01"}, "at most 366"),
               ({"from": "2026-05-01"}, "to"),
               ({"from": "2026-05-01", "to": "2026-05-31", "community": "nope"}, "unknown community"),
               ({"from": "2026-05-01", "to": "2026-05-31", "community": "a b"}, "community"),
               ({"from": "2026-05-01", "to": "2026-05-31", "top": 0}, "top")]
        for params, words in bad:
            r = c.get("/api/v1/hotspots", params=params, headers=env.auth("op"))
            assert r.status_code == 422 and words in r.json()["detail"], (params, r.text)
        r = c.get("/api/v1/hotspots", params={"from": "2026-05-01", "to": "2026-05-31"}, headers=env.auth("ma"))
        assert r.status_code == 403 and "supervisor" in r.json()["detail"]
        r = c.get("/api/v1/hotspots", params={"from": "2026-05-01", "to": "2026-05-31"})
        assert r.status_code == 401
