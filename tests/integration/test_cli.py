"""The `gridtwin` command as a user runs it: clear one-line errors, and the demo puts rows in the database."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

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
    """The demo serves on the port set, says where and who once, hands out rating links for that address,
    and prints a status line only when something changed."""
    port = _free_port()
    env = {"GRIDTWIN_DB_URL": db_url, "GRIDTWIN_MQTT_URL": mqtt_url, "GRIDTWIN_DB_SCHEMA": schema,
           "GRIDTWIN_MQTT_TOPIC_ROOT": topic_root, "GRIDTWIN_MQTT_CLIENT_ID": f"gw-{topic_root}",
           "GRIDTWIN_DEMO_HTTP_PORT": str(port), "GRIDTWIN_TICKETS_SNAPSHOTS": "false"}
    base = {k: v for k, v in os.environ.items() if not k.startswith("GRIDTWIN_")}
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "demo", "--duration", "60"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**base, **env}, cwd=ROOT)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        rate_url = _rating_link_of_a_demo_ticket(proc, port, mqtt_url, topic_root, db_url, schema)
        # the status line tells of the ticket (lines come every 5 s, and only when something changed)
        deadline = time.monotonic() + 20
        while not any(re.search(r"[1-9]\d* open tickets?", x) for x in lines) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: the demo stops cleanly
        _out, err = proc.communicate(timeout=60)
        reader.join(10)
    out = "".join(lines)
    assert proc.returncode == 0, err + out
    assert rate_url.startswith(f"http://127.0.0.1:{port}/api/v1/rate/"), rate_url
    assert out.count(f"http://127.0.0.1:{port}/") == 1 and out.count("gridtwin-demo") == 1, out
    assert "operator" in out and "w1-1" in out
    assert "demo: {" not in out, "the old status dump is back"
    status = [line for line in out.splitlines() if re.match(r"^\d\d:\d\d:\d\d  ", line)]
    assert any(re.search(r"[1-9]\d* open tickets?", x) for x in status), out
    said = [line.split("  ", 1)[1].split(";")[0] for line in status]
    assert all(a != b for a, b in itertools.pairwise(said)), f"a status line repeats the last one: {status}"
    assert "mqtt: configured" in err and "db: configured" in err
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


def _rating_link_of_a_demo_ticket(proc: subprocess.Popen[str], port: int, mqtt_url: str, root: str, db_url: str,
                                  schema: str) -> str:
    """Once the demo serves: a fire alarm through its broker, the ticket it opens, that ticket's rating link
    as the REST API gives it to an operator."""
    import urllib.error
    import urllib.request

    import orjson
    import paho.mqtt.client as paho
    import psycopg
    from paho.mqtt.enums import CallbackAPIVersion

    from twin import contract

    api = f"http://127.0.0.1:{port}/api/v1"

    def call(path: str, body: dict[str, str] | None = None, token: str | None = None) -> dict[str, Any]:
        req = urllib.request.Request(api + path, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {token}"} if token else {})})
        with urllib.request.urlopen(req, timeout=10) as r:
            return dict(json.loads(r.read()))

    deadline = time.monotonic() + 60
    while True:  # the dashboard is up once login answers
        assert proc.poll() is None and time.monotonic() < deadline, f"the demo did not serve on {port}"
        try:
            token = str(call("/auth/login", {"username": "operator", "password": "gridtwin-demo"})["token"])
            break
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"dev-{root}", protocol=paho.MQTTv311)
    client.connect("127.0.0.1", int(mqtt_url.rsplit(":", 1)[1]))
    client.loop_start()
    payload = orjson.dumps({"v": 1, "ts": int(time.time() * 1000), "seq": 1, "code": "fire_alarm", "state": "active"})
    client.publish(contract.topic(root, "sunshine", "B3-FACP", contract.Channel.EVENT), payload, qos=1) \
        .wait_for_publish(5)
    client.loop_stop()
    client.disconnect()
    with psycopg.connect(db_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(f"SELECT id FROM {schema}.tickets ORDER BY id LIMIT 1").fetchone()
            if row:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the fire alarm opened no ticket")
    return str(call(f"/tickets/{row[0]}", token=token)["rate_url"])


def test_community_generate_writes_a_loadable_file(tmp_path: Path) -> None:
    out = tmp_path / "big.json"
    r = gridtwin("community", "generate", "--buildings", "30", "--devices", "6000", "--seed", "3", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "30 buildings" in r.stdout
    check = gridtwin("community", "check", str(out))
    assert check.returncode == 0 and "30 buildings" in check.stdout
    n = int(check.stdout.split("buildings, ")[1].split(" devices")[0])
    assert 5400 <= n <= 6600
