"""The dashboard in Debian's Chromium, driven by Playwright, against the running system.

One module-wide setup: a fresh schema with the sample community and its demo accounts, the real
gateway (broker -> validation -> alarm engine -> PostgreSQL) on its own topic root, and the dashboard
on a free port. Screenshots go to ``artifacts/`` (git-ignored) so a person can look at them.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import paho.mqtt.client as paho
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway import settings as settings_mod
from gateway.cli_base import sample_community_path
from gateway.ingest.pipeline import Gateway
from gateway.storage import Storage
from gateway.web.composition import seed_demo_users, start_dashboard
from tests.conftest import DB_URL, MQTT_URL
from twin import contract
from twin.community import Community, parse

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("GRIDTWIN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
PASSWORD = "browser-test-pass"
FIRE_PANEL = "B3-FACP"
IGNORED_CONSOLE = ("GL Driver Message", "GPU stall", "WebGL", "willReadFrequently")

if shutil.which(CHROMIUM) is None:  # pragma: no cover - bootstrap installs it
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api")


class System:
    def __init__(self, community: Community, schema: str, root: str, url: str, settings: Any) -> None:
        self.community = community
        self.schema = schema
        self.root = root
        self.url = url
        self.settings = settings
        self.live: Any = None  # the dashboard server's LiveHub (test_browser_live cuts its streams)

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(DB_URL, autocommit=True, options=f"-c search_path={self.schema}") as conn:
            cur = conn.execute(query, args)
            return list(cur.fetchall()) if cur.description else []


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    root = f"gt-test-{uuid.uuid4().hex[:10]}"
    community = parse(sample_community_path().read_text(encoding="utf-8"))
    s = settings_mod.load(env={}, mqtt={"url": MQTT_URL, "topic_root": root, "client_id": f"gw-{root}"},
                          db={"url": DB_URL, "schema": schema}, gateway={"flush_interval_s": 0.05})
    with Storage.connect(DB_URL, schema=schema) as st:
        st.migrate()
        st.load_community(community)
    seed_demo_users(DB_URL, community, PASSWORD, schema=schema)
    gw = Gateway(s, MQTT_URL, DB_URL)
    gw.start()
    server = start_dashboard(s, community, DB_URL, MQTT_URL, port=0)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        system = System(community, schema, root, server.url.rstrip("/"), s)
        system.live = server.live
        yield system
    finally:
        server.shutdown()
        gw.stop()
        with psycopg.connect(DB_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


class Page:
    """A browser tab that records console errors."""

    def __init__(self, browser: Any, system: System, width: int = 1400, height: int = 850) -> None:
        self.ctx = browser.new_context(viewport={"width": width, "height": height}, is_mobile=width < 500,
                                       has_touch=width < 500)
        self.page = self.ctx.new_page()
        self.system = system
        self.errors: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def _console(self, msg: Any) -> None:
        if msg.type == "error" and not any(s in msg.text for s in IGNORED_CONSOLE):
            self.errors.append(msg.text)

    def sign_in(self, username: str, path: str = "/") -> None:
        self.page.goto(self.system.url + path)
        self.page.wait_for_selector("#login-submit")
        self.page.fill("#username", username)
        self.page.fill("#password", PASSWORD)
        self.page.click("#login-submit")

    def shot(self, name: str) -> Path:
        out = ARTIFACTS / name
        self.page.screenshot(path=str(out))
        return out

    def close(self) -> None:
        self.ctx.close()


@pytest.fixture
def tab(browser: Any, system: System) -> Iterator[Page]:
    p = Page(browser, system)
    yield p
    p.close()


def _wait(pred: Callable[[], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def _scene_pixels(page: Any) -> tuple[int, int, int]:
    """(pixels that are not background, alarm-red pixels, total) of the 3D canvas area."""
    import io

    from PIL import Image

    png = page.locator("#scene.dash-graph").screenshot()
    px = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int32).reshape(-1, 3)
    drawn = int((np.abs(px - np.array([0x0F, 0x17, 0x2A])).sum(axis=1) > 30).sum())
    red = int(((px[:, 0] > 150) & (px[:, 1] < 70) & (px[:, 2] < 70)).sum())
    return drawn, red, len(px)


def publish(system: System, device: str, channel: contract.Channel, messages: list[dict[str, Any]]) -> None:
    """Publish as the device would, through the broker; returns once the broker has every message (PUBACK)."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"dev-{uuid.uuid4().hex[:8]}",
                         protocol=paho.MQTTv311)
    client.connect("127.0.0.1", int(MQTT_URL.rsplit(":", 1)[1]))
    client.loop_start()
    topic = contract.topic(system.root, system.community.id, device, channel)
    for m in messages:
        client.publish(topic, orjson.dumps(m), qos=1).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


