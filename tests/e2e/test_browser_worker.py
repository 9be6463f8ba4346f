"""The grid worker's ticket page on a phone (issue 15), in Debian's Chromium against the running system (the
fixtures of ``test_browser``): a fire alarm through the broker becomes a life-safety ticket; at 390x844 its next
action is on the first screen (受理, then 到场), 到场 sends the phone's position (granted to the browser context,
fixed) and it is stored; the SOP ticks are saved, survive a reload and show in the history; the SOP's contacts are
``tel:`` links; the feedback photo is a thumbnail that nothing covers, and so is the 办结 entry. Screenshots in
Chinese and English, on a phone and a desktop, go to ``artifacts/``.
"""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.storage import Storage
from gateway.tickets.service import TicketService
from tests.conftest import DB_URL
from tests.e2e import test_browser as tb
from tests.e2e.test_browser import ARTIFACTS, FIRE_PANEL, IGNORED_CONSOLE, Page, System, _fire, _wait, publish
from twin import contract
from twin.alarms import AlarmEvent, AlarmStatus, Dispatch, EventKind, Severity
from twin.people import Role, User

system = tb.system
browser = tb.browser

pytestmark = pytest.mark.integration

HERE = {"latitude": 30.27452, "longitude": 120.15563, "accuracy": 14}  # the sample community's origin, nearby
PHONE_H = 844


class Phone(Page):
    """A 390x844 phone tab whose browser may (or may not) tell the page its position."""

    def __init__(self, browser: Any, system: System, *, geolocation: dict[str, float] | None = None,
                 lang: str = "zh", width: int = 390, height: int = PHONE_H) -> None:
        phone = width < 500
        opts: dict[str, Any] = {"viewport": {"width": width, "height": height}, "is_mobile": phone,
                                "has_touch": phone}
        if geolocation is not None:
            opts.update(geolocation=geolocation, permissions=["geolocation"])
        self.ctx = browser.new_context(**opts)
        if lang != "zh":
            self.ctx.add_cookies([{"name": "gridtwin_lang", "value": lang, "url": system.url}])
        self.page = self.ctx.new_page()
        self.system = system
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" and not any(
            s in m.text for s in IGNORED_CONSOLE) else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))


def _assigned_to_a_worker(system: System, tid: int) -> str:
    """The ticket's worker; handed to the grid's day worker when the duty roster gave it to the supervisor (off
    shift: the grid's only worker works days), as a supervisor would by phone."""
    [(assignee, grid, version)] = system.sql("SELECT assignee, grid, version FROM tickets WHERE id = %s", tid)
    workers = [w.id for g in system.community.grids if g.id == grid for w in g.workers]
    if assignee not in workers:
        with Storage.connect(DB_URL, schema=system.schema) as st:
            TicketService(st, system.settings, system.community).reassign(
                User("operator", "值班员", Role.OPERATOR), tid, workers[0], "夜间：由本网格白班网格员处置",
                version=int(version))
        assignee = workers[0]
    return str(assignee)


def _fire_ticket(system: System) -> tuple[str, str]:
    """A fresh life-safety ticket from the alarm path: the B3 fire panel alarms through the broker; returns
    (ticket id, its worker)."""
    _fire(system, "active", 1)
    assert _wait(lambda: bool(system.sql("SELECT 1 FROM ticket_alarms WHERE alarm_key LIKE %s",
                                         f"%@{FIRE_PANEL}")), 20), "the fire alarm made no ticket"
    [(tid,)] = system.sql("SELECT max(ticket_id) FROM ticket_alarms WHERE alarm_key LIKE %s", f"%@{FIRE_PANEL}")
    return str(tid), _assigned_to_a_worker(system, int(tid))


def _entrapment_ticket(system: System) -> tuple[str, str]:
    """A life-safety ticket of another incident, straight from the ticket service: people trapped in B1's lift."""
    now = datetime.now(UTC)
    ev = AlarmEvent(EventKind.RAISED, "elevator_entrapment", "B1-E1-M", "device", Severity.CRITICAL,
                    AlarmStatus.ACTIVE_UNACK, now, now, 1, "B1", 1, "B1-E1-M", "entrapment at B1-E1-M",
                    Dispatch.URGENT)
    with Storage.connect(DB_URL, schema=system.schema) as st:
        t = TicketService(st, system.settings, system.community, render_on_create=False).on_alarm_event(
            system.community, ev)
    assert t is not None
    return str(t.id), _assigned_to_a_worker(system, t.id)


