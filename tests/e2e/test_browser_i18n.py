"""No untranslated string on any page: every page of the dashboard, in Chinese and in English, as an
operator and as a grid worker, against the running system (the fixtures of ``test_browser``), with alarms
and a ticket raised through the real broker.

The pages come from :data:`viz.routing.PAGES`: the test starts from the top bar's links, follows every
local link it finds (so ``/device/<id>``, ``/worker/ticket/<id>``, ``/incident/<id>`` are visited with real
ids), and fails if a page kind of the routing table was never reached, so a new page is covered as soon
as it exists. On each page it reads what a person sees (``document.body.innerText``, ``title``,
``placeholder`` and ``aria-label`` attributes, the SVG text of charts: annotations, axis titles, legends)
and fails listing (page, language, role, offending text) on:

- English: a Chinese character that is not data (the community's, grids', buildings', workers' names);
- Chinese: an English word (3+ letters) that is neither data (ids) nor on the short allow-list below;
- either: a raw catalogue key (``alarms.ticket_tag``) or a raw ISO-8601 timestamp.

Screenshots of each page go to ``/tmp/shots-i18n/`` with ``GRIDTWIN_I18N_SHOTS=1``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import test_browser as tb
from tests.e2e.test_browser import FIRE_PANEL, PASSWORD, Page, System, _fire, _wait, publish
from twin import catalogue, contract
from twin.care import mask_name
from twin.community import Community
from viz import i18n, routing, shell
from viz.paths import parse_path

# the module-wide system, the browser and a tab: the same fixtures as test_browser (pytest finds them by name here)
system = tb.system
browser = tb.browser
tab = tb.tab

pytestmark = pytest.mark.integration

SHOTS = Path("/tmp/shots-i18n")
WAIT_MS = 45_000  # longest a page may take to draw (a loaded CI machine)
GAS = "B2-B1-GAS"  # a combustible gas detector: its rule names come "中文 / English"

CJK = re.compile(r"[\u2e80-\u9fff\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef]+")
WORD = re.compile(r"[A-Za-z]{3,}")
ACCOUNT = re.compile(r"[(（](operator|admin|s-\d+|w\d+-\d+)[)）]")  # the demo's user names, in brackets
# ISO-8601 with its T, or Python's str() of an aware datetime (offset after a space); a local "2026-12-02 13:05"
# is how the history pages write a date and time
ISO = re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d|\b\d{4}-\d\d-\d\d \d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)")
KEY = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)*(?:\.[a-z][a-z0-9]*(?:_[a-z0-9]+)*)+\b")
KEY_PREFIXES = frozenset(k.split(".", 1)[0] for k in i18n.STRINGS)

# English words a Chinese page may show, each for a reason (data ids and names are added from the community):
ZH_ALLOWED = frozenset({
    "gridtwin",  # the product's name (brand in the top bar)
    "English",  # the language switch names the other language in that language
    "SLA", "KPI", "SOP",  # the terms Chinese property management uses as they are (工单 SLA, KPI 考核, SOP)
    "TSG",  # standard codes are written as they are (TSG T5002, like GB 25201)
    "JPEG", "PNG", "WebP", "CSV",  # file formats (a photo's, the exports')
    "YYYY",  # the date pattern YYYY-MM-DD of date fields
    "FACP", "GAS", "DOOR", "WATER", "VALVE",  # parts of device ids (B3-FACP, B1-1201-DOOR): data
})


# and Chinese an English page may show: the language switch names the other language in that language
EN_ALLOWED = ("中文",)


def _units() -> set[str]:
    """Letter runs of the catalogue's units (``%LEL``, ``MPa``, ``ppm``, ``dB``): shown as they are."""
    return {w for k in catalogue.KINDS.values() for f in k.fields for w in WORD.findall(f.unit)}


def data_names(community: Community) -> tuple[list[str], set[str]]:
    """(Chinese strings that are data, longest first; English words that are data) of ``community``."""
    names = {community.name, *(g.name for g in community.grids), *(b.name for b in community.buildings),
             *(w.name for g in community.grids for w in g.workers), *EN_ALLOWED,
             *(n for u in community.care_units if u.name for n in (u.name, mask_name(u.name)))}  # care register
    ids = {community.id, *(g.id for g in community.grids), *(g.supervisor for g in community.grids),
           *(b.id for b in community.buildings), *(d.id for d in community.devices),
           *(w.id for g in community.grids for w in g.workers), *(u.unit for u in community.care_units)}
    ids.add(community.timezone)  # the community file's IANA zone (Asia/Shanghai), shown beside local periods
    words = {w for i in ids for w in WORD.findall(i)} | _units()
    return sorted((n for n in names if CJK.search(n)), key=len, reverse=True), words