def _fire(system: System, state: str, seq: int) -> None:
    """The B3 fire panel reports a fire alarm (or its end) through the broker, as a device would."""
    publish(system, FIRE_PANEL, contract.Channel.EVENT, [{"v": 1, "ts": int(datetime.now(UTC).timestamp() * 1000),
                                                          "seq": seq, "code": "fire_alarm", "state": state}])


# -- the control room --------------------------------------------------------------------------------------


def test_overview_renders_3d_without_console_errors(tab: Page, browser: Any, system: System) -> None:
    tab.sign_in("operator")
    tab.page.wait_for_selector("#scene .gl-container canvas", timeout=20_000)
    tab.page.wait_for_selector("#scene .legend", timeout=20_000)
    # the server-drawn first frame was loaded under the graph and is hidden once WebGL has drawn
    tab.page.wait_for_selector(".scene-wrap.drawn", timeout=20_000)
    assert tab.page.evaluate("() => document.querySelector('.scene-poster').naturalWidth") > 0
    assert not tab.page.locator(".scene-poster").is_visible()
    webgl = _scene_image(tab.page)
    drawn, _red, total = _scene_pixels(tab.page)
    assert drawn > total * 0.05, f"the 3D canvas looks blank ({drawn} of {total} pixels drawn)"
    assert "阳光社区" in tab.page.inner_text("#scene-title")
    tab.shot("overview.png")
    # the first frame is the same picture: same camera, colours and labels (the legend is WebGL's alone)
    tab.page.evaluate("() => { document.querySelector('.scene-wrap').classList.remove('drawn');"
                      " document.querySelector('#scene').style.visibility = 'hidden'; }")
    poster = _scene_image(tab.page)
    tab.shot("overview-first-frame.png")
    differ = float((np.abs(webgl - poster).sum(axis=2) > 60).mean())
    print(f"first frame vs WebGL: {differ:.1%} of the pixels differ")
    assert differ < 0.05, f"the first frame differs from the WebGL scene in {differ:.1%} of its pixels"
    assert tab.errors == []
    # the picture is for signed-in operators, by a key the page got: anything else is not found
    src = tab.page.get_attribute(".scene-poster", "src")
    assert src and tab.page.request.get(system.url + src).status == 200
    assert tab.page.request.get(system.url + "/media/scene/" + "0" * 32 + ".png").status == 404
    assert tab.page.request.get(system.url + "/media/scene/..%2f..%2fetc.png").status == 404
    stranger = browser.new_context()
    try:
        assert stranger.request.get(system.url + src).status == 404
    finally:
        stranger.close()


def _scene_image(page: Any) -> Any:
    import io

    from PIL import Image

    png = page.locator(".scene-wrap").screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int32)


