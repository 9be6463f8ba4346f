"""The web side under attack (issue 11): password guessing, open redirects, missing headers, path
traversal and a database outage, against the real dashboard + REST API server (``gridtwin serve``'s
composition), the real PostgreSQL and, for the outage, a TCP proxy we can cut."""

from __future__ import annotations

import http.client
import json
import logging
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from gateway import settings as settings_mod
from gateway.api import auth
from gateway.api.app import create_api
from gateway.api.auth import LoginGuard, configure_hashing
from gateway.ops.procs import free_port
from gateway.settings import Settings
from gateway.storage import Storage
from gateway.web.composition import DashboardHandle, seed_demo_users, start_dashboard
from gateway.web.dashboard_data import StorageDashboardData
from gateway.web.sign_in import DatabaseSignIn
from tests.support.brokers import Proxy, wait_until
from twin.community import Community
from viz import app as app_mod

pytestmark = pytest.mark.integration
PASSWORD = "web-security-pass"
NOW = datetime(2026, 6, 1, 4, 0, tzinfo=UTC)  # 12:00 in China


@pytest.fixture(autouse=True, scope="module")
def _cheap_hashing() -> Iterator[None]:
    configure_hashing(time_cost=1, memory_kib=1024, parallelism=1)  # the real cost is not what is tested here
    yield
    configure_hashing()


@pytest.fixture
def users(storage: Storage, settings: Settings, sample: Community) -> Storage:
    assert settings.db.url
    seed_demo_users(settings.db.url, sample, PASSWORD, schema=settings.db.schema_name)
    return storage


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Both:
    """The two login paths of one process, sharing one guard: the REST API and the dashboard's form."""

    def __init__(self, settings: Settings, sample: Community, guard: LoginGuard) -> None:
        assert settings.db.url
        self.api = create_api(settings, sample, db_url=settings.db.url, schema=settings.db.schema_name,
                              login_guard=guard)
        self.client = TestClient(self.api)
        self.auth = DatabaseSignIn(settings.db.url, schema=settings.db.schema_name, guard=guard)
        self.data = StorageDashboardData(sample, settings.db.url, schema=settings.db.schema_name, sign_in=self.auth)
        self.app = app_mod.create_app(self.data)
        self.form = self.app.server.test_client()

    def api_login(self, username: str, password: str = PASSWORD) -> Any:
        return self.client.post("/api/v1/auth/login", json={"username": username, "password": password})

    def form_login(self, username: str, password: str = PASSWORD, addr: str = "127.0.0.1", lang: str = "zh",
                   next_: str = "/") -> Any:
        self.form.set_cookie(app_mod.LANG_COOKIE, lang)
        return self.form.post("/auth/login", data={"username": username, "password": password, "next": next_},
                              environ_base={"REMOTE_ADDR": addr})

    def close(self) -> None:
        self.client.close()
        self.api.state.close()
        self.data.close()
        self.auth.close()


@pytest.fixture
def both(users: Storage, settings: Settings, sample: Community) -> Iterator[tuple[Both, Clock]]:
    clock = Clock()
    b = Both(settings, sample, LoginGuard(clock=clock, wall=lambda: NOW))
    yield b, clock
    b.close()


# -- 1. password guessing ----------------------------------------------------------------------------------


def test_an_account_is_locked_after_ten_failures_on_either_login_path(
        both: tuple[Both, Clock], caplog: pytest.LogCaptureFixture) -> None:
    b, clock = both
    caplog.set_level(logging.INFO, logger="gridtwin.audit")
    for n in range(10):  # 15 s apart: slower than the per-account throttle, so only the lockout can stop them
        clock.t += 15
        if n % 2:
            r = b.form_login("operator", "wrong-password")
            assert r.status_code == 302 and "error=bad" in r.headers["Location"]
        else:
            r = b.api_login("operator", "wrong-password")
            assert r.status_code == 401
    clock.t += 15
    r = b.api_login("operator")  # the right password, but the account is locked
    assert r.status_code == 429, r.text
    body = r.json()
    assert body["reason"] == "locked" and 14 * 60 <= int(r.headers["Retry-After"]) <= 15 * 60
    assert "locked until 04:14:45 UTC (in 15 min)" in body["detail"] and "锁定" in body["detail_zh"]
    assert body["retry_at"].startswith("2026-06-01T04:14:45")
    page = b.form_login("operator")
    assert page.status_code == 429 and int(page.headers["Retry-After"]) > 60
    text = page.get_data(as_text=True)
    assert "账户已临时锁定" in text and "12:14" in text  # when, in the control room's time zone
    assert app_mod.SESSION_COOKIE not in page.headers.get("Set-Cookie", "")
    en = b.form_login("operator", lang="en").get_data(as_text=True)
    assert "this account is locked until 12:14" in en
    assert b.api_login("admin").status_code == 200  # other accounts are not affected
    clock.t += 15 * 60
    assert b.api_login("operator").status_code == 200  # and the lock ends
    audit = [r.getMessage() for r in caplog.records if r.name == "gridtwin.audit"]
    assert sum("failed sign-in for 'operator'" in m for m in audit) == 10
    assert any("account 'operator' locked for 15 min" in m for m in audit)


