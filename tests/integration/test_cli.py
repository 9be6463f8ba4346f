"""The `gridtwin` command as a user runs it: clear one-line errors, and the demo puts rows in the database."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def gridtwin(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GRIDTWIN_")}
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True,
                          env={**base, **(env or {})}, cwd=ROOT, timeout=timeout, check=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_database_is_one_line(mqtt_url: str) -> None:
    r = gridtwin("db", "migrate", env={"GRIDTWIN_DB_URL": "postgresql://u:pw@127.0.0.1:1/x",
                                       "GRIDTWIN_MQTT_URL": mqtt_url})
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr
    err = [line for line in r.stderr.splitlines() if line.startswith("gridtwin:")]
    assert len(err) == 1 and "127.0.0.1:1" in err[0] and "pw" not in r.stderr


def test_unreachable_broker_is_one_line(db_url: str) -> None:
    port = _free_port()
    r = gridtwin("gateway", "--duration", "1", env={"GRIDTWIN_MQTT_URL": f"mqtt://127.0.0.1:{port}",
                                                   "GRIDTWIN_DB_URL": db_url, "GRIDTWIN_DB_SCHEMA": "t_unreach"})
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr and f"127.0.0.1:{port}" in r.stderr


def test_bad_arguments_and_settings() -> None:
    r = gridtwin("simulate", "--rate", "-5", "--stdout")
    assert r.returncode == 2 and "must be > 0" in r.stderr
    r = gridtwin("config", "check", env={"GRIDTWIN_GATEWAY_QUEUE_MAX": "ten"})
    assert r.returncode == 2 and "GRIDTWIN_GATEWAY_QUEUE_MAX: gateway.queue_max" in r.stderr
    r = gridtwin("community", "check", "no/such/file.yaml")
    assert r.returncode == 2 and "cannot read community file" in r.stderr
    assert all("Traceback" not in x for x in (r.stderr, r.stdout))


def test_simulate_stdout_writes_contract_messages() -> None:
    r = gridtwin("simulate", "--stdout", "--count", "5", "--devices", "2")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(lines) == 5
    assert len({x["topic"].split("/")[3] for x in lines}) == 2
    assert all(x["payload"]["v"] == 1 and x["payload"]["values"] for x in lines)


def test_demo_runs_end_to_end_and_rows_arrive(db_url: str, mqtt_url: str, schema: str, topic_root: str) -> None:
    env = {"GRIDTWIN_DB_URL": db_url, "GRIDTWIN_MQTT_URL": mqtt_url, "GRIDTWIN_DB_SCHEMA": schema,
           "GRIDTWIN_MQTT_TOPIC_ROOT": topic_root, "GRIDTWIN_MQTT_CLIENT_ID": f"gw-{topic_root}",
           "GRIDTWIN_DEMO_HTTP_PORT": str(_free_port())}
    r = gridtwin("demo", "--duration", "4", env=env)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "dashboard: http://127.0.0.1:" in r.stdout
    assert "mqtt: configured" in r.stderr and "db: configured" in r.stderr
    import psycopg

    with psycopg.connect(db_url) as conn:  # which devices reported depends on their heartbeat phase
        row = conn.execute(f"SELECT d.code, m.name FROM {schema}.latest_values l JOIN {schema}.devices d "
                           f"ON d.id = l.device_id JOIN {schema}.metrics m ON m.id = l.metric_id "
                           "ORDER BY d.code LIMIT 1").fetchone()
    assert row is not None, "the demo stored no readings"
    latest = gridtwin("db", "latest", row[0], env=env)
    assert latest.returncode == 0, latest.stderr
    assert row[1] in latest.stdout
    again = gridtwin("db", "migrate", env=env)
    assert again.returncode == 0 and "nothing (already up to date)" in again.stdout
    unknown = gridtwin("db", "latest", "NOPE", env=env)
    assert unknown.returncode == 1 and "unknown device 'NOPE'" in unknown.stderr


def test_community_generate_writes_a_loadable_file(tmp_path: Path) -> None:
    out = tmp_path / "big.json"
    r = gridtwin("community", "generate", "--buildings", "30", "--devices", "6000", "--seed", "3", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "30 buildings" in r.stdout
    check = gridtwin("community", "check", str(out))
    assert check.returncode == 0 and "30 buildings" in check.stdout
    n = int(check.stdout.split("buildings, ")[1].split(" devices")[0])
    assert 5400 <= n <= 6600