def test_alarm_through_the_broker_turns_the_building_red_and_is_acknowledged(tab: Page, system: System) -> None:
    tab.sign_in("operator")
    tab.page.wait_for_selector("#scene .legend", timeout=20_000)
    tab.page.wait_for_timeout(800)
    _drawn, red_before, _ = _scene_pixels(tab.page)
    _fire(system, "active", 1)  # returns once the broker has the message (PUBACK)
    t0 = time.monotonic()
    tab.page.wait_for_function(
        "Array.from(document.querySelectorAll('#scene .js-plotly-plot')).some("
        "gd => (gd.data || []).some(tr => tr.type === 'mesh3d' && tr.color === '#E3161B'))",
        timeout=15_000, polling=20)  # how fast is measured by `gridtwin bench live`, not asserted here
    took = time.monotonic() - t0
    assert _wait(lambda: _scene_pixels(tab.page)[1] > red_before + 500, 5.0), "the model is not painted red"
    row = tab.page.locator(".alarm-row", has_text="3号楼").first
    row.wait_for(timeout=10_000)
    tab.shot("alarm.png")
    print(f"fire alarm published -> building red in the browser: {took:.2f} s")

    row.click()
    tab.page.wait_for_function("document.querySelector('#alarm-selected').innerText.includes('3号楼')")
    tab.page.fill("#ack-comment", "消控室已电话核实，保安前往现场")
    tab.page.click("#ack-btn")
    tab.page.wait_for_selector(".alarm-row[data-status=active_ack]", timeout=5_000)
    [(status, by, comment)] = system.sql("SELECT status, acked_by, ack_comment FROM alarms WHERE key LIKE %s",
                                         f"%@{FIRE_PANEL}")
    assert (status, by, comment) == ("active_ack", "operator", "消控室已电话核实，保安前往现场")
    assert "operator" in tab.page.inner_text("#alarm-list")
    tab.shot("alarm_acknowledged.png")
    assert tab.errors == []


def test_click_a_building_pulls_its_floors_apart(tab: Page, system: System) -> None:
    tab.sign_in("operator", "/building/B3")
    tab.page.wait_for_selector("#scene-back", timeout=20_000)
    tab.page.wait_for_selector("#scene .legend", timeout=20_000)
    tab.page.wait_for_timeout(800)
    legend = tab.page.locator("#scene .legend").text_content() or ""
    assert "设备" in legend and "电梯轿厢" in legend
    drawn, _red, total = _scene_pixels(tab.page)
    assert drawn > total * 0.02
    tab.shot("building.png")
    tab.page.click("#scene-back")
    tab.page.wait_for_url(system.url + "/")
    tab.page.goto(system.url + "/building/NOPE")
    assert "未知楼栋" in tab.page.locator("#unknown-building").inner_text(timeout=10_000)
    tab.page.goto(system.url + "/device/NOPE")
    assert "未知设备" in tab.page.locator("#unknown-device").inner_text(timeout=10_000)
    assert tab.errors == []


def test_english_is_selectable(tab: Page, system: System) -> None:
    tab.sign_in("operator", "/hotspots")
    tab.page.wait_for_selector("#lang-switch")
    tab.page.click("#lang-switch")
    tab.page.wait_for_selector("text=Hotspots (alarms and reports in the last 30 days)", timeout=10_000)
    assert "3D overview" in tab.page.inner_text("#topbar")
    tab.page.click("#lang-switch")
    tab.page.wait_for_selector("text=热点分析（近 30 天告警与上报）", timeout=10_000)


# -- grid workers ----------------------------------------------------------------------------------------