def test_attempts_are_throttled_per_address_and_per_account(both: tuple[Both, Clock]) -> None:
    b, clock = both
    for n in range(20):  # one address guessing across many accounts
        assert b.api_login(f"nobody-{n}", "wrong-password").status_code == 401
    r = b.api_login("admin")
    assert r.status_code == 429 and r.json()["reason"] == "throttled" and r.headers["Retry-After"] == "6"
    assert "请 6 秒后再试" in r.json()["detail_zh"]
    clock.t += 6
    assert b.api_login("admin").status_code == 200  # one attempt back every 6 s; a success costs nothing
    assert b.api_login("admin").status_code == 200
    # many addresses on one account: five at once, then throttled (the form shows when to retry)
    for n in range(5):
        assert b.form_login("w1-1", "wrong-password", addr=f"10.0.0.{n}").status_code == 302
    r = b.form_login("w1-1", "wrong-password", addr="10.0.0.99")
    assert r.status_code == 429 and r.headers["Retry-After"] == "12"
    assert "登录尝试过于频繁，请 12 秒后再试" in r.get_data(as_text=True)


def _serve(settings: Settings, sample: Community, **kw: Any) -> tuple[DashboardHandle, str]:
    assert settings.db.url
    h = start_dashboard(settings, sample, settings.db.url, None, port=free_port(), **kw)
    return h, f"127.0.0.1:{h.server_port}"


def _request(hostport: str, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
             source: str | None = None) -> tuple[int, dict[str, str], bytes]:
    host, port = hostport.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60,
                                      source_address=(source, 0) if source else None)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)  # the path exactly as given
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        conn.putheader("Content-Length", str(len(body or b"")))
        conn.endheaders(body)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def test_password_hashing_is_bounded_and_a_flood_is_refused_at_once(
        users: Storage, settings: Settings, sample: Community, monkeypatch: pytest.MonkeyPatch) -> None:
    """60 logins at once from 60 addresses (so no per-address throttle helps): at most two passwords are
    hashed at a time (argon2id: 64 MiB each); the rest are refused with 503 + Retry-After, not queued."""
    inside, peak = [0], [0]
    lock = threading.Lock()
    real_verify = auth.verify_password

    def slow_verify(hashed: str, password: str) -> bool:
        with lock:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
        try:
            time.sleep(0.3)  # a real argon2id verification at the default cost takes about this long
            return real_verify(hashed, password)
        finally:
            with lock:
                inside[0] -= 1

    monkeypatch.setattr(auth, "verify_password", slow_verify)
    handle, hp = _serve(settings, sample)
    try:
        def attempt(n: int) -> tuple[int, dict[str, str]]:
            if n % 2:
                body = json.dumps({"username": f"guess-{n}", "password": "wrong-password"}).encode()
                status, headers, _ = _request(hp, "POST", "/api/v1/auth/login", body,
                                              {"Content-Type": "application/json"}, source=f"127.0.1.{n + 1}")
            else:
                body = urllib.parse.urlencode({"username": f"guess-{n}", "password": "wrong-password"}).encode()
                status, headers, _ = _request(hp, "POST", "/auth/login", body,
                                              {"Content-Type": "application/x-www-form-urlencoded"},
                                              source=f"127.0.1.{n + 1}")
            return status, headers

        t0 = time.monotonic()
        with ThreadPoolExecutor(60) as pool:
            got = list(pool.map(attempt, range(60)))
        took = time.monotonic() - t0
    finally:
        handle.shutdown()
    assert peak[0] <= 2, f"{peak[0]} passwords hashed at once"
    statuses = sorted(s for s, _ in got)
    assert set(statuses) <= {302, 401, 503}, statuses  # checked (wrong) or refused as busy; never a 500
    assert statuses.count(503) >= 40, statuses  # two at a time, a few waiting: the rest turned away at once
    assert all(h.get("retry-after") == "1" for s, h in got if s == 503)
    assert took < 10


