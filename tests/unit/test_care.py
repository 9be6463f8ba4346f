"""The care register's pure rules (twin/care.py): visit intervals per level, due and overdue in the community's local
time, masking and who sees personal data; and the resident fields of a community file's care units."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin import care
from twin.community import CommunityError, parse, zone
from twin.people import Role, User

SHANGHAI = zone("Asia/Shanghai")
NEW_YORK = zone("America/New_York")  # has DST: local midnight is not a fixed UTC hour
ROOT = Path(__file__).resolve().parents[2]

moments = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31),
                       timezones=st.just(UTC))
levels = st.sampled_from(care.LEVELS)
zones = st.sampled_from([SHANGHAI, NEW_YORK, UTC])


def test_intervals_follow_the_policy() -> None:
    d = date(2026, 12, 2)
    assert care.add_interval("red", d) == date(2026, 12, 9)
    assert care.add_interval("yellow", d) == date(2026, 12, 16)
    assert care.add_interval("green", d) == date(2027, 1, 2)
    assert care.add_interval("green", date(2027, 1, 31)) == date(2027, 2, 28)  # the month's last day
    assert care.add_interval("green", date(2028, 1, 31)) == date(2028, 2, 29)
    with pytest.raises(ValueError, match="unknown care level"):
        care.add_interval("blue", d)


def test_a_visit_is_due_by_local_date_and_overdue_from_the_next_local_midnight() -> None:
    registered = datetime(2026, 12, 1, 17, 30, tzinfo=UTC)  # 12-02 01:30 in Shanghai: the local date counts
    due = care.due_date("red", registered, tz=SHANGHAI)
    assert due == date(2026, 12, 9)
    at = care.overdue_from(due, SHANGHAI)
    assert at.astimezone(UTC) == datetime(2026, 12, 9, 16, 0, tzinfo=UTC)
    assert care.status(due, at - timedelta(seconds=1), SHANGHAI) == ("due_today", 0)
    assert care.status(due, at, SHANGHAI) == ("overdue", 1)
    assert care.status(due, at + timedelta(days=3), SHANGHAI) == ("overdue", 4)
    assert care.status(due, at - timedelta(days=2), SHANGHAI) == ("due_soon", 0)
    assert care.status(due, at - timedelta(days=5), SHANGHAI) == ("ok", 0)


def test_the_latest_of_registration_visit_and_level_change_restarts_the_clock() -> None:
    reg = datetime(2026, 11, 1, 2, tzinfo=UTC)
    visit = datetime(2026, 11, 20, 2, tzinfo=UTC)
    change = datetime(2026, 11, 25, 2, tzinfo=UTC)
    assert care.due_date("yellow", reg, tz=SHANGHAI) == date(2026, 11, 15)
    assert care.due_date("yellow", reg, visit, tz=SHANGHAI) == date(2026, 12, 4)
    assert care.due_date("red", reg, visit, change, tz=SHANGHAI) == date(2026, 12, 2)
    with pytest.raises(ValueError, match="timezone-aware"):
        care.due_date("red", datetime(2026, 11, 1), tz=SHANGHAI)


@settings(max_examples=150, deadline=None)
@given(level=levels, registered=moments, gap=st.integers(min_value=0, max_value=400), tz=zones)
def test_a_visit_moves_the_due_date_one_interval_after_it(level: str, registered: datetime, gap: int,
                                                          tz: tzinfo) -> None:
    visit = registered + timedelta(hours=gap)
    due = care.due_date(level, registered, visit, tz=tz)
    assert due == care.add_interval(level, visit.astimezone(tz).date())
    assert due >= care.due_date(level, registered, tz=tz)  # a visit never brings the next one forward
    days = (due - visit.astimezone(tz).date()).days
    assert days == {"red": 7, "yellow": 14}.get(level, days)
    assert 28 <= days <= 31 or level != "green"


@settings(max_examples=150, deadline=None)
@given(level=levels, anchor=moments, now=moments, tz=zones)
def test_overdue_exactly_from_the_overdue_instant(level: str, anchor: datetime, now: datetime,
                                                  tz: tzinfo) -> None:
    s = care.schedule(level, anchor, None, None, now, tz)
    assert s.overdue == (now >= s.overdue_at)
    local = s.overdue_at.astimezone(tz)
    assert (local.hour, local.minute) == (0, 0) and local.date() == s.due + timedelta(days=1)
    if s.overdue:
        assert s.days_overdue == (now.astimezone(tz).date() - s.due).days >= 1
    else:
        assert s.days_overdue == 0


@given(level=levels, due=st.dates(min_value=date(2020, 1, 1), max_value=date(2035, 1, 1)))
def test_planned_dates_are_spaced_by_the_level(level: str, due: date) -> None:
    ds = care.next_dates(level, due, 5)
    assert ds[0] == due and len(ds) == 5
    assert all(care.add_interval(level, a) == b for a, b in itertools.pairwise(ds))


@given(name=st.text(min_size=1, max_size=40))
def test_a_masked_name_keeps_only_its_first_character(name: str) -> None:
    m = care.mask_name(name)
    assert m[0] == name[0] and set(m[1:]) == {"*"} and len(m) == max(2, len(name))


def test_masking_examples() -> None:
    assert care.mask_name("张建国") == "张**"
    assert care.mask_name("李") == "李*"
    assert care.mask_name(None) == care.mask_name("") == ""


def test_who_sees_personal_data() -> None:
    admin = User("a", "A", Role.ADMIN)
    operator = User("o", "O", Role.OPERATOR)
    worker = User("w", "W", Role.WORKER, ("g1",), "w1")
    other = User("x", "X", Role.WORKER, ("g2",), "x1")
    supervisor = User("s", "S", Role.SUPERVISOR, ("g1", "g3"))
    assert care.sees_personal(admin, "g1") and care.may_see(admin, "g1")
    assert care.may_see(operator, "g1") and not care.sees_personal(operator, "g1")
    assert care.sees_personal(worker, "g1") and care.sees_personal(supervisor, "g1")
    assert not care.may_see(other, "g1") and not care.sees_personal(other, "g1")
    assert not care.may_log_visit(operator, "g1") and care.may_log_visit(worker, "g1")
    assert not care.may_change_level(other, "g1") and not care.sees_personal(worker, None)


def test_checklist_answers_are_known_items_and_booleans() -> None:
    assert care.check_answers([("well", True), ("needs_help", False)]) == {"well": True, "needs_help": False}
    with pytest.raises(ValueError, match="unknown checklist item"):
        care.check_answers([("nonsense", True)])
    with pytest.raises(ValueError, match="true or false"):
        care.check_answers([("well", "yes")])  # type: ignore[list-item]


def test_the_sample_community_names_its_care_residents() -> None:
    c = parse((ROOT / "twin" / "sample_community.yaml").read_text(encoding="utf-8"))
    assert all(u.name and u.category for u in c.care_units)
    assert sum(u.mobility_limited for u in c.care_units) >= 5


@pytest.mark.parametrize(("field", "value", "message"), [
    ("phone", "'call me'", "is not a phone number"),
    ("category", "rich", "living_alone"),
    ("mobility_limited", "perhaps", "valid boolean"),
    ("name", "''", "printable characters"),
])
def test_bad_resident_fields_are_reported_with_their_line(field: str, value: str, message: str) -> None:
    text = f"""version: 1
id: t
name: T
origin: [30.0, 120.0]
buildings:
- {{id: B1, name: One, footprint: [[0, 0], [10, 0], [10, 10], [0, 10]], floors_above: 6}}
devices:
- {{id: D1, kind: care_door, building: B1, floor: 2, unit: B1-201}}
care_units:
- unit: B1-201
  building: B1
  floor: 2
  level: red
  sensors: [D1]
  {field}: {value}
"""
    with pytest.raises(CommunityError) as exc:
        parse(text, "t.yaml")
    assert f"line 15: care_units.0.{field}" in str(exc.value) and message in str(exc.value)
