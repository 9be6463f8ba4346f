"""Simulators without a broker: behaviour models, scenarios, determinism, hostile traffic, bad input.

Scenarios run through the same functions ``gridtwin simulate --stdout`` uses, against the bundled
sample community, from a fixed start (local midnight, UTC+8) and seed.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import statistics
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import orjson
import pytest

from gateway.cli_base import sample_community_path
from gateway.ingest.validate import Accepted, Registry, Rejected, Validator
from gateway.storage import FLAG_LATE, DeviceRef
from simulators import behaviour, engine, hostile, run, scenario
from simulators.errors import SimulationError
from twin import catalogue, contract, generate, mqtt_codec
from twin import community as community_mod
from twin.hydraulics import head_below_top, static_offset

ROOT = "gt-sim"
START = 1_764_604_800.0  # 2025-12-02 00:00 local time (UTC+8)
SEED = 7
REPO = Path(__file__).resolve().parents[2]


@cache
def sample() -> community_mod.Community:
    return community_mod.parse(sample_community_path().read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Msg:
    t: float
    device: str
    channel: str
    action: str
    body: dict[str, object]

    @property
    def hour(self) -> float:
        return ((self.t + 8 * 3600) % 86400) / 3600

    def value(self, name: str) -> object:
        values = self.body.get("values")
        assert isinstance(values, dict)
        return values[name]

    def num(self, name: str) -> float:
        v = self.value(name)
        assert isinstance(v, int | float)
        return float(v)

    def has(self, name: str) -> bool:
        values = self.body.get("values")
        return isinstance(values, dict) and name in values


def simulate(name: str, seed: int = SEED, *, per_kind: int | None = 8,
             duration: float | None = None) -> tuple[scenario.Plan, tuple[Msg, ...]]:
    """Run a scenario; ``per_kind`` keeps only the first N devices of each kind (plus every role's device).

    Each device's stream is independent of the others, so a smaller population changes nothing for
    the devices kept; it only keeps the suite fast.
    """
    return _simulate(name, seed, per_kind, duration)


@cache
def _simulate(name: str, seed: int, per_kind: int | None,
              duration: float | None) -> tuple[scenario.Plan, tuple[Msg, ...]]:
    plan = scenario.compile_plan(name, sample(), duration=duration)
    if per_kind is not None:
        seen: dict[str, int] = defaultdict(int)
        keep = []
        for d in plan.devices:
            seen[d.kind] += 1
            if seen[d.kind] <= per_kind or d.id in plan.scripts:
                keep.append(d)
        plan.devices = keep
    out = []
    for m in engine.plan_messages(plan, sample(), ROOT, start=START, seed=seed):
        t = contract.parse_topic(ROOT, m.topic)
        out.append(Msg(m.t, t.device_id, t.channel.value, m.action, orjson.loads(m.payload)))
    return plan, tuple(out)


def telemetry(msgs: tuple[Msg, ...], device: str) -> list[Msg]:
    return [m for m in msgs if m.device == device and m.channel == "telemetry"]


def events(msgs: tuple[Msg, ...], device: str, code: str | None = None) -> list[Msg]:
    return [m for m in msgs if m.device == device and m.channel == "event" and (code is None or m.body["code"] == code)]


# --- behaviour models -----------------------------------------------------------------------------


def test_every_catalogue_kind_has_a_behaviour_model() -> None:
    assert set(behaviour.MODELS) == set(catalogue.KINDS)


@pytest.mark.parametrize(("per_kind", "duration"), [(8, None), (None, 7200.0)], ids=["day-8-per-kind", "2h-all"])
def test_baseline_stays_inside_valid_and_normal_ranges_and_follows_the_contract(per_kind: int | None,
                                                                                duration: float | None) -> None:
    plan, msgs = simulate("baseline", per_kind=per_kind, duration=duration)
    devices = {d.id: d for d in sample().devices}
    assert {m.device for m in msgs} == {d.id for d in plan.devices}
    assert {devices[m.device].kind for m in msgs} == set(catalogue.KINDS)
    checked = 0
    for m in msgs:
        if m.channel != "telemetry":
            continue
        kind = catalogue.KINDS[devices[m.device].kind]
        values = m.body["values"]
        assert isinstance(values, dict) and set(values) == {f.name for f in kind.fields}
        for f in kind.fields:
            v = values[f.name]
            assert f.check(v) is None, (m.device, f.name, v)
            normal = (devices[m.device].normal or {}).get(f.name) or f.normal  # the site's range at its height
            if normal and f.type is not catalogue.FieldType.BOOL:
                assert normal[0] <= v <= normal[1], (m.device, f.name, v)
            checked += 1
    assert checked > 10_000
    # every 50th message (and every event and status) through the real contract decoder
    for i, m in enumerate(msgs):
        if m.channel != "telemetry" or i % 50 == 0:
            contract.decode(contract.Channel(m.channel), orjson.dumps(m.body))


def test_baseline_heartbeats_at_each_kinds_period() -> None:
    _plan, msgs = simulate("baseline")
    kinds = {d.id: d.kind for d in sample().devices}
    times: dict[str, list[float]] = defaultdict(list)
    for m in msgs:
        times[m.device].append(m.t)
    for device, ts in times.items():
        period = catalogue.KINDS[kinds[device]].heartbeat_s
        assert ts[0] == START
        ends = [*ts, START + 86400]
        gaps = [b - a for a, b in itertools.pairwise(ends)]
        assert max(gaps) <= period + 0.002, (device, max(gaps), period)


def test_baseline_devices_never_fall_silent_for_the_shipped_rules() -> None:
    """Heartbeats at each kind's period keep every device inside its catalogue silence (fire: 65 min,
    GB 50440's 2 h check): a quiet day raises no offline alarm, so neither does the demo."""
    from twin.rules import DEFAULTS_FILE, Engine, load_rules, replay

    plan, _msgs = simulate("baseline", per_kind=3)
    kept = {d.id for d in plan.devices}
    rules = load_rules([(str(DEFAULTS_FILE), DEFAULTS_FILE.read_text(encoding="utf-8"))], sample())
    messages = [(m.t, m.topic, m.payload) for m in engine.plan_messages(plan, sample(), ROOT, start=START, seed=SEED)]
    out = replay(Engine(rules, sample()), messages, root=ROOT, until=messages[-1][0], tick_every=60.0)
    silent = {(e.rule, e.subject) for e in out if e.rule.endswith("_offline") and e.subject in kept}
    assert silent == set()
    assert max(catalogue.KINDS[k].silence_s for k in catalogue.KINDS if catalogue.KINDS[k].category == "fire") <= 7200


def test_baseline_temperature_and_humidity_follow_the_day() -> None:
    _plan, msgs = simulate("baseline")
    th = [m for m in msgs if m.channel == "telemetry" and m.has("humidity")]
    afternoon = [m for m in th if 14 <= m.hour < 16]
    night = [m for m in th if 3 <= m.hour < 5]
    assert statistics.mean(m.num("temperature") for m in afternoon) > \
        statistics.mean(m.num("temperature") for m in night) + 3
    assert statistics.mean(m.num("humidity") for m in afternoon) < \
        statistics.mean(m.num("humidity") for m in night) - 8


def test_pipe_pressure_leaks_down_slowly_and_the_jockey_pump_restores_it() -> None:
    _plan, msgs = simulate("baseline")
    series = [(m.t, m.num("pressure")) for m in telemetry(msgs, "B1-HYD")]
    steps = [(b[0] - a[0], b[1] - a[1]) for a, b in itertools.pairwise(series)]
    restores = [dp for dt, dp in steps if dp > 0.04 and dt <= 130]  # jockey: up in a minute or two
    leaks = [dp for dt, dp in steps if dt >= 300 and -0.03 < dp < 0]  # leak-down: small falls
    assert len(restores) >= 2 and len(leaks) > 20
    assert all(0.14 <= p <= 1.0 for _t, p in series)


def test_elevators_go_down_loaded_in_the_morning_and_up_loaded_in_the_evening() -> None:
    _plan, msgs = simulate("baseline")
    lifts = {d.id for d in sample().devices if d.kind == "elevator"}
    moving = [m for m in msgs if m.device in lifts and m.channel == "telemetry" and m.value("running")
              and m.num("load") > 20]
    morning = [m for m in moving if 7 <= m.hour < 9]
    evening = [m for m in moving if 17.5 <= m.hour < 20]
    assert len(morning) > 50 and len(evening) > 50
    assert sum(m.value("direction") == -1 for m in morning) / len(morning) > 0.9
    assert sum(m.value("direction") == 1 for m in evening) / len(evening) > 0.9
    def trips_per_hour(a: float, b: float) -> float:
        return sum(1 for m in msgs if m.device in lifts and m.channel == "telemetry" and m.value("running")
                   and a <= m.hour < b) / (b - a)

    assert trips_per_hour(1, 5) < trips_per_hour(7, 9) / 4
    # doors only open while stopped
    assert not [m for m in msgs if m.device in lifts and m.channel == "telemetry"
                and m.value("door_open") and m.value("running")]


def test_batteries_decay_and_care_activity_happens_by_day() -> None:
    _plan, msgs = simulate("baseline")
    smoke = next(d for d in sample().devices if d.kind == "smoke_detector")
    battery = [m.num("battery") for m in telemetry(msgs, smoke.id)]
    assert battery == sorted(battery, reverse=True)
    model = behaviour.model_for(smoke, seed=SEED, community=sample())
    months = [float(model.values(START + k * 30 * 86400)["battery"]) for k in range(6)]
    drops = [a - b for a, b in itertools.pairwise(months)]
    assert sum(d > 0 for d in drops) >= 5 or any(d < -50 for d in drops)  # decays (or was just replaced)
    cycles = [m for m in msgs if m.channel == "event" and m.body["code"] == "door_cycle"]
    draws = [m for m in msgs if m.channel == "telemetry" and m.has("flow")
             and m.num("flow") > 0]
    assert len(cycles) > 20 and len(draws) > 50
    assert all(6 <= m.hour < 23 for m in cycles)
    assert sum(1 for m in draws if 1 <= m.hour < 5) < len(draws) / 20


def test_models_are_pure_functions_of_time() -> None:
    dev = next(d for d in sample().devices if d.kind == "care_water")
    times = [START + k * 137.0 for k in range(600)]
    a = behaviour.model_for(dev, seed=3, community=sample(), origin=START)
    b = behaviour.model_for(dev, seed=3, community=sample(), origin=START)
    forward = [a.values(t) for t in times]
    backward = [b.values(t) for t in reversed(times)][::-1]
    assert forward == backward
    totals = [float(v["total"]) for v in forward]  # the meter never runs backwards
    assert totals == sorted(totals) and totals[-1] > totals[0]


# --- scenarios ------------------------------------------------------------------------------------


def test_list_names_every_scenario_with_a_description() -> None:
    text = run.list_text()
    names = {"baseline", "fire", "gas-leak", "elevator-entrapment", "hydrant-pressure-loss", "device-offline",
             "flapping-sensor", "care-inactivity", "power-loss", "fire-and-entrapment", "gas-leak-and-hydrant-loss"}
    listed = {line.split()[0] for line in text.splitlines()}
    assert names <= listed
    assert all(len(line.split(None, 1)) == 2 for line in text.splitlines())


def test_fire_second_detector_panel_alarm_heat_rise_and_sprinkler_drop() -> None:
    plan, msgs = simulate("fire")
    devices = {d.id: d for d in sample().devices}
    first, second = devices[plan.role("first")], devices[plan.role("second")]
    heat, panel, sprinkler = plan.role("heat"), plan.role("panel"), plan.role("sprinkler")
    assert first.id != second.id
    assert (first.building, first.floor) == (second.building, second.floor) == \
        (devices[heat].building, devices[heat].floor)
    assert devices[panel].building == devices[sprinkler].building == first.building
    t1 = events(msgs, first.id, "fire_alarm")[0].t
    t2 = events(msgs, second.id, "fire_alarm")[0].t
    assert 0 < t2 - t1 <= 60
    obscuration = [m.num("obscuration") for m in telemetry(msgs, first.id) if m.t <= t1]
    assert obscuration[-1] > 2 > obscuration[0]
    # the panel reports each detector with its address from the panel's table (GB 26875.3 component address)
    table = {d: a for a, d in (devices[panel].components or {}).items()}
    reported = events(msgs, panel, "fire_alarm")
    assert [m.body["detail"].split(":")[0] for m in reported] == [f"component {table[first.id]}",  # type: ignore[union-attr]
                                                                   f"component {table[second.id]}"]
    t_panel = reported[-1].t
    assert t_panel >= t2
    assert max(m.num("temperature") for m in telemetry(msgs, heat)) >= 60
    assert events(msgs, heat, "fire_alarm")
    # at the most unfavourable point (the reading less the static head above the basement alarm valve)
    head = static_offset(head_below_top(sample(), devices[sprinkler]) or 0.0)
    before = [m.num("pressure") - head for m in telemetry(msgs, sprinkler) if m.t < t_panel]
    after = [m.num("pressure") - head for m in telemetry(msgs, sprinkler) if m.t > t_panel]
    assert min(after) < 0.15 < min(before)
    assert events(msgs, sprinkler, "flow")


def test_gas_leak_crosses_level_one_then_level_two_then_clears() -> None:
    plan, msgs = simulate("gas-leak")
    lel = [(m.t, m.num("lel")) for m in telemetry(msgs, plan.role("sensor"))]
    t25 = next(t for t, v in lel if v >= 25)
    t50 = next(t for t, v in lel if v >= 50)
    assert START < t25 < t50 and lel[0][1] < 10 and lel[-1][1] < 10


def test_elevator_entrapment_between_floors_with_doors_shut_and_load() -> None:
    plan, msgs = simulate("elevator-entrapment")
    car = plan.role("car")
    trapped = events(msgs, car, "entrapment")
    assert [m.body["state"] for m in trapped] == ["active", "cleared"]
    assert events(msgs, car, "stop_outside_door_zone")[0].t < trapped[0].t
    during = [m for m in telemetry(msgs, car) if trapped[0].t <= m.t < trapped[1].t]
    assert len(during) > 50
    assert all(not m.value("running") and not m.value("door_open") and m.num("load") > 0
               and m.value("direction") == 0 for m in during)
    assert len({m.value("floor") for m in during}) == 1


def test_hydrant_leak_the_pressure_holding_pump_first_keeps_up_with_then_cannot() -> None:
    plan, msgs = simulate("hydrant-pressure-loss")
    devices = {d.id: d for d in sample().devices}
    top, bottom, pump = plan.role("riser"), plan.role("bottom"), plan.role("pump")
    assert devices[top].floor == sample().building(devices[top].building or "").floors_above  # type: ignore[union-attr]
    top_p = {round(m.t): m.num("pressure") for m in telemetry(msgs, top)}
    bottom_p = {round(m.t): m.num("pressure") for m in telemetry(msgs, bottom)}
    # both read one riser: the bottom sensor reads the static head between them on top (0.0098 MPa a metre)
    head = static_offset(head_below_top(sample(), devices[bottom]) or 0.0)
    assert head == pytest.approx(17 * 2.9 * 0.0098, abs=0.005)
    both = sorted(set(top_p) & set(bottom_p))
    assert len(both) > 60 and all(abs(bottom_p[t] - top_p[t] - head) < 0.005 for t in both)

    def starts(a: float, b: float) -> int:
        return sum(1 for m in events(msgs, pump, "start") if m.body["state"] == "active" and a <= m.t - START < b)

    # at rest the pump starts every few hours; once the leak opens (5 min) every few minutes, holding the band
    assert starts(0, 300) <= 1 and starts(300, 2100) >= 6
    in_band = [p for t, p in top_p.items() if 300 <= t - START < 2100]
    assert min(in_band) > 0.2
    # at 35 min the leak outgrows the pump: it runs on and the pressure at the top falls below 0.15 MPa
    assert min(top_p.values()) < 0.15 and telemetry(msgs, pump)[-1].value("running") is True


def test_device_offline_ends_with_the_last_will_and_silence() -> None:
    plan, msgs = simulate("device-offline")
    victim = plan.role("victim")
    mine = [m for m in msgs if m.device == victim]
    assert mine[-1].action == "lastwill" and mine[-1].channel == "status"
    assert mine[-1].body == {"v": 1, "state": "offline", "reason": "last will"}
    assert mine[-1].t == START + 600 and len(mine) > 2
    assert sum(m.action == "lastwill" for m in msgs) == 1


def test_power_loss_silences_every_device_of_the_building_and_they_come_back() -> None:
    plan, msgs = simulate("power-loss", per_kind=2)
    panel = plan.role("panel")
    building = {d.id for d in sample().devices if d.building == sample().device(panel).building}  # type: ignore[union-attr]
    assert set(plan.groups["building"]) == building - {panel} and len(building) == 106  # every device, any kind
    by_device: dict[str, list[Msg]] = defaultdict(list)
    for m in msgs:
        by_device[m.device].append(m)
    assert building <= set(by_device)  # the building's devices run whatever the population per kind
    for dev in building:
        cut = START + (420 if dev == panel else 300)
        gone = [m for m in by_device[dev] if m.action == "lastwill"]
        assert [m.t for m in gone] == [cut], dev  # dropped without DISCONNECT: the broker's last will
        assert not [m for m in by_device[dev] if cut < m.t < START + 2100], dev  # silent while the power is off
        back = [m for m in by_device[dev] if m.t >= START + 2100]
        assert back[0].channel == "status" and back[0].body["state"] == "online", dev  # reconnects at 35 min
    mains = [(m.t - START, m.value("mains_ok")) for m in telemetry(msgs, panel) if m.has("mains_ok")]
    assert [v for t, v in mains if 300 <= t <= 420] and not any(v for t, v in mains if 300 <= t <= 420)
    assert all(v for t, v in mains if t < 300 or t >= 2100) and any(t >= 2100 for t, _v in mains)
    others = {m.device for m in msgs if m.t > START + 600 and m.t < START + 2100}
    assert others and not others & building  # the rest of the community carries on


def test_flapping_sensor_toggles_inside_its_window_only() -> None:
    plan, msgs = simulate("flapping-sensor")
    series = [(m.t - START, m.value("leak")) for m in telemetry(msgs, plan.role("sensor"))]
    inside = [v for t, v in series if 180 <= t < 900]
    toggles = sum(1 for a, b in itertools.pairwise(inside) if a != b)
    assert toggles >= 15
    assert not [v for t, v in series if (t < 180 or t >= 900) and v]


def test_care_inactivity_has_no_door_or_water_activity_in_the_unit() -> None:
    plan, msgs = simulate("care-inactivity", per_kind=3)
    door, water = plan.role("door"), plan.role("water")
    unit = {s: c.unit for c in sample().care_units for s in c.sensors}
    assert unit[door] == unit[water]
    assert {c.level for c in sample().care_units if door in c.sensors} == {"red"}  # 16 h quiet passes its 12 h
    window = START + 16 * 3600
    door_msgs = [m for m in msgs if m.device == door and m.t < window]
    water_msgs = telemetry(msgs, water)
    assert len(door_msgs) >= 16 and len([m for m in water_msgs if m.t < window]) >= 16  # heartbeats go on
    assert not [m for m in door_msgs if m.channel == "event" or (m.channel == "telemetry" and m.value("opened"))]
    quiet = [m for m in water_msgs if m.t < window]
    assert all(m.value("flow") == 0 for m in quiet)
    assert len({m.value("total") for m in quiet}) == 1
    others = {s for c in sample().care_units for s in c.sensors} - {door, water}
    assert [m for m in msgs if m.device in others and m.channel == "event" and m.t < window]  # life goes on


def test_scenarios_compose_with_offsets_and_namespaced_roles(tmp_path: Path) -> None:
    f = tmp_path / "combo.yaml"
    f.write_text("name: combo\ndescription: a gas leak, then a fire ten minutes later\nduration: 30m\n"
                 "include: [gas-leak, {scenario: fire, offset: 10m}]\n", encoding="utf-8")
    plan = scenario.compile_plan(str(f), sample())
    assert {"gas-leak.sensor", "fire.first", "fire.second"} <= set(plan.roles)
    assert len(plan.devices) == len(sample().devices)
    msgs = list(engine.plan_messages(plan, sample(), ROOT, start=START, seed=SEED))
    first = plan.role("fire.first")
    alarm = next(m for m in msgs if m.device_id == first and m.topic.endswith("/event"))
    assert alarm.t == START + 600 + 170


def test_roles_follow_the_community_not_device_ids() -> None:
    """Selectors, not ids: the same scenarios resolve in another community, and pins move the incident."""
    other = community_mod.Community.model_validate(generate.generate(3, seed=11, community_id="elsewhere"))
    for name in ("fire", "gas-leak", "elevator-entrapment", "device-offline", "power-loss"):
        plan = scenario.compile_plan(name, other)
        assert set(plan.roles.values()) <= {d.id for d in other.devices}
    # a scenario needing a red-level home says so where there is none, and runs where there is one
    with pytest.raises(SimulationError, match=r"care-inactivity.yaml:\d+: roles.door: no device in community "
                                              r"elsewhere fits role 'door' \(care_door, in a care unit, "
                                              r"care level red\)"):
        scenario.compile_plan("care-inactivity", other)
    red = community_mod.Community.model_validate(generate.generate(3, seed=1, community_id="red"))
    assert scenario.compile_plan("care-inactivity", red).role("door") == "B3-802-DOOR"
    devices = {d.id: d for d in sample().devices}
    pinned = next(d for d in sample().devices if d.kind == "smoke_detector" and d.building == "B5" and d.floor == 9)
    plan = scenario.compile_plan("fire", sample(), pins={"first": pinned.id})
    second = devices[plan.role("second")]
    assert plan.role("first") == pinned.id and (second.building, second.floor) == ("B5", 9)


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    def output(seed: int) -> bytes:
        req = run.Request(community=sample(), root=ROOT, scenario="fire", fast=True, start=START, seed=seed)
        buf = io.BytesIO()
        run.prepare(req).run_stdout(buf)
        return buf.getvalue()

    a, b, c = output(1), output(1), output(2)
    assert a == b and a != c
    lines = [json.loads(x) for x in a.splitlines()]
    assert all(set(x) == {"topic", "payload"} for x in lines)


# --- bad input: one clear problem with file and line, before anything is published ---------------

GOOD_HEAD = "name: bad\ndescription: a broken scenario\nduration: 10m\n"


@pytest.mark.parametrize(
    ("body", "line", "fragment"),
    [
        ("roles:\n  a: {kind: smoke_detector}\ncolour: red\n", 6, "colour: unknown key"),
        ("roles:\n  a: {kind: smoke_detectr}\n", 5, "unknown device kind 'smoke_detectr'"),
        ("roles:\n  a: {kind: gas}\ntimeline:\n  - {at: 1m, role: a, set: {lell: 30}}\n", 7, "has no field 'lell'"),
        ("roles:\n  a: {kind: gas}\ntimeline:\n  - at: 1m\n    role: a\n    set: {lel: 130}\n", 9,
         "outside the valid range"),
        ("roles:\n  a: {kind: gas}\ntimeline:\n  - {at: soon, role: a, online: true}\n", 7, "not a duration"),
        ("roles:\n  a: {kind: elevator}\ntimeline:\n  - at: 1m\n    role: a\n    event: {code: explode}\n", 9,
         "has no event 'explode'"),
        ("roles:\n  a: {kind: gas}\n  b: {kind: co, same_floor_as: c}\n", 6, "'c' is not a role"),
        ("roles:\n  a: {kind: gas}\ntimeline:\n  - {at: 1m, role: zz, online: true}\n", 7, "unknown role 'zz'"),
        ("roles:\n  a: {kind: gas\n", 6, "not valid YAML"),
        ("timeline:\n  - {at: 20m, role: a, online: true}\n", 5, "after the end of the scenario"),
        ("roles:\n  a: {kind: gas, speed: 3}\n", 5, "speed: unknown key"),
        ("roles:\n  a: {kind: gas}\ntimeline:\n  - {at: 1m, role: a, leak: 0.1}\n", 7,
         "a leak needs a fire-water role"),
        ("roles:\n  a: {kind: fire_panel}\ntimeline:\n  - at: 1m\n    role: a\n    event: {code: fire_alarm, "
         "component: b}\n", 9, "unknown role 'b'"),
        ("roles:\n  a: {kind: smoke_detector}\ntimeline:\n  - at: 1m\n    role: a\n    event: {code: fire_alarm, "
         "component: a}\n", 9, "only a fire_panel reports components"),
        ("roles:\n  a: {kind: fire_panel}\n  b: {kind: smoke_detector, building: B2}\ntimeline:\n  - at: 1m\n"
         "    role: a\n    event: {code: fire_alarm, component: b}\n", 10, "is not in B1-FACP's address table"),
        ("roles:\n  a: {building: B1}\n", 5, "roles.a: a role needs a kind (or every: true"),
        ("roles:\n  a: {kind: gas, care_level: purple}\n", 5, "roles.a.care_level: Input should be 'red'"),
        ("roles:\n  a: {every: true, building: B1}\n  b: {kind: gas, same_floor_as: a}\n", 6,
         "roles.b.same_floor_as: role 'a' is every device that fits"),
        ("roles:\n  a: {every: true, building: B1}\ntimeline:\n  - {at: 1m, role: a, set: {lel: 3}}\n", 7,
         "role 'a' is of any kind"),
        ("roles:\n  a: {kind: gas}\nexpect:\n  incidents:\n    - {category: flood, priority: urgent, title: x}\n", 8,
         "expect.incidents.0.category: 'flood' is not a ticket category"),
        ("roles:\n  a: {kind: gas}\nexpect:\n  incidents:\n    - {category: gas, priority: asap, title: x}\n", 8,
         "expect.incidents.0.priority: Input should be 'urgent', 'general' or 'complex'"),
        ("roles:\n  a: {kind: gas}\nexpect:\n  incidents:\n    - {category: gas, priority: urgent}\n", 8,
         "expect.incidents.0: give the incident's title (exact) or title_prefix"),
        ("roles:\n  a: {kind: gas}\nexpect:\n  incidents:\n    - category: gas\n      priority: urgent\n"
         "      title: x\n      roles: [a, b]\n", 11, "expect.incidents.0.roles.1: unknown role 'b'"),
        ("expect:\n  incidents:\n    - {category: gas, priority: urgent, title: x, colour: red}\n", 6,
         "expect.incidents.0.colour: unknown key"),
        ("expect:\n  tickets: 1\n", 4, "expect.incidents: Field required"),
    ],
)
def test_bad_scenario_files_name_file_line_and_field(tmp_path: Path, body: str, line: int, fragment: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(GOOD_HEAD + body, encoding="utf-8")
    with pytest.raises(SimulationError) as err:
        scenario.compile_plan(str(f), sample())
    assert f"{f}:{line}:" in str(err.value), str(err.value)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_unresolvable_roles_and_unknown_ids_are_errors_before_publishing(tmp_path: Path) -> None:
    f = tmp_path / "nowhere.yaml"
    f.write_text(GOOD_HEAD + "roles:\n  a: {kind: care_door}\n  b: {kind: elevator, same_unit_as: a}\n",
                 encoding="utf-8")
    with pytest.raises(SimulationError, match=rf"{f}:6: roles.b: no device .* fits role 'b'"):
        scenario.compile_plan(str(f), sample())
    with pytest.raises(SimulationError, match="unknown scenario 'fyre'"):
        run.prepare(run.Request(community=sample(), root=ROOT, scenario="fyre"))
    with pytest.raises(SimulationError, match="unknown device 'NOPE'"):
        run.prepare(run.Request(community=sample(), root=ROOT, scenario="fire", pin=["first=NOPE"]))
    with pytest.raises(SimulationError, match="no role 'third'"):
        run.prepare(run.Request(community=sample(), root=ROOT, scenario="fire", pin=["third=B1-FACP"]))
    with pytest.raises(SimulationError, match="unknown device kind 'lamp'"):
        run.prepare(run.Request(community=sample(), root=ROOT, kinds="lamp"))
    (tmp_path / "other.yaml").write_text(GOOD_HEAD + "include: [nowhere.yaml]\n", encoding="utf-8")
    f.write_text(GOOD_HEAD + "include: [other.yaml]\n", encoding="utf-8")
    with pytest.raises(SimulationError, match="include cycle: nowhere -> other -> nowhere"):
        scenario.compile_plan(str(f), sample())


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDTWIN_")}
    return subprocess.run([sys.executable, "-m", "gateway.cli", "simulate", *args], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=60, check=False)


def test_cli_list_run_and_one_line_errors(tmp_path: Path) -> None:
    r = _cli("--list")
    assert r.returncode == 0 and "fire" in r.stdout and "care-inactivity" in r.stdout
    r = _cli("--scenario", "gas-leak", "--fast", "--stdout", "--start", str(START), "--sim-duration", "10m")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert lines and all(x["payload"]["v"] == 1 for x in lines)
    assert "scenario gas-leak:" in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD_HEAD + "roles:\n  a: {kind: toaster}\n", encoding="utf-8")
    expected = {"fyre": "unknown scenario 'fyre'", str(bad): f"{bad}:5: roles.a.kind: unknown device kind 'toaster'",
                "fire": "unknown device 'NOPE'"}
    for name, message in expected.items():
        r = _cli("--scenario", name, "--pin", "first=NOPE", "--stdout")
        assert r.returncode == 2, (name, r.stderr)
        assert r.stdout == "" and "Traceback" not in r.stderr
        assert r.stderr.startswith("gridtwin: ") and len(r.stderr.strip().splitlines()) == 1
        assert message in r.stderr


# --- hostile --------------------------------------------------------------------------------------

README_REASONS = {"bad_topic", "unknown_device", "too_large", "bad_json", "bad_version", "bad_schema",
                  "too_many_fields", "unknown_field", "bad_type", "out_of_range", "unknown_event", "future_ts",
                  "too_old"}


def test_hostile_covers_every_category_with_known_outcomes() -> None:
    msgs = hostile.generate(sample(), ROOT, 40, seed=5, now_ms=1_764_604_800_000)
    assert len(msgs) == 40
    assert {m.category for m in msgs} == set(hostile.CATEGORIES)
    assert {m.expected for m in msgs} <= README_REASONS | {"accepted", "duplicate", "late"}
    assert {"bad_json", "bad_type", "bad_schema", "too_large", "unknown_device", "bad_topic", "future_ts", "too_old",
            "duplicate", "late", "out_of_range", "unknown_field", "bad_version"} <= {m.expected for m in msgs}
    assert msgs == hostile.generate(sample(), ROOT, 40, seed=5, now_ms=1_764_604_800_000)
    dup = [m for m in msgs if m.category == "duplicate"]
    assert dup[0].payload == dup[1].payload and [m.expected for m in dup] == ["accepted", "duplicate"]
    line = orjson.loads(msgs[0].manifest_line(0))
    assert {"topic", "payload_b64", "expected", "category"} <= set(line)


def test_hostile_expectations_match_the_gateway_validator() -> None:
    """Every expected reason is what the gateway's own edge validator says about that message."""
    now = datetime(2026, 1, 5, 12, tzinfo=UTC)
    msgs = hostile.generate(sample(), ROOT, 60, seed=9, now_ms=round(now.timestamp() * 1000))
    devices = [DeviceRef(i + 1, sample().id, d.id, d.kind) for i, d in enumerate(sample().devices)]
    metrics = {name: i + 1 for i, (name, _unit) in enumerate(catalogue.all_metric_names())}
    v = Validator(Registry.build(devices, metrics), root=ROOT, max_bytes=16_384, max_fields=64, max_future_s=300,
                  max_age_s=30 * 86400)
    for i, m in enumerate(msgs):
        got = v.check(m.topic, m.payload, now + timedelta(milliseconds=i))
        if m.expected in ("accepted", "duplicate"):
            assert isinstance(got, Accepted) and all(r[4] == 0 for r in got.readings), (m.category, got)
        elif m.expected == "late":
            assert isinstance(got, Accepted) and all(r[4] & FLAG_LATE for r in got.readings), m.category
        else:
            assert isinstance(got, Rejected) and got.reason == m.expected, (m.category, m.note, got)


def test_stdout_writes_payload_b64_for_non_json() -> None:
    req = run.Request(community=sample(), root=ROOT, hostile=True, count=30, seed=1)
    buf = io.BytesIO()
    run.prepare(req).run_stdout(buf)
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert len(lines) == 30
    assert any("payload_b64" in x for x in lines) and any("payload" in x for x in lines)
    assert all(set(x) in ({"topic", "payload"}, {"topic", "payload_b64"}) for x in lines)


def test_wire_encoding_helpers() -> None:
    # the wire publisher's packets come from the shared pure codec (twin.mqtt_codec)
    assert [mqtt_codec.varint(n) for n in (0, 127, 128, 16_383, 16_384)] == [
        b"\x00", b"\x7f", b"\x80\x01", b"\xff\x7f", b"\x80\x80\x01"]
    # CONNACK properties: session expiry (4 bytes), assigned client id (string), receive maximum 20
    props = b"\x11\x00\x00\x00\x3c" + b"\x12\x00\x03abc" + b"\x21\x00\x14"
    assert mqtt_codec.receive_maximum(props) == 20
    assert mqtt_codec.receive_maximum(b"\x24\x01") == 65_535
