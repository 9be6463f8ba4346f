"""Fire water and fire panel rules: thresholds at a riser's most unfavourable point, drops from a learned normal,
pressure-holding pump cycling, and a fire panel's alarm placed at the component that tripped. Pure, fast."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta

import pytest

from twin.alarms import EventKind
from twin.community import Community
from twin.hydraulics import MPA_PER_METRE
from twin.rules import Engine, RulesError, load_rules

T0 = datetime(2025, 6, 2, 0, 0, tzinfo=UTC)
_SQUARE = [[0, 0], [20, 0], [20, 20], [0, 20]]
FLOOR_H = 3.0
TOWER = Community.model_validate({
    "version": 1, "id": "t", "name": "t", "origin": [30.27, 120.16],
    "buildings": [{"id": "B1", "name": "1号楼", "footprint": _SQUARE, "floors_above": 33, "floors_below": 1,
                   "floor_height": FLOOR_H}],
    "devices": [
        {"id": "HYD-TOP", "kind": "hydrant_pressure", "building": "B1", "floor": 33},
        {"id": "HYD-F1", "kind": "hydrant_pressure", "building": "B1", "floor": 1},
        {"id": "HYD-B1", "kind": "hydrant_pressure", "building": "B1", "floor": -1},
        {"id": "PUMP", "kind": "fire_pump", "building": "B1", "floor": 33},
        {"id": "SD-F7", "kind": "smoke_detector", "building": "B1", "floor": 7},
        {"id": "MCP-F9", "kind": "manual_call_point", "building": "B1", "floor": 9},
        {"id": "FACP", "kind": "fire_panel", "building": "B1", "floor": 1,
         "components": {"1-7": "SD-F7", "1-9": "MCP-F9"}},
        {"id": "NOWHERE", "kind": "hydrant_pressure"},
    ],
})


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def rules_text(body: str) -> str:
    return "version: 1\nrules:\n" + textwrap.indent(textwrap.dedent(body).strip("\n"), "  ") + "\n"


def engine(body: str) -> Engine:
    return Engine(load_rules([("t.yaml", rules_text(body))], TOWER), TOWER)


def seen(events: list) -> list[tuple[str, str, str]]:  # type: ignore[type-arg]
    return [(e.kind.value, e.rule, e.subject) for e in events]


def raised(events: list) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return [(e.rule, e.subject) for e in events if e.kind is EventKind.RAISED]


def reading_at(floor: int, top_pressure: float) -> float:
    """What a sensor on ``floor`` of the tower reads while the riser top stands at ``top_pressure`` (water at rest)."""
    storeys = 33 - (floor if floor > 0 else floor + 1)
    return round(top_pressure + storeys * FLOOR_H * MPA_PER_METRE, 4)


# --- thresholds at the most unfavourable point ---------------------------------------------------------

RISER = """
- id: low
  type: threshold
  kind: hydrant_pressure
  field: pressure
  direction: low
  raise: 0.15
  clear: 0.17
  at: most_unfavourable_point
  devices: [HYD-TOP, HYD-F1, HYD-B1]
  severity: major
  dispatch: urgent
  flapping: null
- id: high
  type: threshold
  kind: hydrant_pressure
  field: pressure
  direction: high
  raise: 0.6
  clear: 0.5
  at: most_unfavourable_point
  devices: [HYD-TOP, HYD-F1, HYD-B1]
  severity: minor
  dispatch: general
  flapping: null
