"""Whom a worker calls (issue 15): the community file's ``contacts:`` (phones checked, unknown roles refused, with
the line), the SOPs' ``calls:`` (known roles only), the call buttons of a ticket; and the page's next step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from twin.community import CommunityError, parse
from twin.contacts import CALL_ROLES, Contacts, Resident, calls_for, check_phone, tel_href
from twin.knowledge import KnowledgeBase, KnowledgeError
from viz.data import TicketStep, TicketView
from viz.pages.worker_steps import next_step, position_from_browser, step_times

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = (ROOT / "twin" / "sample_community.yaml").read_text(encoding="utf-8")
T0 = datetime(2025, 6, 2, 2, 0, tzinfo=UTC)


def _with_contacts(block: str) -> str:
    head = SAMPLE[:SAMPLE.index("contacts:")]
    return head + block


@pytest.mark.parametrize("phone", ["119", "96333", "0571-8800 1119", "+86 138 0000 0101", "400-800-1234"])
def test_phone_numbers_people_write(phone: str) -> None:
    assert check_phone(phone) == phone


@pytest.mark.parametrize("phone", ["", "12", "call me", "0571--88001119", "0571  8800", "+", "-119", "119-",
                                   "tel:119", "1" * 21, "119;drop", "１１９"])
def test_phone_numbers_refused(phone: str) -> None:
    with pytest.raises(ValueError, match="not a phone number"):
        check_phone(phone)


def test_tel_links_dial_the_digits() -> None:
    assert tel_href("0571-8800 1119") == "tel:057188001119"
    assert tel_href("+86 138 0000 0101") == "tel:+8613800000101"


def test_the_sample_communitys_contacts_and_the_national_numbers() -> None:
    c = parse(SAMPLE)
    assert c.contacts.elevator_rescue is not None and c.contacts.elevator_rescue.phone == "96333"
    assert c.contacts.fire_control_room is not None
    bare = Contacts()  # a community file without contacts: 119, 120, 110 all the same
    assert (bare.fire_brigade.phone, bare.ambulance.phone, bare.police.phone) == ("119", "120", "110")
    assert bare.gas_company is None


def test_bad_contacts_are_refused_with_their_line() -> None:
    with pytest.raises(CommunityError) as e:
        parse(_with_contacts("contacts:\n  gas_company: {phone: 'call the gas man'}\n"))
    assert "contacts.gas_company.phone" in str(e.value) and "not a phone number" in str(e.value)
    assert "line " in str(e.value)
    with pytest.raises(CommunityError, match="unknown key"):
        parse(_with_contacts("contacts:\n  plumber: {phone: '12345'}\n"))
    with pytest.raises(CommunityError, match="listed twice"):
        parse(_with_contacts("contacts:\n  residents:\n  - {unit: B1-101, phone: '139'}\n"
                             "  - {unit: B1-101, phone: '138'}\n"))
    with pytest.raises(CommunityError, match=r"contacts\.residents\.0\.unit"):
        parse(_with_contacts("contacts:\n  residents:\n  - {unit: 'B1 101/x', phone: '139'}\n"))


def test_call_buttons_follow_the_sop_and_skip_unknown_numbers() -> None:
    c = parse(SAMPLE).contacts
    calls = calls_for(c, ["resident", "gas_company", "fire_brigade", "gas_company"], "B3-1101")
    assert [(x.role, x.href) for x in calls] == [("resident", "tel:13900131101"), ("gas_company", "tel:057196777"),
                                                 ("fire_brigade", "tel:119")]
    assert [x.role for x in calls_for(c, ["resident", "property"], "B9-999")] == ["property"]  # nobody on record
    assert [x.role for x in calls_for(Contacts(), ["gas_company", "ambulance"])] == ["ambulance"]
    care = calls_for(c, ["resident"], "B1-1201", resident=Resident(unit="B1-1201", phone="13900011201"))
    assert [(x.role, x.unit, x.href) for x in care] == [("resident", "B1-1201", "tel:13900011201")]


def test_sop_calls_name_known_roles_only() -> None:
    doc = ("id: sop_x\ntype: sop\ntitle: X\ntitle_zh: 某事\nsteps: [a]\ncalls: [{}]\n")
    kb = KnowledgeBase.parse([("x.yaml", doc.format("gas_company, resident"))])
    assert kb.documents["sop_x"].calls == ("gas_company", "resident")
    with pytest.raises(KnowledgeError, match="calls"):
        KnowledgeBase.parse([("x.yaml", doc.format("plumber"))])
    from gateway.tickets.views import knowledge_base

    shipped = knowledge_base()
    for d in shipped.documents.values():
        assert set(d.calls) <= set(CALL_ROLES)
    assert shipped.sop_for("elevator_entrapment") is not None
    assert "elevator_rescue" in shipped.sop_for("elevator_entrapment").calls  # type: ignore[union-attr]


def _ticket(**kw: object) -> TicketView:
    base: dict[str, object] = {"id": "1", "title": "t", "priority": "urgent", "status": "dispatched",
                               "created_at": T0, "respond_by": T0, "resolve_by": None, "clock_start": T0}
    return TicketView(**{**base, **kw})  # type: ignore[arg-type]


def test_the_next_step_follows_the_ticket() -> None:
    assert next_step(_ticket()) == "accept"
    assert next_step(_ticket(status="accepted")) is None  # not dispatched to anyone yet
    took = T0 + timedelta(minutes=1)
    assert next_step(_ticket(status="handling", responded_at=took)) == "arrive"
    on_site = T0 + timedelta(minutes=9)
    arrived = _ticket(status="handling", responded_at=took, arrived_at=on_site)
    assert next_step(arrived) == "feedback"
    early = TicketStep(T0 + timedelta(minutes=5), "w1-1", "progress", "路上")  # before arriving: not the report
    late = TicketStep(T0 + timedelta(minutes=12), "w1-1", "progress", "现场")
    assert next_step(_ticket(status="handling", responded_at=took, arrived_at=on_site, history=(early,))) == "feedback"
    reported = _ticket(status="escalated", responded_at=took, arrived_at=on_site, history=(early, late))
    assert next_step(reported) == "resolve"
    assert step_times(reported) == {"accept": took, "arrive": on_site, "feedback": late.at}
    done = _ticket(status="feedback", responded_at=took, arrived_at=on_site, history=(late,),
                   resolved_at=T0 + timedelta(minutes=30))
    assert next_step(done) is None and set(step_times(done)) == {"accept", "arrive", "feedback", "resolve"}
    assert next_step(_ticket(status="reopened")) == "accept"


def test_the_browsers_position_is_taken_only_when_it_is_one() -> None:
    p = position_from_browser({"lat": 30.27, "lon": 120.15, "accuracy": 12.5, "n": 1})
    assert p is not None and (p.lat, p.lon, p.accuracy_m) == (30.27, 120.15, 12.5)
    no_acc = position_from_browser({"lat": 30.27, "lon": 120.15, "accuracy": -1})
    assert no_acc is not None and no_acc.accuracy_m is None
    for bad in ({"error": "denied"}, {"lat": 91, "lon": 0}, {"lat": "30", "lon": 1}, {"lat": True, "lon": 1},
                {"lat": float("nan"), "lon": 1}, None, [30, 120], "30,120"):
        assert position_from_browser(bad) is None
