"""Every shipped scenario states the incidents (tickets) it must produce (``expect:``), and its offline replay
(`gridtwin rules test`'s defaults: a local midnight, seed 1) produces exactly those; how a shortfall is reported.
Through the real broker, gateway and database: tests/e2e/test_scenarios_e2e.py."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from simulators.errors import SimulationError
from simulators.scenario import Observed, Plan, available, check_expect, compile_plan
from tests.support.scenarios import (
    KNOWN_RULES,
    REFERENCE_START,
    SAMPLE,
    messages,
    offline_events,
    offline_incidents,
)
from twin import tickets as tk
from twin.alarms import EventKind

SHIPPED = list(available())


@cache
def replayed(name: str) -> tuple[tk.Incident, ...]:
    plan = compile_plan(name, SAMPLE)
    events = offline_events(messages(plan, REFERENCE_START), until=REFERENCE_START + plan.duration)
    return tuple(offline_incidents(events))


def test_every_shipped_scenario_states_its_incidents() -> None:
    assert {"baseline", "fire", "power-loss", "fire-and-entrapment", "gas-leak-and-hydrant-loss"} <= set(SHIPPED)
    missing = [n for n in SHIPPED if compile_plan(n, SAMPLE).expect is None]
    assert not missing, f"scenarios without an expect: block: {missing}"
    assert compile_plan("baseline", SAMPLE).expect.incidents == []  # type: ignore[union-attr]


@pytest.mark.parametrize("name", SHIPPED)
def test_the_offline_replay_meets_the_scenarios_expectation(name: str) -> None:
    plan = compile_plan(name, SAMPLE)
    problems = check_expect(plan, [Observed.of_incident(i) for i in replayed(name)], known_rules=KNOWN_RULES)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("name", "categories"), [("fire-and-entrapment", ["fire", "elevator"]),
                                                  ("gas-leak-and-hydrant-loss", ["fire", "gas"])])
def test_two_emergencies_overlapping_in_one_building_are_one_incident_each(name: str, categories: list[str]) -> None:
    """Overlapping in time (minutes apart) and place (one building): one incident per category, each holding
    only its own alarms, and the same incidents as each scenario alone."""
    incidents = replayed(name)
    assert [i.category for i in incidents] == categories
    first, second = ({a.key for a in i.alarms} for i in incidents)
    assert not first & second
    assert min(i.last_alarm_at for i in incidents) > max(i.opened_at for i in incidents)  # both active together
    alone = {i.category: i for n in compile_plan(name, SAMPLE).source.spec.include  # type: ignore[union-attr]
             for i in replayed(n if isinstance(n, str) else n.scenario)}
    for inc in incidents:
        assert (inc.title, inc.priority, inc.rule) == (alone[inc.category].title, alone[inc.category].priority,
                                                      alone[inc.category].rule)
        assert {a.rule for a in alone[inc.category].alarms} <= {a.rule for a in inc.alarms}


def test_a_power_cut_of_a_building_is_one_storm_incident_and_clears_when_power_returns() -> None:
    plan = compile_plan("power-loss", SAMPLE)
    building = {d.id for d in SAMPLE.devices if d.building == SAMPLE.device(plan.role("panel")).building}  # type: ignore[union-attr]
    assert set(plan.groups["building"]) | {plan.role("panel")} == building and len(building) == 106
    (storm,) = replayed("power-loss")
    assert storm.title == "通信或供电中断 · 阳光社区 1号楼 · 106台设备" and set(storm.devices) == building
    assert (storm.category, storm.priority) == ("other", tk.Priority.URGENT)
    assert {a.rule for a in storm.alarms} == {"panel_mains_lost", "fire_device_offline", "elevator_offline",
                                              "sensor_offline", "care_sensor_offline"}
    back = REFERENCE_START + 35 * 60
    assert all(a.cleared_at is not None and a.cleared_at.timestamp() <= back + 60 for a in storm.alarms)
    events = offline_events(messages(plan, REFERENCE_START), until=REFERENCE_START + plan.duration)
    assert all(e.building == "B1" for e in events if e.kind is EventKind.RAISED)  # nothing elsewhere


# --- how an expectation that is not met is reported ------------------------------------------------------


def _plan(tmp_path: Path, expect: str) -> tuple[Path, Plan]:
    f = tmp_path / "exp.yaml"
    f.write_text("name: exp\ndescription: a gas leak\ninclude: [gas-leak]\n" + expect, encoding="utf-8")
    return f, compile_plan(str(f), SAMPLE)


LEAK = Observed("可燃气体高浓度 · 阳光社区 1号楼 B1层", "gas", "urgent",
                (("gas_level1", "B1-B1-GAS", "B1-B1-GAS"), ("gas_level2", "B1-B1-GAS", "B1-B1-GAS")))
FIRE = Observed("火警预警(单探测器) · 阳光社区 1号楼 3层", "fire", "urgent",
                (("fire_prealarm", "B1-F3-SD1", "B1-F3-SD1"),))


def test_an_expectation_is_met_by_exactly_its_incidents_in_any_order(tmp_path: Path) -> None:
    f, plan = _plan(tmp_path, "expect:\n  incidents:\n"
                              "    - {category: gas, priority: urgent, title_prefix: 可燃气体,"
                              " roles: [gas-leak.sensor], rules: [gas_level2], devices: 1}\n"
                              "    - {category: fire, priority: urgent,"
                              " title: 火警预警(单探测器) · 阳光社区 1号楼 3层}\n")
    assert check_expect(plan, [FIRE, LEAK]) == []
    assert check_expect(plan, [LEAK, FIRE]) == []
    (only,) = check_expect(plan, [LEAK])
    assert only.startswith(f"{f}:7: expect.incidents.1: no incident left for it")
    (extra,) = check_expect(plan, [LEAK, FIRE, FIRE])
    assert extra.startswith(f"{f}:5: expect.incidents: an incident not expected: '火警预警")


def test_a_shortfall_names_the_closest_incident_and_why(tmp_path: Path) -> None:
    f, plan = _plan(tmp_path, "expect:\n  incidents:\n    - category: gas\n      priority: general\n"
                              "      title: 可燃气体报警 · 阳光社区 1号楼 B1层\n      rules: [gas_level2, gas_level3]\n"
                              "      roles: [gas-leak.sensor]\n      subjects: [B1-B1-VALVE]\n      devices: 2\n")
    problem, extra = check_expect(plan, [FIRE, LEAK])
    assert extra.startswith(f"{f}:5: expect.incidents: an incident not expected: '火警预警")  # not the closest
    assert problem.startswith(f"{f}:6: expect.incidents.0: no incident matches; the closest, '可燃气体高浓度")
    for why in ("priority is urgent, not general", "title is '可燃气体高浓度 · 阳光社区 1号楼 B1层', not",
                "no alarm of rule gas_level3", "no alarm on B1-B1-VALVE", "1 devices, not 2"):
        assert why in problem
    (unknown,) = check_expect(plan, [LEAK], known_rules=KNOWN_RULES)
    assert unknown == f"{f}:9: expect.incidents.0.rules.1: unknown rule 'gas_level3'"
    _f, none = _plan(tmp_path, "expect: {incidents: []}\n")
    (extra,) = check_expect(none, [LEAK])
    assert "an incident not expected: '可燃气体高浓度" in extra
    _f, silent = _plan(tmp_path, "")
    assert check_expect(silent, [LEAK, FIRE]) == []  # nothing stated: nothing to meet


def test_an_expected_role_must_exist_in_the_scenario_or_its_includes(tmp_path: Path) -> None:
    with pytest.raises(SimulationError, match=r"exp.yaml:6: expect.incidents.0.roles.0: unknown role "
                                              r"'gas-leak.valve'; roles: gas-leak.sensor"):
        _plan(tmp_path, "expect:\n  incidents:\n    - {category: gas, priority: urgent, title_prefix: 可燃, "
                        "roles: [gas-leak.valve]}\n")