def _dispatched_ticket(browser: Any, system: System) -> tuple[str, str]:
    """The operator dispatches the open fire alarm from the panel; returns (ticket id, assignee)."""
    if not system.sql("SELECT 1 FROM alarms WHERE key LIKE %s AND status LIKE 'active%%'", f"%@{FIRE_PANEL}"):
        _fire(system, "active", 100 + int(time.time()) % 1000)
        assert _wait(lambda: bool(system.sql("SELECT 1 FROM alarms WHERE key LIKE %s", f"%@{FIRE_PANEL}")), 5)
    op = Page(browser, system)
    try:
        op.sign_in("operator")
        for attempt in range(6):  # the live list may be redrawn under the click (a busy machine): click again
            op.page.locator(".alarm-row", has_text="3号楼").first.click(timeout=20_000)
            try:
                op.page.wait_for_function("document.querySelector('#alarm-selected').innerText.includes('3号楼')",
                                          timeout=5_000)
                break
            except Exception:  # playwright's TimeoutError
                if attempt == 5:
                    raise
        op.page.click("#dispatch-btn")
        op.page.wait_for_selector("#action-msg.ok", timeout=20_000)
        assert op.errors == []
    finally:
        op.close()
    [(tid, assignee, grid, version)] = system.sql(
        "SELECT id, assignee, grid, version FROM tickets ORDER BY id DESC LIMIT 1")
    assert assignee, "the ticket was not assigned to anyone"
    workers = [w.id for g in system.community.grids if g.id == grid for w in g.workers]
    if assignee not in workers:
        # off shift (the grid's only worker works days): the duty roster gave it to the supervisor, who
        # hands it to the day worker, as a supervisor would by phone
        from gateway.tickets.service import TicketService
        from twin.people import Role, User

        with Storage.connect(DB_URL, schema=system.schema) as st:
            TicketService(st, system.settings, system.community).reassign(
                User("operator", "值班员", Role.OPERATOR), int(tid), workers[0], "night: the day worker goes",
                version=int(version))
        assignee = workers[0]
    return str(tid), str(assignee)


def test_worker_on_a_phone_accepts_and_resolves_a_ticket(browser: Any, system: System) -> None:
    tid, worker = _dispatched_ticket(browser, system)
    phone = Page(browser, system, width=390, height=844)
    try:
        phone.sign_in(worker)
        phone.page.wait_for_url(system.url + "/worker")
        card = phone.page.locator(f"a[href='/worker/ticket/{tid}']")
        card.wait_for(timeout=10_000)
        phone.shot("worker_tickets.png")
        card.click()
        phone.page.wait_for_selector("#wt-title", timeout=10_000)
        assert phone.page.locator(".sop input").count() > 0, "no SOP checklist on the ticket"
        phone.page.locator(".sop input").first.check()
        assert _wait(lambda: bool(system.sql("SELECT 1 FROM ticket_events WHERE ticket_id = %s "
                                             "AND action = 'sop_check'", int(tid))), 10), "the tick was not saved"
        phone.page.click("#wt-accept")
        phone.page.wait_for_selector("#wt-status[data-status=handling]", timeout=10_000)
        # 到场 is next now; the report form is folded under it
        phone.page.click("#wt-more-summary")
        phone.page.fill("#wt-note", "已到现场，误报：厨房油烟触发，已复位")
        png = ARTIFACTS / "feedback_photo.png"
        phone.page.screenshot(path=str(png), clip={"x": 0, "y": 0, "width": 60, "height": 40})
        phone.page.set_input_files("#wt-photo input[type=file]", str(png))
        phone.page.wait_for_selector("text=已选照片", timeout=5_000)
        phone.page.click("#wt-feedback")
        phone.page.wait_for_selector("#wt-msg.ok:has-text('反馈已提交')", timeout=10_000)
        phone.page.fill("#wt-note", "厨房油烟误报，控制器已复位")
        # the panel's fire alarm is still active: resolving needs a reason, and says so
        phone.page.click("#wt-resolve")
        phone.page.wait_for_selector("#wt-msg.warn:has-text('仍有生命安全报警未复位')", timeout=10_000)
        phone.page.click("#wt-reason")
        phone.page.locator(".Select-option, [role=option]", has_text="误报").first.click()
        phone.page.click("#wt-resolve")
        phone.page.wait_for_selector("#wt-status[data-status=feedback]", timeout=10_000)
        width = phone.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the phone page scrolls sideways ({width} px)"
        phone.page.evaluate("window.scrollTo(0, 0)")
        phone.shot("worker_ticket_phone.png")
        [(state,)] = system.sql("SELECT state FROM tickets WHERE id = %s", int(tid))
        assert state == "feedback"
        [(reason,)] = system.sql("SELECT close_reason FROM tickets WHERE id = %s", int(tid))
        assert reason == "false_alarm"
        actions = [r[0] for r in system.sql("SELECT action FROM ticket_events WHERE ticket_id = %s ORDER BY id",
                                            int(tid))]
        assert actions[-3:] == ["accept", "progress", "resolve"]
        assert system.sql("SELECT 1 FROM ticket_events WHERE ticket_id = %s AND photo_id IS NOT NULL", int(tid))
        assert phone.errors == []
    finally:
        phone.close()


