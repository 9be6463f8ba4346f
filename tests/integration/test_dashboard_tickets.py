"""Ticket pages' callbacks through Flask's test client on the real database and ticket service: the dispatch
actions (reassign, escalate, cancel, reopen) answer operators and supervisors and nobody else, whatever a
forged request says; what they say comes from the catalogue by refusal code; history entries are rendered
from the service's structured record in both languages."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.storage import Storage
from gateway.tickets.service import TicketService
from gateway.web.composition import build_dashboard_data, seed_demo_users
from gateway.web.dashboard_data import StorageDashboardData
from twin.community import Community
from twin.people import Role, User
from viz import app as app_mod
from viz.i18n import t
from viz.pages import tickets as tickets_page
from viz.shell import Dashboard, Req
from viz.ticket_text import people, step_text

pytestmark = pytest.mark.integration

PASSWORD = "test-pass-123"
OPERATOR = User("operator", "值班员", Role.OPERATOR)


@pytest.fixture
def data(schema: str, settings: Any, sample: Community) -> Iterator[StorageDashboardData]:
    with Storage.connect(str(settings.db.url), schema=schema) as st:
        st.migrate()
        st.load_community(sample)
    seed_demo_users(str(settings.db.url), sample, PASSWORD, schema=schema)
    d = build_dashboard_data(settings, sample, str(settings.db.url))
    yield d
    d.close()


def _ticket(settings: Any, sample: Community, schema: str) -> tuple[int, str]:
    """A manual ticket in 3号楼 dispatched to whoever is on duty; (id, grid)."""
    with Storage.connect(str(settings.db.url), schema=schema) as st:
        tk = TicketService(st, settings, sample).create_manual(
            OPERATOR, community=sample.id, title="3号楼 楼道积水", building="B3", floor=2)
    assert tk.grid
    return tk.id, tk.grid


def _dispatch_call(client: Any, app: Any, tid: int, action: str, reason: str, assignee: str | None = None,
                   code: str | None = None) -> Any:
    """The dispatch panel's callback as the browser sends it (pattern-matching ids), for ticket ``tid``."""
    [output] = [k for k in app.callback_map if "wt-sup-msg" in k]
    outs = [{"id": {"n": 0, "type": "wt-sup-msg"}, "property": "children"},
            {"id": {"n": 0, "type": "wt-sup-msg"}, "property": "className"}]
    names = ("assignee", "reason", "code")
    body = {
        "output": output,
        "outputs": [[outs[0]], [outs[1]],
                    [{"id": {"name": n, "type": "wt-sup-in"}, "property": "value"} for n in names],
                    {"id": "wt-bump", "property": "data"}],
        "inputs": [[{"id": {"action": action, "type": "wt-sup-act"}, "property": "n_clicks", "value": 1}]],
        "state": [[{"id": {"name": n, "type": "wt-sup-in"}, "property": "value", "value": v}
                   for n, v in zip(names, (assignee, reason, code), strict=True)],
                  {"id": "url", "property": "pathname", "value": f"/worker/ticket/{tid}"}],
        "changedPropIds": [json.dumps({"action": action, "type": "wt-sup-act"}, separators=(",", ":"),
                                      sort_keys=True) + ".n_clicks"],
    }
    return client.post("/_dash-update-component", json=body)


def _said(r: Any) -> str:
    assert r.status_code == 200, r.status_code
    resp = r.get_json()["response"]
    return str(next(v for k, v in resp.items() if "wt-sup-msg" in k)["children"])


def _sign_in(client: Any, username: str) -> None:
    r = client.post("/auth/login", data={"username": username, "password": PASSWORD, "next": "/"})
    assert r.status_code == 302


def test_dispatch_actions_answer_staff_only_and_speak_the_catalogue(data: StorageDashboardData, settings: Any,
                                                                     sample: Community, schema: str) -> None:
    tid, grid = _ticket(settings, sample, schema)
    g = next(x for x in sample.grids if x.id == grid)
    app = app_mod.create_app(data)

    def state() -> tuple[str, str | None, int]:
        v = data.ticket(OPERATOR, str(tid))
        assert v is not None
        with Storage.connect(str(settings.db.url), schema=schema) as st:
            [(version,)] = st.conn.execute("SELECT version FROM tickets WHERE id = %s", (tid,)).fetchall()
        return v.status, v.assignee, int(version)

    # a worker of the grid (who may see the ticket) forges the callback: nothing happens, nothing is said
    worker = app.server.test_client()
    _sign_in(worker, g.workers[0].id)
    before = state()
    for action in ("reassign", "escalate", "cancel"):
        r = _dispatch_call(worker, app, tid, action, "forged", assignee=g.workers[-1].id, code="false_alarm")
        assert r.status_code == 204, (action, r.status_code)
    assert state() == before

    op = app.server.test_client()
    _sign_in(op, "operator")
    assert _said(_dispatch_call(op, app, tid, "escalate", "  ")) == t("zh", "tk.sup.need_reason")
    assert _said(_dispatch_call(op, app, tid, "reassign", "r", assignee=None)) == t("zh", "tk.sup.need_worker")
    assert _said(_dispatch_call(op, app, tid, "reassign", "r", assignee="nobody")) == t("zh", "tk.sup.bad_worker")
    assert _said(_dispatch_call(op, app, tid, "reassign", "r", assignee={"x": 1})) == t("zh", "tk.sup.need_worker")
    # reopening an open ticket: refused by code, in Chinese, with its state (no English from the service)
    said = _said(_dispatch_call(op, app, tid, "reopen", "again"))
    assert said == t("zh", "tk.refused.state", state=t("zh", f"status.{before[0]}"), verb=t("zh", "tk.verb.reopen"))
    other = next(w for w in g.workers if w.id != before[1]) if len(g.workers) > 1 else None
    if other is not None:
        assert _said(_dispatch_call(op, app, tid, "reassign", "白班", assignee=other.id)) == t(
            "zh", "tk.sup.done.reassign", name=other.name)
        assert state()[1] == other.id
    assert _said(_dispatch_call(op, app, tid, "cancel", "重复报修", code="duplicate")) == t("zh", "tk.sup.done.cancel")
    assert state()[0] == "cancelled"

    # the history, rendered from the structured record, in English: no service notes, no raw keys
    board = Dashboard(data, poll_ms=500, tz=app_mod.CHINA, secure_cookies=False, clock=lambda: datetime.now(UTC))
    v = data.ticket(OPERATOR, str(tid))
    assert v is not None and v.history
    req = Req(OPERATOR, "en", board.clock())
    lines = [step_text(req, board, v, s, people(sample, "en")) for s in v.history]
    assert "registered by hand" in lines[0], lines
    assert any("dispatched to" in x for x in lines), lines
    assert "cancelled · 重复报修" in lines[-1], lines
    for x in lines:
        assert "is on duty in" not in x and "T" not in x.split(" · ")[0], x

    # the board's filter: bad values fall back or are refused with a message, never an error
    bad = tickets_page._ticket_board(req, board, "bogus", {"x": 1}, "x" * 101)
    assert bad.id == "board-bad-search" and bad.children == t("en", "tk.filter.search_long", n=100)
    assert tickets_page._ticket_board(req, board, "bogus", ["x"], None).children == t("en", "tickets.none")
    count, table = tickets_page._ticket_board(req, board, "closed", "cancelled", f"#{tid}")
    assert count.children == t("en", "tk.count", n=1)
    row = table.children.children[1].children[0]
    assert getattr(row, "data-ticket") == str(tid) and "cancelled · 重复报修" in str(row.children[-1].children)