# -- 2. redirects ---------------------------------------------------------------------------------------


class _NoData:
    """A data source the redirect routes never reach."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the data source was used: {name}")


@pytest.mark.parametrize("raw", [
    "/%09/evil.example", "/%0a/x", "/%0d%0aSet-Cookie:%20a=b", "//evil.example", "/%5Cevil.example",
    "%5C%5Cevil.example", "https://evil.example/", "%2F%2Fevil.example", "///evil.example",
    "/%E2%80%A8/evil.example", "javascript:alert(1)", "%20//evil.example", "/\\evil.example",
])
def test_lang_switch_redirects_only_to_local_paths(raw: str) -> None:
    client = app_mod.create_app(_NoData()).server.test_client()
    r = client.get(f"/lang/en?next={raw}")
    assert r.status_code == 302, r.status_code
    assert r.headers["Location"] == "/"


def test_local_redirect_targets_are_kept() -> None:
    client = app_mod.create_app(_NoData()).server.test_client()
    for target in ("/tickets", "/building/B3?x=1", "/login?next=/kpi"):
        r = client.get(f"/lang/zh?next={urllib.parse.quote(target)}")
        assert r.status_code == 302 and r.headers["Location"] == target


def test_sign_in_never_redirects_off_site(both: tuple[Both, Clock]) -> None:
    b, _ = both
    r = b.form_login("operator", "wrong-password", next_="/\t/evil.example")
    assert r.status_code == 302 and r.headers["Location"] == "/login?error=bad&next=/"
    r = b.form_login("operator", next_="/\n/evil.example")
    assert r.status_code == 302 and r.headers["Location"] == "/"  # the operator's home
    r = b.form_login("operator", next_="/kpi")
    assert r.status_code == 302 and r.headers["Location"] == "/kpi"


# -- 3. headers, cookies and malformed paths ----------------------------------------------------------


def _ticket_rate_token(users: Storage, hp: str) -> str:
    status, _, body = _request(hp, "POST", "/api/v1/auth/login",
                               json.dumps({"username": "operator", "password": PASSWORD}).encode(),
                               {"Content-Type": "application/json"})
    assert status == 200, body
    token = json.loads(body)["token"]
    status, _, body = _request(hp, "POST", "/api/v1/tickets", json.dumps({"title": "楼道灯坏了"}).encode(),
                               {"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    assert status == 201, body
    row = users.conn.execute("UPDATE tickets SET state = 'feedback' WHERE id = %s RETURNING rate_token",
                             (json.loads(body)["id"],)).fetchone()  # resolved: the resident may rate it now
    assert row is not None
    return str(row[0])


def test_every_response_carries_the_security_headers(users: Storage, settings: Settings, sample: Community) -> None:
    handle, hp = _serve(settings, sample)
    try:
        rate = _ticket_rate_token(users, hp)
        html_pages: dict[str, dict[str, str]] = {"/login": {}, f"/api/v1/rate/{rate}": {"Accept": "text/html"}}
        others: dict[str, dict[str, str]] = {
            "/_dash-layout": {}, "/_dash-dependencies": {}, "/assets/style.css": {}, "/kpi": {},
            "/_dash-component-suites/dash/deps/polyfill@7.12.1.min.js": {}, "/api/v1/openapi.json": {},
            "/api/v1/tickets": {}, f"/api/v1/rate/{rate}": {}, "/api/v1/rate/no-such-token": {},
            "/api/v1/nope": {}, "/nope.js": {}}
        seen: dict[str, dict[str, str]] = {}
        for path, headers in {**others, **html_pages}.items():
            status, h, _ = _request(hp, "GET", path, headers=headers)
            assert status < 500, (path, status)
            seen[path] = h
            assert h.get("x-content-type-options") == "nosniff", path
            assert h.get("x-frame-options") == "DENY", path
            assert h.get("referrer-policy") in ("same-origin", "no-referrer"), path
            assert "werkzeug" not in h.get("server", "").lower() and "python" not in h.get("server", "").lower(), path
            if h.get("content-type", "").startswith("text/html"):
                assert "frame-ancestors 'none'" in h.get("content-security-policy", ""), path
        dash_csp = seen["/login"]["content-security-policy"]
        assert "default-src 'self'" in dash_csp and "object-src 'none'" in dash_csp
        assert "'unsafe-inline'" not in dash_csp.split("script-src")[1].split(";")[0]  # scripts by hash instead
        rate_csp = seen[f"/api/v1/rate/{rate}"]["content-security-policy"]
        nonce = re.search(r"'nonce-([^']+)'", rate_csp)
        assert nonce and "default-src 'none'" in rate_csp
        _, _, page = _request(hp, "GET", f"/api/v1/rate/{rate}", headers={"Accept": "text/html"})
        assert b"<script nonce=" in page  # the rating form's own script is the only one allowed
        assert "default-src 'none'" in seen["/api/v1/tickets"]["content-security-policy"]
    finally:
        handle.shutdown()


def test_cookies_are_secure_behind_tls(users: Storage, settings: Settings, sample: Community) -> None:
    data = StorageDashboardData(sample, str(settings.db.url), schema=settings.db.schema_name,
                                sign_in=DatabaseSignIn(str(settings.db.url), schema=settings.db.schema_name))
    try:
        client = app_mod.create_app(data).server.test_client()
        form = {"username": "operator", "password": PASSWORD, "next": "/"}
        plain = client.post("/auth/login", data=form).headers["Set-Cookie"]
        assert "HttpOnly" in plain and "Secure" not in plain
        proxied = client.post("/auth/login", data=form, headers={"X-Forwarded-Proto": "https"})
        assert "Secure" in proxied.headers["Set-Cookie"]
        assert "max-age" in proxied.headers.get("Strict-Transport-Security", "")
        lang = client.get("/lang/en?next=/", headers={"X-Forwarded-Proto": "https"}).headers["Set-Cookie"]
        assert "Secure" in lang
    finally:
        data.close()
    s = settings_mod.load(env={}, mqtt={"url": settings.mqtt.url, "topic_root": settings.mqtt.topic_root},
                          db={"url": settings.db.url, "schema": settings.db.schema_name},
                          api={"public_url": "https://twin.example.org"})
    handle, hp = _serve(s, sample)
    try:
        body = urllib.parse.urlencode(form).encode()
        status, h, _ = _request(hp, "POST", "/auth/login", body, {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 302 and "Secure" in h["set-cookie"]
    finally:
        handle.shutdown()


def test_traversal_and_malformed_requests_get_4xx_never_500(users: Storage, settings: Settings,
                                                             sample: Community) -> None:
    handle, hp = _serve(settings, sample)
    try:
        for path in ("/_dash-component-suites/dash/../../etc/passwd",
                     "/_dash-component-suites/dash/%2e%2e/%2e%2e/etc/passwd",
                     "/_dash-component-suites/dash/..%2f..%2fetc%2fpasswd", "/_dash-component-suites/nope/x.js",
                     "/_dash-component-suites/dash/nope.js", "/_dash-component-suites/plotly/../../../etc/passwd",
                     "/assets/../../etc/passwd", "/assets/..%2f..%2fetc%2fpasswd", "/assets/%00",
                     "/media/photos/..%2f..%2fetc", "/media/tickets/1/../../../etc/passwd", "/%00", "/a%5Cb",
                     "/worker/ticket/%0a", "/lang/%0a?next=/%0a", "/./login", "/api/v1/../../etc/passwd",
                     "/api/v1/rate/..%2f..%2f"):
            status, _, _ = _request(hp, "GET", path)
            assert status in (400, 404), (path, status)
        for path in ("/api/v1/tickets/%00", "/api/v1/tickets/..%2f1", "/api/v1/knowledge/%0a", "/_dash-layout/%00"):
            status, _, _ = _request(hp, "GET", path)
            assert 400 <= status < 500, (path, status)  # refused (401 without a token), never a 500
        for body in (b"{}", b"[]", b'"x"', b'{"output": 1}', b"{not json",
                     b'{"output": "nope.children", "outputs": {"id": "nope", "property": "children"}, "inputs": []}'):
            status, _, _ = _request(hp, "POST", "/_dash-update-component", body, {"Content-Type": "application/json"})
            assert status == 400, (body, status)
    finally:
        handle.shutdown()


# -- 4. database outage ------------------------------------------------------------------------------------


def test_a_database_outage_answers_503_at_once_without_internals(
        users: Storage, settings: Settings, sample: Community, caplog: pytest.LogCaptureFixture) -> None:
    assert settings.db.url
    info = psycopg.conninfo.conninfo_to_dict(settings.db.url)
    proxy = Proxy(int(info.get("port") or 5432))
    url = f"postgresql://{info.get('user', 'postgres')}@127.0.0.1:{proxy.port}/{info['dbname']}"
    s = settings_mod.load(env={}, mqtt={"url": settings.mqtt.url, "topic_root": settings.mqtt.topic_root},
                          db={"url": url, "schema": settings.db.schema_name})
    handle = start_dashboard(s, sample, url, None, port=free_port())
    hp = f"127.0.0.1:{handle.server_port}"
    secrets = ("127.0.0.1", str(proxy.port), str(info.get("user", "postgres")), "postgresql", "5432")

    def clean(body: bytes) -> bool:
        text = body.decode("utf-8", "replace")
        return not any(x in text for x in secrets)

    try:
        status, _, body = _request(hp, "POST", "/api/v1/auth/login",
                                   json.dumps({"username": "operator", "password": PASSWORD}).encode(),
                                   {"Content-Type": "application/json"})
        bearer = {"Authorization": f"Bearer {json.loads(body)['token']}"}
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        login = urllib.parse.urlencode({"username": "operator", "password": PASSWORD, "next": "/kpi"}).encode()
        status, h, _ = _request(hp, "POST", "/auth/login", login, form)
        cookie = {"Cookie": h["set-cookie"].split(";")[0]}
        assert _request(hp, "GET", "/api/v1/me", headers=bearer)[0] == 200
        assert _request(hp, "GET", "/kpi", headers=cookie)[0] == 200
        proxy.cut()
        time.sleep(0.3)
        for _ in range(3):  # the first request meets the broken pooled connection: 503 too, not 500
            t0 = time.monotonic()
            status, h, body = _request(hp, "GET", "/api/v1/me", headers=bearer)
            assert status == 503 and time.monotonic() - t0 < 3, (status, body)
            assert h["retry-after"] == "5" and clean(body), body
            assert json.loads(body) == {"detail": "the service is temporarily unavailable: please try again shortly",
                                        "detail_zh": "服务暂时不可用，请稍后再试"}
        status, h, body = _request(hp, "POST", "/api/v1/auth/login",
                                   json.dumps({"username": "operator", "password": PASSWORD}).encode(),
                                   {"Content-Type": "application/json"})
        assert status == 503 and clean(body)
        status, h, body = _request(hp, "POST", "/auth/login", login, form)
        assert status == 503 and "location" not in h and clean(body)
        assert "服务暂时不可用" in body.decode()
        status, h, body = _request(hp, "POST", "/auth/login", login, {**form, "Cookie": "gridtwin_lang=en"})
        assert status == 503 and "temporarily unavailable" in body.decode()
        # a signed-in dashboard: 503 for a page (not the sign-in page), and the poll keeps the screen
        time.sleep(app_mod.USER_CACHE_S)  # once the session is no longer cached: the server cannot tell who it is
        status, h, body = _request(hp, "GET", "/kpi", headers=cookie)
        assert status == 503 and "location" not in h and clean(body) and h["retry-after"] == "5"
        poll = {"output": "..version.data...redirect.href...db-version.data..",
                "outputs": [{"id": "version", "property": "data"}, {"id": "redirect", "property": "href"},
                            {"id": "db-version", "property": "data"}],
                "inputs": [{"id": "poll", "property": "n_intervals", "value": 3}],
                "state": [{"id": "db-version", "property": "data", "value": "v1"},
                          {"id": "url", "property": "pathname", "value": "/kpi"},
                          {"id": "url", "property": "search", "value": ""}],
                "changedPropIds": ["poll.n_intervals"]}
        status, _, body = _request(hp, "POST", "/_dash-update-component", json.dumps(poll).encode(),
                                   {**cookie, "Content-Type": "application/json"})
        assert status == 204 and b"/login" not in body
        logged = " ".join(r.getMessage() for r in caplog.records)
        assert "database unavailable" in logged  # the details are in the server log
        proxy.heal()
        assert wait_until(lambda: _request(hp, "GET", "/api/v1/me", headers=bearer)[0] == 200, 10)
        assert wait_until(lambda: _request(hp, "GET", "/kpi", headers=cookie)[0] == 200, 10)  # same session
    finally:
        handle.shutdown()
        proxy.close()
