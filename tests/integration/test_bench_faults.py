"""`gridtwin bench faults`: the load it sends, and a small kill -9 run on real processes."""

from __future__ import annotations

import time

import orjson
import pytest

from benchmarks import faults as bench_faults
from gateway.cli import build_parser
from twin import community as community_mod


def test_load_places_alarms_before_during_and_after_the_fault(sample: community_mod.Community) -> None:
    msgs, gas, rows = bench_faults.build_load(sample, "bf", 1000, 500.0, time.time())
    assert len(msgs) == 1000
    assert rows == sum(len(orjson.loads(m.payload)["values"]) for m in msgs)
    gas_kind = {d.id for d in sample.devices if d.kind == "gas"}
    alarms = [(m.topic.split("/")[3], i / len(msgs)) for i, m in enumerate(msgs) if m.topic.split("/")[3] in gas_kind]
    at = dict(alarms)
    assert len(alarms) == len(at) == len(gas) == len(bench_faults.ALARMS_AT) and set(at) == set(gas)
    positions = sorted(at.values())
    assert sum(p < bench_faults.FAULT_AT for p in positions) >= 2
    assert sum(bench_faults.FAULT_AT < p < bench_faults.RECOVER_AT for p in positions) >= 3
    assert sum(p > bench_faults.RECOVER_AT for p in positions) >= 2
    for m in msgs:
        if m.topic.split("/")[3] in gas:
            assert orjson.loads(m.payload)["values"] == {"lel": bench_faults.ALARM_LEL}
    # one gas detector per floor: no two alarms may join one incident
    floors = {(d.building, d.floor) for d in sample.devices if d.id in gas}
    assert len(floors) == len(gas)


def test_cli_knows_the_faults_benchmark() -> None:
    args = build_parser().parse_args(["bench", "faults", "--json", "--repeats", "1", "--transport", "both"])
    assert (args.what, args.json, args.repeats, args.transport) == ("faults", True, 1, "both")


@pytest.mark.integration
def test_kill_9_run_loses_nothing(db_url: str) -> None:
    lines: list[str] = []
    rows = bench_faults.bench_faults(db_url, repeats=1, faults=["kill9_gateway"], messages=600, rate=200.0,
                                     log=lines.append)
    assert len(rows) == 1
    row = rows[0]
    assert set(row) == set(bench_faults.ROW_KEYS), row  # no "error" key: the run went through
    assert row["fault"] == "kill9_gateway" and row["transport"] == "fast" and row["run"] == 1
    assert all(isinstance(row[k], int) for k in ("sent", "stored", "lost", "duplicated", "tickets",
                                                  "tickets_expected"))
    assert row["sent"] == 600
    assert row["lost"] == 0 and row["stored"] == row["sent"]
    assert row["duplicated"] == 0
    assert row["tickets"] == row["tickets_expected"] == len(bench_faults.ALARMS_AT)
    assert any("2 starts" in ln for ln in lines), lines  # the gateway really was killed and started again
    assert orjson.loads(orjson.dumps(rows)) == rows
    assert "| kill9_gateway | fast | 1 | 600 | 600 | 0 | 0 | 7 | 7 |" in bench_faults.table(rows)
