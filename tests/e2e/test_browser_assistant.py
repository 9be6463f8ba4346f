"""The knowledge assistant in Debian's Chromium against the running system (the fixtures of ``test_browser``): a
resident on a phone (390x844) asks on the building's public page, reads the answer with its source, says it did not
help and hands the question to the grid worker, landing on the tracking page; the grid worker's ticket page keeps
the next action on top with the knowledge box folded under it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e import test_browser as tb
from tests.e2e.test_browser import Page, System
from tests.integration.test_assistant import sure

system = tb.system
browser = tb.browser

pytestmark = pytest.mark.integration


@pytest.fixture
def phone(browser: Any, system: System) -> Iterator[Page]:
    p = Page(browser, system, 390, 844)
    yield p
    p.close()


def test_a_resident_asks_then_hands_off_to_the_grid_worker(phone: Page, system: System) -> None:
    page = phone.page
    page.goto(system.url + "/r/sunshine/B1")
    page.fill("#ask-q", sure())
    page.click("#ask-submit")
    page.wait_for_selector("#ask-answer[data-confident='1']", timeout=10_000)
    assert page.inner_text("#ask-quote").strip() and "来源" in page.inner_text("#ask-answer")
    assert not page.is_visible("#handoff-form")  # it helped, perhaps: the handoff waits behind "no"
    page.click("#ask-no-summary")
    page.wait_for_selector("#handoff-form", state="visible")
    page.select_option("#floor", "3")
    page.fill("#note", "独居老人，想请网格员上门说明")
    page.fill("#phone", "13800005678")
    page.click("#handoff-submit")
    page.wait_for_url(re.compile(r"/r/t/[A-Za-z0-9_\-]{32}$"), timeout=10_000)
    assert page.get_attribute("#pub-state", "data-state") == "dispatched"
    assert "居民咨询/求助" in page.inner_text("main") and sure() in page.inner_text("main")
    [(tid, contact, floor, context)] = system.sql(
        "SELECT t.id, t.contact, t.floor, t.context FROM tickets t JOIN ticket_reports r ON r.ticket_id = t.id "
        "WHERE r.category = 'question' ORDER BY t.id DESC LIMIT 1")
    assert (contact, floor) == ("13800005678", 3) and context["assistant"]["confident"] is True

    # the worker's phone: the next action stays on top, the knowledge box is one folded line under it
    assignee = system.sql("SELECT assignee FROM tickets WHERE id = %s", tid)[0][0]
    phone.sign_in(assignee, f"/worker/ticket/{tid}")
    page.wait_for_selector("#wt-accept.next-btn", timeout=15_000)
    action, box = page.locator("#wt-accept").bounding_box(), page.locator("#kb-box").bounding_box()
    assert action is not None and box is not None
    assert action["y"] + action["height"] <= 844 and box["y"] > action["y"] and box["height"] < 70
    page.click("#kb-summary")
    page.fill("#kb-q", "燃气泄漏")
    page.click("#kb-go")
    page.wait_for_selector("#kb-out .as-match", timeout=10_000)
    assert page.locator("#kb-out .as-match").count() >= 1 and "sop_gas_leak" in page.inner_html("#kb-out")
    assert not phone.errors, phone.errors