"""
SENSORS = {"HYD-TOP": 33, "HYD-F1": 1, "HYD-B1": -1}


def test_the_bottom_of_a_33_floor_riser_reads_its_static_head_and_does_not_false_alarm() -> None:
    assert reading_at(-1, 0.28) == pytest.approx(0.28 + 33 * 3 * 0.0098, abs=0.001)  # ~1.25 MPa in the basement
    e = engine(RISER)
    t = 0.0
    for top in (0.34, 0.30, 0.26, 0.22, 0.30):  # the pressure-holding band at the top, all day
        for dev, floor in SENSORS.items():
            assert e.on_reading(dev, at(t), {"pressure": reading_at(floor, top)}) == []
            t += 10
    # the same readings under one sensor-level limit (the catalogue's 1.0 MPa zone limit) alarm at the bottom
    single = engine(RISER.replace("at: most_unfavourable_point\n  devices: [HYD-TOP, HYD-F1, HYD-B1]\n  severity: "
                                  "minor", "devices: [HYD-TOP, HYD-F1, HYD-B1]\n  severity: minor").replace(
                                  "raise: 0.6\n  clear: 0.5", "raise: 1.05\n  clear: 1.0"))
    out = [ev for dev, floor in SENSORS.items() for ev in single.on_reading(dev, at(0), {"pressure":
                                                                                       reading_at(floor, 0.28)})]
    assert sorted(raised(out)) == [("high", "HYD-B1"), ("high", "HYD-F1")]


def test_a_lost_riser_top_alarms_at_every_height_and_clears_with_hysteresis() -> None:
    e = engine(RISER)
    out = [ev for dev, floor in SENSORS.items() for ev in e.on_reading(dev, at(0), {"pressure":
                                                                                  reading_at(floor, 0.14)})]
    assert sorted(raised(out)) == [("low", "HYD-B1"), ("low", "HYD-F1"), ("low", "HYD-TOP")]
    bottom = next(ev for ev in out if ev.subject == "HYD-B1")
    assert bottom.detail.startswith("at the most unfavourable point (riser top): pressure=0.14 MPa (<= 0.15)")
    assert bottom.floor == -1 and bottom.building == "B1"
    # 0.16 at the top is inside the hysteresis band: nothing; 0.17 clears, at every height alike
    assert e.on_reading("HYD-B1", at(10), {"pressure": reading_at(-1, 0.16)}) == []
    assert seen(e.on_reading("HYD-B1", at(20), {"pressure": reading_at(-1, 0.171)})) == [("cleared", "low", "HYD-B1")]
    # an over-pressure at the top (the jockey pump did not cut out) is seen from the basement too
    assert raised(e.on_reading("HYD-B1", at(30), {"pressure": reading_at(-1, 0.65)})) == [("high", "HYD-B1")]


def test_a_riser_top_threshold_survives_a_restart() -> None:
    body = RISER.replace("clear: 0.17\n", "clear: 0.17\n  for: 30s\n", 1)
    e = engine(body)
    assert e.on_reading("HYD-F1", at(0), {"pressure": reading_at(1, 0.1)}) == []  # pending for 30 s
    e2 = Engine.restore(e.ruleset, TOWER, json.loads(json.dumps(e.snapshot())))
    assert raised(e2.tick(at(31))) == [("low", "HYD-F1")]


# --- drop from the learned normal ------------------------------------------------------------------------

DROP = """
- id: below_normal
  type: drop_from_normal
  kind: hydrant_pressure
  field: pressure
  unit: MPa
  drop: 0.08
  for: 1m
  learn: 24h
  warmup: 20m
  min_samples: 10
  devices: [HYD-TOP, HYD-F1]
  severity: major
  dispatch: urgent
  flapping: null