def _on_first_screen(phone: Phone, selector: str) -> float:
    """The element is visible with the page scrolled to the top, its bottom inside the 844 px screen."""
    phone.page.evaluate("window.scrollTo(0, 0)")
    box = phone.page.locator(selector).bounding_box()
    assert box is not None, f"{selector} is not shown"
    assert box["y"] >= 0 and box["y"] + box["height"] < PHONE_H, f"{selector} ends at {box['y'] + box['height']}"
    return float(box["y"] + box["height"])


def _uncovered(phone: Phone, selector: str) -> None:
    """Nothing lies over the middle of the (last) element (it is what a finger there would touch), once it is laid
    out for good: an image loaded, the element in the same place twice running."""
    probe = """(sel) => {
        const all = document.querySelectorAll(sel), el = all[all.length - 1];
        if (!el || (el.tagName === 'IMG' && !(el.complete && el.naturalWidth > 0))) { return null; }
        el.scrollIntoView({block: 'center'});
        const r = el.getBoundingClientRect();
        const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
        return {top: r.top, ok: !!hit && (el === hit || el.contains(hit)),
                hit: hit ? hit.outerHTML.slice(0, 120) : 'nothing'}; }"""
    settled = f"""(sel) => {{ const now = ({probe})(sel), last = window.__probe; window.__probe = now;
                                return !!now && now.ok && !!last && last.top === now.top; }}"""
    phone.page.evaluate("() => { window.__probe = null; }")
    try:
        phone.page.wait_for_function(settled, arg=selector, timeout=10_000, polling=100)
    except Exception as exc:
        raise AssertionError(f"{selector} is covered or never settled: {phone.page.evaluate(probe, selector)}") from exc


def _wait_sql(system: System, query: str, *args: Any, expect: Any, timeout: float = 10) -> None:
    assert _wait(lambda: system.sql(query, *args) == expect, timeout), f"{query}: {system.sql(query, *args)}"


