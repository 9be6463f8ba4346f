"""`gridtwin rules check|test`, run in-process (no services needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli import main


def test_rules_check_ok_and_bad(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "check"]) == 0
    assert capsys.readouterr().out.startswith("OK: ")
    site = tmp_path / "site.yaml"
    site.write_text("version: 1\nrules:\n  - {id: gas_level1, raise: 20, clear: 15}\n", encoding="utf-8")
    assert main(["rules", "check", str(site)]) == 0
    assert f"shipped defaults + {site}" in capsys.readouterr().out
    site.write_text("version: 1\nrules:\n  - id: gas_level1\n    clear: 30\n  - id: co_alarm\n    hold: soon\n",
                    encoding="utf-8")
    assert main(["rules", "check", str(site)]) == 2
    err = capsys.readouterr().err
    assert f"{site}:4: rules.gas_level1.clear: clear 30 is above raise 25" in err
    assert f"{site}:6: rules.co_alarm.hold: 'soon' is not a duration" in err
    assert main(["rules", "check", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read rules file" in capsys.readouterr().err


def test_rules_test_replays_a_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "test", "--scenario", "gas-leak", "--raised-only", "--json-lines"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    events = [x for x in lines if x["type"] == "alarm_event"]
    assert [(x["rule"], x["kind"], x["severity"], x["subject"]) for x in events] == [
        ("gas_level1", "raised", "major", "B1-B1-GAS"),
        # offline nobody answers the interlock's commands: the valve and the fan are reported after 30 s
        ("gas_interlock", "raised", "critical", "B1-B1-VALVE"), ("gas_interlock", "raised", "critical", "B1-B1-FAN"),
        ("gas_level2", "raised", "critical", "B1-B1-GAS")]
    assert all({"rule", "kind", "severity", "subject", "raised_at", "dispatch"} <= x.keys() for x in events)
    # then the incidents those alarms make, then the check of the scenario's expect: block
    assert [x["type"] for x in lines] == ["alarm_event"] * 4 + ["incident", "expect"]
    assert lines[-1] == {"type": "expect", "met": True, "incidents": 1, "problems": []}
    assert main(["rules", "test", "--scenario", "no-such-scenario"]) == 2


def test_rules_test_prints_alarms_and_incidents_for_people_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "test", "--scenario", "elevator-entrapment"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "alarm events (6):",
        "  +0:03:00  raised    major    elevator_stop_outside_door_zone  B1-E1-M        stop_outside_door_zone active",
        "  +0:04:00  raised    critical elevator_entrapment              B1-E1-M        entrapment active",
        "  +0:13:00  escalated critical elevator_stop_outside_door_zone  B1-E1-M        unacknowledged for 10m",
        "  +0:24:00  cleared   critical elevator_entrapment              B1-E1-M        entrapment cleared",
        "  +0:24:00  cleared   critical elevator_stop_outside_door_zone  B1-E1-M        stop_outside_door_zone cleared",
        "  +0:24:10  raised    warning  elevator_maintenance             B1-E1-M        maintenance_mode active",
        "incidents (1, one ticket each):",
        "  1. 电梯困人 · 阳光社区 1号楼 1层",
        "     elevator, urgent, life-safety; worst elevator_entrapment; 2 alarms on 1 device; opened +0:03:00",
        "     +0:03:00  elevator_stop_outside_door_zone  B1-E1-M (cleared +0:24:00)",
        "     +0:04:00  elevator_entrapment              B1-E1-M (cleared +0:24:00)",
        "expect: met (1 incident as stated)"]
    assert "3 alarms raised, 1 incidents (tickets)" in err and err.rstrip().endswith("expect: met")


def test_rules_test_prints_the_incidents_of_a_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "test", "--scenario", "fire", "--incidents", "--json-lines", "--check"]) == 0
    out, err = capsys.readouterr()
    fire, expect = [json.loads(x) for x in out.splitlines()]
    assert (fire["type"], fire["title"], fire["category"], fire["priority"], fire["rule"]) == (
        "incident", "火警确认(同层两路信号) · 阳光社区 1号楼 3层", "fire", "urgent", "fire_confirmed")
    assert fire["alarms"][0]["rule"] == "fire_prealarm" and "1 incidents (tickets)" in err
    assert expect["met"] is True
    site = tmp_path / "incidents.yaml"
    site.write_text("version: 1\ngroups:\n  - {id: fire, scope: floor}\n", encoding="utf-8")
    # by floor: the detectors' floor and the basement's valve are two tickets; the scenario expects one fire
    assert main(["rules", "test", "--scenario", "fire", "--incidents", "--incident-file", str(site)]) == 0
    out = capsys.readouterr().out
    assert out.count("\n  1. ") == 1 and "\n  2. " in out and "expect: NOT met (2 problems):" in out
    assert main(["rules", "test", "--scenario", "fire", "--incidents", "--incident-file", str(site), "--check"]) == 1
    assert "fire.yaml:" in capsys.readouterr().out
    site.write_text("version: 1\ngroups:\n  - {id: fire, scope: street}\n", encoding="utf-8")
    assert main(["rules", "test", "--scenario", "fire", "--incidents", "--incident-file", str(site)]) == 2
    assert f"{site}:3: groups.fire.scope: " in capsys.readouterr().err


def test_rules_test_check_needs_a_stated_expectation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "mine.yaml"
    f.write_text("name: mine\ndescription: a gas leak without expectations\nduration: 20m\ninclude: [gas-leak]\n",
                 encoding="utf-8")
    assert main(["rules", "test", "--scenario", str(f)]) == 0
    assert capsys.readouterr().out.rstrip().endswith("expect: scenario mine states none")
    assert main(["rules", "test", "--scenario", str(f), "--check"]) == 1
    assert "states no expect: block" in capsys.readouterr().err
