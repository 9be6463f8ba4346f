"""Patrols in Debian's Chromium against the running system (the fixtures of ``test_browser``): a grid worker on a
phone (390x844) opens a checkpoint's QR code, checks in, finds the checkpoint no longer due on their patrol page and
shares their position (geolocation granted to the page) while on duty; the supervisor's /patrols shows the
check-in done, yesterday's misses in red and the worker's trail on the map.

``GRIDTWIN_PATROL_SHOTS=1`` also takes /patrols, /patrol and a check-in page in Chinese and English at 1400x850 and
390x844 into ``artifacts/`` (for a person to look at).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from gateway.patrols.store import signing_key
from gateway.storage import Storage
from gateway.tickets.service import TicketService
from tests.conftest import DB_URL
from tests.e2e import test_browser as tb
from tests.e2e.test_browser import ARTIFACTS, Page, System
from twin import patrols as pt
from twin.people import Role, User
from twin.tickets import Priority

system = tb.system
browser = tb.browser

pytestmark = pytest.mark.integration

SIZES = {"desktop": (1400, 850), "phone": (390, 844)}


def _token(system: System, checkpoint: str) -> str:
    with psycopg.connect(DB_URL, autocommit=True, options=f"-c search_path={system.schema}") as conn:
        return pt.token(signing_key(conn), system.community.id, checkpoint)


def _on_duty_g1(system: System) -> str:
    """The G1 worker on duty now (the day or the night shift)."""
    c = system.community
    local = datetime.now(UTC).astimezone(c.tz)
    grid = next(g for g in c.grids if g.id == "G1")
    return next(w.id for w in grid.workers if pt.on_duty(w.on_duty, local))


def test_a_worker_checks_in_by_qr_on_a_phone_and_the_supervisor_sees_it(browser: Any, system: System) -> None:
    worker = _on_duty_g1(system)
    phone = Page(browser, system, width=390, height=844)
    lat, lon = pt.to_latlon(system.community.origin, 20.0, 12.0)  # beside building B1
    phone.ctx.grant_permissions(["geolocation"], origin=system.url)
    phone.ctx.set_geolocation({"latitude": lat, "longitude": lon, "accuracy": 8})
    token = _token(system, "fire_door.B1")
    try:
        phone.sign_in(worker, f"/patrol/{token}")
        phone.page.wait_for_selector("#pt-point:has-text('1号楼')", timeout=15_000)
        assert "防火门" in phone.page.inner_text("#pt-checkin")
        phone.page.locator("#pt-result input[value=problem]").check()
        phone.page.click("#pt-submit")  # a problem without a note: refused, with the reason
        phone.page.wait_for_selector("#pt-msg.warn:has-text('请写明')", timeout=10_000)
        phone.page.locator("#pt-result input[value=ok]").check()
        width = phone.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the check-in page scrolls sideways ({width} px)"
        phone.page.click("#pt-submit")
        phone.page.wait_for_selector("#pt-msg.ok:has-text('已打卡')", timeout=10_000)
        assert phone.page.is_disabled("#pt-submit")
        [(who, how, result)] = system.sql("SELECT worker, how, result FROM patrol_checkins WHERE checkpoint = %s",
                                          "fire_door.B1")
        assert (who, how, result) == (worker, "qr", "ok")
        phone.page.click("#pt-msg a")  # back to the patrol page: B1's fire door is no longer due
        phone.page.wait_for_selector("#pt-due", timeout=10_000)
        lines = phone.page.locator("#pt-due li[data-checkpoint]")
        state = {li.get_attribute("data-checkpoint"): li.get_attribute("data-state") for li in lines.all()}
        assert state["fire_door.B1"] == "done" and state["fire_lane.B1"] == "due"
        g1 = {b.id for b in system.community.buildings if system.community.grid_of(b) == "G1"}
        assert {li.get_attribute("data-building") for li in phone.page.locator("#pt-due > li").all()} <= g1
        phone.page.locator("#pt-share input").check()  # opt in: the page posts the position now, then every minute
        phone.page.wait_for_selector("#pt-share-msg.ok", timeout=15_000)
        [(n,)] = system.sql("SELECT count(*) FROM worker_positions WHERE worker = %s", worker)
        assert n >= 1
        assert not phone.errors, phone.errors
    finally:
        phone.close()

    # as if patrols had been recorded since the day before yesterday: yesterday's patrols were missed
    system.sql("UPDATE schema_version SET applied_at = now() - interval '2 days' WHERE version = 17")
    desk = Page(browser, system)
    try:
        desk.sign_in("s-1", "/patrols")
        desk.page.wait_for_selector("#pt-table", timeout=15_000)
        tag = desk.page.locator("#pt-table [data-checkpoint='fire_door.B1']")
        assert tag.get_attribute("data-state") == "done"
        assert desk.page.locator("#pt-table tr.pt-row-missed").count() > 0  # nobody patrolled yesterday
        first = desk.page.locator("#pt-table tbody tr").first  # buildings with a miss first
        assert "pt-row-missed" in (first.get_attribute("class") or "")
        assert desk.page.locator("#pt-table [data-state=missed]").count() > 0
        desk.page.wait_for_selector("#pt-map .main-svg", timeout=10_000)
        name = next(w.name for g in system.community.grids for w in g.workers if w.id == worker)
        assert name in desk.page.inner_text("#pt-map")
        with Storage.connect(DB_URL, schema=system.schema) as st:  # an urgent ticket at B1: who is nearest?
            svc = TicketService(st, system.settings, system.community, render_on_create=False)
            tid = svc.create_manual(User("operator", "值班员", Role.OPERATOR), community=system.community.id,
                                    title="1号楼电梯困人", category="elevator", building="B1",
                                    priority=Priority.URGENT).id
        desk.page.goto(f"{system.url}/worker/ticket/{tid}")
        desk.page.wait_for_selector(f"#pt-nearest li:has-text('{name}')", timeout=10_000)
        assert not desk.errors, desk.errors
    finally:
        desk.close()
    if os.environ.get("GRIDTWIN_PATROL_SHOTS") == "1":
        _screenshots(browser, system, worker, _token(system, "fire_lane.B2"), tid)


def _screenshots(browser: Any, system: System, worker: str, token: str, tid: int) -> None:
    for user, path, name in [("s-1", "/patrols", "patrols"), (worker, "/patrol", "patrol"),
                             (worker, f"/patrol/{token}", "checkin"), ("s-1", f"/worker/ticket/{tid}", "ticket")]:
        for lang in ("zh", "en"):
            for size, (w, h) in SIZES.items():
                p = Page(browser, system, width=w, height=h)
                try:
                    p.sign_in(user, "/worker")
                    p.page.wait_for_selector("#topbar", timeout=10_000)
                    p.page.goto(f"{system.url}/lang/{lang}?next={path}")
                    p.page.wait_for_selector("#pt-table, #pt-due-head, #pt-point, #pt-nearest", timeout=15_000)
                    p.page.wait_for_timeout(600)  # let the map draw (a picture for people, not an assertion)
                    p.page.screenshot(path=str(ARTIFACTS / f"patrol_{name}_{lang}_{size}.png"), full_page=True)
                    if name == "patrols" and size == "desktop":
                        p.page.screenshot(path=str(ARTIFACTS / f"patrol_topbar_{lang}.png"),
                                          clip={"x": 0, "y": 0, "width": 1400, "height": 90})
                finally:
                    p.close()
