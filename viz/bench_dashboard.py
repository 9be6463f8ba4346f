"""Benchmark of the dashboard in headless Chromium: first render, page weight, callback server time. Does I/O.

:func:`measure` drives a running dashboard (any :class:`viz.data.DashboardData` behind it) with
Playwright and Debian's Chromium: sign in, time until the 3D community is drawn (legend and WebGL
canvas present, the figure's meshes plotted), sum the bytes the page transferred, then keep the page
open while ``change`` is called every second (something for the poll to notice: the scene and alarm
panel redraw) and report the server time of the callbacks from :func:`viz.app.callback_timings`.
No asserts: the numbers go to BENCHMARKS.md.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from dash import Dash

from viz.app import callback_timings

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DRAWN_JS = ("() => { const gd = document.querySelector('#scene .js-plotly-plot');"
            " return !!(gd && gd._fullLayout && gd._fullLayout.scene && gd.querySelector('.gl-container canvas')"
            " && gd.querySelector('.legend') && (gd.data || []).some(t => t.type === 'mesh3d')); }")


def measure(app: Dash, url: str, username: str, password: str, *, chromium: str = "/usr/bin/chromium",
            runs: int = 3, live_s: float = 15.0, change: Callable[[int], None] | None = None) -> dict[str, Any]:
    """First render (median of ``runs`` fresh browser contexts), page weight, callback server p95."""
    from playwright.sync_api import sync_playwright

    renders: list[float] = []
    weights: list[int] = []
    timings = callback_timings(app)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            token = _session_cookie(browser, url, username, password)
            for _ in range(runs):
                ctx = browser.new_context(viewport={"width": 1600, "height": 900})
                ctx.add_cookies([{"name": "gridtwin_session", "value": token, "url": url}])
                page = ctx.new_page()
                t0 = time.perf_counter()
                page.goto(url)
                page.wait_for_function(DRAWN_JS, timeout=60_000, polling=20)
                page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
                renders.append(time.perf_counter() - t0)
                weights.append(int(page.evaluate(
                    "() => performance.getEntriesByType('navigation').concat(performance.getEntriesByType("
                    "'resource')).reduce((n, e) => n + (e.transferSize || 0), 0)")))
                ctx.close()
            timings.clear()
            ctx = browser.new_context(viewport={"width": 1600, "height": 900})
            ctx.add_cookies([{"name": "gridtwin_session", "value": token, "url": url}])
            page = ctx.new_page()
            page.goto(url)
            page.wait_for_function(DRAWN_JS, timeout=60_000, polling=50)
            end = time.monotonic() + live_s
            n = 0
            while time.monotonic() < end:
                if change is not None:
                    change(n)
                n += 1
                page.wait_for_timeout(1000)
            ctx.close()
        finally:
            browser.close()
    return {"first_render_s": round(statistics.median(renders), 3),
            "first_render_runs_s": [round(r, 3) for r in renders],
            "page_weight_bytes": int(statistics.median(weights)), "callbacks": timings.summary()}


def _session_cookie(browser: Any, url: str, username: str, password: str) -> str:
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(url.rstrip("/") + "/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login-submit")
    page.wait_for_load_state()
    cookies = {c["name"]: c["value"] for c in ctx.cookies()}
    ctx.close()
    return str(cookies["gridtwin_session"])
