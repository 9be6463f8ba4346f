"""The device page and the device inventory in Debian's Chromium, against the running system (the fixtures of
``test_browser``): readings named in the user's language with units, Chinese date axes, alarm periods on the
chart, the alarm/event log, the state timeline of a status-only device, the range picker's validation, the back
links, and the inventory's search, filters, sorting and paging.

Screenshots go to ``/tmp/shots-devices/`` for a person to look at.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import test_browser as tb
from tests.e2e.test_browser import FIRE_PANEL, Page, System, _fire, _wait, publish
from twin import contract
from viz.shell import CHINA

# the module-wide system, the browser and a tab: the same fixtures as test_browser (pytest finds them by name here)
system = tb.system
browser = tb.browser
tab = tb.tab

pytestmark = pytest.mark.integration

SHOTS = Path("/tmp/shots-devices")
SMOKE = "B3-F1-SD1"


def _smoke_history(system: System) -> None:
    """Half an hour of smoke readings with one excursion above 2 %/m (the smoke_rising alarm: raised, cleared)."""
    now = datetime.now(UTC)
    values = [0.4, 0.5, 0.5, 3.1, 3.4, 3.0, 0.6, 0.5, 0.4, 0.4]
    items = [{"v": 1, "ts": int((now - timedelta(minutes=30 - 3 * i)).timestamp() * 1000), "seq": 10 + i,
              "values": {"obscuration": v, "battery": 87.0}} for i, v in enumerate(values)]
    publish(system, SMOKE, contract.Channel.TELEMETRY, items)
    assert _wait(lambda: bool(system.sql(
        "SELECT 1 FROM alarm_events e JOIN alarms a ON a.key = e.key WHERE a.device = %s AND e.kind = 'cleared'",
        SMOKE)), 10), "the smoke_rising alarm was not raised and cleared"


def _figure(tab: Page, js: str, timeout: float = 30_000) -> Any:
    """Wait until the history chart's data satisfy ``js`` (a function of the graph div), return its value."""
    tab.page.wait_for_function(f"() => {{ const gd = document.querySelector('#history .js-plotly-plot');"
                               f" return gd && gd.data && ({js})(gd); }}", timeout=timeout, polling=50)
    return tab.page.evaluate(f"() => ({js})(document.querySelector('#history .js-plotly-plot'))")


