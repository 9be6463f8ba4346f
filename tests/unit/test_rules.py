"""Alarm rules engine and alarm lifecycle: pure, fast tests at the boundaries of every rule kind."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta

import pytest

from benchmarks.rules import bench_rules
from gateway.cli_base import sample_community_path
from twin import catalogue, contract
from twin.alarms import AlarmError, AlarmStatus, EventKind, Severity
from twin.community import Community, parse
from twin.rules import (
    DEFAULTS_FILE,
    Engine,
    RulesError,
    StateRule,
    load_rules,
    parse_duration,
    replay,
)

T0 = datetime(2025, 6, 2, 0, 0, tzinfo=UTC)  # 08:00 in China Standard Time


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


_SQUARE = [[0, 0], [20, 0], [20, 20], [0, 20]]
COMMUNITY = Community.model_validate({
    "version": 1, "id": "test", "name": "test", "origin": [30.27, 120.16],
    "buildings": [{"id": "B1", "name": "1号楼", "footprint": _SQUARE, "floors_above": 6, "floors_below": 1}],
    "devices": [
        {"id": "SD1", "kind": "smoke_detector", "building": "B1", "floor": 1},
        {"id": "SD2", "kind": "smoke_detector", "building": "B1", "floor": 1},
        {"id": "SD3", "kind": "smoke_detector", "building": "B1", "floor": 2},
        {"id": "HD1", "kind": "heat_detector", "building": "B1", "floor": 1},
        {"id": "GAS", "kind": "gas", "building": "B1", "floor": -1},
        {"id": "GAS2", "kind": "gas", "building": "B1", "floor": -1},
        {"id": "HYD", "kind": "hydrant_pressure", "building": "B1", "floor": 1},
        {"id": "DOOR", "kind": "fire_door", "building": "B1", "floor": 2},
        {"id": "LIFT", "kind": "elevator", "building": "B1"},
        {"id": "LEAK", "kind": "water_leak", "building": "B1", "floor": -1},
        {"id": "CD", "kind": "care_door", "building": "B1", "floor": 5},
        {"id": "CW", "kind": "care_water", "building": "B1", "floor": 5},
    ],
    "care_units": [{"unit": "B1-501", "building": "B1", "floor": 5, "level": "red", "sensors": ["CD", "CW"]}],
})


PANEL = Community.model_validate({
    "version": 1, "id": "p", "name": "p", "origin": [30.27, 120.16],
    "buildings": [{"id": "B1", "name": "1号楼", "footprint": _SQUARE, "floors_above": 2}],
    "devices": [{"id": "FACP", "kind": "fire_panel", "building": "B1", "floor": 1}],
})


def rules_text(body: str) -> str:
    return "version: 1\nrules:\n" + textwrap.indent(textwrap.dedent(body).strip("\n"), "  ") + "\n"


def engine(body: str) -> Engine:
    return Engine(load_rules([("t.yaml", rules_text(body))], COMMUNITY), COMMUNITY)


def seen(events: list) -> list[tuple[str, str, str]]:  # type: ignore[type-arg]
    return [(e.kind.value, e.rule, e.subject) for e in events]


GAS = """
- id: gas1
  type: threshold
  kind: gas
  field: lel
  direction: high
  raise: 25
  clear: 20
  severity: major
  dispatch: urgent
  flapping: null
"""

# --- durations -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("5m", 300), ("2h", 7200), ("1d", 86400),
                                               ("1h30m", 5400), ("0.5s", 0.5)])
def test_durations_accepted(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["5", 5, "5 min", "-5m", "", "5x", "m", None, True])
def test_durations_rejected(bad: object) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(bad)


# --- threshold with hysteresis ---------------------------------------------------------------------


def test_threshold_raises_exactly_at_the_threshold_and_holds_inside_the_band() -> None:
    e = engine(GAS)
    assert e.on_reading("GAS", at(0), {"lel": 24.99}) == []
    ev = e.on_reading("GAS", at(1), {"lel": 25.0})
    assert seen(ev) == [("raised", "gas1", "GAS")]
    assert ev[0].severity is Severity.MAJOR and ev[0].dispatch == "urgent" and ev[0].floor == -1
    assert e.on_reading("GAS", at(2), {"lel": 22}) == []  # inside the hysteresis band: still raised
    assert e.on_reading("GAS", at(3), {"lel": 20.0}) == []  # at clear: not below it
    assert seen(e.on_reading("GAS", at(4), {"lel": 19.9})) == [("cleared", "gas1", "GAS")]
    assert e.on_reading("GAS", at(5), {"lel": 24}) == []  # inside the band from below: stays clear
    assert e.alarm("gas1", "GAS").status is AlarmStatus.CLEARED_UNACK  # type: ignore[union-attr]


def test_threshold_low_direction() -> None:
    e = engine("""
    - {id: p_low, type: threshold, kind: hydrant_pressure, field: pressure, unit: MPa, direction: low,
       raise: 0.14, clear: 0.16, severity: major, dispatch: urgent}
    """)
    assert e.on_reading("HYD", at(0), {"pressure": 0.15}) == []
    assert seen(e.on_reading("HYD", at(1), {"pressure": 0.14})) == [("raised", "p_low", "HYD")]
    assert e.on_reading("HYD", at(2), {"pressure": 0.16}) == []
    assert seen(e.on_reading("HYD", at(3), {"pressure": 0.161})) == [("cleared", "p_low", "HYD")]


def test_out_of_order_readings_do_not_drive_rules() -> None:
    e = engine(GAS)
    e.on_reading("GAS", at(10), {"lel": 30})
    assert e.on_reading("GAS", at(5), {"lel": 0}) == []  # late: would have cleared
    assert e.alarm("gas1", "GAS").status is AlarmStatus.ACTIVE_UNACK  # type: ignore[union-attr]
    assert e.late == 1


def test_one_active_alarm_per_subject_and_rule_counts_repeats() -> None:
    e = engine("""
    - {id: lift_fault, type: state, kind: elevator, event: [overspeed, overtravel_top], severity: major,
       dispatch: urgent}
    """)
    assert seen(e.on_event("LIFT", at(0), "overspeed", "active")) == [("raised", "lift_fault", "LIFT")]
    ev = e.on_event("LIFT", at(5), "overtravel_top", "active")
    assert seen(ev) == [("updated", "lift_fault", "LIFT")] and ev[0].count == 2
    ev = e.on_event("LIFT", at(9), "overspeed", "active")
    assert ev[0].count == 3 and ev[0].raised_at == at(0) and len(e.alarms()) == 1
    assert e.alarm("lift_fault", "LIFT").last_seen == at(9)  # type: ignore[union-attr]
    assert e.on_event("LIFT", at(10), "overspeed", "cleared") == []  # overtravel_top still active
    assert seen(e.on_event("LIFT", at(11), "overtravel_top", "cleared")) == [("cleared", "lift_fault", "LIFT")]


# --- durations (pending) and restart ---------------------------------------------------------------


PENDING = """
- {id: lel_30s, type: threshold, kind: gas, field: lel, direction: high, raise: 25, clear: 20, for: 30s,
   severity: major, dispatch: urgent}