def offenders(text: str, lang: str, zh_data: Iterable[str], words: set[str]) -> list[str]:
    """What in ``text`` (one piece of a page) is untranslated for ``lang``, each with a little context."""
    found: list[str] = []
    for m in ISO.finditer(text):
        found.append(f"raw timestamp {m.group(0)!r}")
    for m in KEY.finditer(text):
        if m.group(0).split(".", 1)[0] in KEY_PREFIXES:
            found.append(f"raw key {m.group(0)!r}")
    if lang == "en":
        rest = text
        for name in zh_data:
            rest = rest.replace(name, " ")
        for m in CJK.finditer(rest):
            found.append(f"Chinese {m.group(0)!r} in {_around(rest, m.start(), m.end())!r}")
    else:
        text = ACCOUNT.sub(" ", text)  # "值班员 (operator)": the account's user name is data
        for m in WORD.finditer(text):
            w = m.group(0)
            if w not in words and w not in ZH_ALLOWED:
                found.append(f"English {w!r} in {_around(text, m.start(), m.end())!r}")
    return found


def _around(text: str, start: int, end: int) -> str:
    return " ".join(text[max(0, start - 20):end + 20].split())


# -- the page reader -------------------------------------------------------------------------------------

PENDING = """() => { if (window.__gtPending !== undefined) return;
  window.__gtPending = 0; const f = window.fetch;
  window.fetch = function (...a) {  // the 2 Hz poll is not the page drawing itself: not counted
    const body = a[1] && typeof a[1].body === 'string' ? a[1].body : '';
    if (body.includes('"changedPropIds":["poll.n_intervals"]')) return f.apply(this, a);
    window.__gtPending++;
    return f.apply(this, a).finally(() => { window.__gtPending--; }); }; }"""
SETTLED = """(path) => {  // no page request in flight, and the text still for 250 ms (or, for a page with a
  // clock that ticks faster than that, 3 s after it opened and 1 s after its last request)
  if (location.pathname + location.search !== path) return false;
  const txt = (document.querySelector('#page') || document.body).innerText, now = performance.now();
  if (window.__gtNav === undefined) window.__gtNav = now;
  if (!window.__gtSt || window.__gtSt.txt !== txt) window.__gtSt = {txt, at: now};
  if (window.__gtPending > 0 || document.querySelector('[data-dash-is-loading="true"]')) {
    window.__gtBusy = now; return false; }
  return now - window.__gtSt.at > 250 || (now - window.__gtNav > 3000 && now - (window.__gtBusy || 0) > 1000); }"""
TEXTS = """() => { const out = [document.title, document.body.innerText];
  for (const el of document.querySelectorAll('[title],[placeholder],[aria-label]'))
    for (const a of ['title', 'placeholder', 'aria-label']) { const v = el.getAttribute(a); if (v) out.push(v); }
  for (const el of document.querySelectorAll('svg text')) if (el.textContent) out.push(el.textContent);
  const links = Array.from(document.querySelectorAll('a[href^="/"]')).map(a => a.getAttribute('href'));
  return {texts: out, links}; }"""


def _open(page: Any, base: str) -> None:
    """A full load of ``/worker`` (every role may open it): the frame, the title, the language cookie read."""
    page.goto(base + "/worker")
    page.evaluate(PENDING)
    page.wait_for_function(SETTLED, arg="/worker", timeout=WAIT_MS, polling=50)


def _go(page: Any, path: str) -> dict[str, Any]:
    """Open ``path`` in the app (as a link does), wait until the page has settled, return what it shows."""
    if page.evaluate("() => location.pathname + location.search") != path:
        try:  # the router's answer for this path, then whatever the page's own callbacks draw
            with page.expect_response(_router_answer, timeout=WAIT_MS):
                page.evaluate("(p) => { window.__gtSt = null; window.__gtNav = undefined;"
                              " window.history.pushState({}, '', p);"
                              " window.dispatchEvent(new PopStateEvent('popstate')); }", path)
        except Exception as exc:  # playwright's TimeoutError: say where
            raise AssertionError(f"{path}: the router did not answer (the browser is at {page.url})") from exc
    try:
        page.wait_for_function(SETTLED, arg=path, timeout=WAIT_MS, polling=50)
    except Exception:  # playwright's TimeoutError: read what it shows, and say so
        return {**page.evaluate(TEXTS), "unsettled": f"did not settle in {WAIT_MS / 1000:.0f} s (at {page.url})"}
    return dict(page.evaluate(TEXTS))