def test_device_page_names_fields_with_units_shades_alarms_and_lists_them(tab: Page, system: System) -> None:
    _smoke_history(system)
    tab.sign_in("operator", f"/device/{SMOKE}")
    tab.page.wait_for_selector("#dev-latest", timeout=60_000)
    latest = tab.page.inner_text("#dev-latest")
    assert "烟雾减光率 (%/m)" in latest and "电池电量 (%)" in latest and "87 %" in latest, latest
    assert "obscuration" not in latest and "battery" not in latest
    assert tab.page.get_attribute("#dev-back", "href") == "/"
    assert tab.page.get_attribute("#dev-building", "href") == "/building/B3"
    assert "在线" in tab.page.inner_text("#dev-status")
    # the chart: Chinese date ticks, the excursion's alarm period shaded, the log lists raised and cleared
    shaded = _figure(tab, "gd => (gd.layout.shapes || []).filter(s => s.type === 'rect').length")
    assert shaded >= 1
    ticks = tab.page.locator("#history .xtick text").all_text_contents()
    assert ticks and any("月" in x for x in ticks), ticks
    tab.page.wait_for_selector("#dev-log-table", timeout=10_000)
    log = tab.page.inner_text("#dev-log-table")
    assert "烟雾浓度上升 · 触发" in log and "烟雾浓度上升 · 清除" in log, log
    assert "smoke obscuration" not in log and "T" not in log.split("\n")[1][:14]  # local times, no ISO stamps
    SHOTS.mkdir(exist_ok=True)
    tab.shot("device_smoke.png")
    tab.page.screenshot(path=str(SHOTS / "test-device-smoke-zh.png"), full_page=True)

    # the range picker: a bad custom range gets a message, a good one redraws the period
    tab.page.locator("#dev-range label", has_text="自定义").click()
    tab.page.wait_for_selector("#dev-custom", state="visible")
    tab.page.fill("#dev-from", "2026-13-40 99:00")
    tab.page.press("#dev-from", "Enter")
    tab.page.wait_for_function("document.querySelector('#dev-range-msg').innerText.includes('时间格式不正确')")
    now = datetime.now(UTC).astimezone(CHINA)  # the community's clock: what the boxes are read in
    start = (now - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M")
    tab.page.fill("#dev-from", now.strftime("%Y-%m-%d %H:%M"))
    tab.page.fill("#dev-to", start)
    tab.page.press("#dev-to", "Enter")
    tab.page.wait_for_function("document.querySelector('#dev-range-msg').innerText.includes('开始时间必须早于')")
    tab.page.fill("#dev-from", start)
    tab.page.fill("#dev-to", now.strftime("%Y-%m-%d %H:%M"))
    tab.page.press("#dev-to", "Enter")
    tab.page.wait_for_function(f"document.querySelector('#dev-period').innerText.includes('{start}')"
                               " && document.querySelector('#dev-range-msg').innerText === ''")
    assert _figure(tab, "gd => gd.data.length >= 3 && gd.data[2].x.length") >= 5
    assert tab.errors == []


def test_a_status_only_device_shows_a_state_timeline_and_its_alarms(tab: Page, system: System) -> None:
    _fire(system, "active", 1)
    assert _wait(lambda: bool(system.sql("SELECT 1 FROM alarms WHERE key LIKE %s", f"%@{FIRE_PANEL}")), 10)
    tab.sign_in("operator", f"/device/{FIRE_PANEL}")
    tab.page.wait_for_selector("#dev-state-note", timeout=60_000)
    rows = _figure(tab, "gd => gd.data.length && gd.data.map(tr => tr.type + ':' + tr.y[0])")
    assert "bar:火警" in rows and "bar:控制器火警" in rows, rows
    assert tab.page.evaluate("document.querySelector('#history .yaxislayer-above') !== null")
    tab.page.wait_for_selector("#dev-log-table", timeout=10_000)
    log = tab.page.inner_text("#dev-log-table")
    assert "火警 · 发生" in log and "控制器火警 · 触发" in log, log
    tab.page.screenshot(path=str(SHOTS / "test-device-panel-zh.png"), full_page=True)
    tab.page.click("#dev-back")
    tab.page.wait_for_url(system.url + "/")
    assert tab.errors == []


def test_the_inventory_searches_filters_sorts_pages_and_links_to_devices(tab: Page, system: System) -> None:
    total = len(system.community.devices)
    supervisor = next(g.supervisor for g in system.community.grids if g.supervisor)
    tab.sign_in(supervisor, "/devices")  # supervisors see the inventory and the device pages (read only)
    tab.page.wait_for_function(f"document.querySelector('#inv-count')?.innerText.includes('共 {total} 台设备')",
                               timeout=60_000)  # the first page of a fresh browser context; slow on a busy machine
    assert tab.page.locator("#inv-body tr").count() == 50
    t0 = time.monotonic()
    tab.page.click("#inv-next")
    tab.page.wait_for_function("document.querySelector('#inv-count').innerText.includes('第 2/')")
    paged = time.monotonic() - t0
    # newest first: the device heard from last (the smoke detector of the first test) leads, "分钟前"/"刚刚"
    tab.page.click("#inv-sort-seen")
    tab.page.wait_for_function("document.querySelector('#inv-sort-seen').className.includes('desc')"
                               " && document.querySelector('#inv-count').innerText.includes('第 1/')")
    first = tab.page.locator("#inv-body tr").first
    assert first.get_attribute("data-device") in (SMOKE, FIRE_PANEL)
    assert any(s in first.inner_text() for s in ("刚刚", "分钟前"))
    # filters: in alarm, then a search narrowing to the fire panel
    tab.page.locator("#inv-alarm").click()
    tab.page.locator(".dash-dropdown-option, [role=option]", has_text="告警中").first.click()
    tab.page.wait_for_function("document.querySelector('#inv-count').innerText.includes('共 ') &&"
                               f" !document.querySelector('#inv-count').innerText.includes('共 {total} ')")
    in_alarm = [r.get_attribute("data-device") for r in tab.page.locator("#inv-body tr").all()]
    assert FIRE_PANEL in in_alarm, in_alarm
    tab.page.fill("#inv-q", "3号楼 控制器")
    tab.page.wait_for_function("document.querySelector('#inv-count').innerText.includes('共 1 台设备')")
    tab.page.screenshot(path=str(SHOTS / "test-inventory-zh.png"), full_page=True)
    tab.page.locator("#inv-body a.inv-link").first.click()
    tab.page.wait_for_url(f"{system.url}/device/{FIRE_PANEL}")
    tab.page.wait_for_selector("#device-title")
    print(f"inventory of {total} devices: next page drawn in {paged:.2f} s")
    assert paged < 5.0  # generous: the machine running the suite may be busy
    assert tab.errors == []