- {id: door_open, type: duration, kind: fire_door, field: closed, equals: false, for: 5m, severity: minor,
   dispatch: general}
"""


def test_threshold_for_raises_after_the_pending_period_and_a_dip_resets_it() -> None:
    e = engine(PENDING)
    assert e.on_reading("GAS", at(0), {"lel": 26}) == []
    assert e.tick(at(29.9)) == []
    assert e.on_reading("GAS", at(20), {"lel": 24}) == []  # below raise: the 30 s start again
    e.on_reading("GAS", at(21), {"lel": 26})
    assert e.tick(at(50.9)) == []
    ev = e.tick(at(51))
    assert seen(ev) == [("raised", "lel_30s", "GAS")] and ev[0].at == at(51)
    # exactly at the boundary through a reading as well
    e2 = engine(PENDING)
    e2.on_reading("GAS", at(0), {"lel": 26})
    assert seen(e2.on_reading("GAS", at(30), {"lel": 27})) == [("raised", "lel_30s", "GAS")]


def test_duration_survives_a_restart_mid_way() -> None:
    e = engine(PENDING)
    e.on_reading("DOOR", at(0), {"closed": False})
    e.on_reading("DOOR", at(60), {"closed": False})
    snap = json.loads(json.dumps(e.snapshot()))  # must be plain JSON
    again = Engine.restore(e.ruleset, COMMUNITY, snap)
    assert again.tick(at(299)) == []
    ev = again.tick(at(400))
    assert seen(ev) == [("raised", "door_open", "DOOR")] and ev[0].at == at(300)  # when 5 min were up
    assert seen(again.on_reading("DOOR", at(401), {"closed": True})) == [("cleared", "door_open", "DOOR")]


def test_late_reading_does_not_break_a_pending_duration() -> None:
    e = engine(PENDING)
    e.on_reading("DOOR", at(100), {"closed": False})
    e.on_reading("DOOR", at(50), {"closed": True})  # late: ignored
    assert seen(e.tick(at(400))) == [("raised", "door_open", "DOOR")]


# --- rate of change --------------------------------------------------------------------------------

RATE = """
- {id: drop, type: rate, kind: hydrant_pressure, field: pressure, unit: MPa/min, direction: falling,
   raise: 0.05, clear: 0.01, window: 2m, severity: major, dispatch: urgent, flapping: null}
