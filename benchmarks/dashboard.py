"""Benchmark of the dashboard in headless Chromium: first frame, first render, page weight, callback server time.
Does I/O. First frame: navigation start to the 3D scene on screen, the server-drawn picture (viz/poster.py) or
WebGL's, whichever comes first; first render: to WebGL's own drawing (the interactive scene).

:func:`measure` drives a running dashboard (any :class:`viz.data.DashboardData` behind it) with
Playwright and Debian's Chromium: sign in, time until the 3D community is drawn (legend and WebGL
canvas present, the figure's meshes plotted), sum the bytes the page transferred, then keep the page
open while ``change`` is called every second (something for the poll to notice: the scene and alarm
panel redraw) and report the server time of the callbacks from :func:`viz.app.callback_timings`.
No asserts: the numbers go to BENCHMARKS.md.
"""

from __future__ import annotations

import secrets
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dash import Dash

from gateway.api.auth import Users
from gateway.storage import Storage
from gateway.web.asgi import WebApp
from gateway.web.dashboard_data import StorageDashboardData
from gateway.web.server import BackgroundServer
from gateway.web.sign_in import DatabaseSignIn
from twin.community import Community
from twin.people import Role
from viz.app import callback_timings

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# the first frame: the server-drawn picture of the scene (viz/poster.py) loaded under the graph, or WebGL's own
FRAME_JS = ("() => { const w = document.querySelector('.scene-wrap');"
            " const img = w && w.querySelector('.scene-poster'); return !!(w && (w.classList.contains('drawn')"
            " || (img && img.complete && img.naturalWidth > 0))); }")
DRAWN_JS = ("() => { const gd = document.querySelector('#scene .js-plotly-plot');"
            " return !!(gd && gd._fullLayout && gd._fullLayout.scene && gd.querySelector('.gl-container canvas')"
            " && gd.querySelector('.legend') && (gd.data || []).some(t => t.type === 'mesh3d')); }")


def measure(app: Dash, url: str, username: str, password: str, *, chromium: str = "/usr/bin/chromium",
            runs: int = 3, live_s: float = 15.0, change: Callable[[int], None] | None = None) -> dict[str, Any]:
    """First render (median of ``runs`` fresh browser contexts), page weight, callback server p95."""
    from playwright.sync_api import sync_playwright

    renders: list[float] = []
    frames: list[float] = []
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
                page.wait_for_function(FRAME_JS, timeout=60_000, polling=20)
                page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
                frames.append(time.perf_counter() - t0)
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
    return {"first_frame_s": round(statistics.median(frames), 3),
            "first_frame_runs_s": [round(r, 3) for r in frames],
            "first_render_s": round(statistics.median(renders), 3),
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


def bench_dashboard(db_url: str, *, buildings: int | None = None, devices: int | None = None, runs: int = 3,
                    live_s: float = 15.0, plotly_gl3d: bool = True,
                    log: Callable[[str], None] = print) -> dict[str, Any]:
    """First render, page weight and callback server time of the dashboard on a real database.

    ``buildings`` None: the bundled sample community; else ``twin.generate.generate(buildings, devices=...)``.
    Loads it into a scratch schema (dropped afterwards), serves the dashboard on a free port and measures
    it in headless Chromium (:func:`benchmarks.dashboard.measure`). While the page is open an alarm is raised
    or cleared every second, so the numbers include the scene and alarm-panel redraws. ``plotly_gl3d``
    False: the full plotly.js bundle, as before :class:`gateway.web.asgi.PlotlyBundle` (for before/after).
    """
    import uuid

    from twin.generate import generate
    from viz import app as dashboard

    community = _sample() if buildings is None else Community.model_validate(generate(buildings, devices=devices))
    schema = f"bench_dash_{uuid.uuid4().hex[:8]}"
    password = secrets.token_urlsafe(12)
    t0 = time.perf_counter()
    with Storage.connect(db_url, schema=schema) as st:
        st.migrate()
        st.load_community(community)

    with Storage.connect(db_url, schema=schema) as st:
        Users(st.conn).add("bench-operator", password, Role.OPERATOR)
    log(f"loaded {len(community.buildings)} buildings, {len(community.devices)} devices in "
        f"{time.perf_counter() - t0:.1f}s")
    auth = DatabaseSignIn(db_url, schema=schema)
    data = StorageDashboardData(community, db_url, schema=schema, sign_in=auth)
    app = dashboard.create_app(data)
    server = BackgroundServer(WebApp(_no_api, app.server, plotly_gl3d=plotly_gl3d), port=0)
    targets = [d for d in community.devices if d.building is not None][:: max(1, len(community.devices) // 50)]

    def change(n: int) -> None:
        d = targets[n % len(targets)]
        with Storage.connect(db_url, schema=schema) as st:
            now = datetime.now(UTC)
            st.conn.execute(
                "INSERT INTO alarms (key, community, rule, subject, subject_type, severity, status, dispatch, "
                "building, floor, device, raised_at, last_seen, count, detail) VALUES (%s, %s, 'bench', %s, "
                "'device', 'critical', 'active_unack', 'none', %s, %s, %s, %s, %s, 1, 'bench') ON CONFLICT (key) "
                "DO UPDATE SET status = CASE WHEN alarms.status = 'active_unack' THEN 'cleared_ack' "
                "ELSE 'active_unack' END, updated_at = now()",
                (f"bench@{d.id}", community.id, d.id, d.building, d.floor, d.id, now, now))

    try:
        result = measure(app, server.url, "bench-operator", password, runs=runs, live_s=live_s, change=change)
    finally:
        server.shutdown()
        data.close()
        auth.close()
        with Storage.connect(db_url, schema=schema) as st:
            st.conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    return {"community": community.id, "buildings": len(community.buildings), "devices": len(community.devices),
            "plotly": "gl3d" if plotly_gl3d else "full", **result}


async def _no_api(scope: Any, receive: Any, send: Any) -> None:
    """The dashboard alone: nothing under /api."""
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def _sample() -> Community:
    from twin.community import parse

    path = Path(__file__).resolve().parent.parent / "twin" / "sample_community.yaml"
    return parse(path.read_text(encoding="utf-8"), str(path))


if __name__ == "__main__":  # python -m benchmarks.dashboard [DB_URL]
    import json
    import sys

    url = sys.argv[1] if len(sys.argv) > 1 else "postgresql://postgres@127.0.0.1:5432/postgres"
    out = [bench_dashboard(url), bench_dashboard(url, buildings=200, devices=50_000)]
    print(json.dumps(out, ensure_ascii=False, indent=2))
