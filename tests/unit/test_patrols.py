"""Patrol plans and the due / done / missed logic of twin/patrols.py: periods in local time, check-in tokens,
positions in local metres, on-duty shifts, the nearest worker."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twin import patrols as pt
from twin.community import parse
from twin.tickets import InvalidInput

ROOT = Path(__file__).resolve().parents[2]
SH = ZoneInfo("Asia/Shanghai")
PLANS = pt.default_plans()
C = parse((ROOT / "twin" / "sample_community.yaml").read_text(encoding="utf-8"))
POINTS = pt.checkpoints(C, PLANS)


def test_the_shipped_plans_name_their_standards_and_intervals() -> None:
    by_id = {p.id: p for p in PLANS.plans}
    assert set(by_id) == {"fire_door", "fire_lane", "extinguisher", "elevator"}
    assert by_id["elevator"].every_days == 15 and "TSG T5002" in by_id["elevator"].standard
    assert all("GB 25201" in by_id[k].standard for k in ("fire_door", "fire_lane", "extinguisher"))
    assert by_id["fire_door"].every_days == 1 and by_id["extinguisher"].every_months == 1
    ids = [p.id for p in POINTS]
    assert len(ids) == len(set(ids)) == 3 * len(C.buildings) + len(C.elevators)
    assert all(p.grid in {"G1", "G2", "G3"} for p in POINTS)


PLAN = ("version: 1\nanchor: 2025-01-06\nplans:\n"
        "- {id: a, name: {zh: 甲, en: A}, standard: xyz, checks: {zh: 甲, en: A}, ")


@pytest.mark.parametrize("text, why", [
    ("version: 1\nanchor: 2025-01-06\nplans: []", "plans"),
    (PLAN + "per: building}", "exactly one"),
    (PLAN + "per: building, every_days: 1, every_months: 1}", "exactly one"),
    (PLAN + "per: building, every_days: 1}\n- {id: a, name: {zh: 甲, en: A}, standard: xyz, checks: {zh: 甲, en: A}, "
     "per: building, every_days: 2}", "unique"),
    (PLAN.replace("checks: {zh: 甲, en: A}, ", "") + "per: building, every_days: 1}", "checks"),
    ("version: 1\nanchor: x\nplans: [", "not YAML"),
])
def test_bad_plans_files_say_why(text: str, why: str) -> None:
    with pytest.raises(pt.PlansError, match=why):
        pt.parse_plans(text)


@given(st.dates(min_value=date(2025, 1, 6), max_value=date(2040, 1, 1)), st.sampled_from(PLANS.plans))
def test_a_day_lies_in_exactly_one_period_and_periods_tile(day: date, plan: pt.Plan) -> None:
    start, end = pt.period_of(plan, PLANS.anchor, day)
    assert start <= day < end
    assert pt.period_of(plan, PLANS.anchor, end) [0] == end  # the next period starts where this one ends
    assert pt.period_of(plan, PLANS.anchor, end - timedelta(days=1)) == (start, end)
    if plan.every_days:
        assert (end - start).days == plan.every_days
    else:
        assert start.day == 1 and end.day == 1 and 28 <= (end - start).days <= 31


def _at(local: str) -> datetime:
    return datetime.fromisoformat(local).replace(tzinfo=SH)


def test_done_due_and_missed_follow_local_days() -> None:
    door = next(p for p in POINTS if p.id == "fire_door.B1")
    lift = next(p for p in POINTS if p.plan == "elevator")
    now = _at("2025-06-03T00:30")  # just after midnight in Shanghai (16:30 UTC the day before)
    checkins = [pt.CheckIn(door.id, _at("2025-06-02T23:50"), "w", "ok")]  # yesterday, local
    [s] = pt.status([door], PLANS, checkins, now, SH)
    assert (s.state, s.previous, s.missed, s.start) == ("due", "done", False, date(2025, 6, 3))
    [s] = pt.status([door], PLANS, [], now, SH)
    assert s.missed and s.state == "due"
    [s] = pt.status([door], PLANS, [pt.CheckIn(door.id, _at("2025-06-03T00:10"), "w", "problem")], now, SH)
    assert s.state == "done" and s.last is not None and s.last.result == "problem"
    # elevator: 15-day periods from the anchor (2025-01-06): 2025-05-21 .. 2025-06-05
    [s] = pt.status([lift], PLANS, [pt.CheckIn(lift.id, _at("2025-05-21T09:00"), "w", "ok")], now, SH)
    assert (s.start, s.end, s.state) == (date(2025, 5, 21), date(2025, 6, 5), "done")
    [s] = pt.status([lift], PLANS, [pt.CheckIn(lift.id, _at("2025-05-20T23:59"), "w", "ok")], now, SH)
    assert (s.state, s.previous) == ("due", "done")
    [s] = pt.status([door], PLANS, [], now, SH, since=_at("2025-06-02T14:00"))
    assert s.previous is None  # patrols were recorded only from 14:00 yesterday: yesterday is not judged
    [s] = pt.status([door], PLANS, [], now, SH, since=_at("2025-06-02T00:00"))
    assert s.missed
    first = pt.status([door], PLANS, [], _at("2025-01-06T12:00"), SH)[0]
    assert first.previous is None  # no period before the anchor: nothing can have been missed


@given(st.lists(st.tuples(st.integers(0, 60 * 24 * 40), st.booleans()), max_size=20),
       st.integers(0, 60 * 24 * 40))
def test_a_checkin_in_the_current_period_is_what_makes_it_done(offsets: list[tuple[int, bool]], now_min: int) -> None:
    door = POINTS[0]
    base = _at("2025-03-01T00:00")
    now = base + timedelta(minutes=now_min)
    ins = [pt.CheckIn(door.id, base + timedelta(minutes=m), "w", "ok" if ok else "problem") for m, ok in offsets]
    [s] = pt.status([door], PLANS, ins, now, SH)
    today = now.astimezone(SH).date()
    assert (s.state == "done") == any(c.at.astimezone(SH).date() == today for c in ins)
    assert (s.previous == "missed") == (not any(c.at.astimezone(SH).date() == today - timedelta(days=1) for c in ins))
    assert pt.window(PLANS, now, SH) <= pt.local_start(today - timedelta(days=1), SH)


@given(st.floats(-2000, 2000), st.floats(-2000, 2000))
def test_local_metres_round_trip(x: float, y: float) -> None:
    lat, lon = pt.to_latlon(C.origin, x, y)
    bx, by = pt.to_local(C.origin, lat, lon)
    assert abs(bx - x) < 1e-6 and abs(by - y) < 1e-6


def test_one_degree_of_latitude_is_about_111_km() -> None:
    _, y = pt.to_local((30.0, 120.0), 31.0, 120.0)
    assert 111_000 < y < 111_400


def test_position_checks() -> None:
    lat, lon = pt.to_latlon(C.origin, 15, 7)
    x, y = pt.check_fix(lat, lon, 10, C.origin)
    door = next(p for p in POINTS if p.id == "fire_door.B1")
    assert [cp.id for _d, cp in pt.within(PLANS, [door], x, y, 10)] == [door.id]
    far = pt.to_latlon(C.origin, 15, 7 + PLANS.radius_m + 31)
    assert pt.within(PLANS, [door], *pt.to_local(C.origin, *far), 500) == []  # accuracy adds at most 30 m
    for bad in [(91, 0, None), (0, 181, None), (lat, lon, 501), (lat, lon, -1), (float("nan"), lon, None)]:
        with pytest.raises(InvalidInput):
            pt.check_fix(*bad, origin=C.origin)
    with pytest.raises(InvalidInput, match="km from the community"):
        pt.check_fix(lat + 0.1, lon, None, C.origin)


def test_times_are_checked_for_skew_and_age() -> None:
    now = datetime(2025, 6, 2, 2, 0, tzinfo=UTC)
    assert pt.check_time(None, now, pt.MAX_POSITION_AGE, "at") == now
    assert pt.check_time(now + timedelta(seconds=90), now, pt.MAX_POSITION_AGE, "at")
    with pytest.raises(InvalidInput, match="future"):
        pt.check_time(now + timedelta(minutes=3), now, pt.MAX_POSITION_AGE, "at")
    with pytest.raises(InvalidInput, match="older"):
        pt.check_time(now - timedelta(minutes=11), now, pt.MAX_POSITION_AGE, "at")
    with pytest.raises(InvalidInput, match="offset"):
        pt.check_time(now.replace(tzinfo=None), now, pt.MAX_POSITION_AGE, "at")


@pytest.mark.parametrize("shift, at, on", [
    (("08:00", "18:00"), "07:59", False), (("08:00", "18:00"), "08:00", True), (("08:00", "18:00"), "18:00", False),
    (("18:00", "08:00"), "23:00", True), (("18:00", "08:00"), "03:00", True), (("18:00", "08:00"), "12:00", False),
])
def test_on_duty_shifts_may_run_past_midnight(shift: tuple[str, str], at: str, on: bool) -> None:
    s = (time.fromisoformat(shift[0]), time.fromisoformat(shift[1]))
    assert pt.on_duty(s, datetime.combine(date(2025, 6, 2), time.fromisoformat(at), SH)) is on


def test_tokens_are_signed_per_community_and_checkpoint() -> None:
    key = b"k" * 32
    by_id = {p.id: p for p in POINTS}
    tok = pt.token(key, C.id, "fire_door.B1")
    assert pt.read_token(key, C.id, tok, by_id).id == "fire_door.B1"
    forged = "fire_door.B2" + tok[len("fire_door.B1"):]
    for bad in (forged, tok[:-1] + ("A" if tok[-1] != "A" else "B"), "fire_door.B1", "nope~abc"):
        with pytest.raises(InvalidInput):
            pt.read_token(key, C.id, bad, by_id)
    with pytest.raises(InvalidInput):
        pt.read_token(key, "other", tok, by_id)
    with pytest.raises(InvalidInput):
        pt.read_token(b"x" * 32, C.id, tok, by_id)


def test_nearest_takes_fresh_fixes_only() -> None:
    now = datetime(2025, 6, 2, 2, 0, tzinfo=UTC)
    fixes = [pt.Fix("a", "w1", now - timedelta(minutes=1), 100, 0, 5), pt.Fix("b", "w2", now, 10, 0, 5),
             pt.Fix("c", "w3", now - timedelta(minutes=11), 0, 0, 5)]
    assert [(round(d), f.worker) for d, f in pt.nearest(fixes, 0, 0, now)] == [(10, "b"), (100, "a")]
