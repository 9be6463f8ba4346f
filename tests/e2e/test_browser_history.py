"""History, incident detail and the audit log in Debian's Chromium, against the running system (the fixtures of
``test_browser``): a fire through the broker becomes an incident the operator finds by searching, sorts, exports
and opens (its alarm timeline and ticket history); the audit log shows the failed and the successful sign-in
and the reassignment, by name; a custom range with the dates the wrong way round is refused with a message.
Who may open which page and export is checked through the Flask test client (tests/integration/test_history.py)."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from tests.conftest import DB_URL
from tests.e2e import test_browser as tb
from tests.e2e.test_browser import FIRE_PANEL, Page, System, _fire, _wait

system = tb.system
browser = tb.browser
tab = tb.tab

pytestmark = pytest.mark.integration


def _incident(system: System) -> int:
    """The fire panel's alarm through the broker; the dispatch worker opens its incident's ticket."""
    _fire(system, "active", 7)
    found: list[Any] = []
    assert _wait(lambda: bool(found.extend(system.sql(
        "SELECT t.id FROM tickets t JOIN ticket_alarms a ON a.ticket_id = t.id WHERE a.device = %s", FIRE_PANEL))
        or found), 20), "no ticket for the fire"
    return int(found[0][0])


def _reassign(system: System, tid: int) -> None:
    from gateway.storage import Storage
    from gateway.tickets.service import TicketService
    from twin.people import Role, User

    [(version, assignee)] = system.sql("SELECT version, assignee FROM tickets WHERE id = %s", tid)
    with Storage.connect(DB_URL, schema=system.schema) as st:
        TicketService(st, system.settings, system.community).reassign(
            User("operator", "值班员", Role.OPERATOR), tid, "s-1" if assignee == "w2-1" else "w2-1", "换人处理",
            version=int(version))


def _click_until(tab: Page, button: Any, direction: str) -> None:
    """Click a column heading until it says it sorts that way (a click may land while the table is redrawn)."""
    sorted_by = "(d) => document.querySelector('#hist-head-incidents .sorted-' + d)?.innerText === '事件'"
    for _ in range(5):
        button.click()
        try:
            tab.page.wait_for_function(sorted_by, arg=direction, timeout=3_000)
            return
        except Exception:  # playwright's TimeoutError: click again
            continue
    raise AssertionError(f"the title column never sorted {direction}")


def test_operator_finds_sorts_exports_and_opens_an_incident_and_reads_the_audit_log(tab: Page, system: System) -> None:
    tid = _incident(system)
    _reassign(system, tid)
    # a failed sign-in first, then the real one (both go to the audit log)
    tab.page.goto(system.url + "/login")
    tab.page.fill("#username", "operator")
    tab.page.fill("#password", "not-the-password")
    tab.page.click("#login-submit")
    tab.page.wait_for_url("**error=bad**")
    tab.sign_in("operator", "/history")
    row = tab.page.locator(f"tr[data-incident='{tid}']")
    row.wait_for(timeout=15_000)
    assert "3号楼" in row.inner_text() and "消防" in row.inner_text()
    assert "T" not in row.locator("td").nth(1).inner_text()  # a local time, not ISO

    # search: a building by its name keeps the fire; nonsense finds nothing
    tab.page.fill("#hist-q", "3号楼")
    tab.page.press("#hist-q", "Enter")
    tab.page.wait_for_function("() => { const rs = [...document.querySelectorAll('#hist-body tr[data-incident]')];"
                               " return rs.length > 0 && rs.every(r => r.innerText.includes('3号楼')); }")
    tab.page.fill("#hist-q", "没有这样的事件")
    tab.page.press("#hist-q", "Enter")
    tab.page.wait_for_selector("#hist-none")

    # sorting: the title column, then again the other way
    tab.page.fill("#hist-q", "")
    tab.page.press("#hist-q", "Enter")
    row.wait_for()
    title_sort = tab.page.locator("#hist-head-incidents button", has_text="事件")
    _click_until(tab, title_sort, "desc")
    _click_until(tab, title_sort, "asc")

    # the export is the current filter, as a file Excel reads
    href = tab.page.get_attribute("#hist-export", "href") or ""
    assert href.startswith("/export/history.csv?") and "sort=title" in href and "dir=asc" in href
    got = tab.page.request.get(system.url + href)
    assert got.status == 200 and got.body().startswith("\ufeff".encode())
    lines = list(csv.reader(io.StringIO(got.body().decode("utf-8-sig"))))
    assert lines[0][0] == "编号" and str(tid) in [r[0] for r in lines[1:]]

    # the alarms tab lists the raising, with its ticket
    tab.page.click("#hist-kind input[value='alarms']")
    tab.page.locator(f"#hist-body tr[data-key$='@{FIRE_PANEL}']").first.wait_for()
    assert tab.page.is_visible("#hist-head-alarms") and not tab.page.is_visible("#hist-head-incidents")

    # a custom range the wrong way round is refused, and says why
    tab.page.click("#hist-range")
    tab.page.get_by_text("自定义日期", exact=True).click()
    tab.page.fill("#hist-start", "2026-03-02")
    tab.page.press("#hist-start", "Enter")
    tab.page.fill("#hist-end", "2026-03-01")
    tab.page.press("#hist-end", "Enter")
    tab.page.wait_for_function("(s) => document.querySelector('#hist-msg').innerText.includes(s)",
                               arg="结束日期不能早于起始日期")

    # the incident: its alarm timeline and its ticket's history, by name
    tab.page.goto(f"{system.url}/incident/{tid}")
    tab.page.wait_for_selector("#incident-timeline li[data-kind='raised']", timeout=15_000)
    history = tab.page.inner_text("#incident-ticket-history")
    assert "改派" in history and "值班员 (operator)" in history, history
    assert "换人处理" in tab.page.inner_text("#incident-comments")
    assert tab.page.is_visible("#incident-no-readings")  # the panel sent its fire event, no readings

    # the audit log: the failed and the successful sign-in, the reassignment
    tab.page.goto(system.url + "/audit")
    tab.page.wait_for_selector("#audit-body tr[data-action='sign_in_failed'][data-user='operator']", timeout=15_000)
    assert tab.page.locator("#audit-body tr[data-action='sign_in'][data-user='operator']").count() >= 1
    reassign = tab.page.locator("#audit-body tr[data-action='reassign']").first
    assert "值班员 (operator)" in reassign.inner_text() and f"工单 {tid}" in reassign.inner_text()
    tab.page.fill("#audit-user", "马")  # nobody called 马 reassigned or signed in here
    tab.page.press("#audit-user", "Enter")
    tab.page.wait_for_selector("#audit-none")
    assert tab.errors == []
