"""Residential alarm curves and windows (docs/alarms.md): the time-weighted CO dose against the home CO alarm
curve (GB/T 34004 / EN 50291-1), cooking spikes, restarts; pure and fast."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.alarms import AlarmError, EventKind
from twin.community import Community
from twin.rules import DEFAULTS_FILE, Engine, RulesError, load_rules

T0 = datetime(2025, 6, 2, 0, 0, tzinfo=UTC)  # 08:00 in China Standard Time
_SQUARE = [[0, 0], [20, 0], [20, 20], [0, 20]]
HOME = Community.model_validate({
    "version": 1, "id": "home", "name": "home", "origin": [30.27, 120.16],
    "buildings": [{"id": "B1", "name": "1号楼", "footprint": _SQUARE, "floors_above": 6}],
    "devices": [{"id": "CO", "kind": "co", "building": "B1", "floor": 3},
                {"id": "CO2", "kind": "co", "building": "B1", "floor": 4},
                {"id": "NOISE", "kind": "noise"}],
})
SHIPPED = load_rules([(str(DEFAULTS_FILE), DEFAULTS_FILE.read_text(encoding="utf-8"))], HOME)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def co_alarm_after(profile: list[tuple[float, float]], *, every: float, until: float, tick: float = 1.0,
                   received_late_by: float = 0.0) -> float | None:
    """Seconds until co_alarm raises for a device reading ``profile`` [(from_s, ppm), ...] every ``every`` s (the
    engine ticking every ``tick`` s), or None if it stays quiet until ``until``."""
    e = Engine(SHIPPED, HOME)
    t, next_read = 0.0, 0.0
    while t <= until:
        events = []
        if t >= next_read:
            ppm = next(v for start, v in reversed(profile) if t >= start)
            events += e.on_reading("CO", at(t), {"co": ppm}, received=at(t + received_late_by))
            next_read += every
        events += e.tick(at(t + received_late_by))
        raised = [x for x in events if x.kind is EventKind.RAISED and x.rule == "co_alarm"]
        if raised:
            return (raised[0].at - T0).total_seconds() - received_late_by
        t += tick
    return None


# GB/T 34004 / EN 50291-1: (ppm, no alarm before [min], alarm by [min]); 30 ppm: no alarm within 120 min
CURVE = [(30, 120, None), (50, 60, 90), (100, 10, 40), (300, 0, 3)]


@pytest.mark.parametrize(("ppm", "not_before_min", "by_min"), CURVE)
@pytest.mark.parametrize("every", [1.0, 10.0, 60.0])
def test_co_alarm_meets_the_home_alarm_curve(ppm: float, not_before_min: float, by_min: float | None,
                                              every: float) -> None:
    """A constant concentration from clean air, read every 1, 10 or 60 s."""
    found = co_alarm_after([(0, 0.0), (60, ppm)], every=every, until=60 + 150 * 60, tick=5.0)
    if by_min is None:
        assert found is None, f"{ppm} ppm alarmed after {found and (found - 60) / 60:.1f} min"
    else:
        assert found is not None, f"{ppm} ppm never alarmed"
        minutes = (found - 60) / 60
        assert not_before_min <= minutes <= by_min, minutes


@settings(max_examples=60, deadline=None)
@given(ppm=st.sampled_from([p for p, *_ in CURVE]), every=st.floats(1, 90), late=st.floats(0, 30))
def test_the_curve_holds_whatever_the_reporting_interval_and_receipt_delay(ppm: float, every: float,
                                                                            late: float) -> None:
    _, lo, hi = next(c for c in CURVE if c[0] == ppm)
    found = co_alarm_after([(0, ppm)], every=every, until=150 * 60, tick=5.0, received_late_by=late)
    if hi is None:
        assert found is None
    else:
        assert found is not None and lo * 60 <= found <= hi * 60 + 5, found


@settings(max_examples=60, deadline=None)
@given(peak=st.floats(55, 80), minutes=st.floats(1, 10), sessions=st.integers(1, 3), between=st.floats(30, 180))
def test_cooking_spikes_stay_quiet(peak: float, minutes: float, sessions: int, between: float) -> None:
    """Kitchen spikes of 55-80 ppm for up to 10 minutes, up to three meals, 5 ppm in between, never alarm."""
    profile: list[tuple[float, float]] = [(0, 5.0)]
    t = 60.0
    for _ in range(sessions):
        profile += [(t, peak), (t + minutes * 60, 5.0)]
        t += (minutes + between) * 60
    assert co_alarm_after(profile, every=10.0, until=t, tick=5.0) is None


def test_a_clock_skewed_device_is_dosed_on_the_engine_clock() -> None:
    """The device says an hour passed between two readings; the engine received them 60 s apart."""
    e = Engine(SHIPPED, HOME)
    e.on_reading("CO", at(0), {"co": 300}, received=at(0))
    assert e.on_reading("CO", at(3600), {"co": 300}, received=at(60)) == []  # 4.3 ppm·min x 60: far from 700
    raised = [x for x in e.tick(at(200)) if x.rule == "co_alarm"]
    assert [x.kind for x in raised] == [EventKind.RAISED]
    assert abs((raised[0].at - at(700 / 260 * 60)).total_seconds()) < 1e-3  # the crossing on the engine clock
    assert "exposure above 40 ppm reached 700 ppm·min" in raised[0].detail


def test_dose_drains_below_the_baseline_and_clears_and_survives_a_restart() -> None:
    e = Engine(SHIPPED, HOME)
    e.on_reading("CO", at(0), {"co": 300})
    assert [x.kind for x in e.tick(at(170)) if x.rule == "co_alarm"] == [EventKind.RAISED]
    e.on_reading("CO", at(180), {"co": 0})  # dose ~780 ppm·min, drains at 40 ppm·min per minute
    again = Engine.restore(e.ruleset, HOME, json.loads(json.dumps(e.snapshot())))
    assert [x for x in again.tick(at(180 + 19 * 60)) if x.kind is EventKind.CLEARED] == []
    cleared = [x for x in again.tick(at(180 + 21 * 60)) if x.kind is EventKind.CLEARED]
    assert [x.kind for x in cleared] == [EventKind.CLEARED] and "drained" in cleared[0].detail
    # a restart half way up keeps what was inhaled: 100 ppm for 6 min, restart, then 100 ppm alarms ~11m40s
    e = Engine(SHIPPED, HOME)
    e.on_reading("CO2", at(0), {"co": 100})
    e.tick(at(360))
    again = Engine.restore(e.ruleset, HOME, json.loads(json.dumps(e.snapshot())))
    again.on_reading("CO2", at(400), {"co": 100})
    assert [x for x in again.tick(at(690)) if x.rule == "co_alarm"] == []
    assert [x.kind for x in again.tick(at(710)) if x.rule == "co_alarm"] == [EventKind.RAISED]


def test_a_silent_sensor_stops_dosing_after_the_hold() -> None:
    e = Engine(SHIPPED, HOME)
    e.on_reading("CO", at(0), {"co": 45})  # 5 ppm·min per minute: 140 min to the alarm, but the hold is 20 min
    assert [x for x in e.tick(at(4 * 3600)) if x.rule == "co_alarm"] == []


@pytest.mark.parametrize(("body", "expected"), [
    ("  - {id: d, type: dose, kind: co, field: co, baseline: 40, dose: 700, clear: 700, severity: major,\n"
     "     dispatch: urgent}", "t.yaml:3: rules.d.clear: clear 700 is not below dose 700"),
    ("  - id: d\n    type: dose\n    kind: co\n    field: co\n    baseline: 4000\n    dose: 700\n"
     "    severity: major\n    dispatch: urgent", "t.yaml:7: rules.d.baseline: 4000 is outside the valid range"),
    ("  - id: d\n    type: dose\n    kind: co\n    field: co\n    baseline: 40\n    dose: 0\n"
     "    severity: major\n    dispatch: urgent", "t.yaml:8: rules.d.dose: Input should be greater than 0"),
    ("  - id: d\n    type: dose\n    kind: water_leak\n    field: leak\n    baseline: 0\n    dose: 1\n"
     "    severity: major\n    dispatch: urgent", "t.yaml:6: rules.d.field: water_leak.leak is true/false"),
    ("  - id: d\n    type: dose\n    kind: co\n    field: co\n    baseline: 40\n    dose: 700\n    hold: soon\n"
     "    severity: major\n    dispatch: urgent", "t.yaml:9: rules.d.hold: 'soon' is not a duration"),
])
def test_bad_dose_rules_name_file_line_and_field(body: str, expected: str) -> None:
    with pytest.raises(RulesError) as exc:
        load_rules([("t.yaml", "version: 1\nrules:\n" + body + "\n")], HOME)
    assert any(p.startswith(expected) for p in exc.value.problems), exc.value.problems


# --- noise: day and night limits in the community's local time (GB 3096-2008 class 1) ---------------


def noise_raised(community: Community, start: float, level: float) -> list[str]:
    """The noise alarm details for ``level`` dB(A) read every minute for 20 min from engine time ``start``."""
    e = Engine(load_rules([(str(DEFAULTS_FILE), DEFAULTS_FILE.read_text(encoding="utf-8"))], community), community)
    out = []
    for m in range(21):
        out += e.on_reading("NOISE", at(start + 60 * m), {"laeq": level})
        out += e.tick(at(start + 60 * m + 1))
    return [x.detail for x in out if x.rule == "noise_high" and x.kind is EventKind.RAISED]


@pytest.mark.parametrize(("local_hour", "level", "raised"), [
    (10, 50, False), (10, 56, True),  # by day: 55 dB(A)
    (23, 46, True), (23, 44, False), (3, 50, True), (5.5, 46, True),  # at night: 45 dB(A)
    (6, 50, False), (21.5, 50, False),  # 06:00 is day again; 21:30 plus 20 min is still day
])
def test_noise_limit_is_55_by_day_and_45_at_night_in_local_time(local_hour: float, level: float,
                                                                 raised: bool) -> None:
    start = (local_hour - 8) % 24 * 3600  # T0 is 08:00 in Asia/Shanghai (the default zone)
    found = noise_raised(HOME, start, level)
    assert bool(found) is raised, found
    if found and (local_hour >= 22 or local_hour < 6):
        assert "(> 45, night 22:00-06:00)" in found[0]


def test_the_night_follows_the_community_time_zone() -> None:
    berlin = HOME.model_copy(update={"timezone": "Europe/Berlin"})  # T0 is 02:00 there (summer time)
    assert noise_raised(berlin, 0, 50) and not noise_raised(HOME, 0, 50)  # 02:00 in Berlin, 08:00 in Shanghai


@pytest.mark.parametrize(("periods", "expected"), [
    ("[{between: ['22:00', '06:00'], below: 45}]",
     "t.yaml:8: rules.n.periods.0.below: the rule's condition is above"),
    ("[{between: ['22:00', '22:00'], above: 45}]", "t.yaml:8: rules.n.periods.0.between: a window needs two"),
    ("[{between: ['22:00', '06:00'], above: 450}]", "t.yaml:8: rules.n.periods.0.above: 450 is outside"),
    ("[{between: ['22:00', '6:00'], above: 45}]", "t.yaml:8: rules.n.periods.0.between.1: '6:00' is not a local"),
    ("[{between: ['22:00', '06:00']}]", "t.yaml:8: rules.n.periods.0: give exactly one of equals, above, below"),
])
def test_bad_periods_name_file_line_and_field(periods: str, expected: str) -> None:
    body = ("  - id: n\n    type: duration\n    kind: noise\n    field: laeq\n    above: 55\n"
            f"    periods: {periods}\n    for: 15m\n    severity: warning\n    dispatch: general")
    with pytest.raises(RulesError) as exc:
        load_rules([("t.yaml", "version: 1\nrules:\n" + body + "\n")], HOME)
    assert any(p.startswith(expected) for p in exc.value.problems), exc.value.problems


# --- care inactivity: no flood at start, a window per care level, residents away ---------------------

CARE_HOMES = Community.model_validate({
    "version": 1, "id": "care", "name": "care", "origin": [30.27, 120.16],
    "buildings": [{"id": "B1", "name": "1号楼", "footprint": _SQUARE, "floors_above": 6}],
    "devices": [{"id": f"{u}-{k.upper()}", "kind": f"care_{k}", "building": "B1", "floor": 2, "unit": u}
                for u in ("R", "Y", "G", "SILENT") for k in ("door", "water")],
    "care_units": [{"unit": u, "building": "B1", "floor": 2, "level": lv, "sensors": [f"{u}-DOOR", f"{u}-WATER"]}
                   for u, lv in (("R", "red"), ("Y", "yellow"), ("G", "green"), ("SILENT", "red"))],
})
CARE_RULES = load_rules([(str(DEFAULTS_FILE), DEFAULTS_FILE.read_text(encoding="utf-8"))], CARE_HOMES)
H = 3600.0


def care(events: list) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return [(x.kind.value, x.subject) for x in events if x.rule == "care_inactivity"
            and x.kind in (EventKind.RAISED, EventKind.CLEARED)]


def heartbeats(e: Engine, t: float, units: tuple[str, ...] = ("R", "Y", "G")) -> list:  # type: ignore[type-arg]
    """Every care sensor of ``units`` reports (no activity: door closed, no flow), and the engine ticks."""
    out = []
    for u in units:
        out += e.on_reading(f"{u}-DOOR", at(t), {"opened": False})
        out += e.on_reading(f"{u}-WATER", at(t), {"flow": 0.0, "total": 10.0})
    return out + e.tick(at(t))


def test_no_flood_at_start_homes_without_history_are_watched_for_their_full_window() -> None:
    e = Engine(CARE_RULES, CARE_HOMES)
    e.tick(at(-30 * 24 * H))  # the engine's epoch a month ago (a replay, or an old snapshot)
    found = []
    for hour in range(12):  # 08:00 .. 19:00 local, heartbeats every hour and nothing else
        found += care(heartbeats(e, hour * H))
    assert found == []  # not one home raised in the first hours, although the engine started long ago
    assert care(heartbeats(e, 12 * H)) == [("raised", "R")]  # red: 12 h after it was first heard (20:00 local)
    # SILENT was never heard: no inactivity alarm (its sensors' no-data rule speaks instead)
    assert all(x[1] != "SILENT" for x in care(e.tick(at(10 * 24 * H))))


@pytest.mark.parametrize(("unit", "hours"), [("R", 12), ("Y", 24), ("G", 72)])
def test_the_window_depends_on_the_care_level(unit: str, hours: float) -> None:
    e = Engine(CARE_RULES, CARE_HOMES)
    e.on_event(f"{unit}-DOOR", at(2 * H), "door_cycle", "pulse")  # 10:00 local: activity
    assert care(e.tick(at(2 * H + hours * H - 1))) == []
    ev = care(e.tick(at(2 * H + hours * H)))  # 22:00 (red), 10:00 next day (yellow, green): red waits for 07:00
    if unit == "R":
        assert ev == [] and care(e.tick(at(23 * H))) == [("raised", "R")]  # 07:00 local the next morning
    else:
        assert ev == [("raised", unit)]


def test_an_away_resident_suspends_the_rule_and_is_watched_afresh_on_return() -> None:
    e = Engine(CARE_RULES, CARE_HOMES)
    e.on_event("R-DOOR", at(0), "door_cycle", "pulse")
    assert care(e.tick(at(12 * H))) == [("raised", "R")]
    # the grid worker learns the resident is in hospital: the alarm clears, nothing raises for days
    assert care(e.set_care_away("R", True, "op-li", at(12 * H + 60), "住院 / in hospital")) == [("cleared", "R")]
    assert care(e.tick(at(5 * 24 * H))) == []
    restored = Engine.restore(CARE_RULES, CARE_HOMES, json.loads(json.dumps(e.snapshot())))
    assert "R" in restored.care_away and restored.care_away["R"].reason == "住院 / in hospital"
    assert care(restored.set_care_away("R", False, "op-li", at(6 * 24 * H))) == []  # back at 08:00 local
    assert care(restored.tick(at(6 * 24 * H + 12 * H - 1))) == []  # watched afresh, not 6 days inactive
    assert care(restored.tick(at(6 * 24 * H + 12 * H))) == [("raised", "R")]


def test_away_until_ends_by_itself_and_bad_statuses_are_refused() -> None:
    e = Engine(CARE_RULES, CARE_HOMES)
    e.on_event("Y-DOOR", at(0), "door_cycle", "pulse")
    e.set_care_away("Y", True, "op", at(60), "with family", until=at(3 * 24 * H))
    assert care(e.tick(at(3 * 24 * H - 1))) == [] and "Y" in e.care_away
    e.tick(at(3 * 24 * H))
    assert "Y" not in e.care_away
    assert care(e.tick(at(4 * 24 * H - 1))) == [] and care(e.tick(at(4 * 24 * H))) == [("raised", "Y")]
    with pytest.raises(AlarmError, match="unknown care unit"):
        e.set_care_away("NOPE", True, "op", at(5 * 24 * H))
    with pytest.raises(AlarmError, match="not away"):
        e.set_care_away("G", False, "op", at(5 * 24 * H))
    with pytest.raises(AlarmError, match="until must be after now"):
        e.set_care_away("G", True, "op", at(5 * 24 * H), until=at(0))
    e.set_care_away("G", True, "op", at(5 * 24 * H))
    with pytest.raises(AlarmError, match="already away"):
        e.set_care_away("G", True, "op", at(5 * 24 * H))


@pytest.mark.parametrize(("after", "expected"), [
    ("{red: 12h, yellow: 24h}", "t.yaml:5: rules.c.after: give a duration for every care level"),
    ("{red: 12h, yellow: 24h, blue: 1d}", "t.yaml:5: rules.c.after: 'blue' is not a care level"),
    ("{red: 12h, yellow: soon, green: 3d}", "t.yaml:5: rules.c.after: 'soon' is not a duration"),
    ("0s", "t.yaml:5: rules.c.after: must be a duration > 0"),
])
def test_bad_care_windows_name_file_line_and_field(after: str, expected: str) -> None:
    body = (f"  - id: c\n    type: care_inactivity\n    after: {after}\n"
            "    activity: [{kind: care_door, field: opened}]\n    severity: major\n    dispatch: urgent")
    with pytest.raises(RulesError) as exc:
        load_rules([("t.yaml", "version: 1\nrules:\n" + body + "\n")], CARE_HOMES)
    assert any(p.startswith(expected) for p in exc.value.problems), exc.value.problems


# --- gas interlocks: valve and fan of the place, their acknowledgement (GB 50028-2006 §10.8) ------------

KITCHEN = Community.model_validate({
    "version": 1, "id": "k", "name": "k", "origin": [30.27, 120.16],
    "buildings": [{"id": "B1", "name": "1号楼", "footprint": _SQUARE, "floors_above": 6, "floors_below": 1}],
    "devices": [{"id": "GAS", "kind": "gas", "building": "B1", "floor": -1},
                {"id": "VALVE", "kind": "gas_valve", "building": "B1", "floor": -1},
                {"id": "FAN", "kind": "exhaust_fan", "building": "B1", "floor": -1},
                {"id": "VALVE-F2", "kind": "gas_valve", "building": "B1", "floor": 2},  # another place
                {"id": "HOME-GAS", "kind": "gas", "building": "B1", "floor": -1, "unit": "B1-B101"},
                {"id": "HOME-VALVE", "kind": "gas_valve", "building": "B1", "floor": -1, "unit": "B1-B101"}],
})
KITCHEN_RULES = load_rules([(str(DEFAULTS_FILE), DEFAULTS_FILE.read_text(encoding="utf-8"))], KITCHEN)


def interlock(events: list) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return [(x.kind.value, x.subject) for x in events if x.rule == "gas_interlock"
            and x.kind in (EventKind.RAISED, EventKind.CLEARED)]


def test_a_gas_alarm_closes_the_valve_and_starts_the_fan_of_its_place_once() -> None:
    e = Engine(KITCHEN_RULES, KITCHEN)
    e.on_reading("GAS", at(0), {"lel": 5})
    assert e.take_commands() == []
    e.on_reading("GAS", at(10), {"lel": 30}, received=at(11))
    sent = e.take_commands()
    assert [(c.device, c.command, c.reason, c.at) for c in sent] == [
        ("VALVE", "close", "gas_level1@GAS", at(11).timestamp()),
        ("FAN", "start", "gas_level1@GAS", at(11).timestamp())]
    assert len({c.id for c in sent}) == 2
    e.on_reading("GAS", at(20), {"lel": 60})  # level 2 in the same episode: nothing sent again
    assert e.take_commands() == []
    # the valve answers, the fan does not: only the fan's interlock alarm after 30 s
    assert interlock(e.on_event("VALVE", at(15), "valve_closed", "pulse")) == []
    assert interlock(e.tick(at(11 + 29))) == []
    ev = [x for x in e.tick(at(11 + 30)) if x.rule == "gas_interlock"]
    assert interlock(ev) == [("raised", "FAN")]
    assert ev[0].severity.value == "critical" and "start not acknowledged within 30s" in ev[0].detail
    assert "for gas_level1@GAS; expected fan_started" in ev[0].detail
    # a late answer clears it; the record of both is kept in the snapshot
    assert interlock(e.on_event("FAN", at(50), "fan_started", "pulse")) == [("cleared", "FAN")]
    log = e.snapshot()["rules"]["gas_interlock"]["state"]["log"]
    assert [(r[1], r[4]) for r in log] == [("VALVE", "acknowledged"), ("FAN", "not acknowledged"),
                                           ("FAN", "acknowledged")]
    # a new episode after the gas cleared sends again (someone may have reopened the valve by hand)
    e.on_reading("GAS", at(100), {"lel": 1})
    e.on_reading("GAS", at(200), {"lel": 40})
    assert [c.device for c in e.take_commands()] == ["VALVE", "FAN"]


def test_a_home_detector_drives_its_own_home_and_waits_survive_a_restart() -> None:
    e = Engine(KITCHEN_RULES, KITCHEN)
    e.on_reading("HOME-GAS", at(0), {"lel": 30})
    assert [(c.device, c.command) for c in e.take_commands()] == [("HOME-VALVE", "close")]
    again = Engine.restore(KITCHEN_RULES, KITCHEN, json.loads(json.dumps(e.snapshot())))
    assert interlock(again.tick(at(31))) == [("raised", "HOME-VALVE")]
    again.on_reading("HOME-GAS", at(40), {"lel": 35})  # still the same episode after the restart
    assert again.take_commands() == []


@pytest.mark.parametrize(("body", "expected"), [
    ("when: [nope]\n    commands: [{kind: gas_valve, command: close}]",
     "t.yaml:5: rules.i.when: 'nope' is not a device"),
    ("when: [g]\n    commands: [{kind: gas, command: close}]", "t.yaml:6: rules.i.commands.0.kind: a gas takes no"),
    ("when: [g]\n    commands: [{kind: gas_valve, command: open}]",
     "t.yaml:6: rules.i.commands.0.command: gas_valve has no command 'open' (commands: close)"),
    ("when: [g]\n    commands: []", "t.yaml:6: rules.i.commands: List should have at least 1 item"),
])
def test_bad_interlocks_name_file_line_and_field(body: str, expected: str) -> None:
    text = ("version: 1\nrules:\n  - id: i\n    type: interlock\n    " + body + "\n    severity: critical\n"
            "    dispatch: urgent\n  - {id: g, type: threshold, kind: gas, field: lel, direction: high, raise: 25,\n"
            "     clear: 20, severity: major, dispatch: urgent}\n")
    with pytest.raises(RulesError) as exc:
        load_rules([("t.yaml", text)], KITCHEN)
    assert any(p.startswith(expected) for p in exc.value.problems), exc.value.problems
