"""One-click report categories (twin/report_categories.yaml) and the supervisor's check (核查): pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from twin import tickets as tk
from twin.people import Role, User
from twin.tickets import InvalidInput, Priority, TicketError, TicketState
from twin.tickets.reports import (
    CategoryError,
    Verification,
    default_categories,
    load_categories,
    mask_name,
    public_steps,
    rate_problem,
    verification,
    verify_fail,
    verify_pass,
    verify_problem,
)

T0 = datetime(2025, 6, 2, 2, 0, tzinfo=UTC)
POLICY = tk.SlaPolicy()


def resolved() -> tk.Ticket:
    t = tk.new_ticket(community="sunshine", title="消防通道堵塞", category="fire", priority=Priority.URGENT,
                      source="manual", at=T0, policy=POLICY, rate_token="x" * 24, building="B1")
    t = tk.dispatch(t, tk.Assignment(assignee="w-1", role="on_duty", grid="G1", reason="on duty"))
    t = tk.accept(t, T0 + timedelta(minutes=5))
    return tk.resolve(t, T0 + timedelta(hours=1), note=None)


def test_the_shipped_categories_load_with_both_labels_a_priority_and_a_check_flag() -> None:
    cats = default_categories()
    ids = [c.id for c in cats.items]
    assert {"fire_lane", "corridor_light", "falling_objects", "resident_in_need"} <= set(ids)
    assert len(ids) == len(set(ids))
    lane = cats.get("fire_lane")
    assert lane is not None and lane.zh == "消防通道堵塞" and lane.en == "Blocked fire lane"
    assert lane.priority is Priority.URGENT and lane.verify and lane.category == "other"  # no fire SOP (119)
    assert not lane.collect and cats.need("gas_smell").collect  # a gas smell joins the floor's gas alarm
    assert cats.get("corridor_light") is not None and not cats.need("corridor_light").verify
    assert all(c.label("en") == c.en and c.label("zh") == c.zh for c in cats.items)
    staff_only = [c for c in cats.items if not c.public]
    assert staff_only and all(c not in cats.public() for c in staff_only)


def test_a_resident_cannot_pick_a_staff_only_or_unknown_category() -> None:
    cats = default_categories()
    staff_only = next(c for c in cats.items if not c.public)
    assert cats.need(staff_only.id) is staff_only
    with pytest.raises(InvalidInput, match="unknown report category"):
        cats.need(staff_only.id, resident=True)
    with pytest.raises(InvalidInput, match="unknown report category"):
        cats.need("nope")


@pytest.mark.parametrize(("text", "problem"), [
    ("version: 1\ncategories:\n  - id: a\n    zh: 甲\n    en: A\n    category: fire\n    priority: soon\n",
     "f.yaml:7: "),
    ("version: 1\ncategories:\n  - id: a\n    zh: 甲\n    en: A\n    category: weather\n    priority: urgent\n",
     "f.yaml:6: "),
    ("version: 1\ncategories:\n  - id: a\n    zh: 甲\n    en: A\n    category: fire\n    priority: urgent\n"
     "    colour: red\n", "f.yaml:8: "),
    ("version: 1\ncategories:\n  - {id: a, zh: 甲, en: A, category: fire, priority: urgent}\n"
     "  - {id: a, zh: 乙, en: B, category: gas, priority: urgent}\n", "listed twice"),
    ("version: 1\ncategories: []\n", "f.yaml"),
    ("version: [\n", "not YAML"),
])
def test_a_bad_category_file_names_the_line_and_the_field(text: str, problem: str) -> None:
    with pytest.raises(CategoryError, match=problem):
        load_categories(text, "f.yaml")


def test_a_checked_report_waits_for_the_supervisor_after_it_is_resolved() -> None:
    t = resolved()
    assert t.state is TicketState.FEEDBACK
    assert verification(False, t, ["create", "dispatch", "accept", "resolve"]) is Verification.NONE
    status = verification(True, t, ["create", "dispatch", "accept", "resolve"])
    assert status is Verification.PENDING
    assert rate_problem(status) is not None  # not rated (closed) before the check
    with pytest.raises(TicketError, match="cannot rate"):  # an open one cannot be rated either
        tk.rate(replace_state(t), 5, None, T0)
    assert verify_pass(t, status) == t
    passed = verification(True, t, ["create", "resolve", "verify_pass"])
    assert passed is Verification.PASSED and rate_problem(passed) is None
    rated = tk.rate(t, 5, None, T0 + timedelta(hours=2))
    assert rated.state is TicketState.EVALUATED


def replace_state(t: tk.Ticket) -> tk.Ticket:
    from dataclasses import replace

    return replace(t, state=TicketState.HANDLING)


def test_a_failed_check_sends_it_back_to_the_worker_with_a_reason() -> None:
    t = resolved()
    status = verification(True, t, ["resolve"])
    with pytest.raises(InvalidInput, match="reason"):
        verify_fail(t, status, "  ")
    with pytest.raises(InvalidInput, match="longer"):
        verify_fail(t, status, "x" * 1001)
    back = verify_fail(t, status, "车还在通道里")
    assert back.state is TicketState.HANDLING and back.resolved_at is None and back.assignee == "w-1"
    assert back.accepted_at is not None  # still the worker's: no new acceptance needed
    assert verification(True, back, ["resolve", "verify_fail"]) is Verification.AWAITING_RESOLUTION
    again = tk.resolve(back, T0 + timedelta(hours=3), note=None)  # resolved again: a new check
    assert verification(True, again, ["resolve", "verify_fail", "accept", "resolve"]) is Verification.PENDING


@pytest.mark.parametrize("status", [Verification.NONE, Verification.AWAITING_RESOLUTION, Verification.PASSED,
                                    Verification.CLOSED])
def test_only_a_pending_check_can_pass_or_fail(status: Verification) -> None:
    t = resolved()
    with pytest.raises(TicketError):
        verify_pass(t, status)
    with pytest.raises(TicketError):
        verify_fail(t, status, "reason")


def test_the_check_state_of_open_cancelled_and_rated_reports() -> None:
    t = resolved()
    opened = replace_state(t)
    assert verification(True, opened, ["create"]) is Verification.AWAITING_RESOLUTION
    cancelled = tk.cancel(opened, "duplicate", T0)
    assert verification(True, cancelled, ["create", "cancel"]) is Verification.CLOSED
    rated = tk.rate(t, 4, None, T0)
    assert verification(True, rated, ["resolve", "verify_pass", "rate"]) is Verification.PASSED
    assert verification(True, rated, ["resolve", "rate"]) is Verification.CLOSED  # rated before checks existed


def test_who_may_check() -> None:
    t = resolved()
    sup = User("s-1", "网格长", Role.SUPERVISOR, grids=("G1",), worker_id="s-1")
    other = User("s-2", "网格长", Role.SUPERVISOR, grids=("G2",), worker_id="s-2")
    op = User("op", "值班员", Role.OPERATOR)
    worker = User("w-1", "张三", Role.WORKER, grids=("G1",), worker_id="w-1")
    assert verify_problem(sup, t) is None and verify_problem(op, t) is None
    assert "not to yours" in (verify_problem(other, t) or "")
    assert "supervisor" in (verify_problem(worker, t) or "")  # the worker does not check their own work


def test_what_a_resident_sees() -> None:
    assert mask_name("张三") == "张*" and mask_name("欧阳小明") == "欧**" and mask_name("") == ""
    assert public_steps(["create", "dispatch", "sop_check", "warn", "accept", "upgrade", "resolve"]) == [
        "create", "dispatch", "accept", "resolve"]
