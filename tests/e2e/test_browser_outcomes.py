"""The outcomes page (/outcomes) in Debian's Chromium on ten days of seeded handling
(tests/integration/outcomes_seed.py; the dashboard alone, no gateway): a supervisor follows the KPI page's link,
sees a card per metric coloured against its target and a trend chart with the baseline and target lines, switches
to months, and a phone does not scroll sideways.
``GRIDTWIN_OUTCOME_SHOTS=1`` also takes the page in Chinese and English at 1400x850 and 390x844 into ``artifacts/``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from gateway import settings as settings_mod
from gateway.storage import Storage
from gateway.web.composition import seed_demo_users, start_dashboard
from tests.conftest import DB_URL
from tests.e2e import test_browser as tb
from tests.integration.outcomes_seed import sample_community, seed
from twin.outcomes import METRICS

browser = tb.browser
pytestmark = pytest.mark.integration
SIZES = {"desktop": (1400, 850), "phone": (390, 844)}
DAYS = 10


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    schema = f"t_oc_{uuid.uuid4().hex[:10]}"
    c = sample_community()
    s = settings_mod.load(env={}, db={"url": DB_URL, "schema": schema})
    with Storage.connect(DB_URL, schema=schema) as st:
        st.migrate()
        st.load_community(c)
        today = datetime.now(UTC).astimezone(c.tz).date()
        seed(st, s, c, datetime.combine(today - timedelta(days=DAYS), datetime.min.time(), c.tz) + timedelta(hours=8),
             DAYS)
    seed_demo_users(DB_URL, c, tb.PASSWORD, schema=schema)
    server = start_dashboard(s, c, DB_URL, None, port=0)
    tb.ARTIFACTS.mkdir(exist_ok=True)
    try:
        yield server.url.rstrip("/")
    finally:
        server.shutdown()
        with psycopg.connect(DB_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _open(browser: Any, url: str, user: str, lang: str, width: int, height: int) -> Any:
    ctx = browser.new_context(viewport={"width": width, "height": height}, is_mobile=width < 500,
                              has_touch=width < 500)
    ctx.add_cookies([{"name": "gridtwin_lang", "value": lang, "url": url}])
    page = ctx.new_page()
    page.goto(url + "/kpi")
    page.wait_for_selector("#login-submit")
    page.fill("#username", user)
    page.fill("#password", tb.PASSWORD)
    page.click("#login-submit")
    return ctx, page


def test_a_supervisor_sees_outcomes_against_targets(browser: Any, url: str) -> None:
    ctx, page = _open(browser, url, "s-1", "zh", 1400, 850)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.wait_for_selector("#oc-link", timeout=20_000)
        page.click("#oc-link")
        page.wait_for_selector("#oc-summary", timeout=30_000)
        cards = page.locator("#oc-summary .oc-card")
        assert cards.count() == len(METRICS)
        classes = [cards.nth(i).get_attribute("class") or "" for i in range(cards.count())]
        assert all(any(k in c for k in ("met", "not-met", "no-data")) for c in classes)
        assert "目标 ≤ 1.8 天" in page.inner_text("#oc-card-close_days")
        assert "基线 5.2 天" in page.inner_text("#oc-card-close_days")
        page.wait_for_selector("#oc-chart-close_days .main-svg", timeout=20_000)
        legend = page.inner_text("#oc-chart-close_days")
        assert "基线" in legend and "目标" in legend
        assert "仅您负责的网格" in page.inner_text("#oc-range")
        assert page.locator("#oc-grid-table tbody tr").count() == 3
        page.locator("#oc-bucket input[value=month]").check()
        page.wait_for_function("document.querySelector('#oc-chart-close_days .xtick') !== null", timeout=20_000)
        assert not errors, errors
    finally:
        ctx.close()


def test_the_page_in_both_languages_and_on_a_phone(browser: Any, url: str) -> None:
    shots = os.environ.get("GRIDTWIN_OUTCOME_SHOTS") == "1"
    for lang in ("zh", "en") if shots else ("en",):
        for name, (w, h) in SIZES.items() if shots else [("phone", SIZES["phone"])]:
            ctx, page = _open(browser, url, "operator", lang, w, h)
            try:
                page.goto(url + "/outcomes")
                page.wait_for_selector("#oc-chart-satisfaction .main-svg", timeout=30_000)
                if lang == "en":
                    assert "Against target" in page.inner_text("#outcomes")
                width = page.evaluate("document.documentElement.scrollWidth")
                assert width <= w, f"/outcomes scrolls sideways at {w} px ({width} px)"
                if shots:
                    page.screenshot(path=str(tb.ARTIFACTS / f"outcomes-{lang}-{name}.png"))
            finally:
                ctx.close()