"""


def _learn(e: Engine, dev: str, floor: int, minutes: int, *, start: float = 0.0) -> float:
    """A minute-by-minute sawtooth between 0.24 and 0.32 MPa at the top for ``minutes``; returns the next time."""
    t = start
    for m in range(minutes):
        top = 0.32 - 0.08 * ((m % 8) / 8)
        assert e.on_reading(dev, at(t), {"pressure": reading_at(floor, top)}) == []
        t += 60
    return t


def test_drop_from_normal_learns_first_then_raises_a_sustained_drop_and_clears_at_half() -> None:
    e = engine(DROP)
    assert e.on_reading("HYD-F1", at(0), {"pressure": 0.1}) == []  # nothing learned yet: only learns
    e = engine(DROP)
    t = _learn(e, "HYD-F1", 1, 30)
    normal = e._evaluators["below_normal"].normal("HYD-F1", at(t).timestamp())  # type: ignore[attr-defined]
    assert normal == pytest.approx(reading_at(1, 0.285), abs=0.01)  # the middle of the band, at this height
    # the bottom of the sawtooth (0.04 below the middle) is normal; 0.09 below, for a minute, is not
    assert e.on_reading("HYD-F1", at(t), {"pressure": round(normal - 0.04, 4)}) == []
    assert e.on_reading("HYD-F1", at(t + 60), {"pressure": round(normal - 0.09, 4)}) == []  # pending
    assert e.on_reading("HYD-F1", at(t + 90), {"pressure": round(normal - 0.1, 4)}) == []
    ev = e.tick(at(t + 121))
    assert raised(ev) == [("below_normal", "HYD-F1")]
    assert "0.1 MPa below its learned normal" in ev[0].detail and "for 1m" in ev[0].detail
    assert e.on_reading("HYD-F1", at(t + 180), {"pressure": round(normal - 0.05, 4)}) == []  # not within half yet
    assert seen(e.on_reading("HYD-F1", at(t + 240), {"pressure": round(normal - 0.03, 4)})) == [
        ("cleared", "below_normal", "HYD-F1")]


def test_a_slow_leak_does_not_teach_the_rule_that_low_is_normal() -> None:
    e = engine(DROP.replace("for: 1m", "for: 0s"))
    t = _learn(e, "HYD-TOP", 33, 12 * 60)  # half a day of normal sawtooth
    before = e._evaluators["below_normal"].normal("HYD-TOP", at(t).timestamp())  # type: ignore[attr-defined]
    assert before is not None
    out = []
    for k in range(240):  # four hours, falling 0.5 kPa a minute: the reading leaves the band and stays low
        out += e.on_reading("HYD-TOP", at(t + 60 * k), {"pressure": round(before - 0.0005 * k, 4)})
    assert raised(out) == [("below_normal", "HYD-TOP")]
    after = e._evaluators["below_normal"].normal("HYD-TOP", at(t + 60 * 240).timestamp())  # type: ignore[attr-defined]
    assert after == pytest.approx(before, abs=0.02)


def test_drop_from_normal_runs_on_the_engine_clock_and_survives_a_restart() -> None:
    e = engine(DROP)
    skew = timedelta(hours=-7)  # the sensor's clock is 7 h behind: its readings still count when received
    t = 0.0
    for m in range(30):
        top = 0.32 - 0.08 * ((m % 8) / 8)
        e.on_reading("HYD-TOP", at(t) + skew, {"pressure": reading_at(33, top)}, received=at(t))
        t += 60
    assert e.on_reading("HYD-TOP", at(t) + skew, {"pressure": 0.15}, received=at(t)) == []  # pending, for 1m
    snap = json.loads(json.dumps(e.snapshot()))
    e2 = Engine.restore(e.ruleset, TOWER, snap)
    assert e2.tick(at(t + 59)) == []
    assert raised(e2.tick(at(t + 60))) == [("below_normal", "HYD-TOP")]


# --- pressure-holding pump cycling -------------------------------------------------------------------

CYCLING = """
- id: cycling
  type: pump_cycling
  kind: fire_pump
  event: start
  starts: 3
  within: 30m
  severity: major
  dispatch: urgent
  flapping: null
