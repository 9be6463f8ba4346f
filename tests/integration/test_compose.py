"""The real-deployment docker-compose.yml, checked with `docker-compose config` (no Docker engine needed).

`docker-compose` (Debian's 1.29.2) is installed by `make test` through apt; without it these tests fail
rather than skip, so a missing install step cannot hide behind a green run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.settings import describe

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "deploy" / ".env.example"

SECRETS = {
    "GRIDTWIN_DB_PASSWORD": "dummy-db-secret",
    "GRIDTWIN_MQTT_GATEWAY_PASSWORD": "dummy-gateway-secret",
    "GRIDTWIN_MQTT_DASHBOARD_PASSWORD": "dummy-dashboard-secret",
    "GRIDTWIN_MQTT_SIMULATOR_PASSWORD": "dummy-simulator-secret",
}
APP_SERVICES = ("migrate", "gateway", "dashboard", "simulator")


def _docker_compose() -> str:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail("docker-compose is not on PATH: run `make test` (it installs docker-compose through apt)")
    return exe


def _run_config(tmp_path: Path, secrets: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` at the repo root with exactly `secrets` as the GRIDTWIN_* environment."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GRIDTWIN_", "COMPOSE_", "DOCKER_")) and k != "PYTHONWARNINGS"
    }
    env.update(secrets)
    # An empty env file, so a developer's own .env at the repo root cannot leak into the test.
    empty_env = tmp_path / "empty.env"
    empty_env.write_text("", encoding="utf-8")
    return subprocess.run(
        [_docker_compose(), "--env-file", str(empty_env), "config"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    proc = _run_config(tmp_path_factory.mktemp("compose"), SECRETS)
    assert proc.returncode == 0, f"docker-compose config failed:\n{proc.stderr}"
    data = yaml.safe_load(proc.stdout)
    assert isinstance(data, dict)
    return data


def _image_tag(image: str) -> str:
    name, _, tag = image.rpartition(":")
    return tag if name and "/" not in tag else ""


def _conf_directives(text: str) -> list[list[str]]:
    out = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            out.append(words)
    return out


def test_compose_config_is_valid(config: dict[str, Any]) -> None:
    services = config["services"]
    assert {"mosquitto", "db", "gateway", "dashboard", "simulator", "migrate"} <= set(services)

    # The simulator is demo-only; everything else starts by default.
    assert services["simulator"].get("profiles") == ["demo"]
    for name, svc in services.items():
        if name != "simulator":
            assert not svc.get("profiles"), f"{name} must not be behind a profile"

    # Third-party images are pinned.
    for name in ("db", "mosquitto"):
        tag = _image_tag(services[name]["image"])
        assert tag and tag != "latest", f"{name} image is not pinned: {services[name]['image']}"
    assert services["db"]["image"] == "timescale/timescaledb:2.17.2-pg16"
    assert services["mosquitto"]["image"] == "eclipse-mosquitto:2.0.18"

    # The gateway waits for a healthy broker and database and for the migration.
    deps = services["gateway"]["depends_on"]
    assert deps["mosquitto"]["condition"] == "service_healthy"
    assert deps["db"]["condition"] == "service_healthy"
    assert deps["migrate"]["condition"] == "service_completed_successfully"
    for name in ("mosquitto", "db", "gateway"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no health check"

    # Secrets reach the services through interpolation.
    gw_env = services["gateway"]["environment"]
    assert gw_env["GRIDTWIN_MQTT_URL"] == "mqtt://gateway:dummy-gateway-secret@mosquitto:1883"
    assert gw_env["GRIDTWIN_DB_URL"] == "postgresql://postgres:dummy-db-secret@db:5432/postgres"
    assert services["db"]["environment"]["POSTGRES_PASSWORD"] == "dummy-db-secret"


def test_app_services_get_only_known_gridtwin_settings(config: dict[str, Any]) -> None:
    # gridtwin rejects unknown GRIDTWIN_* variables, so a typo here would stop the container at start.
    known = {row[0] for row in describe()}
    for name in APP_SERVICES:
        env = config["services"][name].get("environment", {})
        unknown = sorted(k for k in env if k.startswith("GRIDTWIN_") and k not in known)
        assert not unknown, f"{name}: unknown gridtwin settings {unknown}"


def test_mosquitto_config_requires_auth_and_has_tls(config: dict[str, Any]) -> None:
    mounts = {}
    for vol in config["services"]["mosquitto"]["volumes"]:
        source, target, *mode = vol.split(":") if isinstance(vol, str) else (vol["source"], vol["target"])
        mounts[target] = (Path(source), mode)
    source, mode = mounts["/mosquitto/config"]
    assert mode == ["ro"], "the broker config must be mounted read-only"
    assert source == ROOT / "deploy" / "mosquitto"

    directives = _conf_directives((source / "mosquitto.conf").read_text(encoding="utf-8"))
    assert ["allow_anonymous", "false"] in directives
    assert ["allow_anonymous", "true"] not in directives
    assert any(d[0] == "password_file" for d in directives)
    assert any(d[0] == "acl_file" for d in directives)

    # Split into listener blocks; the TLS one has a certificate and a key.
    listeners: dict[str, set[str]] = {}
    current: set[str] | None = None
    for d in directives:
        if d[0] == "listener":
            current = listeners.setdefault(d[1], set())
        elif current is not None:
            current.add(d[0])
    assert "1883" in listeners
    assert {"certfile", "keyfile"} <= listeners.get("8883", set()), "no TLS listener on 8883"

    # The ACL is generated from gateway/ops/credentials.py (tests/integration/test_broker_acl.py runs it on a
    # real broker);
    # device accounts come from devices.acl, never from pattern rules that apply to every account.
    acl = (source / "acl").read_text(encoding="utf-8")
    assert re.search(r"^user gateway$\n(^topic .*$\n)*^topic write gridtwin/v1/workers/\+/tickets$", acl, re.MULTILINE)
    assert not re.search(r"^pattern ", acl, re.MULTILINE)
    # Queue and packet limits are explicit (tests/integration/test_broker_limits.py checks the values).
    for key in ("max_queued_messages", "max_queued_bytes", "max_inflight_messages", "max_packet_size"):
        assert any(d[0] == key for d in directives), key


def test_env_example_lists_every_required_variable() -> None:
    lines = COMPOSE_FILE.read_text(encoding="utf-8").splitlines()
    code = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    required = set(re.findall(r"\$\{(\w+):\?", code))
    assert required == set(SECRETS)
    example = {
        line.split("=", 1)[0].strip()
        for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    }
    assert example == required


def test_compose_config_fails_without_db_password(tmp_path: Path) -> None:
    secrets = {k: v for k, v in SECRETS.items() if k != "GRIDTWIN_DB_PASSWORD"}
    proc = _run_config(tmp_path, secrets)
    assert proc.returncode != 0
    assert "GRIDTWIN_DB_PASSWORD" in proc.stderr
