"""The care register against the real database, through the REST API and the ticket service's watchdog: seeding from
the community file, who sees what (masked names for operators, nothing for another grid's worker), an overdue visit
raising exactly one ticket (across a restart and a second gateway), a visit resetting the due date, level changes
with their reasons, and bad input."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from gateway.care import overdue
from gateway.care.overdue import raise_overdue
from gateway.care.store import CareRegister
from gateway.tickets.service import TicketService
from tests.support.api_env import T0, ApiEnv, api_env
from twin import care
from twin.people import Role

pytestmark = pytest.mark.integration
USERS = {"op": (Role.OPERATOR, [], None), "admin": (Role.ADMIN, [], None), "ma": (Role.WORKER, ["G1"], "w1-1"),
         "zhang": (Role.WORKER, ["G2"], "w2-1"), "sup": (Role.SUPERVISOR, ["G1", "G2", "G3"], "s-1")}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


class Env(ApiEnv):
    def service(self, **kw: Any) -> TicketService:
        return super().service(render_on_create=False, **kw)

    def care_resident(self, unit: str) -> dict[str, Any]:
        found = [r for r in self.get("admin", "/care/residents").json()["residents"] if r["unit"] == unit]
        assert len(found) == 1
        return dict(found[0])


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    with api_env(Env, "t_care", USERS, tickets={"photo_max_bytes": 4096}) as e:
        yield e


def grid_of(env: Env, building: str) -> str | None:
    b = env.community.building(building)
    assert b is not None
    return env.community.grid_of(b)


def unit_in(env: Env, grid: str, level: str) -> str:
    return next(u.unit for u in env.community.care_units if grid_of(env, u.building) == grid and u.level == level)


def test_the_register_is_seeded_and_each_role_sees_what_it_may(env: Env) -> None:
    env.at(T0)
    everyone = env.get("admin", "/care/residents").json()["residents"]
    assert len(everyone) == len(env.community.care_units)
    assert all(not r["masked"] and r["name"] for r in everyone)
    by_unit = {u.unit: u for u in env.community.care_units}
    for r in everyone:  # registered now: the first visit is due one interval later, in Shanghai's dates
        assert r["due"] == {"red": "2025-06-09", "yellow": "2025-06-16", "green": "2025-07-02"}[r["level"]]
        assert r["name"] == by_unit[r["unit"]].name and r["status"] == "ok"

    ops = env.get("op", "/care/residents").json()["residents"]
    assert len(ops) == len(everyone)
    assert all(r["masked"] and r["name"].endswith("*") and r["phone"] is None and r["category"] is None for r in ops)
    assert {r["name"] for r in ops} == {care.mask_name(by_unit[r["unit"]].name) for r in ops}
    assert {r["name"] for r in ops if r["unit"] == "B2-401"} == {"张**"}

    mine = env.get("ma", "/care/residents").json()["residents"]
    assert mine and {r["grid"] for r in mine} == {"G1"} and all(not r["masked"] for r in mine)
    other = next(r for r in everyone if r["grid"] == "G2")
    assert env.get("ma", f"/care/residents/{other['id']}").status_code == 404
    assert env.post("ma", f"/care/residents/{other['id']}/visits", data={"note": "x"}).status_code == 404
    assert env.get("zhang", f"/care/residents/{other['id']}").json()["name"] == by_unit[other["unit"]].name
    seen_by_op = env.get("op", f"/care/residents/{other['id']}").json()
    assert seen_by_op["masked"] and seen_by_op["phone"] is None
    assert env.post("op", f"/care/residents/{other['id']}/visits", data={"note": "x"}).status_code == 403
    assert {r["grid"] for r in env.get("sup", "/care/residents", params={"grid": "G2"}).json()["residents"]} == {"G2"}
    reds = env.get("sup", "/care/residents", params={"level": "red"}).json()["residents"]
    assert reds and {r["level"] for r in reds} == {"red"}
    assert env.get("sup", "/care/residents", params={"level": "blue"}).status_code == 422


def test_an_overdue_visit_raises_exactly_one_ticket_to_the_grid_worker(env: Env) -> None:
    unit = unit_in(env, "G1", "red")
    r = env.care_resident(unit)
    overdue_at = datetime(2025, 6, 9, 16, 0, tzinfo=UTC)  # 06-10 00:00 in Shanghai: the day after the due date
    env.at(overdue_at - timedelta(seconds=1))
    assert raise_overdue(env.service()) == []
    env.at(overdue_at + timedelta(hours=2))  # 10:00: the day shift is on duty
    first = env.service()
    first.tick()
    again = env.service()  # a restart, or a second gateway on the same database
    again.tick()
    first.tick()
    rows = env.storage.conn.execute("SELECT ticket_id FROM care_overdue_tickets WHERE resident_id = %s",
                                    (r["id"],)).fetchall()
    assert len(rows) == 1
    t = first.get(rows[0][0])
    assert t.category == "care" and t.unit == unit and t.grid == "G1"
    assert t.assignee in {w.id for g in env.community.grids if g.id == "G1" for w in g.workers}
    assert unit in t.title and "李桂兰" not in t.title + t.description  # no name on the ticket
    reds = {x.unit for x in env.community.care_units if x.level == "red"}
    count = env.storage.conn.execute("SELECT count(*) FROM care_overdue_tickets").fetchone()
    assert count is not None and count[0] == len(reds)  # every red visit is overdue; yellow and green not yet
    shown = env.care_resident(unit)
    assert shown["overdue"] and shown["days_overdue"] == 1 and shown["overdue_ticket"] == t.id
    # a gateway that looked before the first one committed: its insert of the same visit fails, its ticket rolls back
    tickets = env.storage.conn.execute("SELECT count(*) FROM tickets").fetchone()
    late = env.service()
    row = next(x for x in CareRegister(env.storage.conn, late.communities, env.clock.now).rows() if x.id == r["id"])
    s = care.schedule(row.level, row.registered_at, row.last_visit_at, row.level_changed_at, env.clock.now,
                      env.community.tz)
    assert overdue._open(late, env.community, row, s, env.clock.now) is None
    assert env.storage.conn.execute("SELECT count(*) FROM tickets").fetchone() == tickets
    # the visit is logged: the open ticket's history says so (when and by whom, not the visit's notes)
    resp = env.post("ma", f"/care/residents/{r['id']}/visits", data={"note": "独居老人，已送药"})
    assert resp.status_code == 201, resp.text
    [(actor, note, detail)] = env.storage.conn.execute(
        "SELECT actor, note, detail FROM ticket_events WHERE ticket_id = %s AND action = 'care_visit'",
        (t.id,)).fetchall()
    assert actor == "ma" and note == "" and detail["visit"] == resp.json()["visit"]["id"]


def test_a_visit_resets_the_due_date(env: Env) -> None:
    unit = unit_in(env, "G1", "red")
    r = env.care_resident(unit)
    env.at(datetime(2025, 6, 10, 3, 0, tzinfo=UTC))  # 11:00 in Shanghai
    resp = env.post("ma", f"/care/residents/{r['id']}/visits",
                    data={"note": "血压正常，药已送到", "checks": '{"well": true, "needs_help": false}',
                          "visited_at": "2025-06-10T10:30:00+08:00"},
                    files={"photo": ("p.png", PNG, "image/png")})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["resident"]["due"] == "2025-06-17" and not body["resident"]["overdue"]
    assert body["resident"]["planned"][:2] == ["2025-06-17", "2025-06-24"]
    assert body["visit"]["checks"] == {"well": True, "needs_help": False} and body["visit"]["photo_url"]
    assert env.get("ma", body["visit"]["photo_url"].removeprefix("/api/v1")).content == PNG
    assert env.get("op", body["visit"]["photo_url"].removeprefix("/api/v1")).status_code == 404
    before = env.storage.conn.execute("SELECT count(*) FROM care_overdue_tickets").fetchone()
    env.service().tick()
    assert env.storage.conn.execute("SELECT count(*) FROM care_overdue_tickets").fetchone() == before
    detail = env.get("ma", f"/care/residents/{r['id']}").json()
    assert detail["visits"][0]["note"] == "血压正常，药已送到" and detail["visits"][0]["visitor"] == "ma"
    masked = env.get("op", f"/care/residents/{r['id']}").json()
    assert masked["visits"][0]["note"] == "" and masked["visits"][0]["checks"] == {}
    # the next missed visit is a new one: its own ticket
    env.at(datetime(2025, 6, 18, 2, 0, tzinfo=UTC))
    assert len(raise_overdue(env.service())) >= 1
    dues = [d for (d,) in env.storage.conn.execute(
        "SELECT due FROM care_overdue_tickets WHERE resident_id = %s ORDER BY due", (r["id"],)).fetchall()]
    assert dues == [date(2025, 6, 9), date(2025, 6, 17)]


def test_bad_visits_are_refused_with_the_reason(env: Env) -> None:
    unit = unit_in(env, "G1", "yellow")
    rid = env.care_resident(unit)["id"]
    env.at(datetime(2025, 6, 20, 2, 0, tzinfo=UTC))
    cases = [({"checks": '{"nonsense": true}'}, 422, "unknown checklist item"),
             ({"checks": "[1]"}, 422, "JSON object"),
             ({"checks": '{"well": "yes"}'}, 422, "true or false"),
             ({"visited_at": "2025-06-21T10:00:00+08:00"}, 422, "future"),
             ({"visited_at": "2025-05-01T10:00:00+08:00"}, 422, "at most 14 days"),
             ({"visited_at": "2025-06-20T10:00:00"}, 422, "offset"),
             ({"visited_at": "yesterday"}, 422, "ISO-8601"),
             ({"note": "x" * 2001}, 422, "")]
    for data, status, text in cases:
        resp = env.post("ma", f"/care/residents/{rid}/visits", data=data)
        assert resp.status_code == status and text in resp.text, (data, resp.text)
    resp = env.post("ma", f"/care/residents/{rid}/visits", files={"photo": ("p.gif", b"GIF89a", "image/gif")})
    assert resp.status_code == 415
    resp = env.post("ma", f"/care/residents/{rid}/visits", files={"photo": ("p.png", b"not a png", "image/png")})
    assert resp.status_code == 415
    assert env.post("ma", "/care/residents/999999/visits", data={}).status_code == 404
    assert env.post("ma", "/care/residents/0/visits", data={}).status_code == 422


def test_a_level_change_is_recorded_with_its_reason_and_restarts_the_clock(env: Env) -> None:
    unit = unit_in(env, "G1", "green")
    r = env.care_resident(unit)
    env.at(datetime(2025, 6, 21, 2, 0, tzinfo=UTC))
    assert env.post("ma", f"/care/residents/{r['id']}/level", json={"level": "red"}).status_code == 422
    assert env.post("ma", f"/care/residents/{r['id']}/level", json={"level": "red", "reason": "  "}).status_code == 422
    assert env.post("ma", f"/care/residents/{r['id']}/level",
                    json={"level": "purple", "reason": "x"}).status_code == 422
    assert env.post("op", f"/care/residents/{r['id']}/level", json={"level": "red", "reason": "x"}).status_code == 403
    assert env.post("zhang", f"/care/residents/{r['id']}/level",
                    json={"level": "red", "reason": "x"}).status_code == 404
    stale = env.post("ma", f"/care/residents/{r['id']}/level",
                     json={"level": "red", "reason": "x", "version": r["version"] + 5})
    assert stale.status_code == 422 and "changed meanwhile" in stale.text
    resp = env.post("ma", f"/care/residents/{r['id']}/level",
                    json={"level": "red", "reason": "出院后独居，需每周探访", "version": r["version"]})
    assert resp.status_code == 200, resp.text
    assert resp.json()["level"] == "red" and resp.json()["due"] == "2025-06-28"
    detail = env.get("sup", f"/care/residents/{r['id']}").json()
    assert detail["level_changes"] == [{"at": "2025-06-21T02:00:00+00:00", "by": "ma", "from": "green", "to": "red",
                                        "reason": "出院后独居，需每周探访"}]
    assert env.get("op", f"/care/residents/{r['id']}").json()["level_changes"][0]["reason"] == ""
    again = env.post("ma", f"/care/residents/{r['id']}/level", json={"level": "red", "reason": "again"})
    assert again.status_code == 422 and "already" in again.text


def test_evacuation_lists_residents_with_limited_mobility_masked_for_operators(env: Env) -> None:
    building = next(u.building for u in env.community.care_units if u.mobility_limited)
    expected = {u.unit for u in env.community.care_units if u.mobility_limited and u.building == building}
    ops = env.get("op", "/care/evacuation", params={"building": building}).json()["residents"]
    assert {r["unit"] for r in ops} == expected and all(r["masked"] for r in ops)
    assert [r["floor"] for r in ops] == sorted((r["floor"] for r in ops), reverse=True)
    assert env.get("op", "/care/evacuation", params={"building": "nope"}).status_code == 422
    assert env.get("op", "/care/evacuation", params={"building": "../x"}).status_code == 422


def test_visit_photos_and_then_notes_are_cleared_after_their_retention(env: Env) -> None:
    unit = unit_in(env, "G2", "yellow")
    r = env.care_resident(unit)
    env.at(datetime(2025, 3, 1, 3, 0, tzinfo=UTC))
    resp = env.post("zhang", f"/care/residents/{r['id']}/visits", files={"photo": ("p.png", PNG, "image/png")},
                    data={"note": "腿脚不便，需要助餐", "checks": '{"well": true, "needs_help": true}'})
    assert resp.status_code == 201, resp.text
    visit = resp.json()["visit"]

    def stored() -> tuple[Any, ...]:
        row = env.storage.conn.execute("SELECT photo IS NOT NULL, note, checks, visitor FROM care_visits "
                                       "WHERE id = %s", (visit["id"],)).fetchone()
        assert row is not None
        return tuple(row)

    env.at(datetime(2025, 5, 29, 3, 0, tzinfo=UTC))  # 89 days on: all still there
    env.service().tick()
    assert stored() == (True, "腿脚不便，需要助餐", {"well": True, "needs_help": True}, "zhang")
    env.at(datetime(2025, 6, 1, 3, 0, tzinfo=UTC))  # past 90 days: the photo goes, the notes stay
    env.service().tick()
    assert stored() == (False, "腿脚不便，需要助餐", {"well": True, "needs_help": True}, "zhang")
    assert env.get("zhang", visit["photo_url"].removeprefix("/api/v1")).status_code == 404
    env.at(datetime(2026, 3, 2, 3, 0, tzinfo=UTC))  # past a year: the notes and checklist go; the visit stays
    env.service().tick()
    assert stored() == (False, "", {}, "zhang")
    seen = env.get("zhang", f"/care/residents/{r['id']}").json()["visits"]
    assert [v["visitor"] for v in seen if v["id"] == visit["id"]] == ["zhang"]
