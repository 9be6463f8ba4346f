"""The care register in Debian's Chromium against the running system (the fixtures of ``test_browser``): a grid
worker on a phone (390x844) finds an overdue resident at the top of the register, opens the record and logs a visit
with the checklist, a note and a photo; the visit is stored and the next one is due a week later. An operator sees
the register with masked names, and a fire ticket's page lists the building's residents with limited mobility.

``GRIDTWIN_CARE_SHOTS=1`` also takes the register, a resident, the visit form and the fire ticket in Chinese and
English at 1400x850 and 390x844 into ``artifacts/`` (for a person to look at).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from gateway.storage import Storage
from gateway.tickets.service import TicketService
from tests.conftest import DB_URL
from tests.e2e import test_browser as tb
from tests.e2e.test_browser import ARTIFACTS, Page, System
from twin.people import Role, User

system = tb.system
browser = tb.browser

pytestmark = pytest.mark.integration

RED_G1 = "B1-1402"  # 李桂兰, red, limited mobility, grid G1 (w1-1)
SIZES = {"desktop": (1400, 850), "phone": (390, 844)}


def _seeded(tab: Page, system: System) -> int:
    """Open the register once (it seeds from the community file), then make ``RED_G1`` overdue: registered ten
    days ago, never visited."""
    tab.page.goto(system.url + "/residents")
    tab.page.wait_for_selector("#careg-table", timeout=15_000)
    system.sql("UPDATE care_residents SET registered_at = now() - interval '10 days' WHERE unit = %s", RED_G1)
    [(rid,)] = system.sql("SELECT id FROM care_residents WHERE unit = %s", RED_G1)
    return int(rid)


def test_a_worker_logs_a_visit_on_a_phone(browser: Any, system: System) -> None:
    phone = Page(browser, system, width=390, height=844)
    try:
        phone.sign_in("w1-1", "/residents")
        rid = _seeded(phone, system)
        phone.page.reload()
        first = phone.page.locator("#careg-table tbody tr").first
        first.wait_for(timeout=15_000)
        assert first.get_attribute("data-unit") == RED_G1 and "careg-overdue" in (first.get_attribute("class") or "")
        assert "李桂兰" in first.inner_text()  # the grid's own worker sees the name
        units = {r.get_attribute("data-unit") for r in phone.page.locator("#careg-table tbody tr").all()}
        assert "B3-2001" not in units  # grid G2's resident is not in G1's worker's register
        first.locator("a").first.click()
        phone.page.wait_for_selector("#careg-name:has-text('李桂兰')", timeout=10_000)
        phone.page.click("#careg-log")
        phone.page.wait_for_selector("#careg-visit", timeout=10_000)
        phone.page.click("#careg-submit")  # nothing ticked, nothing written: refused, with the reason
        phone.page.wait_for_selector("#careg-visit-msg.warn:has-text('请至少勾选一项')", timeout=10_000)
        phone.page.locator("#careg-checks input[value=well]").check()
        phone.page.locator("#careg-checks input[value=needs_help]").check()
        phone.page.fill("#careg-note", "精神不错，药已送到；需要帮忙买菜")
        png = ARTIFACTS / "care_visit_photo.png"
        phone.page.screenshot(path=str(png), clip={"x": 0, "y": 0, "width": 60, "height": 40})
        phone.page.set_input_files("#careg-photo input[type=file]", str(png))
        phone.page.wait_for_selector("#careg-photo-note:has-text('已选择照片')", timeout=5_000)
        width = phone.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the visit form scrolls sideways ({width} px)"
        phone.shot("care_visit_form_zh_phone.png")
        phone.page.click("#careg-submit")
        phone.page.wait_for_selector("#careg-visit-msg.ok:has-text('已登记')", timeout=10_000)
        assert phone.page.is_disabled("#careg-submit")  # logged once: a second tap logs nothing
        [(note, checks, has_photo, visitor)] = system.sql(
            "SELECT note, checks, photo IS NOT NULL, visitor FROM care_visits WHERE resident_id = %s", rid)
        assert note == "精神不错，药已送到；需要帮忙买菜" and visitor == "w1-1" and has_photo
        assert checks["well"] is True and checks["needs_help"] is True and checks["needs_medical"] is False
        phone.page.click("#careg-visit-msg a")
        phone.page.wait_for_selector("#careg-visits li", timeout=10_000)
        assert "按计划" in phone.page.inner_text("#careg-due")
        phone.page.click("#careg-level-form summary")  # a level change needs its reason, and is kept with it
        phone.page.click("#careg-new-level")
        phone.page.locator(".Select-option, [role=option]", has_text="黄色").first.click()
        phone.page.click("#careg-save-level")
        phone.page.wait_for_selector("#careg-level-msg.warn:has-text('请填写调整原因')", timeout=10_000)
        phone.page.fill("#careg-reason", "子女已搬回同住")
        phone.page.click("#careg-save-level")
        phone.page.wait_for_selector("#careg-level-msg.ok", timeout=10_000)
        assert system.sql("SELECT from_level, to_level, reason, by_user FROM care_level_changes "
                          "WHERE resident_id = %s", rid) == [("red", "yellow", "子女已搬回同住", "w1-1")]
        assert phone.errors == []
    finally:
        phone.close()


def _ticket(system: System, category: str, title: str, floor: int, unit: str | None = None) -> int:
    with Storage.connect(DB_URL, schema=system.schema) as st:
        svc = TicketService(st, system.settings, system.community, render_on_create=False)
        t = svc.create_manual(User("operator", "值班员", Role.OPERATOR), community=system.community.id,
                              title=title, category=category, building="B1", floor=floor, unit=unit)
    return t.id


def test_operators_see_masked_names_and_who_to_evacuate_first(browser: Any, system: System) -> None:
    tid = _ticket(system, "fire", "1号楼12层 火警（电话报警）", 12)
    care_tid = _ticket(system, "care", "1号楼 B1-1402 门磁长时间无活动", 14, RED_G1)
    desk = Page(browser, system)
    try:
        desk.sign_in("operator", "/residents")
        desk.page.wait_for_selector("#careg-table", timeout=15_000)
        text = desk.page.inner_text("#careg-table")
        assert "李**" in text and "李桂兰" not in text
        desk.page.goto(f"{system.url}/worker/ticket/{tid}")
        desk.page.wait_for_selector("#careg-evac li", timeout=15_000)
        evac = desk.page.inner_text("#careg-evac")
        assert "B1-1402" in evac and "B1-1201" in evac and "李**" in evac and "李桂兰" not in evac
        assert evac.index("14层") < evac.index("12层")  # top floors first
        desk.page.goto(f"{system.url}/worker/ticket/{care_tid}")  # a care ticket links to the resident's record
        desk.page.wait_for_selector("#careg-link a:has-text('李**')", timeout=15_000)
        desk.page.click("#careg-link a")
        desk.page.wait_for_selector("#careg-name:has-text('李**')", timeout=10_000)
        assert "13900021402" not in desk.page.inner_text("#careg-resident")  # no phone for an operator
        assert desk.page.locator("#careg-log").count() == 0
        desk.page.goto(desk.page.url + "/visit")  # nor the visit form by its address
        desk.page.wait_for_selector("#careg-forbidden", timeout=10_000)
        assert desk.errors == []
    finally:
        desk.close()
    if os.environ.get("GRIDTWIN_CARE_SHOTS") == "1":
        _screenshots(browser, system, tid)


def _screenshots(browser: Any, system: System, tid: int) -> None:
    [(rid,)] = system.sql("SELECT id FROM care_residents WHERE unit = %s", RED_G1)
    system.sql("UPDATE care_residents SET registered_at = now() - interval '20 days' WHERE unit = 'B12-301'")
    pages = {"register": "/residents", "resident": f"/residents/{rid}", "visit": f"/residents/{rid}/visit",
             "fire": f"/worker/ticket/{tid}"}
    for user, lang, size in [(u, lang, size) for u in ("w1-1", "operator") for lang in ("zh", "en") for size in SIZES]:
        w, h = SIZES[size]
        p = Page(browser, system, width=w, height=h)
        try:
            p.sign_in(user, "/worker")
            p.page.wait_for_url(system.url + "/worker", timeout=15_000)
            p.page.goto(f"{system.url}/lang/{lang}?next=/worker")
            for name, path in pages.items():
                if user == "operator" and name in ("resident", "visit"):
                    continue
                p.page.goto(system.url + path)
                sel = {"register": "#careg-table", "resident": "#careg-name", "visit": "#careg-visit",
                       "fire": "#careg-evac"}[name]
                p.page.wait_for_selector(sel, timeout=15_000)
                p.page.wait_for_timeout(300)  # fonts and the dropdowns settle (a picture only, nothing asserted)
                who = "" if user == "w1-1" else "_operator"
                p.page.screenshot(path=str(ARTIFACTS / f"care_{name}{who}_{lang}_{size}.png"), full_page=True)
        finally:
            p.close()