def test_ticket_board_kpis_hotspots_and_care_pages(browser: Any, system: System) -> None:
    if not system.sql("SELECT 1 FROM tickets WHERE state IN ('dispatched', 'handling')"):
        _dispatched_ticket(browser, system)
    p = Page(browser, system)
    try:
        p.sign_in("operator", "/tickets")
        p.page.wait_for_selector("#ticket-table [data-sla]", timeout=10_000)
        p.shot("ticket_board.png")
        p.page.goto(system.url + "/kpi")
        p.page.wait_for_selector("#kpi-tables table", timeout=10_000)
        p.page.goto(system.url + "/hotspots")
        p.page.wait_for_selector("#page h2:has-text(\"热点分析\")", timeout=10_000)
        p.page.goto(system.url + "/care")
        p.page.wait_for_selector("#care-table", timeout=10_000)
        p.shot("care.png")
        p.page.goto(system.url + "/device/B3-FACP")
        p.page.wait_for_selector("#device-title", timeout=10_000)
        assert p.errors == []
    finally:
        p.close()


def test_a_worker_cannot_reach_operator_pages_or_data(browser: Any, system: System) -> None:
    phone = Page(browser, system, width=390, height=844)
    try:
        phone.sign_in("w1-1")
        phone.page.wait_for_url(system.url + "/worker")
        phone.page.goto(system.url + "/")
        assert phone.page.url == system.url + "/worker"
        for path in ("/kpi", "/building/B3", "/device/B3-B1-GAS", "/tickets", "/care", "/hotspots"):
            resp = phone.page.goto(system.url + path)
            assert resp is not None and resp.status == 403, path
            assert "无权" in phone.page.inner_text("#forbidden")
        body = {"output": "..alarm-list.children...alarm-count.children...f-building.options...f-category.options"
                          "...alarm-count.className..",
                "outputs": [{"id": "alarm-list", "property": "children"}, {"id": "alarm-count", "property": "children"},
                            {"id": "f-building", "property": "options"}, {"id": "f-category", "property": "options"},
                            {"id": "alarm-count", "property": "className"}],
                "inputs": [{"id": i, "property": p, "value": None} for i, p in
                           (("version", "data"), ("alarms-bump", "data"), ("f-severity", "value"),
                            ("f-category", "value"), ("f-building", "value"), ("alarm-selected-key", "data"),
                            ("alarm-limit", "data"))],
                "state": [], "changedPropIds": ["version.data"]}
        r = phone.page.request.post(system.url + "/_dash-update-component", data=orjson.dumps(body).decode(),
                                    headers={"Content-Type": "application/json"})
        assert r.status == 204, "a worker's forged callback got alarm data"
    finally:
        phone.close()


def test_an_expired_session_goes_back_to_sign_in(browser: Any, system: System) -> None:
    p = Page(browser, system)
    try:
        p.sign_in("operator", "/care")
        p.page.wait_for_selector("#care-summary", timeout=10_000)
        system.sql("UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE username = 'operator'")
        p.page.wait_for_selector("#login-expired", timeout=25_000)  # the slow poll (viz.live.SLOW_POLL_MS) notices
        assert "/login" in p.page.url
        assert "Traceback" not in p.page.content()
    finally:
        p.close()