"""


def test_pump_starting_three_times_in_half_an_hour_raises_and_clears_when_the_window_passes() -> None:
    e = engine(CYCLING)
    normal = [e.on_event("PUMP", at(h * 4 * 3600), "start", "active") for h in range(6)]  # every 4 h: normal
    assert all(x == [] for x in normal)
    t = 6 * 4 * 3600.0
    out = []
    for k in range(3):  # a leak: the pump restarts every 6 minutes
        out += e.on_event("PUMP", at(t + 360 * k), "start", "active")
        out += e.on_event("PUMP", at(t + 360 * k + 50), "start", "cleared")
    assert seen(out) == [("raised", "cycling", "PUMP")]
    assert out[0].detail.startswith("3 starts within 12m (limit 3 in 30m)")
    assert [ev.kind.value for ev in e.on_event("PUMP", at(t + 1080), "start", "active")] == ["updated"]
    assert e.tick(at(t + 360 + 1800)) == []  # the starts at 6, 12 and 18 min are still within 30 min
    assert seen(e.tick(at(t + 720 + 1801))) == [("cleared", "cycling", "PUMP")]


def test_pump_cycling_counts_on_the_engine_clock_and_survives_a_restart() -> None:
    e = engine(CYCLING)
    behind = timedelta(days=-1)  # the pump's clock is a day behind: its starts count when received
    for k in range(2):
        assert e.on_event("PUMP", at(900 * k) + behind, "start", "active", received=at(900 * k)) == []
    e2 = Engine.restore(e.ruleset, TOWER, json.loads(json.dumps(e.snapshot())))
    ev = e2.on_event("PUMP", at(1700) + behind, "start", "active", received=at(1700))
    assert raised(ev) == [("cycling", "PUMP")] and ev[0].raised_at == at(1700)
    # after an outage the pump sends a backlog: a start older than its newest counts where it belongs (device time
    # less the pump's offset), here 40 min ago: outside the window, so it changes nothing
    e3 = engine(CYCLING)
    for k in range(2):
        e3.on_event("PUMP", at(3000 + 600 * k) + behind, "start", "active", received=at(3000 + 600 * k))
    assert e3.on_event("PUMP", at(1200) + behind, "start", "active", received=at(3700)) == []
    assert raised(e3.on_event("PUMP", at(3300) + behind, "start", "active", received=at(3800))) == [
        ("cycling", "PUMP")]


def test_pump_cycling_from_the_pressure_sawtooth_and_from_a_running_field() -> None:
    saw = CYCLING.replace("kind: fire_pump\n  event: start", "kind: hydrant_pressure\n  field: pressure\n  rise: 0.04")
    e = engine(saw)
    out = []
    t = 0.0
    for _cycle in range(3):  # falls 0.08 over 5 min (noise 2 kPa), then the pump restores it in a minute
        for k in range(6):
            noise = 0.002 if k % 2 else -0.002
            out += e.on_reading("HYD-TOP", at(t), {"pressure": round(0.32 - 0.016 * k + noise, 4)})
            t += 60
        out += e.on_reading("HYD-TOP", at(t), {"pressure": 0.30})  # restoring
        out += e.on_reading("HYD-TOP", at(t + 30), {"pressure": 0.32})  # still rising: the same start
        t += 60
    assert seen(out) == [("raised", "cycling", "HYD-TOP")]
    assert "pressure rose from" in out[0].detail
    run = CYCLING.replace("event: start", "field: running")
    e = engine(run)
    out = []
    for k in range(4):
        out += e.on_reading("PUMP", at(300 * k), {"running": k % 2 == 1})
        out += e.on_reading("PUMP", at(300 * k + 100), {"running": k % 2 == 1})
    assert out == []  # two starts (k = 1, 3): not yet three
    assert raised(e.on_reading("PUMP", at(1500), {"running": False}) + e.on_reading("PUMP", at(1600),
                                                                                    {"running": True})) == [
        ("cycling", "PUMP")]


# --- validation ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "problem"), [
    (RISER.replace("kind: hydrant_pressure\n  field: pressure\n  direction: low",
                   "kind: smoke_detector\n  field: obscuration\n  direction: low", 1),
     "t.yaml:10: rules.low.at: most_unfavourable_point needs a pipe pressure in MPa; smoke_detector.obscuration is "
     "in '%/m'"),
    (RISER.replace("  devices: [HYD-TOP, HYD-F1, HYD-B1]\n", "", 1),
     "t.yaml:10: rules.low.at: NOWHERE has no building and floor"),
    (RISER.replace("at: most_unfavourable_point", "at: roof", 1),
     "t.yaml:10: rules.low.at: Input should be 'sensor' or 'most_unfavourable_point'"),
    (DROP.replace("  drop: 0.08\n", ""), "t.yaml:3: rules.below_normal: give drop (field units), drop_pct (%) or"),
    (DROP.replace("drop: 0.08", "drop_pct: 120"), "t.yaml:8: rules.below_normal.drop_pct: Input should be less "
                                                   "than 100"),
    (DROP.replace("drop: 0.08", "drop: 5"), "t.yaml:8: rules.below_normal.drop: 5 is more than the whole valid "
                                            "range of pressure"),
    (DROP.replace("warmup: 20m", "warmup: 2d"), "t.yaml:11: rules.below_normal.warmup: is longer than learn"),
    (DROP.replace("learn: 24h", "learn: soon"), "t.yaml:10: rules.below_normal.learn: 'soon' is not a duration"),
    (CYCLING.replace("  event: start\n", ""), "t.yaml:3: rules.cycling: give exactly one of event"),
    (CYCLING.replace("event: start", "event: started"), "t.yaml:6: rules.cycling.event: fire_pump has no event "
                                                        "'started'"),
    (CYCLING.replace("event: start", "field: outlet_pressure"), "t.yaml:3: rules.cycling.rise: required for "
                                                                "fire_pump.outlet_pressure"),
    (CYCLING.replace("event: start", "field: running\n  rise: 0.1"), "t.yaml:7: rules.cycling.rise: running is "
                                                                     "true/false"),
    (CYCLING.replace("starts: 3", "starts: 1"), "t.yaml:7: rules.cycling.starts: Input should be greater than or "
                                                "equal to 2"),
])
def test_bad_fire_water_rules_name_file_line_and_key(body: str, problem: str) -> None:
    with pytest.raises(RulesError) as exc:
        load_rules([("t.yaml", rules_text(body))], TOWER)
    assert any(p.startswith(problem) for p in exc.value.problems), exc.value.problems


# --- the fire panel's alarm at the component that tripped ---------------------------------------------

PANEL_FIRE = """
- id: panel_fire
  type: state
  kind: fire_panel
  event: fire_alarm
  severity: critical
  dispatch: urgent
  flapping: null
