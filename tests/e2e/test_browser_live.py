"""Live updates in Debian's Chromium, against the running system (the fixtures of ``test_browser``): an alarm
published through the broker reaches the page over ``/api/v1/stream`` (no Dash poll in between) and its
critical row flashes until it is acknowledged; the "last updated" indicator turns red when the stream is cut
and green again once it is back; the alert toggles are off by default and remembered.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from tests.e2e import test_browser as tb
from tests.e2e.test_browser import FIRE_PANEL, Page, System, _fire
from tests.e2e.test_browser_alarms import _select
from viz.live import FAST_POLL_MS, SLOW_POLL_MS

# the module-wide system, the browser and a tab: the same fixtures as test_browser (pytest finds them by name here)
system = tb.system
browser = tb.browser
tab = tb.tab

pytestmark = pytest.mark.integration

FIRE_ROW = f".alarm-row[data-key$='@{FIRE_PANEL}']"
POLL_INPUT = re.compile(r'"id":\s*"poll"')


def _block_polls(tab: Page) -> list[float]:
    """Answer the Dash poll's callback requests with 204 (Dash's "nothing changed") from now on, so whatever the
    page shows then came by the stream; returns the times they were tried."""
    tried: list[float] = []

    def handle(route: Any) -> None:
        request = route.request
        if request.method == "POST" and POLL_INPUT.search(request.post_data or ""):  # a Dash callback request
            tried.append(time.monotonic())
            route.fulfill(status=204, body="")
        else:
            route.continue_()

    tab.page.route("**/*", handle)
    return tried


def _present(tab: Page, selector: str, timeout: float) -> None:
    """Wait until ``selector`` matches (polled on a timer: a busy WebGL page can starve animation frames)."""
    tab.page.wait_for_function("(s) => !!document.querySelector(s)", arg=selector, timeout=timeout, polling=50)


def _live(tab: Page, expr: str) -> Any:
    return tab.page.evaluate(f"() => window.gridtwinLive && window.gridtwinLive.{expr}")


def test_an_alarm_arrives_by_push_and_its_critical_row_flashes_until_acknowledged(tab: Page, system: System) -> None:
    tab.sign_in("operator")
    _present(tab, "#scene .legend", 60_000)
    tab.page.wait_for_function("() => window.gridtwinLive && window.gridtwinLive.connected", timeout=10_000)
    tab.page.wait_for_function("(ms) => window.gridtwinLive.pollMs === ms", arg=SLOW_POLL_MS, timeout=5_000)
    for toggle in ("#alert-sound", "#alert-notify"):  # off by default
        assert tab.page.get_attribute(toggle, "aria-pressed") == "false"
    events = _live(tab, "events")
    polls = _block_polls(tab)
    page_t0 = tab.page.evaluate("() => Date.now()")
    t0 = time.monotonic()
    _fire(system, "active", 1)  # returns once the broker has the message (PUBACK)
    fired = time.monotonic() - t0
    _present(tab, f"{FIRE_ROW}.flash", 20_000)
    took = time.monotonic() - t0
    arrived = (_live(tab, "alarmAt") or 0) - page_t0
    print(f"publishing took {fired:.2f} s; since its start: event at the page {arrived} ms, flashing row {took:.2f} s")
    print(f"poll requests answered 'nothing changed' meanwhile: {len(polls)}")
    assert _live(tab, "events") > events and _live(tab, "alerts") >= 1
    assert _live(tab, "beeps") == 0, "beeped with the sound toggle off"
    tab.page.wait_for_function(  # the CSS animation runs on it (the list may be redrawn meanwhile: look again)
        "(s) => { const el = document.querySelector(s);"
        " return !!el && getComputedStyle(el, '::after').animationName === 'gridtwin-critical-flash'; }",
        arg=f"{FIRE_ROW}.flash", timeout=5_000, polling=50)

    tab.page.click("#alert-sound")  # opt in: remembered by this browser, beeps once as a confirmation
    assert tab.page.evaluate("() => localStorage.getItem('gridtwin.alert.sound')") == "1"
    tab.page.wait_for_function("() => window.gridtwinLive.beeps >= 1", timeout=2_000)

    tab.page.unroute("**/*")
    _select(tab, FIRE_ROW, "3号楼")
    tab.page.fill("#ack-comment", "已核实")
    tab.page.click("#ack-btn")
    _present(tab, f"{FIRE_ROW}[data-status=active_ack]", 15_000)
    assert "flash" not in (tab.page.get_attribute(FIRE_ROW, "class") or ""), "still flashing after acknowledge"
    tab.page.reload()
    _present(tab, "#alert-sound", 20_000)
    _present(tab, "#alert-sound[aria-pressed=true]", 10_000)
    assert tab.errors == []


def test_the_indicator_turns_red_when_the_stream_is_cut_and_recovers(tab: Page, system: System) -> None:
    hub = system.live
    assert hub is not None
    keepalive, hub.keepalive_s = hub.keepalive_s, 0.5  # heartbeats every 0.5 s: the page calls 3 s silence a stall
    try:
        tab.sign_in("operator")
        tab.page.wait_for_function(  # green, with the community's local time of the last heartbeat
            "() => { const el = document.querySelector('#live-status.ok');"
            " return !!el && /更新于 \\d\\d:\\d\\d:\\d\\d$/.test(el.textContent); }", timeout=40_000, polling=100)
        tab.page.route("**/api/v1/stream*", lambda route: route.abort())  # the network drops the stream
        hub.end_streams(refuse_new=False)
        t0 = time.monotonic()
        _present(tab, "#live-status.stalled", 20_000)
        assert "实时推送中断" in tab.page.evaluate("() => document.querySelector('#live-status').textContent")
        assert time.monotonic() - t0 >= 2.0, "red before the heartbeat was overdue"
        tab.page.wait_for_function("(ms) => window.gridtwinLive.pollMs === ms", arg=FAST_POLL_MS, timeout=3_000)
        tab.shot("live_stalled.png")
        tab.page.unroute("**/api/v1/stream*")
        _present(tab, "#live-status.ok", 20_000)  # reconnected (backoff) and green again
        tab.page.wait_for_function("(ms) => window.gridtwinLive.pollMs === ms", arg=SLOW_POLL_MS, timeout=3_000)
    finally:
        hub.keepalive_s = keepalive
