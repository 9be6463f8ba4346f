"""`gridtwin serve` puts the dashboard and the REST API on one port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from gateway import settings as settings_mod
from gateway.api.auth import Users
from gateway.cli_base import sample_community_path
from gateway.ops.procs import free_port
from gateway.settings import Settings
from gateway.storage import Storage
from gateway.web.composition import start_dashboard
from tests.support.brokers import wait_until
from twin.community import Community, parse
from twin.people import Role

pytestmark = pytest.mark.integration


def test_dashboard_and_api_share_the_server(settings: Settings) -> None:
    assert settings.db.url
    community = parse(sample_community_path().read_text(encoding="utf-8"))
    with Storage.connect(settings.db.url, schema=settings.db.schema_name) as st:
        st.migrate()
        st.load_community(community)
    handle = start_dashboard(settings, community, settings.db.url, None, port=free_port())
    base = f"http://127.0.0.1:{handle.server_port}"
    try:
        with urllib.request.urlopen(f"{base}/api/v1/openapi.json", timeout=10) as r:
            spec = json.loads(r.read())
        assert "/api/v1/tickets" in spec["paths"]
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{base}/api/v1/tickets", timeout=10)
        e.value.close()
        assert e.value.code == 401  # no token: refused, not a 500
        with urllib.request.urlopen(f"{base}/", timeout=10) as r:
            page = r.read().decode()
        assert "<html" in page.lower()
    finally:
        handle.shutdown()


def _loaded(settings: Settings) -> Community:
    assert settings.db.url
    community = parse(sample_community_path().read_text(encoding="utf-8"))
    with Storage.connect(settings.db.url, schema=settings.db.schema_name) as st:
        st.migrate()
        st.load_community(community)
    return community


def test_many_clients_on_a_small_pool_are_all_served(settings: Settings) -> None:
    """More concurrent API requests than connections and threads: they queue, none is refused (a request
    holding a connection never waits for a thread that a request waiting for a connection holds)."""
    assert settings.db.url
    community = _loaded(settings)
    with Storage.connect(settings.db.url, schema=settings.db.schema_name) as st:
        Users(st.conn).add("serve-operator", "serve-operator-pass", Role.OPERATOR)
    small = settings_mod.load(env={}, mqtt={"url": settings.mqtt.url, "topic_root": settings.mqtt.topic_root},
                              db={"url": settings.db.url, "schema": settings.db.schema_name, "pool_size": 1})
    handle = start_dashboard(small, community, settings.db.url, None, port=0)
    base = f"http://127.0.0.1:{handle.server_port}"
    login = urllib.request.Request(f"{base}/api/v1/auth/login", method="POST", headers={
        "Content-Type": "application/json"}, data=json.dumps({"username": "serve-operator",
                                                              "password": "serve-operator-pass"}).encode())
    try:
        with urllib.request.urlopen(login, timeout=30) as r:
            token = json.loads(r.read())["token"]

        def get(n: int) -> int:
            req = urllib.request.Request(f"{base}/api/v1/tickets?limit={1 + n % 50}",
                                         headers={"Authorization": f"Bearer {token}"})
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    return r.status
            except urllib.error.HTTPError as e:
                e.close()
                return e.code

        with ThreadPoolExecutor(80) as pool:
            statuses = list(pool.map(get, range(160)))  # 80 at once, twice over
        assert set(statuses) == {200}, sorted(set(statuses))
        with urllib.request.urlopen(f"{base}/healthz", timeout=10) as r:
            assert r.status == 200 and json.loads(r.read()) == {"status": "ok"}
    finally:
        handle.shutdown()


def _call(url: str, token: str | None = None, body: dict[str, object] | None = None) -> dict[str, object]:
    req = urllib.request.Request(url, method="POST" if body is not None else "GET", headers={
        "Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})},
        data=json.dumps(body).encode() if body is not None else None)
    with urllib.request.urlopen(req, timeout=30) as r:
        out: dict[str, object] = json.loads(r.read())
        return out


def test_serve_with_two_workers_stops_gracefully(settings: Settings) -> None:
    assert settings.db.url and settings.mqtt.url
    _loaded(settings)
    with Storage.connect(settings.db.url, schema=settings.db.schema_name) as st:
        Users(st.conn).add("serve-op2", "serve-op2-pass", Role.OPERATOR)
    port = free_port()
    env = {**os.environ, "GRIDTWIN_DB_URL": settings.db.url, "GRIDTWIN_DB_SCHEMA": settings.db.schema_name,
           "GRIDTWIN_MQTT_URL": settings.mqtt.url, "GRIDTWIN_MQTT_TOPIC_ROOT": settings.mqtt.topic_root}
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--port", str(port), "--workers", "2"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                    return r.status == 200
            except OSError:
                return False

        assert wait_until(healthy, 60), "the server did not come up"
        # the links it hands out (the resident's rating link) name the port it serves, not the default 8050
        base = f"http://127.0.0.1:{port}/api/v1"
        token = str(_call(f"{base}/auth/login", body={"username": "serve-op2", "password": "serve-op2-pass"})["token"])
        made = _call(f"{base}/tickets", token, {"title": "楼道灯不亮", "building": "B1", "floor": 1})
        ticket = _call(f"{base}/tickets/{made['id']}", token)
        assert str(ticket["rate_url"]).startswith(f"http://127.0.0.1:{port}/api/v1/rate/"), ticket["rate_url"]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err.decode()[-2000:]
        assert err.count(b"Application shutdown complete") == 2  # each worker closed its pools and threads
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
