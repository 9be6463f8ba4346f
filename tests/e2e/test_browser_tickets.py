"""Tickets in the control room, in Debian's Chromium against the running system (the fixtures of
``test_browser``): a fire alarm through the broker becomes a ticket on its own; the alarm's ticket tag and the
board's rows open it; an operator reassigns, escalates and cancels it (a reason code while the fire alarm is
active), the board shows it among the closed ones with its outcome; a supervisor reopens a resolved ticket; a
worker gets none of these actions, not even by forging the callback; history, alarms and refusals read in the
person's language (no service notes in English, no raw alarm keys, no ISO timestamps).

Screenshots go to ``/tmp/shots-tickets/`` for a person to look at.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from gateway.storage import Storage
from gateway.tickets.service import TicketService
from tests.conftest import DB_URL
from tests.e2e import test_browser as tb
from tests.e2e.test_browser import FIRE_PANEL, Page, System, _fire, _wait
from twin.people import Role, User

# the module-wide system, the browser and a tab: the same fixtures as test_browser (pytest finds them by name here)
system = tb.system
browser = tb.browser
tab = tb.tab

pytestmark = pytest.mark.integration

SHOTS = Path("/tmp/shots-tickets")
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")
SERVICE_ENGLISH = ("is on duty in", "attach", "cannot", "escalated to", "@", "incident", "ticket ")


def _msg(tab: Page, text: str, cls: str) -> str:
    """Wait until the dispatch panel's message says ``text`` with class ``cls``; returns it."""
    sel = ".wt-sup .msg"
    tab.page.wait_for_function(
        "([sel, text, cls]) => { const m = document.querySelector(sel);"
        " return m && m.innerText.includes(text) && m.classList.contains(cls); }",
        arg=[sel, text, cls], timeout=10_000, polling=50)
    return tab.page.inner_text(sel)


def _pick(tab: Page, box: str, option: str) -> None:
    tab.page.click(f".wt-sup .{box}")
    tab.page.locator(".Select-option, [role=option]", has_text=option).first.click()


def _act(tab: Page, action: str) -> None:
    button = tab.page.locator(f".wt-sup button.sup-{action}")
    button.wait_for(timeout=10_000)
    tab.page.wait_for_function("(s) => !document.querySelector(s).disabled", arg=f".wt-sup button.sup-{action}",
                               timeout=10_000)
    button.click()


def _clean(text: str, what: str) -> None:
    for bad in SERVICE_ENGLISH:
        assert bad not in text, f"{what} shows {bad!r}: {text!r}"
    assert not ISO.search(text), f"{what} shows an ISO timestamp: {text!r}"


def _state(system: System, tid: str) -> tuple[str, str | None]:
    [(state, assignee)] = system.sql("SELECT state, assignee FROM tickets WHERE id = %s", int(tid))
    return str(state), assignee