def test_the_next_action_comes_first_on_a_phone_and_the_field_work_is_kept(browser: Any, system: System) -> None:
    tid, worker = _fire_ticket(system)
    phone = Phone(browser, system, geolocation=HERE)
    try:
        phone.sign_in(worker, f"/worker/ticket/{tid}")
        phone.page.wait_for_url(f"{system.url}/worker/ticket/{tid}", timeout=10_000)
        phone.page.wait_for_selector("#wt-accept.next-btn", timeout=10_000)
        # 受理 first, on the first screen, for a life-safety ticket: not 1,350 px down
        bottom = _on_first_screen(phone, "#wt-accept")
        assert phone.page.locator("#wt-stepper li[data-state=next][data-step=accept]").count() == 1
        assert not phone.page.locator("#wt-more").get_attribute("open") is not None
        # whom to call: the fire SOP's contacts from the community file, as tel: links
        hrefs = phone.page.eval_on_selector_all("#wt-calls a.call", "els => els.map(e => e.getAttribute('href'))")
        assert "tel:119" in hrefs and "tel:057188001119" in hrefs, hrefs
        phone.shot("worker_ticket_first_screen_zh_phone.png")

        phone.page.click("#wt-accept")
        phone.page.wait_for_selector("#wt-status[data-status=handling]", timeout=10_000)
        # the next one is 到场 (accepting is done: it is no longer the button), again on the first screen
        phone.page.wait_for_selector("#wt-arrive.next-btn", timeout=10_000)
        assert phone.page.locator("#wt-accept").is_hidden()
        _on_first_screen(phone, "#wt-arrive")
        phone.shot("worker_ticket_arrive_zh_phone.png")
        assert phone.page.locator("#wt-stepper li[data-step=accept][data-state=done] .when").inner_text()

        phone.page.click("#wt-arrive")
        phone.page.wait_for_selector("#wt-msg.ok:has-text('已记录到场')", timeout=20_000)
        [(lat, lon, acc, arrived)] = system.sql(
            "SELECT arrived_lat, arrived_lon, arrived_accuracy_m, arrived_at IS NOT NULL FROM tickets WHERE id = %s",
            int(tid))
        assert (round(lat, 5), round(lon, 5), round(acc), arrived) == (30.27452, 120.15563, 14, True)
        phone.page.wait_for_selector("#wt-history li[data-action=arrive]", timeout=10_000)
        assert "30.27452, 120.15563" in phone.page.inner_text("#wt-history li[data-action=arrive]")
        # the hand-off to 119: the call and the brigade's arrival are logged under its call button, in the history
        phone.page.click("#wt-calls button[data-role=fire_brigade][data-what=call]")
        _wait_sql(system, "SELECT action, detail->>'role' FROM ticket_events WHERE ticket_id = %s AND action IN "
                  "('handoff', 'partner_arrived') ORDER BY id", int(tid), expect=[("handoff", "fire_brigade")])
        # the call box is drawn again with the call logged and an "arrived" button; a live refresh may redraw it
        # under the click (the click is then lost): click again while the button is still "arrived"
        arrived_sql = "SELECT action FROM ticket_events WHERE ticket_id = %s AND action = 'partner_arrived'"
        for _ in range(5):
            with contextlib.suppress(Exception):  # playwright's TimeoutError: the button is gone (arrival recorded?)
                phone.page.click("#wt-calls button[data-role=fire_brigade][data-what=arrived]", timeout=10_000)
            if _wait(lambda: bool(system.sql(arrived_sql, int(tid))), 8):
                break
        _wait_sql(system, arrived_sql, int(tid), expect=[("partner_arrived",)])
        phone.page.wait_for_selector("#wt-history li[data-action=partner_arrived]:has-text('火警已到场')",
                                     timeout=30_000)
        assert "到场" in phone.page.inner_text("#wt-calls .call-box:has([data-role=fire_brigade]) .handoff")
        phone.page.locator("#wt-calls").screenshot(path=str(ARTIFACTS / "worker_ticket_handoff_zh_phone.png"))
        # next: the report, with its form open at the top
        phone.page.wait_for_selector("#wt-feedback.next-btn", timeout=10_000)
        assert phone.page.locator("#wt-more").get_attribute("open") is not None
        _on_first_screen(phone, "#wt-feedback")

        # SOP ticks are saved (and an untick), survive a reload and are in the history
        boxes = phone.page.locator(".sop input[type=checkbox]")
        boxes.nth(0).check()
        _wait_sql(system, "SELECT count(*) FROM ticket_events WHERE ticket_id = %s AND action = 'sop_check'",
                  int(tid), expect=[(1,)])
        boxes.nth(1).check()
        _wait_sql(system, "SELECT count(*) FROM ticket_events WHERE ticket_id = %s AND action = 'sop_check'",
                  int(tid), expect=[(2,)])
        phone.page.locator(".sop input[type=checkbox]").nth(1).uncheck()
        _wait_sql(system, "SELECT count(*) FROM ticket_events WHERE ticket_id = %s AND action = 'sop_check'",
                  int(tid), expect=[(3,)])
        phone.page.reload()
        phone.page.wait_for_selector("#wt-history li[data-action=sop_check]", timeout=10_000)
        checked = phone.page.eval_on_selector_all(".sop input[type=checkbox]", "els => els.map(e => e.checked)")
        assert checked[:2] == [True, False] and not any(checked[2:]), checked
        ticks = phone.page.locator("#wt-history li[data-action=sop_check]").all_inner_texts()
        assert len(ticks) == 3 and "勾选处置步骤 1" in ticks[0] and "取消勾选处置步骤 2" in ticks[2], ticks

        # the report with a photo: a thumbnail nothing covers, opening the full size
        phone.page.fill("#wt-note", "已到现场，误报：厨房油烟触发，已复位")
        png = ARTIFACTS / "feedback_photo_worker.png"
        phone.page.screenshot(path=str(png), clip={"x": 0, "y": 0, "width": 120, "height": 90})
        phone.page.set_input_files("#wt-photo input[type=file]", str(png))
        phone.page.wait_for_selector("text=已选照片", timeout=5_000)
        phone.page.click("#wt-feedback")
        phone.page.wait_for_selector("#wt-msg.ok:has-text('反馈已提交')", timeout=10_000)
        phone.page.wait_for_selector("#wt-history img.thumb", timeout=10_000)
        _uncovered(phone, "#wt-history img.thumb")
        href = phone.page.get_attribute("#wt-history a.photo-link", "href")
        assert href and re.fullmatch(r"/media/photos/\d+-\d+", href), href
        assert phone.page.evaluate("(h) => fetch(h).then(r => r.status)", href) == 200
        phone.page.wait_for_selector("#wt-resolve.next-btn", timeout=10_000)
        _on_first_screen(phone, "#wt-resolve")

        # 办结 (the fire alarm is still active: with a reason); its entry is on the page, not under a panel
        phone.page.fill("#wt-note", "厨房油烟误报，控制器已复位")
        phone.page.click("#wt-reason")
        phone.page.locator(".Select-option, [role=option]", has_text="误报").first.click()
        phone.page.click("#wt-resolve")
        phone.page.wait_for_selector("#wt-status[data-status=feedback]", timeout=10_000)
        phone.page.wait_for_selector("#wt-history li[data-action=resolve]", timeout=10_000)
        _uncovered(phone, "#wt-history li[data-action=resolve]")
        assert phone.page.locator("#wt-stepper li[data-state=done]").count() == 4
        assert phone.page.evaluate("document.documentElement.scrollWidth") <= 390
        phone.page.evaluate("window.scrollTo(0, 0)")
        phone.shot("worker_ticket_resolved_zh_phone.png")
        phone.page.locator("#wt-history").scroll_into_view_if_needed()
        phone.shot("worker_ticket_history_zh_phone.png")
        assert phone.errors == []
        assert bottom < PHONE_H
    finally:
        phone.close()


