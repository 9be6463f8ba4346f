"""Pure ticket domain: SLA arithmetic at the edges, lifecycle, assignment, correlation, permissions, KPIs,
knowledge base. No database, no broker."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest

from twin import tickets as tk
from twin.alarms import AlarmEvent, AlarmStatus, Dispatch, EventKind, Severity
from twin.community import Community, parse
from twin.knowledge import SOP_DIR, KnowledgeBase, KnowledgeError, terms
from twin.people import Role, User
from twin.tickets import Clock, InvalidInput, Priority, Target, TicketError, TicketState

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2025, 6, 2, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai, a Monday
S = timedelta(seconds=1)
US = timedelta(microseconds=1)
H = 3600.0
ENTRAPMENT = Target(5 * 60, 30 * 60, source="TSG T5002-2017")
POLICY = tk.SlaPolicy(life_safety={"elevator_entrapment": ENTRAPMENT, "gas_level2": Target(300, 3600)})


@pytest.fixture(scope="module")
def community() -> Community:
    return parse((ROOT / "twin" / "sample_community.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return KnowledgeBase.parse([(str(p), p.read_text(encoding="utf-8")) for p in sorted(SOP_DIR.glob("*.yaml"))])


def ticket(priority: Priority = Priority.URGENT, rule: str | None = None, at: datetime = T0, **kw: object) -> tk.Ticket:
    t = tk.new_ticket(community="sunshine", title="t", category="other", priority=priority, source="alarm", at=at,
                      policy=POLICY, rate_token="tok", rule=rule, building="B1", floor=3)
    return replace(t, id=1, **kw)  # type: ignore[arg-type]


def dispatched(t: tk.Ticket) -> tk.Ticket:
    return tk.dispatch(t, tk.Assignment("G1", "w1-1", "on_duty", "test"))


def event(rule: str = "elevator_entrapment", *, kind: EventKind = EventKind.RAISED, at: datetime = T0,
          subject: str = "B1-E1-M", building: str | None = "B1", floor: int | None = 1, device: str | None = "B1-E1-M",
          dispatch: Dispatch = Dispatch.URGENT, severity: Severity = Severity.CRITICAL,
          subject_type: str = "device") -> AlarmEvent:
    return AlarmEvent(kind, rule, subject, subject_type, severity, AlarmStatus.ACTIVE_UNACK, at, at, 1,  # type: ignore[arg-type]
                      building, floor, device, "detail", dispatch)


# -- SLA ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("priority", "respond_h", "resolve_h", "progress_h"), [
    (Priority.URGENT, 2, 24, None),
    (Priority.GENERAL, 24, 72, None),
    (Priority.COMPLEX, 24, None, 24),  # the handling plan is due with the response
])
def test_deadlines_per_class_follow_the_seed(priority: Priority, respond_h: float, resolve_h: float | None,
                                             progress_h: float | None) -> None:
    d = POLICY.deadlines(priority, None, T0)
    assert d.respond_by == T0 + timedelta(hours=respond_h)
    assert d.resolve_by == (None if resolve_h is None else T0 + timedelta(hours=resolve_h))
    assert d.progress_by == (None if progress_h is None else T0 + timedelta(hours=progress_h))


def test_life_safety_rules_get_the_tighter_site_targets() -> None:
    d = POLICY.deadlines(Priority.URGENT, "elevator_entrapment", T0)
    assert (d.respond_by, d.resolve_by) == (T0 + timedelta(minutes=5), T0 + timedelta(minutes=30))
    assert POLICY.is_life_safety("gas_level2") and not POLICY.is_life_safety("gas_level1")
    # a looser life-safety target never loosens the class target
    loose = tk.SlaPolicy(life_safety={"x": Target(10 * H, 100 * H)})
    assert loose.target(Priority.URGENT, "x").respond_s == 2 * H
    assert loose.target(Priority.URGENT, "x").resolve_s == 24 * H


@pytest.mark.parametrize(("offset", "expected"), [
    (-S, []),  # just before 75 %
    (timedelta(0), [("respond", "warn")]),  # exactly at 75 %
    (S, [("respond", "warn")]),
])
def test_warning_at_75_percent_of_the_respond_clock(offset: timedelta, expected: list[tuple[str, str]]) -> None:
    t = dispatched(ticket(Priority.URGENT))  # respond 2 h: 75 % = 1 h 30 min
    got = tk.alerts_due(t, T0 + timedelta(minutes=90) + offset, 0.75)
    assert [(a.clock.value, a.level) for a in got] == expected


@pytest.mark.parametrize(("offset", "breached"), [(-S, False), (timedelta(0), False), (US, True), (S, True)])
def test_breach_only_after_the_deadline(offset: timedelta, breached: bool) -> None:
    t = tk.note_alert(dispatched(ticket(Priority.URGENT, "elevator_entrapment")),
                      tk.Alert(Clock.RESPOND, "warn", T0, T0))
    at = t.respond_by + offset
    got = [(a.clock.value, a.level) for a in tk.alerts_due(t, at, 0.75)]
    assert (("respond", "breach") in got) is breached
    assert t.respond_by == T0 + timedelta(minutes=5)


def test_resolve_clock_edges_and_accepting_stops_the_respond_clock() -> None:
    t = tk.accept(dispatched(ticket(Priority.GENERAL)), T0 + timedelta(hours=1))
    assert [c for c, _s, _d in tk.running_clocks(t)] == [Clock.RESOLVE]
    warn = T0 + timedelta(hours=54)  # 75 % of 72 h
    assert tk.alerts_due(t, warn - S, 0.75) == []
    assert [a.key for a in tk.alerts_due(t, warn, 0.75)] == ["warn:resolve"]
    t = tk.note_alert(t, tk.alerts_due(t, warn, 0.75)[0])
    assert tk.alerts_due(t, t.resolve_by, 0.75) == []  # exactly at the deadline: still on time
    (breach,) = tk.alerts_due(t, t.resolve_by + S, 0.75)
    assert breach.key == "breach:resolve" and breach.due == t.resolve_by
    t = tk.note_alert(t, breach)
    assert t.breaches == 1 and tk.alerts_due(t, t.resolve_by + timedelta(days=9), 0.75) == []
    assert tk.next_alert_at(t, 0.75) is None


def test_a_late_look_raises_the_breach_without_the_stale_warning() -> None:
    t = dispatched(ticket(Priority.URGENT))
    got = tk.alerts_due(t, T0 + timedelta(hours=30), 0.75)
    assert [a.key for a in got] == ["breach:respond", "breach:resolve"]


def test_next_alert_at_is_the_next_edge() -> None:
    t = dispatched(ticket(Priority.URGENT, "elevator_entrapment"))  # respond 5 min, resolve 30 min
    assert tk.next_alert_at(t, 0.75) == T0 + timedelta(seconds=225)  # 75 % of 5 min
    t = tk.note_alert(t, tk.Alert(Clock.RESPOND, "warn", T0, T0))
    assert tk.next_alert_at(t, 0.75) == T0 + timedelta(minutes=5) + US  # the respond breach
    t = tk.note_alert(t, tk.Alert(Clock.RESPOND, "breach", T0, T0))
    assert tk.next_alert_at(t, 0.75) == T0 + timedelta(seconds=1350)  # 75 % of 30 min
    t = tk.note_alert(t, tk.Alert(Clock.RESOLVE, "warn", T0, T0))
    assert tk.next_alert_at(t, 0.75) == T0 + timedelta(minutes=30) + US


def test_complex_tickets_need_a_plan_then_progress_every_72_hours() -> None:
    t = dispatched(ticket(Priority.COMPLEX))
    assert t.resolve_by is None and t.progress_by == T0 + timedelta(hours=24)
    t = tk.accept(t, T0 + timedelta(hours=2))
    assert [a.key for a in tk.alerts_due(t, T0 + timedelta(hours=24) + S, 0.75)] == ["breach:progress"]
    t = tk.progress(t, T0 + timedelta(hours=20), POLICY, plan=True)
    assert t.plan_submitted and t.progress_by == T0 + timedelta(hours=92)
    assert tk.alerts_due(t, T0 + timedelta(hours=92), 0.75)[0].key == "warn:progress"
    assert tk.alerts_due(t, T0 + timedelta(hours=92) + S, 0.75)[0].key == "breach:progress"


def test_an_escalated_alarm_raises_the_priority_and_tightens_the_clocks() -> None:
    t = dispatched(ticket(Priority.GENERAL, at=T0))
    later = T0 + timedelta(hours=1)
    u = tk.tighten(t, Priority.URGENT, None, later, POLICY)
    assert u.priority is Priority.URGENT
    assert u.respond_by == later + timedelta(hours=2) and u.resolve_by == later + timedelta(hours=24)
    assert tk.tighten(u, Priority.GENERAL, None, later, POLICY).priority is Priority.URGENT  # never lowered


def test_attaching_an_entrapment_to_an_open_elevator_ticket_makes_it_life_safety() -> None:
    t = dispatched(ticket(Priority.URGENT, "elevator_stop_outside_door_zone"))
    later = T0 + timedelta(minutes=3)
    u = tk.attach_alarm(t, event(at=later), POLICY, {"incident:elevator:B1-E1-M"})
    assert u.life_safety and u.rule == "elevator_entrapment"
    # the incident began when its ticket did: the tighter targets count from then, not from the joining alarm
    assert u.respond_by == T0 + timedelta(minutes=5) and u.resolve_by == T0 + timedelta(minutes=30)
    assert "incident:elevator:B1-E1-M" in u.keys and u.last_alarm_at == later


def test_a_ticket_runs_on_server_time_and_keeps_the_device_time() -> None:
    device_time = T0 - timedelta(hours=1)  # a device clock an hour behind, or a replay of the past
    t = tk.new_ticket(community="sunshine", title="t", category="elevator", priority=Priority.URGENT, source="alarm",
                      at=T0, policy=POLICY, rate_token="tok", rule="elevator_entrapment", occurred_at=device_time)
    assert (t.created_at, t.received_at, t.occurred_at, t.clock_start) == (T0, T0, device_time, T0)
    assert t.respond_by == T0 + timedelta(minutes=5) and tk.alerts_due(t, T0, 0.75) == []  # not breached at birth
    manual = tk.new_ticket(community="sunshine", title="t", category="other", priority=Priority.GENERAL,
                           source="manual", at=T0, policy=POLICY, rate_token="tok2")
    assert manual.occurred_at == manual.received_at == T0


def test_an_attached_alarm_tightens_from_the_tickets_start_not_from_its_device_time() -> None:
    t = dispatched(ticket(Priority.URGENT, "elevator_stop_outside_door_zone"))
    arrived = T0 + timedelta(minutes=3)
    u = tk.attach_alarm(t, replace(event(at=T0 - timedelta(hours=1)), received_at=arrived), POLICY,
                        {"incident:elevator:B1-E1-M"})
    assert u.respond_by == t.clock_start + timedelta(minutes=5) and u.last_alarm_at == arrived
    assert tk.received_time(event(), T0 + S) == T0 + S  # an event that does not say: the caller's now


# -- lifecycle ----------------------------------------------------------------------------------------------


def test_the_closed_loop() -> None:
    t = ticket(Priority.URGENT)
    assert t.state is TicketState.ACCEPTED
    t = dispatched(t)
    assert (t.state, t.assignee, t.grid) == (TicketState.DISPATCHED, "w1-1", "G1")
    t = tk.accept(t, T0 + timedelta(minutes=10))
    assert t.state is TicketState.HANDLING and t.responded_at == T0 + timedelta(minutes=10)
    t = tk.progress(t, T0 + timedelta(minutes=20), POLICY)
    t = tk.resolve(t, T0 + timedelta(hours=1))
    assert t.state is TicketState.FEEDBACK and not t.open
    t = tk.rate(t, 5, "很及时", T0 + timedelta(hours=2))
    assert (t.state, t.rating, t.closed_at) == (TicketState.EVALUATED, 5, T0 + timedelta(hours=2))


@pytest.mark.parametrize(("state", "action"), [
    (TicketState.ACCEPTED, "accept"), (TicketState.ACCEPTED, "resolve"), (TicketState.DISPATCHED, "resolve"),
    (TicketState.DISPATCHED, "rate"), (TicketState.HANDLING, "accept"), (TicketState.FEEDBACK, "resolve"),
    (TicketState.FEEDBACK, "cancel"), (TicketState.EVALUATED, "rate"), (TicketState.CANCELLED, "accept"),
    (TicketState.CANCELLED, "reopen"), (TicketState.HANDLING, "reopen"),
])
def test_illegal_transitions_are_refused_with_what_is_possible(state: TicketState, action: str) -> None:
    t = replace(ticket(), state=state, assignee="w1-1",
                accepted_at=T0 if state is TicketState.HANDLING else None)
    fns = {"accept": lambda: tk.accept(t, T0), "resolve": lambda: tk.resolve(t, T0),
           "rate": lambda: tk.rate(t, 4, None, T0), "cancel": lambda: tk.cancel(t, "x", T0),
           "reopen": lambda: tk.reopen(t, T0, POLICY)}
    with pytest.raises(TicketError, match=f"is {state.value}.*cannot {action}"):
        fns[action]()


def test_bad_input_is_refused() -> None:
    t = tk.resolve(tk.accept(dispatched(ticket()), T0), T0)
    for bad in (0, 6, True, 3.5):
        with pytest.raises(InvalidInput, match="1 to 5"):
            tk.rate(t, bad, None, T0)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="reason"):
        tk.cancel(dispatched(ticket()), "  ", T0)
    with pytest.raises(InvalidInput, match="reason"):
        tk.reassign(dispatched(ticket()), "w1-2", "")
    with pytest.raises(TicketError, match="already assigned"):
        tk.reassign(dispatched(ticket()), "w1-1", "x")
    with pytest.raises(ValueError, match="time zone"):
        tk.alerts_due(ticket(), datetime(2025, 1, 1), 0.75)


def test_escalation_keeps_the_assignee_and_accepting_after_it_works_once() -> None:
    t = tk.escalate(dispatched(ticket()), "s-1", T0)
    assert (t.state, t.assignee, t.escalated_to, t.escalations) == (TicketState.ESCALATED, "w1-1", "s-1", 1)
    t = tk.accept(t, T0 + S)
    assert t.state is TicketState.HANDLING
    t = tk.escalate(t, "s-1", T0 + 2 * S)  # resolve breach while handling
    with pytest.raises(TicketError, match="already accepted"):
        tk.accept(t, T0 + 3 * S)
    assert tk.resolve(t, T0 + 4 * S).state is TicketState.FEEDBACK


def test_reopen_restarts_the_clocks_and_counts() -> None:
    t = tk.rate(tk.resolve(tk.accept(dispatched(ticket()), T0 + S), T0 + 2 * S), 2, "没修好", T0 + 3 * S)
    t = tk.note_alert(t, tk.Alert(Clock.RESOLVE, "warn", T0, T0))
    later = T0 + timedelta(days=1)
    r = tk.reopen(t, later, POLICY)
    assert (r.state, r.reopens, r.rating, r.resolved_at, r.alerts) == (TicketState.REOPENED, 1, None, None, frozenset())
    assert r.respond_by == later + timedelta(hours=2) and r.responded_at == T0 + S  # the KPI keeps the first
    assert [c for c, _s, _d in tk.running_clocks(r)] == [Clock.RESPOND, Clock.RESOLVE]
    assert tk.accept(r, later + S).state is TicketState.HANDLING


def test_reassign_before_and_after_acceptance() -> None:
    t = tk.reassign(dispatched(ticket()), "w1-2", "w1-1 is ill")
    assert (t.state, t.assignee, t.assignee_role) == (TicketState.DISPATCHED, "w1-2", "manual")
    h = tk.reassign(tk.accept(dispatched(ticket()), T0), "w1-2", "shift change")
    assert h.state is TicketState.HANDLING


# -- assignment ------------------------------------------------------------------------------------------------


def local(h: int, m: int = 0) -> datetime:
    return datetime(2025, 6, 2, h, m, tzinfo=UTC) - timedelta(hours=8)


@pytest.mark.parametrize(("start", "end", "at", "expected"), [
    (time(8), time(18), time(8), True), (time(8), time(18), time(17, 59), True), (time(8), time(18), time(18), False),
    (time(18), time(8), time(23), True), (time(18), time(8), time(2), True), (time(18), time(8), time(8), False),
    (time(18), time(8), time(12), False), (time(0), time(0), time(12), True),
])
def test_shift_edges_including_overnight(start: time, end: time, at: time, expected: bool) -> None:
    assert tk.in_shift(at, start, end) is expected


@pytest.mark.parametrize(("building", "hour", "worker", "role"), [
    ("B1", 10, "w1-1", "on_duty"),  # G1 day shift
    ("B1", 23, "w1-2", "on_duty"),  # G1 night shift (18:00-08:00)
    ("B1", 3, "w1-2", "on_duty"),
    ("B3", 10, "w2-1", "on_duty"),
    ("B3", 23, "s-1", "supervisor"),  # G2 has nobody at night; its backup w3-1 is off duty too
])
def test_assignment_by_grid_duty_backup_supervisor(community: Community, building: str, hour: int, worker: str,
                                                    role: str) -> None:
    a = tk.assign(community, building, local(hour), partners={"elevator": "电梯维保单位"}, category="elevator")
    assert (a.assignee, a.role, a.collaborator) == (worker, role, "电梯维保单位")


def test_assignment_prefers_the_least_loaded_and_uses_an_on_duty_backup(community: Community) -> None:
    g1 = community.grids[0]
    two = g1.model_copy(update={"workers": [g1.workers[0], g1.workers[0].model_copy(update={"id": "w1-3"})]})
    c2 = community.model_copy(update={"grids": [two, *community.grids[1:]]})
    assert tk.assign(c2, "B1", local(10), load={"w1-1": 3, "w1-3": 1}).assignee == "w1-3"
    night_only = community.grids[0].model_copy(update={
        "workers": [community.grids[0].workers[1]], "backup": "w1-2"})
    g2 = community.grids[1].model_copy(update={"backup": "w1-2"})
    c3 = community.model_copy(update={"grids": [night_only, g2, *community.grids[2:]]})
    a = tk.assign(c3, "B3", local(23))
    assert (a.assignee, a.role) == ("w1-2", "backup")


def test_unknown_building_has_nobody(community: Community) -> None:
    a = tk.assign(community, "B99", local(10))
    assert a.assignee is None and "B99" in a.reason
    with pytest.raises(TicketError, match="nobody"):
        tk.dispatch(ticket(), a)


# -- incidents --------------------------------------------------------------------------------------------------


def test_correlation_window_and_state() -> None:
    keys = frozenset({"incident:elevator:B1-E1-M"})
    t = replace(dispatched(ticket()), keys=keys, last_alarm_at=T0)
    w = timedelta(minutes=30)
    assert tk.correlates(t, keys, T0 + timedelta(minutes=30), w)
    assert not tk.correlates(t, keys, T0 + timedelta(minutes=30) + S, w)
    assert not tk.correlates(t, frozenset({"incident:elevator:B1-E2-M"}), T0, w)
    assert not tk.correlates(tk.cancel(t, "误报", T0), keys, T0, w)


@pytest.mark.parametrize(("rule", "kind", "category"), [
    ("elevator_entrapment", "elevator", "elevator"), ("gas_level2", "gas", "gas"), ("device_fault", "co", "gas"),
    ("water_leak", "water_leak", "water"), ("fire_confirmed", None, "fire"), ("care_inactivity", None, "care"),
    ("sensor_offline", "noise", "environment"), ("nonsense", None, "other"),
])
def test_categories(rule: str, kind: str | None, category: str) -> None:
    assert tk.category_of(rule, kind) == category


def test_location_text(community: Community) -> None:
    assert tk.location_text(community, "B1", -1, None) == "阳光社区 1号楼 B1层"
    assert tk.location_text(community, "B1", 12, "B1-1201") == "阳光社区 1号楼 12层 B1-1201"


# -- permissions --------------------------------------------------------------------------------------------------


def test_roles() -> None:
    t = replace(dispatched(ticket()), grid="G1")
    mine = User("ma", "马刚", Role.WORKER, ("G1",), "w1-1")
    colleague = User("sun", "孙伟", Role.WORKER, ("G1",), "w1-2")
    other = User("zhang", "张", Role.WORKER, ("G2",), "w2-1")
    sup = User("sup", "网格长", Role.SUPERVISOR, ("G1", "G2"), "s-1")
    op = User("op", "值班员", Role.OPERATOR)
    assert tk.permission_problem(mine, t, "accept") is None
    assert "assigned to w1-1" in (tk.permission_problem(colleague, t, "accept") or "")
    assert "grid G1" in (tk.permission_problem(other, t, "accept") or "")
    assert "operator" in (tk.permission_problem(mine, t, "cancel") or "")
    assert "operator" in (tk.permission_problem(mine, None, "create") or "")
    assert tk.permission_problem(sup, t, "reassign") is None and tk.permission_problem(sup, None, "create")
    assert all(tk.permission_problem(op, t, a) is None for a in ("cancel", "reassign", "accept", "create"))
    backup = User("lin", "林", Role.WORKER, ("G3",), "w3-1")
    assert tk.visible_to(backup, replace(t, assignee="w3-1"))  # a backup sees what it was given


# -- KPIs ----------------------------------------------------------------------------------------------------


def test_kpis_per_worker_grid_and_community() -> None:
    a = tk.rate(tk.resolve(tk.accept(dispatched(ticket()), T0 + timedelta(minutes=30)), T0 + timedelta(hours=3)),
                5, None, T0 + timedelta(hours=4))
    b = tk.note_alert(tk.resolve(tk.accept(dispatched(ticket()), T0 + timedelta(hours=1)), T0 + timedelta(hours=30)),
                      tk.Alert(Clock.RESOLVE, "breach", T0, T0))
    b = tk.rate(b, 2, "太慢", T0 + timedelta(hours=31))
    b = tk.reopen(b, T0 + timedelta(hours=32), POLICY)
    c = tk.cancel(dispatched(ticket()), "误报", T0)
    d = dispatched(ticket())
    rows = tk.kpis([a, b, c, d], names={"w1-1": "马刚"})
    worker, grid, comm = rows
    assert (worker.scope, worker.key, worker.name) == ("worker", "w1-1", "马刚")
    assert (grid.scope, comm.scope) == ("grid", "community")
    assert worker.tickets == 4 and worker.cancelled == 1 and worker.open == 2 and worker.resolved == 1
    assert worker.mean_respond_min == 45.0
    assert worker.mean_resolve_h == 3.0
    assert worker.on_time_rate == 0.5  # a on time; b breached (and reopened)
    assert worker.reopen_rate == 0.5
    assert (worker.rated, worker.satisfaction, worker.satisfied_rate) == (1, 5.0, 1.0)
    md = tk.kpi_markdown(rows, "KPIs")
    assert "| worker | w1-1 | 马刚 | 4 |" in md and "50.0%" in md
    assert tk.kpis([]) == []


# -- knowledge base ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", ["elevator_entrapment", "gas_level1", "gas_level2", "fire_prealarm", "fire_confirmed",
                                  "water_leak", "care_inactivity", "fire_device_offline", "hydrant_pressure_low"])
def test_every_named_alarm_kind_has_its_sop(kb: KnowledgeBase, rule: str) -> None:
    sop = kb.sop_for(rule, None)
    assert sop is not None and sop.type == "sop" and rule in sop.rules and len(sop.steps) >= 3


def test_every_dispatching_default_rule_finds_a_checklist(kb: KnowledgeBase) -> None:
    import yaml

    rules = yaml.safe_load((ROOT / "twin" / "rules_defaults.yaml").read_text(encoding="utf-8"))["rules"]
    missing = [r["id"] for r in rules if r["dispatch"] != "none" and kb.sop_for(r["id"], None) is None]
    assert kb.sop_for("no_such_rule", None) is not None  # the general one
    assert not [r for r in missing if kb.sop_for(r, None).id == "sop_general"], missing  # type: ignore[union-attr]


@pytest.mark.parametrize(("query", "first"), [
    ("电梯困人怎么办", "sop_elevator_entrapment"), ("燃气泄漏", "sop_gas_leak"), ("漏水", "sop_water_leak"),
    ("独居老人 探访", "policy_care_levels"), ("办结时限", "policy_sla"), ("防火门反复报警", "case_fire_door_hotspot"),
    ("Entrapment", "sop_elevator_entrapment"), ("96333", "sop_elevator_entrapment"),
])
def test_keyword_search(kb: KnowledgeBase, query: str, first: str) -> None:
    hits = kb.search(query)
    assert hits and hits[0].document.id == first, [(h.document.id, h.score) for h in hits]
    assert hits[0].snippet


def test_search_edge_cases(kb: KnowledgeBase) -> None:
    assert kb.search("") == [] and kb.search("   ?!") == [] and kb.search("zzzqqq") == []
    assert terms("电梯困人 Gas") == ["电梯困人", "电梯", "梯困", "困人", "gas"]
    assert len(kb.search("的", limit=3)) <= 3


def test_bad_documents_are_reported_with_their_file() -> None:
    with pytest.raises(KnowledgeError, match=r"a\.yaml: .*steps: an SOP needs at least one step") as e:
        KnowledgeBase.parse([("a.yaml", "id: a\ntype: sop\ntitle: A\ntitle_zh: 甲\nsteps: []\n"),
                             ("b.yaml", "id: ["),
                             ("c.yaml", "entries:\n  - {id: c1, type: faq, title: C, title_zh: 丙, answer: 好}\n"
                                        "  - {id: c2, type: faq, title: C, title_zh: 丙, answer: ''}\n"
                                        "  - {id: c3, type: faq, title: C, title_zh: 丙, answer: 好, colour: red}\n"),
                             ("d.yaml", "entries: []\n")])
    problems = e.value.problems
    assert any("b.yaml: not valid YAML" in p for p in problems)
    assert any(p.startswith("c.yaml: entries[1]: ") and "an FAQ entry needs an answer" in p for p in problems)
    assert any(p.startswith("c.yaml: entries[2]: colour: ") for p in problems)
    assert not any("entries[0]" in p for p in problems)
    assert any(p.startswith("d.yaml: entries: a non-empty list") for p in problems)