def test_fire_ticket_opens_from_its_alarm_and_the_board_and_the_operator_acts_on_it(browser: Any,
                                                                                    system: System) -> None:
    SHOTS.mkdir(exist_ok=True)
    _fire(system, "active", 1)
    assert _wait(lambda: bool(system.sql("SELECT 1 FROM ticket_alarms WHERE alarm_key LIKE %s",
                                         f"%@{FIRE_PANEL}")), 20), "the fire alarm made no ticket"
    [(tid,)] = system.sql("SELECT ticket_id FROM ticket_alarms WHERE alarm_key LIKE %s", f"%@{FIRE_PANEL}")
    tid = str(tid)
    op = Page(browser, system)
    try:
        # the alarm's ticket tag is a link to its ticket
        op.sign_in("operator")
        # read and clicked from the page's side: the control page redraws the list on every live event and its
        # rows flash, so Playwright's locator actions (waiting for a stable element) can wait forever there
        sel = f".alarm-row[data-key$='@{FIRE_PANEL}'] a.ticket-link"
        op.page.wait_for_function(
            "([s, id]) => { const a = document.querySelector(s); return a && a.innerText.includes('工单')"
            " && a.innerText.includes(id) && a.getAttribute('href') === '/worker/ticket/' + id; }",
            arg=[sel, tid], timeout=20_000, polling=100)
        op.page.evaluate("(s) => document.querySelector(s).click()", sel)
        op.page.wait_for_url(f"{system.url}/worker/ticket/{tid}", timeout=10_000)
        op.page.wait_for_selector("#wt-history li", timeout=10_000)
        assert f"#{tid}" in op.page.inner_text("#wt-title")
        assert op.page.get_attribute("#wt-back", "href") == "/tickets"
        for part in ("#wt-history", "#wt-alarms"):
            _clean(op.page.inner_text(part), part)
        assert "3号楼" in op.page.inner_text("#wt-alarms")

        # back to the board: the row opens the ticket again
        op.page.click("#wt-back")
        row = op.page.locator(f"#ticket-table tr[data-ticket='{tid}']")
        row.wait_for(timeout=10_000)
        row.locator("td").nth(1).click()
        op.page.wait_for_url(f"{system.url}/worker/ticket/{tid}", timeout=10_000)
        op.page.wait_for_selector("#wt-sup", timeout=10_000)

        # reassign: a reason is needed; then to another worker of the grid
        _act(op, "reassign")
        _msg(op, "请填写原因", "warn")
        _, before = _state(system, tid)
        # another worker: the grid's own first (its only worker may hold it already), else another grid's
        [(grid_id,)] = system.sql("SELECT grid FROM tickets WHERE id = %s", int(tid))
        grids = sorted(system.community.grids, key=lambda g: g.id != grid_id)
        other = next(w for g in grids for w in g.workers if w.id != before)
        op.page.fill(".wt-sup textarea", "白班网格员就近处置")
        _pick(op, "sup-assignee", other.name)
        _act(op, "reassign")
        assert other.name in _msg(op, "已改派给", "ok")
        assert _state(system, tid) == ("dispatched", other.id)
        op.page.wait_for_function("(n) => document.querySelector('#wt-history').innerText.includes('改派给 ' + n)",
                                  arg=other.name, timeout=10_000)

        # escalate
        op.page.fill(".wt-sup textarea", "现场需要网格长协调")
        _act(op, "escalate")
        _msg(op, "已升级至网格长", "ok")
        op.page.wait_for_selector("#wt-status[data-status=escalated]", timeout=10_000)

        # cancel while the fire alarm is active: refused until a reason code is chosen, said in Chinese
        op.page.fill(".wt-sup textarea", "消控室复核为误报")
        _act(op, "cancel")
        refused = _msg(op, "仍有生命安全报警未复位", "warn")
        _clean(refused, "the refusal")
        assert "3号楼" in refused, refused
        _pick(op, "sup-code", "误报")
        _act(op, "cancel")
        _msg(op, "工单已撤销", "ok")
        op.page.wait_for_selector("#wt-outcome[data-outcome=cancelled]", timeout=10_000)
        assert "误报" in op.page.inner_text("#wt-outcome")
        assert op.page.locator(".wt-sup button.sup-reopen").is_disabled()
        _clean(op.page.inner_text("#wt-history"), "the history")
        op.page.set_viewport_size({"width": 1400, "height": 850})
        op.page.screenshot(path=str(SHOTS / "test_ticket_cancelled_zh.png"), full_page=True)

        # the board: gone from the open ones, listed among the closed ones with its outcome; found by number
        op.page.click("#wt-back")
        op.page.wait_for_selector("#board-empty, #ticket-table", timeout=10_000)
        assert op.page.locator(f"#ticket-table tr[data-ticket='{tid}']").count() == 0
        op.page.locator("#board-scope label", has_text="已关闭").click()
        closed = op.page.locator(f"#ticket-table tr[data-ticket='{tid}']")
        closed.wait_for(timeout=10_000)
        assert "已撤销" in closed.inner_text() and "误报" in closed.inner_text()
        op.page.fill("#board-search", f"#{tid}")
        op.page.wait_for_function("() => document.querySelectorAll('#ticket-table tbody tr').length === 1",
                                  timeout=10_000)
        op.page.fill("#board-search", "no-such-ticket-anywhere")
        op.page.wait_for_selector("#board-empty", timeout=10_000)

        # in English: the history is English from the catalogue, alarm keys are labels
        op.ctx.add_cookies([{"name": "gridtwin_lang", "value": "en", "url": system.url}])
        op.page.goto(f"{system.url}/worker/ticket/{tid}")
        op.page.wait_for_selector("#wt-history li", timeout=10_000)
        history = op.page.inner_text("#wt-history")
        assert "dispatched to" in history and f"reassigned to {other.name}" in history, history
        assert "cancelled · reason: false alarm" in history, history
        assert "@" not in history and not ISO.search(history)
        assert op.errors == []
    finally:
        op.close()

    # a worker: no dispatch actions on the page (a forged callback: tests/integration/test_dashboard_tickets.py)
    phone = Page(browser, system, width=390, height=844)
    try:
        phone.sign_in(other.id)
        phone.page.wait_for_url(system.url + "/worker")
        phone.page.goto(f"{system.url}/worker/ticket/{tid}")
        phone.page.wait_for_selector("#wt-title", timeout=10_000)
        assert phone.page.locator("#wt-sup").count() == 0
        assert phone.page.get_attribute("#wt-back", "href") == "/worker"
        assert phone.errors == []
    finally:
        phone.close()


def test_a_supervisor_reopens_a_resolved_ticket_from_the_board(browser: Any, system: System) -> None:
    op = User("operator", "值班员", Role.OPERATOR)
    with Storage.connect(DB_URL, schema=system.schema) as st:
        svc = TicketService(st, system.settings, system.community)
        t = svc.create_manual(op, community=system.community.id, title="2号楼 电梯异响", building="B2", floor=1)
        assert t.assignee and t.grid
        worker = next((w.id for g in system.community.grids if g.id == t.grid for w in g.workers), None)
        if t.assignee != worker and worker:
            t = svc.reassign(op, t.id, worker, "白班")
        t = svc.accept(op, t.id)
        t = svc.resolve(op, t.id, "已调整导靴")
    tid = str(t.id)
    grid = next(g for g in system.community.grids if g.id == t.grid)
    sup = Page(browser, system)
    try:
        sup.sign_in(grid.supervisor)
        sup.page.wait_for_url(system.url + "/tickets")
        sup.page.locator("#board-scope label", has_text="全部").click()
        row = sup.page.locator(f"#ticket-table tr[data-ticket='{tid}']")
        row.wait_for(timeout=10_000)
        row.locator("td").first.click()
        sup.page.wait_for_selector("#wt-outcome[data-outcome=feedback]", timeout=10_000)
        assert sup.page.locator(".wt-sup button.sup-cancel").is_disabled()
        sup.page.fill(".wt-sup textarea", "居民反映仍有异响")
        _act(sup, "reopen")
        _msg(sup, "工单已重开", "ok")
        sup.page.wait_for_selector("#wt-status[data-status=reopened]", timeout=10_000)
        assert _state(system, tid)[0] == "reopened"
        assert "重开 · 居民反映仍有异响" in sup.page.inner_text("#wt-history")
        assert sup.errors == []
    finally:
        sup.close()
