"""Incident, alarm and audit history against the real PostgreSQL (``gateway/web/history_data.py``), the CSV exports
through the Flask test client (session, role, bad parameters, BOM, formula guard), and the pure parameter parsing
(``viz/history_model.py``)."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from gateway.api.auth import Users
from gateway.storage import Storage
from gateway.web.dashboard_data import StorageDashboardData
from gateway.web.sign_in import DatabaseSignIn
from tests.conftest import DB_URL
from twin.community import Community
from twin.people import Role
from viz import app as app_mod
from viz.history_model import AuditQuery, HistoryQuery, QueryError, history_query, safe_cell, time_range

pytestmark = pytest.mark.integration

PASSWORD = "hist-pass-123"
CST = timezone(timedelta(hours=8))
NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def world(sample: Community) -> Iterator[tuple[StorageDashboardData, str]]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with Storage.connect(DB_URL, schema=schema) as st:
        st.migrate()
        st.load_community(sample)
        _seed(st, sample.id)
    with Storage.connect(DB_URL, schema=schema) as st:  # the accounts the tests sign in with (hashing is slow)
        users = Users(st.conn)
        users.add("operator", PASSWORD, Role.OPERATOR, display_name="值班员")
        users.add("w1-1", PASSWORD, Role.WORKER, display_name="马刚", grids=("G1",), worker_id="w1-1")
        users.add("sup-g1", PASSWORD, Role.SUPERVISOR, display_name="网格长甲", grids=("G1",))
    auth = DatabaseSignIn(DB_URL, schema=schema)
    data = StorageDashboardData(sample, DB_URL, schema=schema, sign_in=auth)
    try:
        yield data, schema
    finally:
        data.close()
        with psycopg.connect(DB_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _ticket(st: Storage, community: str, title: str, category: str, state: str, building: str, grid: str,
            at: datetime, severity: str, key: str, device: str) -> int:
    [(tid,)] = st.conn.execute(
        "INSERT INTO tickets (community, title, category, priority, state, source, rule, building, floor, device, "
        "grid, assignee, reporter, created_at, clock_start, respond_by, rate_token, resolved_at) VALUES (%s, %s, %s, "
        "'urgent', %s, 'alarm', %s, %s, 1, %s, %s, 'w1-1', 'system', %s, %s, %s, %s, %s) RETURNING id",
        (community, title, category, state, key.split("@", maxsplit=1)[0], building, device, grid, at, at,
         at + timedelta(minutes=5), uuid.uuid4().hex,
         at + timedelta(hours=1) if state == "feedback" else None)).fetchall()
    st.conn.execute("INSERT INTO ticket_alarms (ticket_id, alarm_key, rule, severity, subject, device, building, "
                    "floor, detail, first_at, last_at) VALUES (%s, %s, %s, %s, %s, %s, %s, 1, 'x', %s, %s)",
                    (tid, key, key.split("@", maxsplit=1)[0], severity, device, device, building, at, at))
    st.conn.execute("INSERT INTO ticket_events (ticket_id, at, action, from_state, to_state, actor, note, version) "
                    "VALUES (%s, %s, 'create', NULL, 'accepted', 'system', '', 1), "
                    "(%s, %s, 'reassign', 'dispatched', 'dispatched', 'operator', '=cmd|calc', 2)",
                    (tid, at, tid, at + timedelta(minutes=1)))
    return int(tid)


def _event(st: Storage, community: str, key: str, kind: str, at: datetime, by: str | None, severity: str = "critical",
           detail: str = "x") -> None:
    rule, _, device = key.partition("@")
    st.conn.execute(
        "INSERT INTO alarm_events (at, community, key, kind, severity, status, by, detail, event, dispatched_at) "
        "VALUES (%s, %s, %s, %s, %s, 'active_unack', %s, %s, %s, now())",
        (at, community, key, kind, severity, by, detail,
         Jsonb({"rule": rule, "building": device.split("-")[0], "floor": 1, "device": device, "count": 1})))


def _seed(st: Storage, community: str) -> None:
    base = NOW - timedelta(hours=3)
    # 30 closed gas incidents in B1 (grid G1), one open fire in B3, one old elevator incident (40 days ago)
    for i in range(30):
        _ticket(st, community, f"燃气泄漏 #{i}", "gas", "feedback", "B1", "G1", base - timedelta(minutes=i),
                "major", f"gas_level1@B1-GAS{i}", f"B1-GAS{i}")
    _ticket(st, community, "=HYPERLINK(\"x\") 火警", "fire", "dispatched", "B3", "G2", base + timedelta(minutes=5),
            "critical", "fire_alarm@B3-FACP", "B3-FACP")
    _ticket(st, community, "电梯困人", "elevator", "evaluated", "B1", "G1", NOW - timedelta(days=40), "critical",
            "elevator_entrapment@B1-E1", "B1-E1")
    fire = "fire_alarm@B3-FACP"
    _event(st, community, fire, "raised", base + timedelta(minutes=5), None)
    _event(st, community, fire, "acknowledged", base + timedelta(minutes=6), "operator", detail="消控室已核实")
    _event(st, community, fire, "shelved", base + timedelta(minutes=7), "operator")
    _event(st, community, fire, "cleared", base + timedelta(minutes=20), None)
    _event(st, community, fire, "raised", base + timedelta(minutes=40), None)  # raised again: another row, active
    _event(st, community, "temp_high@B2-T1", "raised", base, None, severity="warning")


def _q(**kw: Any) -> HistoryQuery:
    return HistoryQuery(**{"kind": "incidents", "since": NOW - timedelta(days=7), "until": NOW + timedelta(minutes=1),
                           **kw})


def test_incidents_filter_search_sort_page_and_grid_scope(world: tuple[StorageDashboardData, str]) -> None:
    hist = world[0].history()
    first = hist.incidents(_q(size=25))
    assert first.total == 31 and len(first.rows) == 25  # the 40-day-old one is outside the range
    assert first.rows[0].category == "fire" and first.rows[0].severity == "critical"  # newest first
    last = hist.incidents(_q(size=25, page=1))
    assert last.total == 31 and len(last.rows) == 6
    assert {r.id for r in first.rows}.isdisjoint({r.id for r in last.rows})
    beyond = hist.incidents(_q(size=25, page=5))
    assert beyond.rows == () and beyond.total == 31
    assert hist.incidents(_q(category="gas")).total == 30
    assert hist.incidents(_q(severity="critical")).total == 1
    assert hist.incidents(_q(state="open")).total == 1 and hist.incidents(_q(state="closed")).total == 30
    assert hist.incidents(_q(text="3号楼")).total == 1  # a building by its name
    assert hist.incidents(_q(text="B1-GAS7")).total == 1  # a device of its alarms
    assert hist.incidents(_q(text="100%_")).total == 0  # wildcards are literal
    by_title = hist.incidents(_q(sort="title", desc=False, size=100)).rows
    assert [r.title for r in by_title] == sorted(r.title for r in by_title)
    g2 = hist.incidents(_q(grids=("G2",)))
    assert g2.total == 1 and g2.rows[0].building == "B3"
    assert hist.incidents(_q(since=NOW - timedelta(days=60))).total == 32


def test_alarm_history_pairs_each_raising_with_its_ack_and_clear(world: tuple[StorageDashboardData, str]) -> None:
    hist = world[0].history()
    got = hist.alarm_history(_q(kind="alarms", sort="raised", desc=False))
    assert got.total == 3
    first_fire = next(r for r in got.rows if r.key == "fire_alarm@B3-FACP")
    assert first_fire.acked_by == "operator" and first_fire.cleared_at is not None and first_fire.state == "cleared"
    assert first_fire.ticket is not None
    active = hist.alarm_history(_q(kind="alarms", state="active"))
    assert active.total == 2 and all(r.state == "active" for r in active.rows)
    cleared = hist.alarm_history(_q(kind="alarms", state="cleared"))
    assert [r.id for r in cleared.rows] == [first_fire.id]
    by_state = hist.alarm_history(_q(kind="alarms", sort="state", desc=False))  # every row's fate, then the page
    assert by_state.total == 3 and [r.state for r in by_state.rows] == ["cleared", "active", "active"]
    assert hist.alarm_history(_q(kind="alarms", category="fire")).total == 2
    assert hist.alarm_history(_q(kind="alarms", severity="warning")).total == 1
    steps = hist.incident_steps(first_fire.ticket)
    assert [s.kind for s in steps][:4] == ["raised", "acknowledged", "shelved", "cleared"]


def test_audit_log_and_recorded_sign_ins(world: tuple[StorageDashboardData, str]) -> None:
    data = world[0]
    assert data.sign_in("operator", PASSWORD, "10.0.0.9") is not None
    assert data.sign_in("operator", "wrong", "10.0.0.9") is None
    hist = data.history()
    q = AuditQuery(since=NOW - timedelta(days=7), until=datetime.now(UTC) + timedelta(minutes=1))
    everything = hist.audit(q)
    actions = [e.action for e in everything.rows]
    assert {"sign_in", "sign_in_failed", "acknowledged", "shelved", "reassign", "create"} <= set(actions)
    assert everything.rows == tuple(sorted(everything.rows, key=lambda e: e.at, reverse=True))
    failed = hist.audit(AuditQuery(since=q.since, until=q.until, action="sign_in_failed"))
    assert failed.total == 1 and failed.rows[0].user == "operator" and "10.0.0.9" in failed.rows[0].detail
    by_name = hist.audit(AuditQuery(since=q.since, until=q.until, user="值班员"))  # the operator's display name
    assert by_name.total >= 4 and {e.user for e in by_name.rows} == {"operator"}
    assert hist.people()["operator"] == "值班员"


@pytest.fixture(scope="module")
def client(world: tuple[StorageDashboardData, str]) -> Any:
    return app_mod.create_app(world[0]).server.test_client()


def _sign_in(client: Any, username: str) -> None:
    r = client.post("/auth/login", data={"username": username, "password": PASSWORD, "next": "/"})
    assert r.status_code == 302


def test_csv_exports_check_session_role_and_parameters(client: Any) -> None:
    client.delete_cookie(app_mod.SESSION_COOKIE)
    assert client.get("/export/history.csv").status_code == 302  # the page guard: to the sign-in page
    _sign_in(client, "w1-1")  # a worker: neither the pages nor the exports
    assert client.get("/export/history.csv").status_code == 403
    assert client.get("/history").status_code == 403 and client.get("/audit").status_code == 403
    assert client.get("/incident/1").status_code == 403
    _sign_in(client, "operator")
    for bad, says in (("range=1y", "未知的时间范围"), ("range=custom&start=2026-02-30&end=2026-03-01", "无效"),
                      ("range=custom&start=2026-03-02&end=2026-03-01", "结束日期不能早于"),
                      ("range=custom&start=2020-01-01&end=2026-01-01", "最长"), ("sort=evil;drop", "无效"),
                      ("page=-1", "无效"), ("q=" + "x" * 300, "最多"), ("kind=tickets", "无效")):
        r = client.get(f"/export/history.csv?{bad}")
        assert r.status_code == 400, bad
        assert says in r.get_data(as_text=True), (bad, r.get_data(as_text=True))
    r = client.get("/export/history.csv?range=7d&category=fire")
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert "attachment" in r.headers["Content-Disposition"]
    raw = r.get_data()
    assert raw.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0][:3] == ["编号", "发生时间", "事件"]
    assert len(rows) == 2 and rows[1][2].startswith("'=HYPERLINK")  # a formula is text
    assert rows[1][1].count("-") == 2 and "T" not in rows[1][1]  # local time, not ISO
    client.set_cookie(app_mod.LANG_COOKIE, "en")
    audit = client.get("/export/audit.csv?action=reassign")
    client.delete_cookie(app_mod.LANG_COOKIE)
    text = audit.get_data().decode("utf-8-sig")
    lines = list(csv.reader(io.StringIO(text)))
    assert lines[0] == ["Time", "User", "Action", "On", "Details"]
    assert len(lines) == 32 and all(r[3].startswith("ticket ") and r[4] == "'=cmd|calc" for r in lines[1:])
    assert lines[1][1] == "operator"  # the account named 值班员 after its role reads in English (viz.i18n.person_label)
    assert client.get("/export/audit.csv?action=nope").status_code == 400
    _sign_in(client, "sup-g1")  # a supervisor: history of their grid, no audit log
    assert client.get("/export/audit.csv").status_code == 403 and client.get("/audit").status_code == 403
    assert client.get("/history").status_code == 200
    mine = list(csv.reader(io.StringIO(client.get("/export/history.csv").get_data().decode("utf-8-sig"))))
    assert len(mine) == 31  # header + G1's 30 gas incidents, not B3's fire


def test_parameters_are_validated() -> None:
    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    rng = time_range("custom", "2026-05-01", "2026-05-01", now, CST)
    assert rng.since == datetime(2026, 5, 1, tzinfo=CST) and rng.until - rng.since == timedelta(days=1)
    assert time_range("24h", None, None, now, CST).since == now - timedelta(hours=24)
    for args, key in (({"range": "custom"}, "dates_needed"),
                      ({"range": "custom", "start": "x", "end": "y"}, "bad_date"),
                      ({"severity": "bad"}, "bad_choice"), ({"size": "1000"}, "bad_number"),
                      ({"q": "a\x00b"}, "text_bad")):
        with pytest.raises(QueryError) as exc:
            history_query(args, now, CST)
        assert exc.value.key == key
    q = history_query({"start": "2026-01-01", "end": "2026-01-31", "sort": "severity", "dir": "asc"}, now, CST)
    assert q.since.date() == date(2026, 1, 1) and not q.desc and q.sort == "severity"
    assert [safe_cell(v) for v in ("=1+1", "+1", "-1", "@x", "ok", None, 3)] == ["'=1+1", "'+1", "'-1", "'@x", "ok", "",
                                                                                 "3"]
