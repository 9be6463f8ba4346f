"""Hand-offs to partners (issue 15) against the real PostgreSQL: a call to 96333 and the rescuers' arrival are in
the ticket's history with the number the community file gives, the arrival needs a call before it, closed tickets
refuse them, the REST API validates them, and the KPI rows give the partners' arrival times."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.tickets import handoff
from gateway.tickets.service import Forbidden
from tests.integration import test_api as ta
from tests.integration.test_api import T0, Env
from twin.people import Role, User
from twin.tickets import InvalidInput, TicketError
from twin.tickets.handoff import Handoff, partner_kpis

pytestmark = pytest.mark.integration
env = ta.env  # the module-wide schema, users and API of test_api
MA = User("ma", "马刚", Role.WORKER, ("G1",), "w1-1")
ZHANG = User("zhang", "张刚磊", Role.WORKER, ("G2",), "w2-1")


@pytest.fixture(autouse=True)
def _day_shift(env: Env) -> None:
    env.clock.now = T0


def test_a_call_and_the_partners_arrival_are_kept_with_the_ticket(env: Env) -> None:
    tid = env.alarm()
    svc = env.service()
    svc.accept(MA, tid)
    env.clock.now = T0 + timedelta(minutes=2)
    handoff.record(svc, MA, tid, "elevator_rescue")
    with pytest.raises(TicketError, match="record the call first"):
        handoff.record(svc, MA, tid, "gas_company", arrived=True)
    env.clock.now = T0 + timedelta(minutes=19)
    handoff.record(svc, MA, tid, "elevator_rescue", arrived=True, note="96333 救援人员到场")
    with pytest.raises(TicketError, match="already arrived"):
        handoff.record(svc, MA, tid, "elevator_rescue", arrived=True)
    [h] = handoff.current(svc, tid)
    assert (h.role, h.phone, h.called_by, h.arrive_s) == ("elevator_rescue", "96333", "ma", 17 * 60)
    actions = [r[0] for r in env.storage.conn.execute(
        "SELECT action FROM ticket_events WHERE ticket_id = %s ORDER BY id", (tid,)).fetchall()]
    assert actions[-2:] == ["handoff", "partner_arrived"]  # in its history, in order
    # only who may act on it, only known partners, only while it is open
    with pytest.raises(Forbidden):
        handoff.record(svc, ZHANG, tid, "elevator_rescue")
    with pytest.raises(InvalidInput, match="unknown partner 'resident'"):
        handoff.record(svc, MA, tid, "resident")
    svc.resolve(MA, tid, "已解困", reason="other", reason_note="维保单位处理")
    with pytest.raises(TicketError, match="hand-offs are closed"):
        handoff.record(svc, MA, tid, "property")
    [row] = [k for k in handoff.partner_kpis(svc, T0 - timedelta(hours=1), T0 + timedelta(hours=1))
             if k.role == "elevator_rescue"]
    assert (row.calls, row.arrived, row.median_arrive_s) == (1, 1, 17 * 60)
    assert handoff.partner_kpis(svc, T0 - timedelta(hours=1), T0 + timedelta(hours=1), ZHANG) == []  # not G2's


def test_the_rest_api_records_and_validates_hand_offs(env: Env) -> None:
    tid = env.alarm(device="B2-E1-M", building="B2")
    c, ma = env.client, env.auth("ma")
    r = c.post(f"/api/v1/tickets/{tid}/handoffs", json={"partner": "gas_company"}, headers=ma)
    assert r.status_code == 200, r.text
    assert [h["role"] for h in r.json()["handoffs"]] == ["gas_company"]
    for body, status in [({"partner": "nobody"}, 422), ({"partner": "gas_company", "arrived": "yes"}, 422),
                         ({"partner": "gas_company", "extra": 1}, 422), ({}, 422),
                         ({"partner": "police", "arrived": True}, 409)]:
        r = c.post(f"/api/v1/tickets/{tid}/handoffs", json=body, headers=ma)
        assert r.status_code == status, (body, r.text)
    assert c.post(f"/api/v1/tickets/{tid}/handoffs", json={"partner": "gas_company"}).status_code == 401


def test_partner_kpis_fold_calls_per_partner() -> None:
    hs = [Handoff("fire_brigade", T0, "ma", arrived_at=T0 + timedelta(minutes=8)),
          Handoff("fire_brigade", T0, "ma", arrived_at=T0 + timedelta(minutes=12)),
          Handoff("fire_brigade", T0, "ma"), Handoff("gas_company", T0, "ma", arrived_at=T0 + timedelta(minutes=30))]
    rows = {k.role: k for k in partner_kpis(hs)}
    assert (rows["fire_brigade"].calls, rows["fire_brigade"].arrived, rows["fire_brigade"].median_arrive_s,
            rows["fire_brigade"].max_arrive_s) == (3, 2, 600, 720)
    assert list(rows) == ["fire_brigade", "gas_company"]