"""


def test_rate_raises_on_a_fast_drop_and_clears_when_it_stops() -> None:
    e = engine(RATE)
    e.on_reading("HYD", at(0), {"pressure": 0.40})
    assert e.on_reading("HYD", at(30), {"pressure": 0.39}) == []  # 30 s < half the window: no rate yet
    assert e.on_reading("HYD", at(60), {"pressure": 0.38}) == []  # 0.02 MPa/min
    ev = e.on_reading("HYD", at(90), {"pressure": 0.30})  # 0.1 MPa over 90 s = 0.067/min
    assert seen(ev) == [("raised", "drop", "HYD")] and "falling" in ev[0].detail
    e.on_reading("HYD", at(150), {"pressure": 0.30})
    e.on_reading("HYD", at(210), {"pressure": 0.30})  # window now 90..210: 0 MPa/min
    assert e.alarm("drop", "HYD").status is AlarmStatus.CLEARED_UNACK  # type: ignore[union-attr]


def test_rate_exactly_at_the_limit_and_out_of_order() -> None:
    e = engine(RATE)
    e.on_reading("HYD", at(0), {"pressure": 0.50})
    assert e.on_reading("HYD", at(45), {"pressure": 0.10}) == []  # span 45 s < min_span 60 s: undecided
    e2 = engine(RATE)
    e2.on_reading("HYD", at(0), {"pressure": 0.50})
    assert seen(e2.on_reading("HYD", at(60), {"pressure": 0.45})) == [("raised", "drop", "HYD")]  # exactly 0.05
    e3 = engine(RATE)
    e3.on_reading("HYD", at(0), {"pressure": 0.50})
    e3.on_reading("HYD", at(60), {"pressure": 0.50})
    assert e3.on_reading("HYD", at(30), {"pressure": 0.0}) == []  # a late reading would fake a huge drop
    assert e3.on_reading("HYD", at(90), {"pressure": 0.50}) == []


# --- no data / offline -----------------------------------------------------------------------------

NODATA = """
- {id: offline, type: no_data, kind: [gas, water_leak], offline_for: 1m, severity: minor, dispatch: general}
"""


def test_no_data_after_two_catalogue_heartbeats() -> None:
    e = engine(NODATA)
    after = catalogue.KINDS["gas"].heartbeat_s * 2
    e.on_reading("GAS", at(0), {"lel": 1})
    e.on_reading("GAS2", at(0), {"lel": 1})
    e.on_reading("LEAK", at(0), {"leak": False})
    e.on_reading("GAS2", at(after - 1), {"lel": 1})
    assert e.tick(at(after - 1)) == []
    ev = e.tick(at(after + 30))
    assert ("raised", "offline", "GAS") in seen(ev) and ev[0].at == at(after)
    assert all(x.subject != "GAS2" for x in ev)
    assert e.tick(at(after + 60)) == []  # one alarm, not one per tick
    assert seen(e.on_reading("GAS", at(after + 61), {"lel": 1})) == [("cleared", "offline", "GAS")]


def test_offline_status_raises_after_offline_for_and_online_clears() -> None:
    e = engine(NODATA)
    e.on_reading("LEAK", at(0), {"leak": False})
    assert e.on_status("LEAK", at(10), online=False) == []
    assert e.tick(at(69)) == []
    ev = e.tick(at(75))
    assert seen(ev) == [("raised", "offline", "LEAK")] and ev[0].at == at(70) and "offline" in ev[0].detail
    assert seen(e.on_status("LEAK", at(80), online=True)) == [("cleared", "offline", "LEAK")]


def test_an_outage_between_two_ticks_is_raised_when_the_device_is_heard_again() -> None:
    """Messages in a burst (a backlog after a restart, a scenario replayed flat out) may carry a device's whole
    outage between two ticks: it is raised when it fell due, then cleared, as ticks every second would have."""
    e = engine(NODATA)
    e.on_reading("LEAK", at(0), {"leak": False})
    e.on_reading("GAS", at(0), {"lel": 1})
    assert e.on_status("LEAK", at(10), online=False) == []
    ev = e.on_status("LEAK", at(600), online=True)  # no tick from 10 s to 600 s
    assert seen(ev) == [("raised", "offline", "LEAK"), ("cleared", "offline", "LEAK")]
    assert ev[0].at == at(70) and "reported offline for 1m" in ev[0].detail and ev[1].at == at(600)
    silent = catalogue.KINDS["gas"].heartbeat_s * 2
    ev = e.on_reading("GAS", at(silent + 5), {"lel": 1})  # silent past its limit, no tick in between
    assert seen(ev) == [("raised", "offline", "GAS"), ("cleared", "offline", "GAS")] and ev[0].at == at(silent)
    assert e.on_reading("GAS", at(silent + 6), {"lel": 1}) == []  # heard in time: nothing


# --- count in window -------------------------------------------------------------------------------

COUNT = """
- {id: door_faults, type: count, kind: fire_door, event: fault, count: 3, within: 1h, severity: minor,
   dispatch: complex}
"""


def test_count_in_window_raises_at_n_and_clears_when_the_window_moves_on() -> None:
    e = engine(COUNT)
    e.on_event("DOOR", at(0), "fault", "active")
    e.on_event("DOOR", at(1000), "fault", "cleared")
    e.on_event("DOOR", at(2000), "fault", "active")
    ev = e.on_event("DOOR", at(3600), "fault", "active")  # exactly 1 h after the first
    assert seen(ev) == [("raised", "door_faults", "DOOR")] and ev[0].dispatch == "complex"
    assert e.tick(at(3600)) == []  # the window ending now still holds 3
    assert seen(e.tick(at(3601))) == [("cleared", "door_faults", "DOOR")]  # the one at 0 left it


def test_count_spread_out_does_not_raise_and_late_events_count() -> None:
    e = engine(COUNT)
    e.on_event("DOOR", at(0), "fault", "active")
    e.on_event("DOOR", at(3000), "fault", "active")
    assert e.on_event("DOOR", at(3601), "fault", "active") == []  # 0..3601 is longer than 1 h
    assert seen(e.on_event("DOOR", at(2000), "fault", "active")) == [("raised", "door_faults", "DOOR")]


# --- correlation (fire confirmation) ---------------------------------------------------------------

FIRE = """
- id: pre
  type: correlation
  scope: device
  min_devices: 1
  signals: [{kind: smoke_detector, event: fire_alarm}, {kind: heat_detector, event: fire_alarm}, {rule: rise}]
  severity: major
  dispatch: urgent
- id: fire_confirmed
  type: correlation
  scope: floor
  min_devices: 2
  within: 60s
  signals: [{kind: smoke_detector, event: fire_alarm}, {kind: heat_detector, event: fire_alarm}, {rule: rise}]
  severity: critical
  dispatch: urgent
- {id: rise, type: rate, kind: heat_detector, field: temperature, direction: rising, raise: 8, window: 1m,
   min_span: 20s, severity: minor, dispatch: none}
- {id: shielded, type: state, kind: [smoke_detector, heat_detector], event: shielded, severity: warning,
   dispatch: general}
