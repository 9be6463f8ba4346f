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
    assert main(["rules", "test", "--scenario", "gas-leak", "--raised-only"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(x["rule"], x["kind"], x["severity"], x["subject"]) for x in lines] == [
        ("gas_level1", "raised", "major", "B1-B1-GAS"),
        # offline nobody answers the interlock's commands: the valve and the fan are reported after 30 s
        ("gas_interlock", "raised", "critical", "B1-B1-VALVE"), ("gas_interlock", "raised", "critical", "B1-B1-FAN"),
        ("gas_level2", "raised", "critical", "B1-B1-GAS")]
    assert all({"rule", "kind", "severity", "subject", "raised_at", "dispatch"} <= x.keys() for x in lines)
    assert main(["rules", "test", "--scenario", "no-such-scenario"]) == 2


def test_rules_test_prints_the_incidents_of_a_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "test", "--scenario", "fire", "--incidents"]) == 0
    out, err = capsys.readouterr()
    (fire,) = [json.loads(x) for x in out.splitlines()]
    assert (fire["title"], fire["category"], fire["priority"], fire["rule"]) == (
        "火警确认(同层两路信号) · 阳光社区 1号楼 3层", "fire", "urgent", "fire_confirmed")
    assert fire["alarms"][0]["rule"] == "fire_prealarm" and "1 incidents (tickets)" in err
    site = tmp_path / "incidents.yaml"
    site.write_text("version: 1\ngroups:\n  - {id: fire, scope: floor}\n", encoding="utf-8")
    assert main(["rules", "test", "--scenario", "fire", "--incidents", "--incident-file", str(site)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2  # by floor: the detectors' floor and the basement's valve
    site.write_text("version: 1\ngroups:\n  - {id: fire, scope: street}\n", encoding="utf-8")
    assert main(["rules", "test", "--scenario", "fire", "--incidents", "--incident-file", str(site)]) == 2
    assert f"{site}:3: groups.fire.scope: " in capsys.readouterr().err