def _router_answer(response: Any) -> bool:
    return "_dash-update-component" in response.url and "page.children" in (response.request.post_data or "")


def _page_key(path: str) -> tuple[str, bool] | None:
    """One visit per page kind and shape (``/`` and ``/building/B3`` are both ``control``); None: not a page."""
    kind, arg = parse_path(path.split("?", 1)[0])
    if kind == "notfound":
        return None
    return kind + ("/building" if path.startswith("/building/") else ""), arg is None


class Report:
    def __init__(self, community: Community) -> None:
        self.zh_data, self.words = data_names(community)
        self.problems: list[str] = []
        self.seen: dict[str, set[str]] = {}

    def check(self, role: str, lang: str, path: str, shown: dict[str, Any]) -> None:
        self.seen.setdefault(role, set()).add(path)
        if "unsettled" in shown:  # a slow machine: what it shows by then is checked all the same
            print(f"{path} [{lang}, {role}]: {shown['unsettled']}")
        for text in shown["texts"]:
            self.problems += [f"{path} [{lang}, {role}]: {o}" for o in offenders(text, lang, self.zh_data, self.words)]


def _crawl(tab: Page, report: Report, role: str, start: list[str], fallback: dict[str, str]) -> list[str]:
    """Visit ``start`` and every page linked from the pages visited (one path per page kind and shape) in
    Chinese, then the same paths in English; returns the paths visited."""
    ctx, page, base = tab.ctx, tab.page, tab.system.url
    todo, keys, visited = list(start), set(), []
    _open(page, base)
    while todo:
        path = todo.pop(0)
        key = _page_key(path)
        if key is not None and key in keys:
            continue
        if key is not None:
            keys.add(key)
        t0 = time.monotonic()
        shown = _go(page, path)
        print(f"{role} zh {path}: {time.monotonic() - t0:.2f} s")
        visited.append(path)
        report.check(role, "zh", path, shown)
        _shot(page, f"{role}-zh{_slug(path)}")
        todo += [h for h in shown["links"] if _page_key(h) is not None and _page_key(h) not in keys]
        if not todo:
            todo += [p for k, p in fallback.items() if (k, False) not in keys and k in routing.PAGES]
            fallback = {}
    ctx.add_cookies([{"name": shell.LANG_COOKIE, "value": "en", "url": base}])
    _open(page, base)
    assert page.title() == i18n.t("en", "app.title"), page.title()
    assert page.evaluate("document.documentElement.lang") == "en"
    for path in visited:
        t0 = time.monotonic()
        shown = _go(page, path)
        print(f"{role} en {path}: {time.monotonic() - t0:.2f} s")
        report.check(role, "en", path, shown)
        _shot(page, f"{role}-en{_slug(path)}")
    return visited


def _shot(page: Any, name: str) -> None:
    """A screenshot for a person to look at, when asked for (``GRIDTWIN_I18N_SHOTS=1``: they cost time)."""
    if os.environ.get("GRIDTWIN_I18N_SHOTS") == "1":
        SHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"))