"""


def test_two_detectors_on_one_floor_within_60s_confirm_a_fire() -> None:
    e = engine(FIRE)
    assert seen(e.on_event("SD1", at(0), "fire_alarm", "active")) == [("raised", "pre", "SD1")]
    ev = e.on_event("SD2", at(45), "fire_alarm", "active")
    assert seen(ev) == [("raised", "pre", "SD2"), ("raised", "fire_confirmed", "B1/F1")]
    fire = ev[1]
    assert fire.severity is Severity.CRITICAL and fire.subject_type == "floor" and fire.building == "B1"
    assert fire.floor == 1 and fire.device is None and "SD1, SD2" in fire.detail


def test_exactly_60s_apart_still_confirms_and_61s_is_a_pre_alarm_only() -> None:
    e = engine(FIRE)
    e.on_event("SD1", at(0), "fire_alarm", "active")
    assert ("raised", "fire_confirmed", "B1/F1") in seen(e.on_event("SD2", at(60), "fire_alarm", "active"))
    e = engine(FIRE)
    e.on_event("SD1", at(0), "fire_alarm", "active")
    assert seen(e.on_event("SD2", at(61), "fire_alarm", "active")) == [("raised", "pre", "SD2")]


def test_detectors_on_different_floors_are_two_pre_alarms() -> None:
    e = engine(FIRE)
    e.on_event("SD1", at(0), "fire_alarm", "active")
    assert seen(e.on_event("SD3", at(10), "fire_alarm", "active")) == [("raised", "pre", "SD3")]
    assert sorted(a.subject.id for a in e.alarms()) == ["SD1", "SD3"]


def test_smoke_plus_heat_rise_on_the_same_floor_confirms() -> None:
    e = engine(FIRE)
    e.on_event("SD1", at(0), "fire_alarm", "active")
    e.on_reading("HD1", at(0), {"temperature": 25})
    ev = e.on_reading("HD1", at(30), {"temperature": 35})  # 20 °C/min
    assert seen(ev) == [("raised", "rise", "HD1"), ("raised", "pre", "HD1"), ("raised", "fire_confirmed", "B1/F1")]
    # confirmed stays while any signal is active; clears when the last one clears
    e.on_event("SD1", at(100), "fire_alarm", "cleared")
    assert e.alarm("fire_confirmed", "B1/F1").status is AlarmStatus.ACTIVE_UNACK  # type: ignore[union-attr]
    ev = e.on_reading("HD1", at(90), {"temperature": 35})  # flat over the last minute
    assert seen(ev) == [("cleared", "rise", "HD1"), ("cleared", "pre", "HD1"), ("cleared", "fire_confirmed", "B1/F1")]


# --- suppression -----------------------------------------------------------------------------------


def test_shielded_detector_is_suppressed_and_does_not_confirm_a_fire() -> None:
    e = engine(FIRE)
    assert seen(e.on_event("SD1", at(0), "shielded", "active")) == [("raised", "shielded", "SD1")]
    ev = e.on_event("SD1", at(5), "fire_alarm", "active")
    assert [x.kind for x in ev] == [EventKind.SUPPRESSED, EventKind.SUPPRESSED] and not any(x.notify for x in ev)
    assert e.on_event("SD2", at(10), "fire_alarm", "active")[-1].rule == "pre"  # SD1 does not confirm
    assert e.alarm("fire_confirmed", "B1/F1") is None


def test_a_panel_with_a_shielded_component_still_reports_fire() -> None:
    e = Engine(load_rules([("t.yaml", rules_text("""
    - {id: panel_fire, type: state, kind: fire_panel, event: fire_alarm, severity: critical, dispatch: urgent}
    """))], PANEL), PANEL)
    e.on_event("FACP", at(0), "shielded", "active")
    assert seen(e.on_event("FACP", at(5), "fire_alarm", "active")) == [("raised", "panel_fire", "FACP")]


def test_elevator_maintenance_mutes_its_faults() -> None:
    e = engine("""
    - {id: trapped, type: state, kind: elevator, event: entrapment, severity: critical, dispatch: urgent}
    - {id: upkeep, type: state, kind: elevator, event: maintenance_mode, severity: warning, dispatch: none}
    """)
    e.on_event("LIFT", at(0), "maintenance_mode", "active")
    ev = e.on_event("LIFT", at(5), "entrapment", "active")
    assert [x.kind for x in ev] == [EventKind.SUPPRESSED]
    ev = e.on_event("LIFT", at(60), "maintenance_mode", "cleared")
    assert ("raised", "trapped", "LIFT") in seen(ev)  # still trapped once maintenance ends


# --- care inactivity -------------------------------------------------------------------------------

CARE = """
- id: care
  type: care_inactivity
  after: 12h
  window: ["07:00", "21:00"]
  utc_offset: "+08:00"
  activity: [{kind: care_door, field: opened}, {kind: care_door, event: door_cycle}, {kind: care_water, field: flow}]
  severity: major
  dispatch: urgent
"""


def test_care_inactivity_inside_the_daytime_window() -> None:
    e = engine(CARE)  # T0 is 08:00 local
    e.on_reading("CD", at(0), {"opened": True})
    e.on_reading("CD", at(3600), {"opened": False})  # a heartbeat, not activity
    e.on_reading("CW", at(7200), {"flow": 0.0})
    assert e.tick(at(12 * 3600 - 1)) == []
    ev = e.tick(at(12 * 3600))  # 20:00 local, inside the window
    assert seen(ev) == [("raised", "care", "B1-501")] and ev[0].subject_type == "care_unit" and ev[0].floor == 5
    assert seen(e.on_reading("CW", at(12 * 3600 + 5), {"flow": 4.2})) == [("cleared", "care", "B1-501")]


def test_care_inactivity_falling_due_at_night_waits_for_the_window() -> None:
    e = engine(CARE)
    e.on_event("CD", at(5 * 3600), "door_cycle", "pulse")  # 13:00 local; due at 01:00 local
    assert e.tick(at(17 * 3600)) == []  # 01:00
    assert e.tick(at(22 * 3600 + 3599)) == []  # 06:59
    ev = e.tick(at(23 * 3600 + 10))
    assert seen(ev) == [("raised", "care", "B1-501")] and ev[0].at == at(23 * 3600)  # 07:00 local


# --- escalation, shelving, flapping ----------------------------------------------------------------

ESCALATE = """
- {id: leak, type: duration, kind: water_leak, field: leak, equals: true, for: 0s, severity: warning,
   dispatch: general, escalate: {every: 10m, max: major}, flapping: null}