def test_the_ticket_page_in_english_and_on_a_desktop_and_arrival_without_a_position(browser: Any,
                                                                                    system: System) -> None:
    tid, worker = _entrapment_ticket(system)
    # the lift's latest readings, as it would report them
    publish(system, "B1-E1-M", contract.Channel.TELEMETRY, [{
        "v": 1, "ts": int(datetime.now(UTC).timestamp() * 1000), "seq": 1,
        "values": {"floor": 3, "direction": 0, "door_open": False, "running": False, "load": 42.5,
                   "in_service": True}}])
    assert _wait(lambda: bool(system.sql("SELECT 1 FROM latest_values l JOIN devices d ON d.id = l.device_id "
                                         "WHERE d.code = 'B1-E1-M'")), 10)
    en = Phone(browser, system, lang="en")  # no geolocation granted: headless Chromium says no
    desk = Phone(browser, system, width=1400, height=850)
    try:
        en.sign_in(worker, f"/worker/ticket/{tid}")
        en.page.wait_for_selector("#wt-accept.next-btn", timeout=10_000)
        assert en.page.inner_text("#wt-accept") == "Accept"
        assert "Elevator rescue" in en.page.inner_text("#wt-calls")
        assert "tel:96333" in en.page.eval_on_selector_all("#wt-calls a.call", "els => els.map(e => e.href)")
        en.shot("worker_ticket_en_phone.png")
        en.page.click("#wt-accept")
        en.page.wait_for_selector("#wt-arrive.next-btn", timeout=10_000)
        en.page.click("#wt-arrive")
        en.page.wait_for_selector("#wt-msg.ok:has-text('no position')", timeout=20_000)
        [(lat, arrived)] = system.sql("SELECT arrived_lat, arrived_at IS NOT NULL FROM tickets WHERE id = %s",
                                      int(tid))
        assert (lat, arrived) == (None, True)
        en.page.wait_for_selector("#wt-history li[data-action=arrive]", timeout=10_000)
        assert "no position from the phone" in en.page.inner_text("#wt-history li[data-action=arrive]")
        en.page.evaluate("window.scrollTo(0, 0)")
        en.shot("worker_ticket_arrived_en_phone.png")
        assert en.errors == []

        desk.sign_in(worker, f"/worker/ticket/{tid}")
        desk.page.wait_for_selector("#wt-feedback.next-btn", timeout=10_000)
        # Chinese: the situation, the readings and the history read in Chinese (no rule ids or field names)
        body = " ".join(desk.page.inner_text(f"#{part}") for part in ("wt-head", "wt-calls", "wt-body", "wt-sop-box",
                                                                     "wt-tail"))
        # (a staff account's username in the history stays as it is: the community file names workers only)
        words = set(re.findall(r"[A-Za-z_]{4,}", body)) - {"operator"}
        assert not words, f"English or raw words on the Chinese page: {sorted(words)}"
        latest = desk.page.inner_text("#wt-latest")
        assert all(x in latest for x in ("载重: 42.5 %", "所在楼层: 3", "轿门打开: 否", "运行方向: 停止")), latest
        desk.shot("worker_ticket_zh_desktop.png")
        desk.ctx.add_cookies([{"name": "gridtwin_lang", "value": "en", "url": system.url}])
        desk.page.reload()
        desk.page.wait_for_selector("#wt-feedback.next-btn", timeout=10_000)
        assert "load: 42.5 %" in desk.page.inner_text("#wt-latest")
        desk.shot("worker_ticket_en_desktop.png")
        assert desk.errors == []
    finally:
        en.close()
        desk.close()
