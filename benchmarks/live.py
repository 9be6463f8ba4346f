"""Benchmark of live push in headless Chromium: alarm published -> its building red on the page. Does I/O.

:func:`bench_live` serves the whole web process (:func:`gateway.web.composition.start_dashboard`: the API with
``/api/v1/stream``, the live hub on the broker, the dashboard) on a scratch schema with the sample community,
signs an operator in and, while the page is open, plays the alarm service's part at ``rate`` alarm events
per second: each event is committed to the ``alarms`` table and then published on the community's alarms
topic, as :meth:`gateway.alarms.service.AlarmService.announce` does. A thread raises and clears critical
alarms on every building but one at that rate (the load); meanwhile the probe raises a critical alarm on the
remaining building, and the time until the page's scene paints it red (its building index in the red mesh
trace, checked by a ``requestAnimationFrame`` watcher in the page on each new figure) is one sample; then the
probe is cleared, and once the page shows it so, the next probe follows. No asserts: the numbers go to BENCHMARKS.md.
"""

from __future__ import annotations

import secrets
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks.dashboard import CHROMIUM_ARGS, DRAWN_JS, _sample
from gateway import settings as settings_mod
from gateway.api.auth import Users
from gateway.storage import Storage
from twin import contract
from twin.people import Role

RED = "#E3161B"
WATCH_JS = """([idx, red]) => {
    window.__probe = {red: false, changedAt: 0};
    let seen = null;
    const look = () => {
        const gd = document.querySelector('#scene .js-plotly-plot');
        if (gd && gd.data && gd.data !== seen) {  // a new figure was plotted: is the probe building red in it?
            seen = gd.data;
            const isRed = gd.data.some(tr => tr.type === 'mesh3d' && tr.color === red
                && Array.prototype.indexOf.call(tr.customdata || [], idx) >= 0);
            if (isRed !== window.__probe.red) { window.__probe = {red: isRed, changedAt: Date.now()}; }
        }
        requestAnimationFrame(look);
    };
    requestAnimationFrame(look);
}"""
UPSERT = ("INSERT INTO alarms (key, community, rule, subject, subject_type, severity, status, dispatch, building, "
          "raised_at, last_seen, count, detail) VALUES (%s, %s, 'bench_live', %s, 'building', 'critical', %s, "
          "'none', %s, %s, %s, 1, 'bench') ON CONFLICT (key) DO UPDATE SET status = EXCLUDED.status, "
          "last_seen = EXCLUDED.last_seen, updated_at = now()")


def bench_live(db_url: str, mqtt_url: str, *, rate: float = 50.0, seconds: float = 30.0,
               chromium: str = "/usr/bin/chromium", log: Callable[[str], None] = print) -> dict[str, Any]:
    """Alarm published -> building red in the browser, at ``rate`` alarm events/s for ``seconds``."""
    from playwright.sync_api import sync_playwright

    from gateway.web.composition import start_dashboard

    community = _sample()
    schema = f"bench_live_{uuid.uuid4().hex[:8]}"
    root = f"bench-live-{uuid.uuid4().hex[:8]}"
    password = secrets.token_urlsafe(12)
    settings = settings_mod.load(env={}, mqtt={"url": mqtt_url, "topic_root": root},
                                 db={"url": db_url, "schema": schema})
    with Storage.connect(db_url, schema=schema) as st:
        st.migrate()
        st.load_community(community)
        Users(st.conn).add("bench-operator", password, Role.OPERATOR)
    buildings = [b.id for b in community.buildings]
    probe, load = buildings[-1], buildings[:-1]
    probe_index = len(buildings) - 1  # viz.scene.Scene numbers buildings in the community's order
    handle = start_dashboard(settings, community, db_url, mqtt_url, port=0)
    pub = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-live-{uuid.uuid4().hex[:8]}")
    pub.connect(contract.BrokerAddress.parse(mqtt_url).host, contract.BrokerAddress.parse(mqtt_url).port)
    pub.loop_start()
    topic = contract.alarms_topic(root, community.id)
    samples: list[float] = []
    sent = 0
    try:
        with Storage.connect(db_url, schema=schema) as st, sync_playwright() as p:
            conn = st.conn
            lock = threading.Lock()

            def announce(conn: Any, building: str, raise_it: bool, key: str) -> None:
                nonlocal sent
                now = datetime.now(UTC)
                status = "active_unack" if raise_it else "cleared_ack"
                conn.execute(UPSERT, (key, community.id, building, status, building, now, now))
                event = {"kind": "raised" if raise_it else "cleared", "rule": "bench_live", "subject": building,
                         "subject_type": "building", "severity": "critical", "status": status,
                         "at": now.isoformat(), "raised_at": now.isoformat(), "count": 1, "building": building,
                         "floor": None, "device": None, "detail": "bench", "dispatch": "none", "by": None}
                pub.publish(topic, orjson.dumps(event), qos=1).wait_for_publish(5)
                with lock:
                    sent += 1

            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            page.goto(handle.url.rstrip("/") + "/login")
            page.fill("#username", "bench-operator")
            page.fill("#password", password)
            page.click("#login-submit")
            page.wait_for_function(DRAWN_JS, timeout=60_000, polling=50)
            page.wait_for_function("() => window.gridtwinLive && window.gridtwinLive.connected", timeout=30_000)
            page.evaluate(WATCH_JS, [probe_index, RED])
            log(f"page ready; {rate:g} alarm events/s for {seconds:g} s, probe building {probe}")
            stop = threading.Event()

            def load_thread() -> None:  # the load, at its own pace: `rate` less the probe's share
                with Storage.connect(db_url, schema=schema) as st2:
                    gap, k, next_at = 1.0 / rate, 0, time.monotonic()
                    while not stop.is_set():
                        now = time.monotonic()
                        if now < next_at:
                            time.sleep(next_at - now)
                        next_at += gap
                        b = load[k % len(load)]
                        announce(st2.conn, b, (k // len(load)) % 2 == 0, f"bench@{b}")
                        k += 1

            loader = threading.Thread(target=load_thread, daemon=True)
            loader.start()
            end = time.monotonic() + seconds
            try:
                while time.monotonic() < end:
                    probe_ms = time.time() * 1000
                    announce(conn, probe, True, f"bench@{probe}")
                    page.wait_for_function("() => window.__probe.red", timeout=30_000, polling=100)
                    samples.append((page.evaluate("() => window.__probe.changedAt") - probe_ms) / 1000)
                    announce(conn, probe, False, f"bench@{probe}")
                    page.wait_for_function("() => !window.__probe.red", timeout=30_000, polling=100)
            finally:
                stop.set()
                loader.join(10)
            browser.close()
    finally:
        pub.loop_stop()
        pub.disconnect()
        handle.shutdown()
        with Storage.connect(db_url, schema=schema) as st:
            st.conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] if ordered else None
    return {"community": community.id, "rate_per_s": rate, "seconds": seconds, "events_sent": sent,
            "achieved_rate_per_s": round(sent / seconds, 1), "probes": len(samples),
            "published_to_red_s": {"median": round(statistics.median(samples), 3) if samples else None,
                                   "p95": round(p95, 3) if p95 is not None else None,
                                   "max": round(max(samples), 3) if samples else None}}