"""


def test_escalation_steps_up_every_period_while_unacknowledged() -> None:
    e = engine(ESCALATE)
    e.on_reading("LEAK", at(0), {"leak": True})
    assert e.tick(at(599)) == []
    ev = e.tick(at(1250))  # two periods passed: two steps, each at its time
    assert [(x.kind.value, x.severity.value, x.at) for x in ev] == [
        ("escalated", "minor", at(600)), ("escalated", "major", at(1200))]
    assert e.tick(at(5000)) == []  # capped at max
    e2 = engine(ESCALATE)
    e2.on_reading("LEAK", at(0), {"leak": True})
    e2.acknowledge("leak@LEAK", "op1", at(100))
    assert e2.tick(at(5000)) == []  # acknowledged: no escalation


def test_shelving_mutes_until_expiry() -> None:
    e = engine(ESCALATE)
    e.on_reading("LEAK", at(0), {"leak": True})
    ev = e.shelve("leak@LEAK", at(900), "op1", at(10))
    assert ev.kind is EventKind.SHELVED and ev.by == "op1"
    assert e.tick(at(800)) == []  # no escalation while shelved
    cleared = e.on_reading("LEAK", at(820), {"leak": False})
    raised = e.on_reading("LEAK", at(830), {"leak": True})  # a re-raise stays shelved
    assert cleared[0].shelved and raised[0].shelved and not raised[0].notify
    ev = e.tick(at(901))
    assert seen(ev) == [("unshelved", "leak", "LEAK")] and ev[0].by == "expiry"
    with pytest.raises(AlarmError, match="not shelved"):
        e.unshelve("leak@LEAK", "op1", at(950))


def test_shelving_needs_an_active_alarm_and_a_future_expiry() -> None:
    e = engine(ESCALATE)
    e.on_reading("LEAK", at(0), {"leak": True})
    with pytest.raises(AlarmError, match="not after"):
        e.shelve("leak@LEAK", at(5), "op1", at(10))
    e.on_reading("LEAK", at(20), {"leak": False})
    with pytest.raises(AlarmError, match="only an active alarm"):
        e.shelve("leak@LEAK", at(900), "op1", at(30))


def test_flapping_is_held_raised_and_clears_once_settled() -> None:
    e = engine("""
    - {id: leak, type: duration, kind: water_leak, field: leak, equals: true, for: 0s, severity: minor,
       dispatch: general, flapping: {cycles: 3, within: 10m, settle: 5m}}
    """)
    kinds = []
    for i in range(4):  # 4 raise/clear cycles in 4 minutes: more than 3
        kinds += [x.kind.value for x in e.on_reading("LEAK", at(60 * i), {"leak": True})]
        kinds += [x.kind.value for x in e.on_reading("LEAK", at(60 * i + 30), {"leak": False})]
    assert kinds == ["raised", "cleared"] * 3 + ["raised", "flapping"]
    assert e.on_reading("LEAK", at(300), {"leak": True}) == []  # counted silently
    assert e.alarm("leak", "LEAK").count == 2  # type: ignore[union-attr]
    e.on_reading("LEAK", at(330), {"leak": False})
    assert e.tick(at(629)) == []
    ev = e.tick(at(640))
    assert seen(ev) == [("cleared", "leak", "LEAK")] and ev[0].at == at(630) and "stopped flapping" in ev[0].detail


# --- lifecycle -------------------------------------------------------------------------------------


def test_ack_then_clear_and_clear_then_ack() -> None:
    e = engine(GAS)
    e.on_reading("GAS", at(0), {"lel": 30})
    ev = e.acknowledge("gas1@GAS", "op1", at(5), "on my way")
    assert ev.status is AlarmStatus.ACTIVE_ACK and ev.by == "op1" and ev.detail == "on my way"
    a = e.alarm("gas1", "GAS")
    assert a is not None and (a.acked_by, a.acked_at, a.ack_comment) == ("op1", at(5), "on my way")
    ev2 = e.on_reading("GAS", at(10), {"lel": 1})
    assert ev2[0].status is AlarmStatus.CLEARED_ACK and e.alarm("gas1", "GAS") is None  # done
    e.on_reading("GAS", at(20), {"lel": 30})
    e.on_reading("GAS", at(30), {"lel": 1})
    assert e.alarm("gas1", "GAS").status is AlarmStatus.CLEARED_UNACK  # type: ignore[union-attr]
    assert e.acknowledge("gas1@GAS", "op2", at(40)).status is AlarmStatus.CLEARED_ACK


def test_illegal_transitions_are_refused() -> None:
    e = engine(GAS)
    with pytest.raises(AlarmError, match="no current alarm"):
        e.acknowledge("gas1@GAS", "op1", at(0))
    e.on_reading("GAS", at(0), {"lel": 30})
    e.acknowledge("gas1@GAS", "op1", at(1))
    with pytest.raises(AlarmError, match="already acknowledged"):
        e.acknowledge("gas1@GAS", "op2", at(2))
    ev = e.clear("gas1@GAS", "op1", at(3), "valve shut")
    assert ev.status is AlarmStatus.CLEARED_ACK and ev.by == "op1"
    with pytest.raises(AlarmError):
        e.clear("gas1@GAS", "op1", at(4))
    e.on_reading("GAS", at(5), {"lel": 1})
    e.on_reading("GAS", at(6), {"lel": 30})  # a new onset: a new alarm
    assert e.clear("gas1@GAS", "op1", at(7)).status is AlarmStatus.CLEARED_UNACK
    with pytest.raises(AlarmError, match="already cleared"):
        e.clear("gas1@GAS", "op1", at(8))
    with pytest.raises(AlarmError, match="only an active alarm"):
        e.shelve("gas1@GAS", at(100), "op1", at(9))


def test_alarms_survive_a_restart_and_can_be_acknowledged_after_it() -> None:
    e = engine(GAS + ESCALATE)
    e.on_reading("GAS", at(0), {"lel": 30})
    e.on_reading("LEAK", at(0), {"leak": True})
    e.shelve("leak@LEAK", at(3000), "op1", at(1))
    again = Engine.restore(e.ruleset, COMMUNITY, json.loads(json.dumps(e.snapshot())))
    assert {a.key for a in again.alarms()} == {"gas1@GAS", "leak@LEAK"}
    assert again.acknowledge("gas1@GAS", "op1", at(5)).status is AlarmStatus.ACTIVE_ACK
    assert seen(again.on_reading("GAS", at(6), {"lel": 1})) == [("cleared", "gas1", "GAS")]
    late = again.on_reading("GAS", at(2), {"lel": 30})  # late even after the restart: raises, and says so
    assert seen(late) == [("raised", "gas1", "GAS")] and "late reading" in late[0].detail
    assert seen(again.tick(at(3001))) == [("unshelved", "leak", "LEAK")]


def test_a_removed_rule_clears_its_alarms_after_a_reload() -> None:
    e = engine(GAS + ESCALATE)
    e.on_reading("GAS", at(0), {"lel": 30})
    reloaded = Engine.restore(load_rules([("t.yaml", rules_text(ESCALATE))], COMMUNITY), COMMUNITY, e.snapshot())
    ev = reloaded.tick(at(10))
    assert seen(ev) == [("cleared", "gas1", "GAS")] and "rule removed" in ev[0].detail


# --- bad input ---------------------------------------------------------------------------------------


def problems(text: str, *more: tuple[str, str]) -> list[str]:
    with pytest.raises(RulesError) as exc:
        load_rules([("site.yaml", text), *more], COMMUNITY)
    return exc.value.problems


@pytest.mark.parametrize(("body", "expected"), [
    ("- {id: a, type: threshold, kind: gass, field: lel, direction: high, raise: 25, clear: 20,\n"
     "   severity: major, dispatch: urgent}", "site.yaml:3: rules.a.kind: unknown device kind 'gass'"),
    ("- id: a\n  type: threshold\n  kind: gas\n  field: ppm\n  direction: high\n  raise: 25\n  clear: 20\n"
     "  severity: major\n  dispatch: urgent", "site.yaml:6: rules.a.field: gas has no field 'ppm' (fields: lel)"),
    ("- id: a\n  type: state\n  kind: elevator\n  event: stuck\n  severity: major\n  dispatch: urgent",
     "site.yaml:6: rules.a.event: elevator has no event 'stuck'"),
    ("- id: a\n  type: threshold\n  kind: gas\n  field: lel\n  unit: ppm\n  direction: high\n  raise: 25\n"
     "  clear: 20\n  severity: major\n  dispatch: urgent",
     "site.yaml:7: rules.a.unit: unit 'ppm' does not match the catalogue unit of gas.lel: '%LEL'"),
    ("- id: a\n  type: threshold\n  kind: gas\n  field: lel\n  direction: high\n  raise: 25\n  clear: 30\n"
     "  severity: major\n  dispatch: urgent", "site.yaml:9: rules.a.clear: clear 30 is above raise 25"),
    ("- id: a\n  type: threshold\n  kind: hydrant_pressure\n  field: pressure\n  direction: low\n  raise: 0.2\n"
     "  clear: 0.1\n  severity: major\n  dispatch: urgent", "site.yaml:9: rules.a.clear: clear 0.1 is below raise 0.2"),
    ("- id: a\n  type: duration\n  kind: fire_door\n  field: closed\n  equals: false\n  for: 5 minutes\n"
     "  severity: minor\n  dispatch: general", "site.yaml:8: rules.a.for: '5 minutes' is not a duration"),
    ("- id: a\n  type: duration\n  kind: fire_door\n  field: closed\n  equals: false\n  for: 5\n"
     "  severity: minor\n  dispatch: general", "site.yaml:8: rules.a.for: 5 is not a duration"),
    ("- id: a\n  type: threshold\n  kind: gas\n  field: lel\n  direction: high\n  raise: 25\n  clear: 20\n"
     "  severity: major\n  dispatch: urgent\n  colour: red", "site.yaml:12: rules.a.colour: unknown key"),
    ("- id: a\n  type: treshold\n  kind: gas", "site.yaml:4: rules.a.type: type must be one of threshold"),
    ("- id: a\n  type: threshold\n  kind: gas\n  field: lel\n  direction: high\n  raise: 125\n  clear: 20\n"
     "  severity: major\n  dispatch: urgent", "site.yaml:8: rules.a.raise: 125 is outside the valid range"),
    ("- id: a\n  type: threshold\n  kind: water_leak\n  field: leak\n  direction: high\n  raise: 1\n  clear: 0\n"
     "  severity: minor\n  dispatch: urgent", "site.yaml:6: rules.a.field: water_leak.leak is true/false"),
    ("- id: a\n  type: state\n  kind: care_door\n  event: door_cycle\n  severity: minor\n  dispatch: none",
     "site.yaml:6: rules.a.event: door_cycle is a one-off event"),
    ("- id: a\n  type: correlation\n  scope: floor\n  signals: [{rule: nope}]\n  severity: critical\n"
     "  dispatch: urgent", "site.yaml:6: rules.a.signals.0.rule: 'nope' is not a device rule"),
    ("- id: a\n  type: threshold\n  kind: gas\n  field: lel\n  direction: high\n  raise: 25\n  clear: 20\n"
     "  severity: major\n  dispatch: asap", "site.yaml:11: rules.a.dispatch: Input should be 'urgent'"),
    ("- id: a\n  type: threshold\n  kind: gas\n  field: lel\n  direction: high\n  raise: 25\n  clear: 20\n"
     "  severity: major", "site.yaml:3: rules.a.dispatch: required"),
    ("- id: a\n  type: care_inactivity\n  after: 12h\n  window: [7:00, '21:00']\n"
     "  activity: [{kind: care_door, field: opened}]\n  severity: major\n  dispatch: urgent",
     "site.yaml:6: rules.a.window.0: 420 is not a local time"),
    ("- id: a\n  type: threshold\n  kind: gas\n  devices: [HYD]\n  field: lel\n  direction: high\n  raise: 25\n"
     "  clear: 20\n  severity: major\n  dispatch: urgent", "site.yaml:6: rules.a.devices.0: HYD is a hydrant_pressure"),
])
def test_bad_rules_name_file_line_and_field(body: str, expected: str) -> None:
    found = problems(rules_text(body))
    assert any(p.startswith(expected) for p in found), found


def test_file_level_problems() -> None:
    assert problems("version: 2\nrules: []\n")[0].startswith("site.yaml:1: version:")
    assert problems("version: 1\nrules: [\n")[0].startswith("site.yaml:3: not valid YAML")
    assert problems("- just a list\n")[0].startswith("site.yaml:1: a rules file is a mapping")
    dup = rules_text(GAS + GAS)
    assert any("duplicate id in this file" in p for p in problems(dup))


def test_an_override_error_points_at_the_override_file() -> None:
    base = ("defaults.yaml", rules_text(GAS))
    with pytest.raises(RulesError) as exc:
        load_rules([base, ("site.yaml", "version: 1\nrules:\n  - id: gas1\n    clear: 40\n")], COMMUNITY)
    assert exc.value.problems == [
        "site.yaml:4: rules.gas1.clear: clear 40 is above raise 25: a high alarm clears below where it raises"]


def test_overrides_merge_by_id() -> None:
    site = """version: 1
