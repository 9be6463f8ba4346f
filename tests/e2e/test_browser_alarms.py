"""The control room's alarm panel in Debian's Chromium, against the running system (the fixtures of
``test_browser``): shelve, unshelve and clear through the real alarm service, every answer replacing the
last, a long list that keeps its rows legible, the badge's colour, and screenshots in both languages.

Screenshots go to ``/tmp/shots-14/`` (and ``artifacts/``) for a person to look at.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import test_browser as tb
from tests.e2e.test_browser import ARTIFACTS, FIRE_PANEL, Page, System, _fire, _wait

# the module-wide system, the browser and a tab: the same fixtures as test_browser (pytest finds them by name here)
system = tb.system
browser = tb.browser
tab = tb.tab

pytestmark = pytest.mark.integration

SHOTS = Path("/tmp/shots-14")
FIRE_ROW = f".alarm-row[data-key$='@{FIRE_PANEL}']"
STAMP = re.compile(r"^\d\d:\d\d:\d\d ")


def _answer(tab: Page, text: str, cls: str, timeout: float = 30_000) -> str:
    """Wait until the action message says ``text`` with class ``cls`` (``ok`` or ``warn``); returns it."""
    tab.page.wait_for_function(
        "([text, cls]) => { const m = document.querySelector('#action-msg');"
        " return m && m.innerText.includes(text) && m.classList.contains(cls); }",
        arg=[text, cls], timeout=timeout, polling=50)
    said = tab.page.inner_text("#action-msg")
    assert STAMP.match(said), f"the answer carries no time: {said!r}"
    return said


def _select(tab: Page, selector: str, says: str) -> None:
    """Click a row until the panel says it is selected (the list may be redrawn under the first click)."""
    for _ in range(20):
        tab.page.locator(selector).first.click()
        try:
            tab.page.wait_for_function("(s) => document.querySelector('#alarm-selected').innerText.includes(s)",
                                       arg=says, timeout=1_000)
            return
        except Exception:  # playwright's TimeoutError: click again
            continue
    raise AssertionError(f"{selector} could not be selected")


def test_operator_shelves_unshelves_and_clears_and_every_answer_replaces_the_last(tab: Page,
                                                                                  system: System) -> None:
    _fire(system, "active", 1)
    assert _wait(lambda: bool(system.sql("SELECT 1 FROM alarms WHERE key LIKE %s AND status = 'active_unack'",
                                         f"%@{FIRE_PANEL}")), 30)
    tab.sign_in("operator")
    row = tab.page.locator(FIRE_ROW)
    row.wait_for(timeout=20_000)
    _select(tab, FIRE_ROW, "3号楼")

    # a refusal, then a success that replaces it, then the same refusal again as a new answer
    tab.page.click("#ack-btn")
    _answer(tab, "确认告警需要填写说明", "warn")
    tab.page.fill("#ack-comment", "消控室已核实")
    tab.page.click("#ack-btn")
    _answer(tab, "已确认", "ok")
    tab.page.fill("#ack-comment", "再确认一次")
    tab.page.click("#ack-btn")
    refused = _answer(tab, "该告警已被确认", "warn")
    assert "operator" in refused

    # shelve: the alarm service applies it (the answer waits for that); it is listed as shelved, by whom
    tab.page.click("#shelve-btn")
    _answer(tab, "已搁置至", "ok")
    shelved = tab.page.locator(f".shelved-row[data-key$='@{FIRE_PANEL}']")
    shelved.wait_for(timeout=10_000)
    text = shelved.inner_text()
    assert "operator" in text and "搁置至" in text, text
    [(until,)] = system.sql("SELECT shelved_until FROM alarms WHERE key LIKE %s", f"%@{FIRE_PANEL}")
    assert until is not None and until > datetime.now(UTC) + timedelta(minutes=50)
    tab.shot("alarms_shelved.png")

    # unshelve from the shelved list
    shelved.locator("button.unshelve").click()
    _answer(tab, "已取消搁置", "ok")
    shelved.wait_for(state="detached", timeout=10_000)
    assert "没有搁置中的告警" in tab.page.inner_text("#shelved-list")
    assert system.sql("SELECT shelved_until FROM alarms WHERE key LIKE %s", f"%@{FIRE_PANEL}") == [(None,)]

    # clear by hand: it leaves the list; clearing it again is refused, and says so
    tab.page.click("#clear-btn")
    _answer(tab, "已手动复位", "ok")
    row.wait_for(state="detached", timeout=10_000)
    [(status, by)] = system.sql("SELECT status, cleared_by FROM alarms WHERE key LIKE %s", f"%@{FIRE_PANEL}")
    assert (status, by) == ("cleared_ack", "operator")
    tab.page.click("#clear-btn")
    again = _answer(tab, "", "warn")  # the success before it had class ok: this is a new answer
    assert "该告警已不在活动状态" in again or "对象不存在" in again, again
    assert tab.errors == []


def _insert_alarms(system: System, n: int, severities: tuple[str, ...], prefix: str) -> list[str]:
    """``n`` alarms straight into the alarms table (the dashboard reads it; the engine does not know them)."""
    devices = [d for d in system.community.devices if d.floor is not None][:n]
    now = datetime.now(UTC)
    keys = []
    for i, d in enumerate(devices):
        key = f"{prefix}_{i}@{d.id}"
        sev = severities[i % len(severities)]
        at = now - timedelta(minutes=i)
        system.sql(
            "INSERT INTO alarms (key, community, rule, subject, subject_type, severity, status, dispatch, building, "
            "floor, device, raised_at, last_seen, count, detail, acked_by, ack_comment) VALUES (%s, %s, %s, %s, "
            "'device', %s, %s, 'general', %s, %s, %s, %s, %s, 1, 'test', %s, %s)",
            key, system.community.id, f"{prefix}_{i}", d.id, sev, "active_ack" if i % 3 == 0 else "active_unack",
            d.building, d.floor, d.id, at, at, "operator" if i % 3 == 0 else None,
            "已通知物业前往现场核查，并电话联系住户确认情况" if i % 3 == 0 else None)
        keys.append(key)
    return keys


def _rows(tab: Page) -> list[dict[str, Any]]:
    return list(tab.page.evaluate(
        "Array.from(document.querySelectorAll('#alarm-list .alarm-row')).map(r => {"
        " const b = r.getBoundingClientRect();"
        " return {key: r.dataset.key, top: b.top, bottom: b.bottom, scroll: r.scrollHeight, client: r.clientHeight};"
        "})"))


def _badge_colour(tab: Page) -> tuple[int, int, int]:
    rgb = tab.page.evaluate("getComputedStyle(document.querySelector('#alarm-count')).backgroundColor")
    r, g, b = (int(x) for x in re.findall(r"\d+", rgb)[:3])
    return r, g, b


def test_many_alarms_keep_their_height_page_by_severity_and_colour_the_badge(tab: Page, system: System) -> None:
    system.sql("DELETE FROM alarms")
    _insert_alarms(system, 3, ("warning",), "tip")
    tab.sign_in("operator")
    tab.page.wait_for_selector("#alarm-count.badge-warning", timeout=20_000)
    r, g, b = _badge_colour(tab)
    assert not (r > 150 and g < 90), f"a 提示-only badge is red: {(r, g, b)}"
    assert tab.page.locator("#sev-legend .sev").count() == 4

    _insert_alarms(system, 130, ("critical", "major", "minor", "warning"), "many")
    tab.page.wait_for_selector("#alarm-count.badge-critical", timeout=20_000)
    tab.page.wait_for_selector("#alarm-more", timeout=20_000)
    rows = _rows(tab)
    assert len(rows) == 100, f"{len(rows)} rows drawn at first"
    sev = [tab.page.get_attribute(f"#alarm-list .alarm-row:nth-child({i + 1})", "class") or "" for i in (0, 99)]
    assert "sev-border-critical" in sev[0] and "sev-border-critical" not in sev[1]  # worst first
    for i, x in enumerate(rows):
        assert x["scroll"] <= x["client"] + 1, f"row {i} is shorter than its content: {x}"
        assert x["bottom"] - x["top"] >= 50, f"row {i} is squashed: {x}"
        if i:
            assert rows[i - 1]["bottom"] <= x["top"] + 0.5, f"rows {i - 1} and {i} overlap: {rows[i - 1]}, {x}"
    # the list scrolls; the panel below it stays where it is
    scrolls = tab.page.evaluate("(() => { const l = document.querySelector('#alarm-list');"
                                " return [l.scrollHeight, l.clientHeight]; })()")
    assert scrolls[0] > scrolls[1]
    tab.page.click("#alarm-more")
    tab.page.wait_for_function("document.querySelectorAll('#alarm-list .alarm-row').length === 133",
                               timeout=10_000)
    assert tab.page.locator("#alarm-more").count() == 0
    assert tab.errors == []


def _shoot(browser: Any, system: System, lang: str, width: int, height: int) -> Path:
    p = Page(browser, system, width=width, height=height)
    try:
        if lang == "en":
            p.ctx.add_cookies([{"name": "gridtwin_lang", "value": "en", "url": system.url}])
        p.sign_in("operator")
        p.page.wait_for_selector("#alarm-list .alarm-row", timeout=20_000)
        p.page.wait_for_selector("#scene .legend", timeout=20_000)
        p.page.wait_for_selector(".shelved-row", timeout=20_000)
        p.page.click("#ack-btn")  # nothing selected: the refusal is on screen
        p.page.wait_for_selector("#action-msg.warn", timeout=10_000)
        p.page.evaluate("window.scrollTo(0, 0)")
        p.page.wait_for_timeout(600)
        SHOTS.mkdir(parents=True, exist_ok=True)
        out = SHOTS / f"control-{lang}-{width}x{height}.png"
        p.page.screenshot(path=str(out))
        if width < 500:  # the phone: the alarm panel is below the scene
            p.page.locator(".side-panel").scroll_into_view_if_needed()
            p.page.screenshot(path=str(SHOTS / f"control-{lang}-{width}x{height}-panel.png"))
            assert p.page.evaluate("document.documentElement.scrollWidth") <= width
        p.page.screenshot(path=str(ARTIFACTS / out.name))
        assert p.errors == []
        return out
    finally:
        p.close()


def test_screenshots_of_the_control_page_in_both_languages(browser: Any, system: System) -> None:
    if not system.sql("SELECT 1 FROM alarms WHERE status LIKE 'active%%'"):
        _insert_alarms(system, 40, ("critical", "major", "minor", "warning"), "shot")
    # the panel's fire alarm again (it was cleared by hand above), shelved through the page: the shelved list shows it
    _fire(system, "normal", 2)
    _fire(system, "active", 3)
    assert _wait(lambda: bool(system.sql("SELECT 1 FROM alarms WHERE key LIKE %s AND status = 'active_unack'",
                                         f"%@{FIRE_PANEL}")), 30)
    op = Page(browser, system)
    try:
        op.sign_in("operator")
        op.page.locator(FIRE_ROW).wait_for(timeout=20_000)
        _select(op, FIRE_ROW, "3号楼")
        op.page.click("#shelve-btn")
        _answer(op, "已搁置至", "ok")
    finally:
        op.close()
    # each language once and each size once (every page in both languages: test_browser_i18n)
    for lang, width, height in (("zh", 1400, 850), ("en", 390, 844)):
        assert _shoot(browser, system, lang, width, height).exists()
