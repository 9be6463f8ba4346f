"""The knowledge assistant's life-safety rule and its outcome counting, against the real PostgreSQL.

Life safety first: a resident's question about an emergency shows what to do now and the community's numbers
(``tel:`` links) before the answer, and its handoff is a report of the emergency's category with its urgent clock;
any other question stays a ``question`` (general). Each public answer is counted without personal data (day, entry,
sure or not, helped, handed off), the feedback POST is rate-limited and checked, the dashboard summarises the last
30 days, and rows older than a year are purged on the ticket service's tick."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from gateway.api.pool import StoragePool
from gateway.assistant.core import assistant
from gateway.assistant.dashboard import StorageAssistant
from gateway.ops.retention import purge_personal_data
from gateway.tickets.views import knowledge_base
from tests.conftest import DB_URL
from tests.support.api_env import ApiEnv, api_env
from twin.assistant.urgent import BY_ID, KINDS, urgent, urgent_kind
from twin.people import Role
from twin.tickets.reports import default_categories

pytestmark = pytest.mark.integration
USERS = {"op": (Role.OPERATOR, [], None)}
GAS = "家里闻到很大的燃气味怎么办"
DIBAO = "低保怎么申请"


class Env(ApiEnv):
    RESIDENT_NET = "10.11"


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    with api_env(Env, "t_asst_out", USERS, tickets={"snapshots": False}) as e:
        yield e


def form_token(c: TestClient) -> str:
    r = c.get("/r/sunshine/B1")
    m = re.search(r'name="form_token" value="([^"]+)"', r.text)
    assert r.status_code == 200 and m is not None
    return m.group(1)


def ref_of(html: str) -> str:
    m = re.search(r'name="answer" value="([A-Za-z0-9_\-]+)"', html)
    assert m is not None, "the answer page carries no outcome ref"
    return m.group(1)


def outcome(env: Env, ref: str) -> tuple[object, ...]:
    row = env.storage.conn.execute("SELECT entry, confident, urgent, helped, handed_off, day FROM assistant_outcomes "
                                   "WHERE ref = %s", (ref,)).fetchone()
    assert row is not None
    return tuple(row)


def test_the_emergency_table_fits_the_knowledge_base_and_the_categories() -> None:
    kb, cats = knowledge_base(), default_categories()
    for k in KINDS:
        cat = cats.get(k.category)
        assert cat is not None and cat.public, k.id  # a resident's handoff may file it
        assert cat.priority.value == "urgent" or k.id == "water", (k.id, cat.priority)
        docs = [kb.get(e) for e in sorted(k.entries)]
        assert all(d is not None for d in docs), (k.id, sorted(k.entries))
        assert any(d is not None and d.audience in ("resident", "all") for d in docs), k.id
    ask = assistant().ask
    for q, kind in ((GAS, "gas"), ("厨房有煤气味", "gas"), ("I smell gas in my kitchen", "gas"), ("着火了", "fire"),
                    ("楼道里冒烟了", "fire"), ("有人被困在电梯里", "lift"), ("我家老人摔倒了起不来", "person"),
                    ("老人走失了", "person"), ("家里水管爆了水漫出来", "water"), ("有人高空抛物", "height"),
                    ("隔壁独居老人好几天没动静", "person"), ("俺家老头子早上出门到现在没回来，他有点糊涂", "person"),
                    (DIBAO, None), ("楼上漏水", None), ("燃气费怎么交", None), ("物业费怎么交", None)):
        found = urgent(ask(q, audience="resident"))
        assert (found.id if found else None) == kind, q
    for q, kind in (("独居老人家没动静了", "person"), ("一氧化碳报警器响了", "gas"), ("燃气泄漏报警处置", "gas")):
        found = urgent(ask(q, audience="all"))  # staff: the SOPs count too
        assert (found.id if found else None) == kind, q
    # a confident non-urgent answer decides, whatever words the question holds
    assert urgent_kind("摔倒了能报销吗", ["faq_medical_insurance_x"], True) is None
    assert urgent_kind("x", ["faq_safety_gas_smell"], True) is BY_ID["gas"]


def test_a_gas_smell_handoff_is_an_urgent_gas_ticket_and_the_page_says_what_to_do_first(env: Env) -> None:
    c = env.resident()
    token = form_token(c)
    page = c.post("/r/sunshine/B1/ask", data={"form_token": token, "question": GAS})
    assert page.status_code == 200, page.text
    text = page.text
    assert 'id="ask-urgent" data-kind="gas"' in text and text.index('id="ask-urgent"') < text.index('id="ask-answer"')
    assert "不要开关任何电器" in text and 'href="tel:057196777"' in text and 'href="tel:119"' in text
    assert '<details class="as-no" id="ask-no" open>' in text  # the handoff form is open for an emergency
    en = c.post("/r/sunshine/B1/ask?lang=en", data={"form_token": token, "question": GAS}).text
    assert "Emergency: do this first" in en and "Hangzhou Gas emergency repair" in en
    ref = ref_of(text)
    r = c.post("/r/sunshine/B1/handoff", data={"form_token": token, "question": GAS, "answer": ref, "floor": "2"},
               follow_redirects=False)
    assert r.status_code == 303, r.text
    (category, priority, ctx, report), = env.storage.conn.execute(
        "SELECT t.category, t.priority, t.context -> 'assistant' ->> 'urgent', r.category FROM tickets t "
        "JOIN ticket_reports r ON r.ticket_id = t.id ORDER BY t.id DESC LIMIT 1").fetchall()
    assert (category, priority, ctx, report) == ("gas", "urgent", "gas", "gas_smell")
    assert outcome(env, ref)[:5] == ("faq_safety_gas_smell", True, "gas", False, True)
    # an ordinary question stays a question on the general clock
    page = c.post("/r/sunshine/B1/ask", data={"form_token": token, "question": DIBAO})
    assert 'id="ask-urgent"' not in page.text
    r = c.post("/r/sunshine/B1/handoff", data={"form_token": token, "question": DIBAO, "answer": ref_of(page.text)},
               follow_redirects=False)
    assert r.status_code == 303
    (category, priority, report), = env.storage.conn.execute(
        "SELECT t.category, t.priority, r.category FROM tickets t JOIN ticket_reports r ON r.ticket_id = t.id "
        "ORDER BY t.id DESC LIMIT 1").fetchall()
    assert (category, priority, report) == ("other", "general", "question")


def test_outcomes_are_counted_without_personal_data_and_summarised(env: Env) -> None:
    columns = {r[0] for r in env.storage.conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = "
        "'assistant_outcomes'", (env.schema,)).fetchall()}
    assert columns == {"ref", "community", "day", "entry", "confident", "urgent", "helped", "handed_off"}
    env.storage.conn.execute("DELETE FROM assistant_outcomes")
    c = env.resident()
    token = form_token(c)
    page = c.post("/r/sunshine/B1/ask", data={"form_token": token, "question": "物业费怎么交"})
    ref = ref_of(page.text)
    assert 'id="ask-yes"' in page.text and 'action="/r/sunshine/B1/feedback"' in page.text
    assert outcome(env, ref)[3:5] == (None, False)
    yes = c.post("/r/sunshine/B1/feedback", data={"form_token": token, "answer": ref, "helped": "1"})
    assert yes.status_code == 200 and 'id="ask-thanks"' in yes.text and outcome(env, ref)[3] is True
    other = ref_of(c.post("/r/sunshine/B1/ask", data={"form_token": token, "question": "物业费怎么交"}).text)
    no = c.post("/r/sunshine/B1/feedback?lang=en", data={"form_token": token, "answer": other, "helped": "0"})
    assert no.status_code == 200 and "we will improve" in no.text and outcome(env, other)[3] is False
    # refused: a bad value, a malformed ref, a foreign form; an unknown ref changes nothing
    for data, status in (({"answer": ref, "helped": "yes"}, 422), ({"answer": "x'; --", "helped": "1"}, 422),
                         ({"answer": ref, "helped": "0", "form_token": "y" * 32}, 403)):
        assert c.post("/r/sunshine/B1/feedback", data={"form_token": token, **data}).status_code == status, data
    assert c.post("/r/sunshine/B1/feedback", data={"form_token": token, "answer": "A" * 22, "helped": "0"}
                  ).status_code == 200
    assert outcome(env, ref)[3] is True
    assert c.get("/r/sunshine/B1/feedback", follow_redirects=False).headers["location"] == "/r/sunshine/B1"
    c.post("/r/sunshine/B1/ask", data={"form_token": token, "question": GAS})  # an emergency, no feedback
    pool = StoragePool(DB_URL, schema=env.schema, max_size=1, name="t-asst-out")
    try:
        s = StorageAssistant(env.community, pool, clock=env.clock).outcomes(30)
    finally:
        pool.close()
    assert (s.answered, s.confident, s.helped, s.not_helped, s.handoffs, s.urgent) == (3, s.confident, 1, 1, 0, 1)
    assert s.top[0].shown == 2 and s.top[0].title_zh and s.unhelpful[0].entry == s.top[0].entry
    assert s.unhelpful[0].not_helped == 1
    # a year later the rows go on the ticket service's tick
    old = env.clock.now - timedelta(days=366)
    env.storage.conn.execute("INSERT INTO assistant_outcomes (ref, community, day, entry, confident) "
                             "VALUES ('old-row-aaaaaaaaaaaaaa', 'sunshine', %s, NULL, false)", (old.date(),))
    assert purge_personal_data(env.storage.conn, env.clock.now).assistant_outcomes == 1
    assert env.count("assistant_outcomes") == 3


def test_feedback_shares_the_asking_budget(env: Env) -> None:
    c = env.resident()
    token = form_token(c)
    data = {"form_token": token, "answer": "B" * 22, "helped": "1"}
    codes = [c.post("/r/sunshine/B1/feedback", data=data).status_code for _ in range(11)]
    assert codes == [200] * 10 + [429]
    assert c.post("/r/sunshine/B1/ask", data={"form_token": token, "question": DIBAO}).status_code == 429