rules:
  - {id: gas1, raise: 20, clear: 15}
  - {id: leak, enabled: false}
  - {id: new_rule, type: state, kind: elevator, event: entrapment, severity: critical, dispatch: urgent}
"""
    rs = load_rules([("d.yaml", rules_text(GAS + ESCALATE)), ("site.yaml", site)], COMMUNITY)
    gas = rs.rule("gas1")
    assert gas is not None and gas.type == "threshold" and (gas.raise_, gas.clear) == (20, 15)
    assert gas.severity is Severity.MAJOR  # kept from the first file
    assert rs.rule("leak") is None and rs.disabled == ("leak",)
    assert isinstance(rs.rule("new_rule"), StateRule)
    with pytest.raises(AttributeError):
        rs.rules = ()  # type: ignore[misc]  # immutable: a reload builds a new one


# --- clocks: device time, the engine's clock, late readings (issue 11, docs/alarms.md) ---------------

SHIPPED = load_rules([(str(DEFAULTS_FILE), DEFAULTS_FILE.read_text(encoding="utf-8"))], COMMUNITY)


def test_a_fast_device_clock_makes_no_other_device_silent() -> None:
    e = engine(NODATA + """
- {id: lift_offline, type: no_data, kind: elevator, offline_for: 1m, severity: major, dispatch: urgent}
""")
    e.on_reading("LIFT", at(0), {"floor": 1})
    e.on_reading("GAS", at(290), {"lel": 1}, received=at(1))  # its clock runs 290 s ahead
    assert e.tick(at(60)) == [] and e.tick(at(119)) == []  # the lift's 2 x 60 s are measured on the engine's clock
    assert seen(e.tick(at(121))) == [("raised", "lift_offline", "LIFT")]  # ... and do come when it is silent


def test_a_slow_device_clock_is_not_silence_and_its_durations_and_escalations_keep_their_length() -> None:
    e = engine(NODATA + PENDING + ESCALATE)
    hour = 3600
    e.on_reading("GAS", at(-hour), {"lel": 1}, received=at(0))  # its clock runs an hour behind
    e.on_reading("DOOR", at(-hour), {"closed": False}, received=at(0))
    e.on_reading("LEAK", at(-hour), {"leak": True}, received=at(0))  # raises at once: for 0s
    assert e.tick(at(10)) == []  # not silent for an hour, the door not open for an hour, the leak not 1 h old
    assert e.alarm("leak", "LEAK").raised_at == at(0)  # type: ignore[union-attr]
    assert e.tick(at(299)) == []
    ev = e.tick(at(301))  # 5 min on the door's own clock
    assert seen(ev) == [("raised", "door_open", "DOOR")] and ev[0].at == at(300)
    assert ev[0].occurred_at == at(300 - hour)  # the device's time of it is kept
    assert seen(e.tick(at(600))) == [("escalated", "leak", "LEAK")]  # every 10 min from its raise, not from -1 h
    # the offset survives a restart
    e2 = engine(PENDING)
    e2.on_reading("DOOR", at(-hour), {"closed": False}, received=at(0))
    again = Engine.restore(e2.ruleset, COMMUNITY, json.loads(json.dumps(e2.snapshot())))
    assert again.tick(at(299)) == [] and seen(again.tick(at(300))) == [("raised", "door_open", "DOOR")]


def test_a_reading_received_later_than_taken_raises_at_its_receipt_and_keeps_its_device_time() -> None:
    e = engine(GAS)
    ev = e.on_reading("GAS", at(0), {"lel": 30}, received=at(7))
    assert seen(ev) == [("raised", "gas1", "GAS")]
    assert (ev[0].at, ev[0].raised_at, ev[0].occurred_at) == (at(7), at(7), at(0))
    assert ev[0].to_json()["occurred_at"] == at(0).isoformat()


def test_a_late_reading_over_a_level_raises_it_and_says_so() -> None:
    e = Engine(SHIPPED, COMMUNITY)
    e.on_reading("GAS", at(600), {"lel": 2}, received=at(600))  # back online: the newest reading comes first
    ev = e.on_reading("GAS", at(300), {"lel": 58}, received=at(601))  # then the one stored during the outage
    assert seen(ev) == [("raised", "gas_level1", "GAS"), ("raised", "gas_level2", "GAS")]
    level2 = ev[1]
    assert level2.severity is Severity.CRITICAL and level2.at == at(601) and level2.occurred_at == at(300)
    assert "lel=58 %LEL (>= 50)" in level2.detail
    assert "late reading taken at 2025-06-02T00:05:00.000Z device time, 5m before its newest" in level2.detail
    assert e.on_reading("GAS", at(200), {"lel": 1}, received=at(602)) == []  # a late reading never clears ...
    cleared = e.on_reading("GAS", at(660), {"lel": 1}, received=at(660))  # ... the next one in order does
    assert sorted(seen(cleared)) == [("cleared", "gas_level1", "GAS"), ("cleared", "gas_level2", "GAS")]


def test_late_readings_start_no_duration_and_fake_no_rate() -> None:
    e = engine(PENDING + RATE)
    e.on_reading("DOOR", at(100), {"closed": True})
    assert e.on_reading("DOOR", at(50), {"closed": False}) == []  # late: was it still open at 100? no
    e.on_reading("GAS", at(100), {"lel": 1})
    assert e.on_reading("GAS", at(40), {"lel": 40}) == []  # threshold with for: one late point proves no hold
    e.on_reading("HYD", at(0), {"pressure": 0.5})
    e.on_reading("HYD", at(90), {"pressure": 0.5})
    assert e.on_reading("HYD", at(60), {"pressure": 0.0}) == []  # late: would fake a fall of 0.5 MPa/min
    assert e.tick(at(1000)) == [] and e.late == 3


def test_a_silent_fire_device_is_noticed_within_the_2h_check_period() -> None:
    e = Engine(SHIPPED, COMMUNITY)
    for dev in ("SD1", "SD2", "SD3", "HD1", "DOOR"):
        e.on_reading(dev, at(0), {})
    for dev in ("SD2", "SD3", "HD1", "DOOR"):  # every fire device but SD1 reports again after 30 min
        e.on_reading(dev, at(1800), {})

    def offline(ev: list) -> list[tuple[str, str, str]]:  # type: ignore[type-arg]
        return [x for x in seen(ev) if x[1] == "fire_device_offline" and x[2] != "HYD"]  # HYD: never heard

    assert offline(e.tick(at(3899))) == []
    ev = [x for x in e.tick(at(3901)) if x.rule == "fire_device_offline" and x.subject != "HYD"]
    assert offline(ev) == [("raised", "fire_device_offline", "SD1")]
    assert ev[0].at == at(catalogue.KINDS["smoke_detector"].silence_s) and ev[0].at <= at(7200)


def test_every_kind_has_a_silence_threshold_its_heartbeat_fits_in() -> None:
    for k in catalogue.KINDS.values():
        assert k.heartbeat_s < k.silence_s, k.kind  # the simulators heartbeat at heartbeat_s: never falsely silent
        if k.category == "fire":  # GB 50440-2007: fire facilities checked at least every 2 h
            assert k.silence_s <= 7200 and k.heartbeat_source, k.kind
            if k.offline_after_s is not None:
                assert "GB 50440" in k.offline_source, k.kind


# --- shipped defaults --------------------------------------------------------------------------------


def test_shipped_defaults_validate_against_the_sample_community() -> None:
    sample = parse(sample_community_path().read_text(encoding="utf-8"), "sample")
    rs = load_rules([(str(DEFAULTS_FILE), DEFAULTS_FILE.read_text(encoding="utf-8"))], sample)
    covered = {k for r in rs for k in getattr(r, "kind", ())}
    covered |= {s.kind for r in rs for s in getattr(r, "signals", ()) if s.kind}
    covered |= {a.kind for r in rs for a in getattr(r, "activity", ())}
    assert covered == set(catalogue.KINDS), set(catalogue.KINDS) - covered
    assert all(r.source for r in rs), [r.id for r in rs if not r.source]
    by_id = {r.id: r for r in rs}
    assert (by_id["gas_level1"].raise_, by_id["gas_level1"].severity) == (25, Severity.MAJOR)  # type: ignore[union-attr]
    assert (by_id["gas_level2"].raise_, by_id["gas_level2"].severity) == (50, Severity.CRITICAL)  # type: ignore[union-attr]
    assert by_id["elevator_entrapment"].severity is Severity.CRITICAL
    assert by_id["fire_confirmed"].severity is Severity.CRITICAL and by_id["fire_prealarm"].severity is Severity.MAJOR
    Engine(rs, sample)  # compiles


# --- replay through the contract, and cost -----------------------------------------------------------


def test_replay_feeds_contract_messages_and_ticks() -> None:
    e = engine(GAS + NODATA)
    root = "gt"

    def tele(t: float, dev: str, lel: float) -> tuple[float, str, bytes]:
        return (T0.timestamp() + t, contract.topic(root, "test", dev, "telemetry"),
                contract.telemetry_bytes(round((T0.timestamp() + t) * 1000), 1, {"lel": lel}))

    msgs = [tele(0, "GAS", 1), tele(10, "GAS", 30), (T0.timestamp() + 11, f"{root}/v1/test/GAS/telemetry", b"{")]
    rejected: list[str] = []
    out = list(replay(e, msgs, root=root, until=T0.timestamp() + 1300, rejected=rejected))
    # GAS2 was never heard: silent since the replay began (due at 1200 s); GAS last spoke at 10 s (due 1210 s)
    assert [(x.kind.value, x.rule, x.subject, x.at) for x in out] == [
        ("raised", "gas1", "GAS", at(10)), ("raised", "offline", "GAS2", at(1200)),
        ("raised", "offline", "GAS", at(1210))]
    assert len(rejected) == 1 and "bad_json" in rejected[0]


def test_bench_reports_microseconds_per_message() -> None:
    r = bench_rules(n_rules=40, messages=2000)
    assert r["rules"] == 40 and r["messages"] == 2000 and 0 < r["us_per_message"] < 1000
    assert r["rules_per_message"] > 0
