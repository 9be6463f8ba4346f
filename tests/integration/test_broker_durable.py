"""The embedded broker must not lose what devices publish while the gateway is down (issue 11).

`gridtwin services up` embeds the `mosquitto` binary whenever it is installed (`make` installs it), with
the deployment's limits; amqtt stays only as a last resort, and then it says loudly that it is not
durable, and `gridtwin gateway` refuses it with one line and exit code 3 (the demo still runs on it).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import settings as settings_mod
from gateway.ops import services
from gateway.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "gt"
    yield d
    if (d / "services").exists():
        services.down(settings_mod.load(env={}, data_dir=d))


def _settings(data_dir: Path, db_url: str) -> Settings:
    return settings_mod.load(env={}, data_dir=data_dir, db={"url": db_url})


def test_the_embedded_default_is_mosquitto_and_durable(data_dir: Path, db_url: str) -> None:
    mqtt, _db = services.resolve(_settings(data_dir, db_url), probe_local=False)
    assert mqtt.source == "embedded" and "mosquitto" in mqtt.detail and mqtt.durable and mqtt.mqtt5
    assert "NOT DURABLE" not in mqtt.detail
    assert services.not_durable(_settings(data_dir, db_url), mqtt.url) is None


def test_amqtt_fallback_warns_and_gridtwin_gateway_refuses_it(data_dir: Path, db_url: str, schema: str,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    s = _settings(data_dir, db_url)
    resolved, _ = services.resolve(s, probe_local=False, use_mosquitto=False)
    assert not resolved.durable and "NOT DURABLE" in resolved.detail
    with caplog.at_level(logging.WARNING, logger="gateway.ops.services"):
        mqtt, _db = services.up(s, timeout_s=30, probe_local=False, use_mosquitto=False)
    assert "amqtt" in mqtt.detail and not mqtt.durable and "NOT DURABLE" in mqtt.detail
    assert any("NOT DURABLE" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    problem = services.not_durable(s, mqtt.url)
    assert problem is not None and "NOT DURABLE" in problem and "mosquitto" in problem
    assert services.not_durable(s, "mqtt://127.0.0.1:1") is None  # another broker is not ours to judge

    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDTWIN_")}
    env.update({"GRIDTWIN_MQTT_URL": mqtt.url, "GRIDTWIN_DB_URL": db_url, "GRIDTWIN_DB_SCHEMA": schema,
                "GRIDTWIN_DATA_DIR": str(data_dir)})
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", "gateway", "--duration", "5"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    errors = [line for line in proc.stderr.splitlines() if not line.startswith(("mqtt:", "db:"))]
    assert proc.returncode == 3, (proc.returncode, proc.stderr)
    assert len(errors) == 1 and "NOT DURABLE" in errors[0] and "Traceback" not in proc.stderr, proc.stderr
