"""Incidents, pure: which alarms are one emergency (twin/incidents_defaults.yaml), the incident's title and
worst alarm, storms of silent devices, the life-safety upgrade of a ticket, the resolve guard, reopening,
false-alarm statistics, and the policy file's validation (file:line: field: why)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from simulators.engine import plan_messages
from simulators.scenario import compile_plan
from twin import tickets as tk
from twin.alarms import AlarmEvent, AlarmStatus, Dispatch, EventKind, Severity
from twin.community import Community, parse
from twin.rules import DEFAULTS_FILE, Engine, load_rules, replay
from twin.tickets import Clock, InvalidInput, Priority, TicketError, TicketState

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2025, 6, 2, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
M = timedelta(minutes=1)


@pytest.fixture(scope="module")
def community() -> Community:
    return parse((ROOT / "twin" / "sample_community.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def rules(community: Community) -> object:
    return load_rules([(str(DEFAULTS_FILE), DEFAULTS_FILE.read_text(encoding="utf-8"))], community)


@pytest.fixture(scope="module")
def names(rules: object) -> dict[str, str]:
    return {r.id: (r.name or r.id).split(" / ")[0] for r in rules.rules}  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def policy(rules: object) -> tk.IncidentPolicy:
    known = {r.id for r in rules.rules} | set(rules.disabled)  # type: ignore[attr-defined]
    return tk.load_incident_policy([(str(tk.INCIDENTS_FILE), tk.INCIDENTS_FILE.read_text(encoding="utf-8"))],
                                   known_rules=known)


@pytest.fixture(scope="module")
def sla(policy: tk.IncidentPolicy) -> tk.SlaPolicy:
    return tk.SlaPolicy(life_safety=policy.targets())


def alarm(rule: str, subject: str, *, at: datetime = T0, building: str | None = "B1", floor: int | None = 3,
          device: str | None = None, severity: Severity = Severity.MAJOR, dispatch: Dispatch = Dispatch.URGENT,
          kind: EventKind = EventKind.RAISED, subject_type: str = "device") -> AlarmEvent:
    dev = device if device is not None else (subject if subject_type == "device" else None)
    return AlarmEvent(kind, rule, subject, subject_type, severity, AlarmStatus.ACTIVE_UNACK, at, at, 1,  # type: ignore[arg-type]
                      building, floor, dev, f"{rule} on {subject}", dispatch, received_at=at)


def scenario_events(name: str, community: Community, rules: object) -> list[AlarmEvent]:
    plan = compile_plan(name, community)
    start = datetime(2025, 6, 2, tzinfo=UTC).timestamp()
    msgs = [(m.t, m.topic, m.payload) for m in plan_messages(plan, community, "gridtwin", start=start, seed=1)]
    return list(replay(Engine(rules, community), msgs, root="gridtwin", until=start + plan.duration))  # type: ignore[arg-type]


# -- grouping ----------------------------------------------------------------------------------------------------


def test_the_fire_scenario_is_one_incident_titled_by_its_confirmation(
        community: Community, rules: object, policy: tk.IncidentPolicy, names: dict[str, str]) -> None:
    events = scenario_events("fire", community, rules)
    raised = [e for e in events if e.kind is EventKind.RAISED and e.dispatch is not Dispatch.NONE]
    assert len(raised) >= 9  # detectors, the panel, the confirmation, sprinkler flow and pressure: on 2 floors
    (fire,) = tk.incidents_of(community, events, policy, names=names)
    assert {a.key for a in fire.alarms} == {e.key for e in raised}
    assert {a.floor for a in fire.alarms} == {3, -1}  # the detectors' floor and the basement's sprinkler valve
    assert (fire.category, fire.priority, fire.rule, fire.life_safety) == ("fire", Priority.URGENT, "fire_confirmed",
                                                                           True)
    assert fire.title == "火警确认(同层两路信号) · 阳光社区 1号楼 3层"
    assert [a.rule for a in fire.alarms][:2] == ["fire_prealarm", "panel_fire_alarm"]  # the timeline, in order


@pytest.mark.parametrize("name", ["gas-leak", "elevator-entrapment", "hydrant-pressure-loss"])
def test_each_incident_scenario_is_one_incident(name: str, community: Community, rules: object,
                                                 policy: tk.IncidentPolicy, names: dict[str, str]) -> None:
    incidents = tk.incidents_of(community, scenario_events(name, community, rules), policy, names=names)
    assert len(incidents) == 1, [(i.title, [a.key for a in i.alarms]) for i in incidents]


def test_fire_and_elevator_on_one_floor_are_two_incidents(community: Community, policy: tk.IncidentPolicy,
                                                          names: dict[str, str]) -> None:
    events = [alarm("elevator_entrapment", "B1-E1-M", floor=1, severity=Severity.CRITICAL),
              alarm("panel_fire_alarm", "B1-F1-SD1", floor=1, at=T0 + M, severity=Severity.CRITICAL)]
    incidents = tk.incidents_of(community, events, policy, names=names)
    assert [(i.category, i.rule) for i in incidents] == [("elevator", "elevator_entrapment"),
                                                         ("fire", "panel_fire_alarm")]


def test_gas_and_sprinkler_are_two_incidents(community: Community, policy: tk.IncidentPolicy) -> None:
    events = [alarm("gas_level1", "B1-B1-GAS", floor=-1),
              alarm("sprinkler_pressure_low", "B1-SPK", floor=-1, at=T0 + M)]
    assert [i.category for i in tk.incidents_of(community, events, policy)] == ["gas", "fire"]
    keys = [tk.incident_key(policy, community, e).key for e in events]
    assert keys == ["gas:B1/-1", "fire:B1"]


def test_49_silent_devices_of_one_building_are_one_storm(community: Community, policy: tk.IncidentPolicy,
                                                         names: dict[str, str]) -> None:
    devices = [d for d in community.devices if d.building == "B1" and d.kind in ("smoke_detector", "manual_call_point",
                                                                                  "emergency_light")][:49]
    assert len(devices) == 49
    events = [alarm("fire_device_offline" if d.kind != "emergency_light" else "sensor_offline", d.id, floor=d.floor,
                    at=T0 + timedelta(seconds=5 * i), dispatch=Dispatch.GENERAL) for i, d in enumerate(devices)]
    events.append(alarm("sensor_offline", "B2-F1-TH", building="B2", floor=1, at=T0 + M, dispatch=Dispatch.GENERAL))
    storm, other = tk.incidents_of(community, events, policy, names=names)
    assert storm.title == "通信或供电中断 · 阳光社区 1号楼 · 49台设备"
    assert len(storm.alarms) == 49 and storm.devices == tuple(d.id for d in devices)
    assert storm.priority is Priority.GENERAL and storm.category == "other"
    assert other.title.startswith("传感器离线 · 阳光社区 2号楼 1层")  # one device: not (yet) a storm
    # two devices stay a plain incident; the third makes it a storm
    two = tk.incidents_of(community, events[:2], policy, names=names)[0]
    assert "台设备" not in two.title
    assert tk.incidents_of(community, events[:3], policy, names=names)[0].title.endswith("3台设备")


def test_repeats_join_their_incident_and_a_late_alarm_opens_a_new_one(community: Community,
                                                                        policy: tk.IncidentPolicy) -> None:
    first = alarm("water_leak", "B1-B1-LEAK", floor=-1, dispatch=Dispatch.GENERAL)
    events = [first, replace(first, kind=EventKind.CLEARED, at=T0 + M),
              replace(first, at=T0 + 2 * timedelta(hours=1), received_at=T0 + 2 * timedelta(hours=1)),  # same alarm
              alarm("water_tank_low", "B1-WT", floor=-1, at=T0 + timedelta(hours=3), dispatch=Dispatch.GENERAL)]
    leak, tank = tk.incidents_of(community, events, policy)
    assert [(a.key, a.count, a.active) for a in leak.alarms] == [("water_leak@B1-B1-LEAK", 2, True)]
    assert [a.key for a in tank.alarms] == ["water_tank_low@B1-WT"]  # same floor, but 1 h after the leak's last


def test_alarms_that_do_not_dispatch_or_are_shelved_make_no_incident(community: Community,
                                                                     policy: tk.IncidentPolicy) -> None:
    events = [alarm("heat_rise", "B1-F3-HD1", dispatch=Dispatch.NONE),
              replace(alarm("gas_level1", "B1-B1-GAS", floor=-1), shelved=True)]
    assert tk.incidents_of(community, events, policy) == []


def test_manual_reports_collect_the_alarms_of_their_category_and_place(community: Community,
                                                                       policy: tk.IncidentPolicy) -> None:
    keys = tk.place_keys(policy, community, "fire", building="B1", floor=6)
    assert "incident:fire:B1" in keys and "incident:fire_upkeep:B1" in keys
    assert tk.incident_key(policy, community, alarm("fire_prealarm", "B1-F6-SD1", floor=6)).stored in keys
    assert tk.incident_key(policy, community, alarm("gas_level1", "B1-F6-GAS", floor=6)).stored not in keys
    assert tk.place_keys(policy, community, "gas", building="B1", floor=6) == {"incident:gas:B1/6"}


def test_care_and_unknown_rules(community: Community, policy: tk.IncidentPolicy) -> None:
    care = alarm("care_inactivity", "B1-1201", subject_type="care_unit", floor=12)
    assert tk.incident_key(policy, community, care).key == "care:B1-1201"
    odd = tk.incident_key(policy, community, alarm("site_rule", "X-1"))
    assert (odd.key, odd.group, odd.within_s) == ("subject:X-1", None, 1800.0)


# -- the ticket follows its incident --------------------------------------------------------------------------------


def test_a_confirmed_fire_upgrades_title_priority_and_clocks_from_the_start(
        community: Community, policy: tk.IncidentPolicy, sla: tk.SlaPolicy, names: dict[str, str]) -> None:
    pre = alarm("fire_prealarm", "B1-F3-SD1")
    key = tk.incident_key(policy, community, pre)
    s0 = tk.summarize(policy, community, key, [tk.IncidentAlarm.of(pre)], names)
    assert s0.title == "火警预警(单探测器) · 阳光社区 1号楼 3层"
    t = tk.new_ticket(community="sunshine", title=s0.title, category="fire", priority=Priority.GENERAL,
                      source="alarm", at=T0, policy=sla, rate_token="tok", rule="fire_prealarm", building="B1",
                      floor=3, keys={key.stored})
    assert t.life_safety and t.respond_by == T0 + 3 * M and t.resolve_by == T0 + 60 * M
    t = replace(t, id=7, priority=Priority.GENERAL, respond_by=T0 + 20 * M, resolve_by=T0 + 2 * timedelta(hours=1))
    confirmed = alarm("fire_confirmed", "B1/F3", subject_type="floor", at=T0 + 2 * M, severity=Severity.CRITICAL)
    s1 = tk.summarize(policy, community, key, [tk.IncidentAlarm.of(pre), tk.IncidentAlarm.of(confirmed)], names)
    assert s1.worst.rule == "fire_confirmed" and s1.life_safety == ("fire_prealarm", "fire_confirmed")
    u = tk.attach_alarm(t, confirmed, sla, {key.stored}, title=s1.title, worst=s1.worst.rule)
    assert u.title == "火警确认(同层两路信号) · 阳光社区 1号楼 3层"
    assert (u.priority, u.rule, u.last_alarm_at) == (Priority.URGENT, "fire_confirmed", T0 + 2 * M)
    # re-computed from the ticket's creation with the tighter targets (not from the confirmation at +2 min)
    assert u.respond_by == T0 + 3 * M and u.resolve_by == T0 + 60 * M
    note = tk.upgrade_note(t, u)
    assert "火警预警(单探测器)" in note and "火警确认(同层两路信号)" in note and "一般 → 紧急" in note
    assert "respond by 2025-06-02T02:03:00+00:00" in note and "counted from the ticket's start" in note
    assert tk.upgrade_note(u, u) == ""  # nothing changed: no history entry
    # a looser alarm joining later never loosens anything
    later = tk.attach_alarm(u, alarm("heat_high", "B1-F3-HD1", dispatch=Dispatch.GENERAL), sla, {key.stored})
    assert (later.priority, later.respond_by, later.resolve_by, later.title) == (
        u.priority, u.respond_by, u.resolve_by, u.title)


def test_entrapment_times_arrival_and_release_apart(sla: tk.SlaPolicy) -> None:
    t = tk.new_ticket(community="sunshine", title="电梯困人", category="elevator", priority=Priority.URGENT,
                      source="alarm", at=T0, policy=sla, rate_token="tok", rule="elevator_entrapment")
    assert (t.respond_by, t.arrive_by, t.release_by, t.resolve_by) == (T0 + 5 * M, T0 + 30 * M, T0 + 60 * M,
                                                                        T0 + timedelta(hours=24))
    t = tk.dispatch(replace(t, id=3), tk.Assignment("G1", "w1-1", "on_duty", "test"))
    clocks = [c.clock for c in tk.running_clocks(t)]
    assert clocks == [Clock.RESPOND, Clock.ARRIVE, Clock.RELEASE, Clock.RESOLVE]
    assert [a.key for a in tk.alerts_due(t, T0 + 31 * M, 0.75)] == ["breach:respond", "breach:arrive"]
    assert [a.key for a in tk.alerts_due(t, T0 + 45 * M, 0.75)] == ["breach:respond", "breach:arrive",
                                                                     "warn:release"]
    on_site = tk.arrive(t, T0 + 25 * M)
    assert on_site.state is TicketState.HANDLING and on_site.accepted_at == T0 + 25 * M
    assert [c.clock for c in tk.running_clocks(on_site)] == [Clock.RELEASE, Clock.RESOLVE]
    with pytest.raises(TicketError, match="already recorded"):
        tk.arrive(on_site, T0 + 26 * M)
    out = tk.release(on_site, T0 + 40 * M)
    assert out.released_at == T0 + 40 * M and [c.clock for c in tk.running_clocks(out)] == [Clock.RESOLVE]
    with pytest.raises(TicketError, match="nobody trapped"):
        tk.release(replace(on_site, release_by=None), T0)
    again = tk.reopen(tk.resolve(out, T0 + 50 * M), T0 + 2 * timedelta(hours=1), sla)
    assert (again.arrived_at, again.released_at, again.arrive_by) == (None, None, T0 + timedelta(hours=2, minutes=30))


def test_a_ticket_is_not_resolved_while_its_life_safety_alarms_are_active_without_a_reason() -> None:
    t = replace(tk.new_ticket(community="sunshine", title="t", category="fire", priority=Priority.URGENT,
                              source="alarm", at=T0, policy=tk.SlaPolicy(), rate_token="tok"), id=9,
                state=TicketState.HANDLING, accepted_at=T0)
    active = ["fire_confirmed@B1/F3"]
    with pytest.raises(tk.AlarmsStillActive, match=r"fire_confirmed@B1/F3.*false_alarm, device_fault, other") as e:
        tk.resolve(t, T0 + M, active_life_safety=active)
    assert e.value.alarms == ("fire_confirmed@B1/F3",)
    with pytest.raises(InvalidInput, match="needs a note"):
        tk.resolve(t, T0 + M, active_life_safety=active, reason="other")
    with pytest.raises(InvalidInput, match="not one of"):
        tk.resolve(t, T0 + M, active_life_safety=active, reason="bored")
    done = tk.resolve(t, T0 + M, active_life_safety=active, reason="false_alarm", note="厨房油烟")
    assert (done.state, done.close_reason, done.close_note) == (TicketState.FEEDBACK, "false_alarm", "厨房油烟")
    assert tk.resolve(t, T0 + M).close_reason is None  # every alarm cleared: no reason needed
    with pytest.raises(tk.AlarmsStillActive):
        tk.cancel(t, "误报", T0 + M, active_life_safety=active)
    c = tk.cancel(t, "误报: 探测器积尘", T0 + M, active_life_safety=active, code="device_fault")
    assert (c.state, c.close_reason, c.cancel_reason) == (TicketState.CANCELLED, "device_fault", "误报: 探测器积尘")


def test_false_alarm_statistics_per_device_and_rule() -> None:
    records = [("B1-F3-SD1", "smoke_detector", "fire_prealarm", "false_alarm"),
               ("B1-F3-SD1", "smoke_detector", "fire_prealarm", "false_alarm"),
               ("B1-F3-SD1", "smoke_detector", "fire_prealarm", None),
               ("B1-F3-SD1", "smoke_detector", "panel_fire_alarm", "device_fault"),
               ("B1-E1-M", "elevator", "elevator_entrapment", None)]
    rows = tk.false_alarm_stats(records)
    assert [(r.device, r.rule, r.alarms, r.false_alarm, r.device_fault) for r in rows] == [
        ("B1-F3-SD1", "fire_prealarm", 3, 2, 0), ("B1-F3-SD1", "panel_fire_alarm", 1, 0, 1)]
    assert rows[0].false_alarm_rate == 0.667 and rows[0].as_dict()["kind"] == "smoke_detector"


def test_the_reopening_dispatch_prefers_the_previous_worker(community: Community) -> None:
    at = T0  # 10:00 local: w1-1 is on duty (08:00-18:00), w1-2 is not
    a = tk.assign(community, "B1", at, load={"w1-1": 9}, prefer="w1-1")
    assert a.assignee == "w1-1"
    b = tk.assign(community, "B1", at + timedelta(hours=13), prefer="w1-1")  # 23:00: w1-1 is off duty
    assert b.assignee != "w1-1"


# -- the policy file ----------------------------------------------------------------------------------------------


def test_every_dispatching_rule_has_a_group_and_every_life_safety_rule_a_sourced_target(
        rules: object, policy: tk.IncidentPolicy) -> None:
    dispatching = [r.id for r in rules.rules if r.dispatch.value != "none"]  # type: ignore[attr-defined]
    assert [r for r in dispatching if policy.group_of(r) is None] == []
    for rule in ("fire_prealarm", "panel_fire_alarm", "fire_confirmed", "gas_level1", "gas_level2", "co_alarm",
                 "elevator_entrapment", "hydrant_pressure_low", "sprinkler_pressure_low"):
        ls = policy.life_safety[rule]
        assert ls.respond <= 15 * 60 and ls.source
    assert policy.life_safety["elevator_entrapment"].arrive == 30 * 60  # TSG T5002-2017: arrival
    assert "GB 25506-2010" in policy.life_safety["fire_prealarm"].source


def test_a_site_file_overrides_and_adds_groups(policy: tk.IncidentPolicy) -> None:
    site = ("site.yaml", "version: 1\ngroups:\n  - {id: fire, within: 10m}\n"
                         "  - {id: lobby, name: 大堂 / lobby, scope: floor, within: 5m, rules: [noise_high],"
                         " reason: the lobby's noise is one job}\n"
                         "life_safety:\n  - {rule: gas_level1, respond: 2m}\n")
    merged = tk.load_incident_policy([(str(tk.INCIDENTS_FILE), tk.INCIDENTS_FILE.read_text(encoding="utf-8")), site])
    assert merged.groups[0].id == "lobby" and merged.group_of("noise_high").id == "lobby"  # type: ignore[union-attr]
    fire = next(g for g in merged.groups if g.id == "fire")
    assert fire.within == 600 and fire.rules == next(g for g in policy.groups if g.id == "fire").rules
    assert merged.life_safety["gas_level1"].respond == 120 and merged.life_safety["gas_level1"].source
    off = tk.load_incident_policy([(str(tk.INCIDENTS_FILE), tk.INCIDENTS_FILE.read_text(encoding="utf-8")),
                                   ("off.yaml", "version: 1\ngroups:\n  - {id: care, enabled: false}\n")])
    assert off.group_of("care_inactivity") is None


def test_policy_problems_name_file_line_and_field() -> None:
    text = ("version: 1\nreopen_within: soon\ngroups:\n"
            "  - id: a\n    name: A\n    scope: street\n    within: 5m\n    rules: [x]\n    reason: r\n"
            "  - id: d\n    name: D\n    scope: floor\n    within: 5m\n    rules: [x]\n    reason: r\n"
            "  - id: b\n    name: B\n    scope: floor\n    within: 5m\n    rules: [gas_level1]\n"
            "    title: '{worst} {oops}'\n    reason: r\n"
            "  - id: c\n    name: C\n    scope: floor\n    within: 5m\n    rules: [gas_level1]\n    reason: r\n"
            "  - {id: e, name: E, scope: floor, within: 5m, rules: [gas_level2], reason: r, colour: red}\n"
            "life_safety:\n  - {rule: gas_level1, source: x}\n  - {rule: nope, respond: 1m, source: y}\n")
    with pytest.raises(tk.IncidentPolicyError) as e:
        tk.load_incident_policy([("bad.yaml", text)], known_rules={"gas_level1", "gas_level2"})
    assert "bad.yaml:2: reopen_within: 'soon' is not a duration: write a number and a unit, e.g. 30s, 5m, 2h, 1d" \
        in e.value.problems
    with pytest.raises(tk.IncidentPolicyError) as e2:
        tk.load_incident_policy([("bad.yaml", text.replace("reopen_within: soon", "reopen_within: 1h"))],
                                known_rules={"gas_level1", "gas_level2"})
    assert e2.value.problems == [
        "bad.yaml:6: groups.a.scope: Input should be 'building', 'floor', 'unit', 'device', 'subject', 'care_unit' "
        "or 'panel'",
        "bad.yaml:14: groups.d.rules.0: unknown rule 'x' (not in the rule set)",
        "bad.yaml:21: groups.b.title: unknown field {oops}; a title may use {alarms}, {devices}, {name}, {place}, "
        "{where}, {worst}",
        "bad.yaml:27: groups.c.rules.0: rule gas_level1 is already in group b of the same file (an alarm belongs "
        "to the first group listing its rule)",
        "bad.yaml:29: groups.e.colour: unknown key",
        "bad.yaml:31: life_safety.gas_level1.respond: required",
        "bad.yaml:32: life_safety.nope.rule: unknown rule 'nope' (not in the rule set)",
    ]
    with pytest.raises(tk.IncidentPolicyError, match="reopen_within: required"):
        tk.load_incident_policy([("x.yaml", "version: 1\ngroups: []\n")])
    with pytest.raises(tk.IncidentPolicyError, match=r"y.yaml:3: not valid YAML"):
        tk.load_incident_policy([("y.yaml", "version: 1\ngroups: [\n")])
