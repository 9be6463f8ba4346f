"""One-click reports in Debian's Chromium against the running system (the fixtures of ``test_browser``): a resident
on a phone (390x844) reports a blocked fire lane from the building's QR page with a photo, lands on the tracking
page, the report is resolved (through the service) and checked by the supervisor on the ticket page, then the
resident rates it; a grid worker reports from ``/report`` (linked from ``/worker``). Screenshots in Chinese and
English at 390x844 and 1400x850 go to ``artifacts/``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.storage import Storage
from gateway.tickets.service import TicketService
from tests.conftest import DB_URL
from tests.e2e import test_browser as tb
from tests.e2e.test_browser import Page, System, _wait
from tests.e2e.test_browser_i18n import data_names, offenders
from twin.people import Role, User
from twin.tickets.reports import mask_name

system = tb.system
browser = tb.browser

pytestmark = pytest.mark.integration

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
       b"\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82")
SETTLED = "() => document.querySelector('#page') && !document.querySelector('[data-dash-is-loading]')"


@pytest.fixture
def phone(browser: Any, system: System) -> Iterator[Page]:
    p = Page(browser, system, 390, 844)
    yield p
    p.close()


@pytest.fixture
def desk(browser: Any, system: System) -> Iterator[Page]:
    p = Page(browser, system, 1400, 850)
    yield p
    p.close()


def _service(system: System, st: Storage) -> TicketService:
    return TicketService(st, system.settings, system.community)


def _shots(tab: Page, path: str, name: str, ready: str) -> None:
    """``path`` in Chinese and English (``?lang=`` for the public pages, the language cookie for the dashboard)."""
    for lang in ("zh", "en"):
        if path.startswith("/r/"):
            tab.page.goto(f"{tab.system.url}{path}?lang={lang}")
        else:
            tab.page.goto(f"{tab.system.url}/lang/{lang}?next={path}")
        tab.page.wait_for_selector(ready, timeout=15_000)
        tab.page.wait_for_function(SETTLED, timeout=15_000) if not path.startswith("/r/") else None
        w = tab.page.viewport_size["width"] if tab.page.viewport_size else 0
        tab.shot(f"report-{name}-{lang}-{w}.png")


def test_a_resident_reports_follows_it_and_rates_it(phone: Page, desk: Page, system: System) -> None:
    page = phone.page
    page.goto(system.url + "/r/sunshine/B1")
    page.locator("label", has_text="消防通道堵塞").click()
    page.select_option("#floor", "3")
    page.fill("#unit", "3单元")
    page.fill("#text", "电动车堵住了消防通道")
    page.set_input_files("#photo", files=[{"name": "lane.png", "mimeType": "image/png", "buffer": PNG}])
    phone.shot("report-public-form-zh-390.png")
    page.click("#pub-submit")
    page.wait_for_url(re.compile(r"/r/t/[A-Za-z0-9_\-]{32}$"), timeout=10_000)
    track = page.url.removeprefix(system.url)
    assert page.get_attribute("#pub-state", "data-state") == "dispatched"
    assert "已派给网格员" in page.inner_text("#pub-steps")
    [(tid, grid)] = system.sql("SELECT ticket_id, (SELECT grid FROM tickets WHERE id = ticket_id) FROM ticket_reports "
                               "WHERE kind = 'resident' ORDER BY ticket_id DESC LIMIT 1")
    assert system.sql("SELECT count(*) FROM ticket_photos WHERE ticket_id = %s AND kind = 'report'", tid) == [(1,)]

    supervisor = next(g.supervisor for g in system.community.grids if g.id == grid)
    sup = User(supervisor, "网格长", Role.SUPERVISOR, grids=(grid,), worker_id=supervisor)
    with Storage.connect(DB_URL, schema=system.schema) as st:  # the worker on site: through the service
        svc = _service(system, st)
        svc.accept(sup, tid)
        svc.resolve(sup, tid, "已清理通道，车辆已移走")
    page.reload()
    assert page.get_attribute("#pub-state", "data-state") == "checking"
    assert page.locator("#pub-rate").count() == 0

    desk.sign_in(supervisor, f"/worker/ticket/{tid}")  # the supervisor's check (核查) on the ticket page
    desk.page.wait_for_selector("#vf-panel.vf-pending", timeout=15_000)
    _shots(desk, f"/worker/ticket/{tid}", "check", "#vf-panel.vf-pending")
    _shots(desk, "/report", "supervisor", ".rp-check")  # the supervisor's /report: the report to check first
    assert "Blocked fire lane (resident's report)" in desk.page.inner_text(".rp-check")
    desk.page.set_viewport_size({"width": 390, "height": 844})
    _shots(desk, f"/worker/ticket/{tid}", "check", "#vf-panel.vf-pending")
    desk.page.click("#vf-pass")
    desk.page.wait_for_selector("#vf-done", timeout=10_000)
    assert _wait(lambda: bool(system.sql("SELECT 1 FROM ticket_events WHERE ticket_id = %s AND action = "
                                         "'verify_pass'", tid)), 5)

    _shots(phone, track, "public-track", "#pub-rate")
    page.goto(system.url + track)
    page.locator("#pub-rate label", has_text="4").click()
    page.fill("#comment", "处理及时")
    page.click("#pub-rate-submit")
    page.wait_for_selector("#pub-rated", timeout=10_000)
    assert "4/5" in page.inner_text("#pub-rated")
    assert page.get_attribute("#pub-state", "data-state") == "evaluated"
    assert system.sql("SELECT state, rating FROM tickets WHERE id = %s", tid) == [("evaluated", 4)]
    zh_data, words = data_names(system.community)
    masked = [mask_name(w.name) for g in system.community.grids for w in g.workers]  # 孙*: a name is data
    typed = ["电动车堵住了消防通道", "已清理通道，车辆已移走", "3单元", *masked, *zh_data]  # what people wrote too
    for path, ready in ((track, "#pub-rated"), ("/r/sunshine/B1", "#pub-form")):
        for lang in ("zh", "en"):  # the public pages have no untranslated text either (test_browser_i18n's rules)
            page.goto(f"{system.url}{path}?lang={lang}")
            page.wait_for_selector(ready)
            assert not offenders(page.inner_text("main"), lang, typed, words), (path, lang)
    _shots(phone, track, "public-rated", "#pub-rated")
    _shots(phone, "/r/sunshine/B1", "public-form", "#pub-form")
    desk.page.goto(system.url + "/r/sunshine/B1?lang=en")
    desk.shot("report-public-form-en-1400.png")
    desk.page.goto(system.url + track + "?lang=zh")
    desk.shot("report-public-rated-zh-1400.png")
    assert not phone.errors and not desk.errors, phone.errors + desk.errors


def test_a_worker_reports_from_the_report_page(phone: Page, system: System) -> None:
    worker = system.community.grids[0].workers[0].id
    phone.sign_in(worker, "/worker")
    page = phone.page
    page.wait_for_selector("#report-link", timeout=15_000)
    page.click("#report-link")
    page.wait_for_selector("#rp-category", timeout=15_000)
    page.click("#rp-submit")
    page.wait_for_selector("#rp-error", timeout=10_000)  # nothing chosen: says what is missing
    page.locator("#rp-category label", has_text="楼道灯损坏").click()
    page.click("#rp-building")
    page.locator(".Select-option, [role=option]", has_text="2号楼").first.click()
    page.click("#rp-floor")
    page.locator(".Select-option, [role=option]", has_text="5F").first.click()
    page.fill("#rp-text", "5楼走廊灯不亮")
    phone.shot("report-staff-form-zh-390.png")
    page.click("#rp-submit")
    page.wait_for_selector("#rp-sent", timeout=10_000)
    tid = re.search(r"#(\d+)", page.inner_text("#rp-sent"))
    assert tid is not None
    assert system.sql("SELECT building, floor, category, reporter FROM tickets WHERE id = %s", int(tid.group(1))) == [
        ("B2", 5, "other", worker)]
    assert system.sql("SELECT kind, category, verify FROM ticket_reports WHERE ticket_id = %s",
                      int(tid.group(1))) == [("staff", "corridor_light", False)]
    for width, height in ((390, 844), (1400, 850)):
        page.set_viewport_size({"width": width, "height": height})
        _shots(phone, "/report", "staff-form", "#rp-category")
        _shots(phone, "/worker", "worker", "#report-link")
    assert not phone.errors, phone.errors
