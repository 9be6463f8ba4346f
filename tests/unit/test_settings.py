"""One settings model: env names, config file with line numbers, unknown keys, bad values."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway import settings as settings_mod
from gateway.settings import SettingsError


def test_defaults_and_env_names() -> None:
    s = settings_mod.load(env={"GRIDTWIN_MQTT_URL": "mqtt://h:1884", "GRIDTWIN_DB_URL": "postgresql://x@y/z",
                               "GRIDTWIN_GATEWAY_BATCH_SIZE": "123", "GRIDTWIN_DB_SCHEMA": "abc"})
    assert s.mqtt.url == "mqtt://h:1884" and s.db.url == "postgresql://x@y/z"
    assert s.gateway.batch_size == 123 and s.db.schema_name == "abc"
    assert settings_mod.load(env={}).mqtt.topic_root == "gridtwin"


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"GRIDTWIN_MQTT_URL": "http://x"}, "environment GRIDTWIN_MQTT_URL: mqtt.url"),
        ({"GRIDTWIN_DB_URL": "mysql://x"}, "GRIDTWIN_DB_URL: db.url: Value error, must start with postgresql://"),
        ({"GRIDTWIN_GATEWAY_BATCH_SIZE": "lots"}, "GRIDTWIN_GATEWAY_BATCH_SIZE: gateway.batch_size"),
        ({"GRIDTWIN_BOGUS": "1"}, "environment GRIDTWIN_BOGUS: unknown setting"),
        ({"GRIDTWIN_MQTT_PORT": "1"}, "environment GRIDTWIN_MQTT_PORT: unknown setting"),
        ({"GRIDTWIN_DB_SCHEMA": "Robert'); DROP"}, "db.schema"),
        ({"GRIDTWIN_MQTT_TOPIC_ROOT": "a/#"}, "mqtt.topic_root"),
    ],
)
def test_bad_env_names_the_key_and_reason(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(SettingsError) as e:
        settings_mod.load(env=env)
    assert fragment in str(e.value), str(e.value)


def test_config_file_errors_carry_line_numbers(tmp_path: Path) -> None:
    f = tmp_path / "gridtwin.yaml"
    f.write_text("mqtt:\n  url: mqtt://broker:1883\n  colour: blue\ngateway:\n  batch_size: 0\n")
    with pytest.raises(SettingsError) as e:
        settings_mod.load(f, env={})
    problems = e.value.problems
    assert f"{f}:3: mqtt.colour: unknown setting" in problems
    assert any(p.startswith(f"{f}:5: gateway.batch_size: Input should be greater than or equal to 1") for p in problems)


def test_env_overrides_file(tmp_path: Path) -> None:
    f = tmp_path / "gridtwin.yaml"
    f.write_text("mqtt:\n  url: mqtt://file:1883\ndb:\n  retention_days: 7\n")
    s = settings_mod.load(f, env={"GRIDTWIN_MQTT_URL": "mqtt://env:1883"})
    assert s.mqtt.url == "mqtt://env:1883" and s.db.retention_days == 7


@pytest.mark.parametrize("text", ["mqtt: [1, 2\n", "- just\n- a list\n"])
def test_unreadable_config_file(tmp_path: Path, text: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(SettingsError, match=str(f)):
        settings_mod.load(f, env={})


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read it"):
        settings_mod.load(tmp_path / "nope.yaml", env={})


def test_config_check_command_explains_each_bad_key(tmp_path: Path) -> None:
    f = tmp_path / "gridtwin.yaml"
    f.write_text("db:\n  retention_days: -3\n  shcema: x\n")
    r = subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(f), "config", "check"],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert f"{f}:2: db.retention_days" in r.stderr and f"{f}:3: db.shcema: unknown setting" in r.stderr
    ok = subprocess.run([sys.executable, "-m", "gateway.cli", "config", "check"], capture_output=True,
                        text=True, check=False, env={"PATH": "/usr/bin:/bin"})
    assert ok.returncode == 0, ok.stderr
    assert "settings OK" in ok.stdout


def test_loading_never_touches_os_environ_and_threads_get_their_own_values(monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import threading

    monkeypatch.setenv("GRIDTWIN_GATEWAY_BATCH_SIZE", "777")  # the process environment: must stay as it is
    before = dict(os.environ)
    seen: dict[int, int] = {}
    changed: list[str] = []
    start = threading.Barrier(8)

    def load(k: int) -> None:
        start.wait()
        for _ in range(50):
            s = settings_mod.load(env={"GRIDTWIN_GATEWAY_BATCH_SIZE": str(1000 + k), "GRIDTWIN_MQTT_CLIENT_ID": "x"})
            if s.gateway.batch_size != 1000 + k:
                seen[k] = s.gateway.batch_size
            if dict(os.environ) != before:
                changed.append(f"thread {k}")

    threads = [threading.Thread(target=load, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not seen, seen  # every thread got its own mapping's value, never another thread's
    assert not changed and dict(os.environ) == before
    # without env=, the process environment is read
    assert settings_mod.load(mqtt={"client_id": "x"}).gateway.batch_size == 777


def test_default_client_id_is_made_once_per_data_dir(tmp_path: Path) -> None:
    a = settings_mod.load(env={}, data_dir=tmp_path / "a").mqtt.client_id
    assert a.startswith("gridtwin-") and (tmp_path / "a" / settings_mod.CLIENT_ID_FILE).read_text().strip() == a
    assert settings_mod.load(env={}, data_dir=tmp_path / "a").mqtt.client_id == a  # kept across restarts
    b = settings_mod.load(env={"GRIDTWIN_DATA_DIR": str(tmp_path / "b")}).mqtt.client_id
    assert b != a  # another gateway (another data dir) never shares it by accident
    (tmp_path / "old" / "spool" / "gridtwin-gateway").mkdir(parents=True)  # a gateway of the fixed default
    assert settings_mod.load(env={}, data_dir=tmp_path / "old").mqtt.client_id == "gridtwin-gateway"
    explicit = settings_mod.load(env={"GRIDTWIN_MQTT_CLIENT_ID": "gw-7"}, data_dir=tmp_path / "a")
    assert explicit.mqtt.client_id == "gw-7" and explicit.mqtt.gateway_status_topic() == "gridtwin/v1/gateways/gw-7"


@pytest.mark.parametrize(("env", "fragment"), [
    ({"GRIDTWIN_MQTT_KEY_FILE": "k.pem"}, "key_file needs cert_file"),
    ({"GRIDTWIN_MQTT_STATUS_TOPIC": "a/+/b"}, "mqtt.status_topic"),
    ({"GRIDTWIN_MQTT_CLIENT_ID": "a#"}, "mqtt.client_id"),
])
def test_bad_mqtt_tls_and_status_settings(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(SettingsError, match=fragment):
        settings_mod.load(env=env)


def test_tls_and_status_settings_from_env() -> None:
    s = settings_mod.load(env={"GRIDTWIN_MQTT_CA_FILE": "/pki/ca.crt", "GRIDTWIN_MQTT_CERT_FILE": "/pki/gw.crt",
                               "GRIDTWIN_MQTT_KEY_FILE": "/pki/gw.key", "GRIDTWIN_MQTT_STATUS": "false",
                               "GRIDTWIN_MQTT_CLIENT_ID": "gw"})
    assert (s.mqtt.ca_file, s.mqtt.cert_file, s.mqtt.key_file) == (Path("/pki/ca.crt"), Path("/pki/gw.crt"),
                                                                    Path("/pki/gw.key"))
    assert s.mqtt.status is False