"""


def test_a_panel_fire_alarm_is_placed_at_the_component_its_address_names() -> None:
    e = engine(PANEL_FIRE)
    ev = e.on_event("FACP", at(0), "fire_alarm", "active", detail="component 01-007: smoke")
    assert seen(ev) == [("raised", "panel_fire", "SD-F7")]
    assert (ev[0].building, ev[0].floor, ev[0].device) == ("B1", 7, "SD-F7")
    assert ev[0].detail == "fire_alarm active (reported by FACP, component 1-7)"
    ev = e.on_event("FACP", at(5), "fire_alarm", "active", detail="component 1-9")
    assert seen(ev) == [("raised", "panel_fire", "MCP-F9")] and ev[0].floor == 9
    # each component clears on its own
    assert seen(e.on_event("FACP", at(60), "fire_alarm", "cleared", detail="component 1-7")) == [
        ("cleared", "panel_fire", "SD-F7")]
    assert e.alarm("panel_fire", "MCP-F9").status.active  # type: ignore[union-attr]


def test_an_unknown_address_still_alarms_at_the_panel_and_a_reset_clears_everything() -> None:
    e = engine(PANEL_FIRE)
    a = e.on_event("FACP", at(0), "fire_alarm", "active", detail="component 2-99 smoke")
    b = e.on_event("FACP", at(1), "fire_alarm", "active", detail="component 2-98")
    c = e.on_event("FACP", at(2), "fire_alarm", "active", detail="component 1-7")
    d = e.on_event("FACP", at(3), "fire_alarm", "active", detail="no address given")
    assert [x[0].subject for x in (a, b, c, d)] == ["FACP#2-99", "FACP#2-98", "SD-F7", "FACP"]
    assert (a[0].device, a[0].floor) == ("FACP", 1)
    assert "component 2-99: not in FACP's address table, placed at the panel" in a[0].detail
    # the first unknown address clearing leaves the other burning (no fire alarm dropped)
    assert seen(e.on_event("FACP", at(10), "fire_alarm", "cleared", detail="component 2-99")) == [
        ("cleared", "panel_fire", "FACP#2-99")]
    # the state survives a restart; a panel reset (no address) then clears every component and the panel
    e2 = Engine.restore(e.ruleset, TOWER, json.loads(json.dumps(e.snapshot())))
    out = e2.on_event("FACP", at(20), "fire_alarm", "cleared", detail="reset")
    assert sorted(s for k, _r, s in seen(out) if k == "cleared") == ["FACP", "FACP#2-98", "SD-F7"]


def test_panel_events_are_late_per_component() -> None:
    e = engine(PANEL_FIRE)
    assert raised(e.on_event("FACP", at(10), "fire_alarm", "active", detail="component 1-7"))
    # an older report of another component arrives after it (store and forward): not late, it alarms
    assert raised(e.on_event("FACP", at(5), "fire_alarm", "active", detail="component 1-9")) == [
        ("panel_fire", "MCP-F9")]
    # an older clear of the first component is late: it does not clear the newer alarm
    assert e.on_event("FACP", at(8), "fire_alarm", "cleared", detail="component 1-7") == []
    # nor does a reset older than it (store and forward): it clears only what was reported before it
    assert seen(e.on_event("FACP", at(7), "fire_alarm", "cleared", detail="reset")) == [
        ("cleared", "panel_fire", "MCP-F9")]
    assert e.alarm("panel_fire", "SD-F7").status.active  # type: ignore[union-attr]


def test_the_alarm_service_hands_the_event_detail_to_the_engine() -> None:
    from gateway.alarms.service import AlarmService

    placed = TOWER.model_copy(update={"devices": [d for d in TOWER.devices if d.id != "NOWHERE"]})
    svc = AlarmService(placed, None, root="gt", publish=lambda *_a: None, live=None)
    out = svc.on_event("FACP", at(0), "fire_alarm", "active", "component 1-9: call point pressed")
    assert [(e.rule, e.subject, e.floor) for e in out] == [("panel_fire_alarm", "MCP-F9", 9)]