def _slug(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", path).rstrip("_") or "_home"


def _gas(system: System, lel: float, seq: int) -> None:
    """A gas detector reports a combustible gas level through the broker, as a device would."""
    publish(system, GAS, contract.Channel.TELEMETRY, [{"v": 1, "ts": int(datetime.now(UTC).timestamp() * 1000),
                                                       "seq": seq, "values": {"lel": lel}}])


def _alarms_and_a_ticket(system: System) -> tuple[str, str]:
    """A fire alarm and a gas alarm through the broker, and the ticket the gateway opens for them;
    returns (ticket id, its assignee)."""
    seq = int(time.time()) % 100_000
    _fire(system, "active", seq)
    _gas(system, 60.0, seq)
    assert _wait(lambda: len(system.sql("SELECT 1 FROM alarms WHERE (key LIKE %s OR key LIKE %s) AND status LIKE "
                                        "'active%%'", f"%@{FIRE_PANEL}", f"%@{GAS}")) >= 2, 15), "no alarms"
    assert _wait(lambda: bool(system.sql("SELECT 1 FROM tickets WHERE assignee IS NOT NULL")), 15), "no ticket"
    [(tid, assignee)] = system.sql("SELECT id, assignee FROM tickets WHERE assignee IS NOT NULL "
                                   "ORDER BY id DESC LIMIT 1")
    # what follows from them (the gas valve's interlock, more tickets) has happened: the pages stay still
    last: list[Any] = []

    def quiet() -> bool:
        now = system.sql("SELECT (SELECT count(*) FROM alarm_events), (SELECT count(*) FROM ticket_events)")
        if now == last[-1:]:
            return True
        last.append(now[0])
        time.sleep(1.0)
        return False

    _wait(quiet, 20)
    return str(tid), str(assignee)


def test_every_page_in_both_languages_has_no_untranslated_text(browser: Any, system: System) -> None:
    tid, worker = _alarms_and_a_ticket(system)
    workers = {w.id for g in system.community.grids for w in g.workers}
    if worker not in workers:  # off shift: the supervisor has it; any worker still sees the pages
        worker = sorted(workers)[0]
    report = Report(system.community)
    device = system.community.devices[0].id
    fallback = {"device": f"/device/{device}", "wticket": f"/worker/ticket/{tid}"}
    start = [href for _kind, href, _label in shell.NAV] + [f"/building/{system.community.buildings[0].id}", "/x/404",
                                                          "/patrol/at/fire_door.B1"]  # a patrol check-in page

    # signed out: the sign-in page, with its notes
    t0 = time.monotonic()
    anon = Page(browser, system)
    try:
        for lang in ("zh", "en"):
            anon.ctx.add_cookies([{"name": shell.LANG_COOKIE, "value": lang, "url": system.url}])
            path = "/login?error=1&expired=1"
            anon.page.goto(system.url + path)
            anon.page.wait_for_selector("#login-submit")
            report.check("anonymous", lang, path, dict(anon.page.evaluate(TEXTS)))
            _shot(anon.page, f"login-{lang}")
    finally:
        anon.close()

    for role, user in (("operator", "operator"), ("worker", worker)):
        t = Page(browser, system)
        try:
            t.ctx.add_cookies([{"name": shell.LANG_COOKIE, "value": "zh", "url": system.url}])
            t.page.goto(system.url + "/login")
            t.page.fill("#username", user)
            t.page.fill("#password", PASSWORD)
            t.page.click("#login-submit")
            t.page.wait_for_selector("#topbar #whoami", timeout=WAIT_MS)
            _crawl(t, report, role, start, fallback)
        finally:
            t.close()
    took = time.monotonic() - t0

    kinds = {k for k, _shape in filter(None, map(_page_key, report.seen.get("operator", ())))}
    missing = set(routing.PAGES) - kinds
    assert not missing, f"page kinds never reached from the top bar's links (add a link or a fallback): {missing}"
    assert f"/worker/ticket/{tid}" in report.seen["worker"] or any(
        p.startswith("/worker/ticket/") for p in report.seen["worker"]), "the worker's ticket page was not visited"
    assert not report.problems, f"{len(report.problems)} untranslated texts:\n" + "\n".join(report.problems)
    print(f"{sum(map(len, report.seen.values()))} pages x 2 languages checked in {took:.1f} s")


def test_the_checker_catches_what_it_is_for() -> None:
    """The checks above must be able to fail: each kind of offender is caught, and data is not."""
    from gateway.cli_base import sample_community_path
    from twin.community import parse

    zh_data, words = data_names(parse(sample_community_path().read_text(encoding="utf-8")))
    assert offenders("3号楼 12F · ticket 7", "en", zh_data, words) == []
    assert offenders("阳光社区 B3-FACP 25 %LEL 工单 SLA", "zh", zh_data, words) == []
    assert offenders("Fire · 确认", "en", zh_data, words)[0].startswith("Chinese '确认'")
    assert offenders("确认 Acknowledge", "zh", zh_data, words)[0].startswith("English 'Acknowledge'")
    assert offenders("see alarms.ticket_tag", "en", zh_data, words) == ["raw key 'alarms.ticket_tag'"]
    assert offenders("at 2026-12-02T04:17:18+00:00", "en", zh_data, words)[0].startswith("raw timestamp")
