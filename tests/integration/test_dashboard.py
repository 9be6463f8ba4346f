"""Dashboard: pure pieces (paths, SLA clocks, hotspots, colour classes, strings, 3D figures), the data source
against the real PostgreSQL, and every callback's access control through the Flask test client."""

from __future__ import annotations

import ast
import base64
import re
import string
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from psycopg.types.json import Jsonb

from gateway.cli_base import sample_community_path
from gateway.storage import Storage
from gateway.web.composition import seed_demo_users
from gateway.web.dashboard_data import StorageDashboardData
from gateway.web.sign_in import DatabaseSignIn
from twin import contract
from twin import geometry as geo
from twin.alarms import AlarmStatus, Severity
from twin.community import Community, parse
from twin.people import Role, User
from twin.state import Level, LiveState
from viz import analytics as an
from viz import app as app_mod
from viz.data import ActionRefused, AlarmView, CareUnitView, DashboardData, TicketView
from viz.i18n import STRINGS, t
from viz.scene import Scene
from viz.shell import MAX_PHOTO_BYTES
from viz.widgets import photo_from_upload

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
PASSWORD = "test-pass-123"


@pytest.fixture(scope="module")
def sample() -> Community:
    return parse(sample_community_path().read_text(encoding="utf-8"))


def _alarm(key: str = "gas_level2@B3-B1-GAS", *, severity: Severity = Severity.CRITICAL,
           status: AlarmStatus = AlarmStatus.ACTIVE_UNACK, building: str | None = "B3", floor: int | None = -1,
           device: str | None = "B3-B1-GAS", shelved_until: datetime | None = None) -> AlarmView:
    rule, _, subject = key.partition("@")
    return AlarmView(key, rule, "可燃气体二级报警 / gas level 2", severity, status, subject, "device", building, floor,
                     device, NOW, NOW, 1, "lel=55", shelved_until=shelved_until)


# -- paths ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "expected"), [
    ("/", ("control", None)), ("", ("control", None)), ("/building/B3", ("control", "B3")),
    ("/building/", ("notfound", "/building")), ("/device/B3-B1-GAS", ("device", "B3-B1-GAS")),
    ("/worker", ("worker", None)), ("/worker/ticket/12", ("wticket", "12")), ("/kpi/", ("kpi", None)),
    ("/login", ("login", None)), ("/nope", ("notfound", "/nope")),
])
def test_parse_path(path: str, expected: tuple[str, str | None]) -> None:
    assert app_mod.parse_path(path) == expected


@pytest.mark.parametrize(("target", "expected"), [
    ("/kpi", "/kpi"), ("//evil.example/x", "/"), ("https://evil.example", "/"), (None, "/"), ("/a\\b", "/"),
])
def test_safe_next_allows_only_local_paths(target: str | None, expected: str) -> None:
    assert app_mod.safe_next(target) == expected


# -- SLA clocks ----------------------------------------------------------------------------------------


def _ticket(**kw: Any) -> TicketView:
    base: dict[str, Any] = {"id": "1", "title": "x", "priority": "urgent", "status": "dispatched",
                            "created_at": NOW, "respond_by": NOW + timedelta(hours=2),
                            "resolve_by": NOW + timedelta(hours=24)}
    base.update(kw)
    return TicketView(**base)


@pytest.mark.parametrize(("elapsed", "state"), [
    (timedelta(0), "ok"), (timedelta(minutes=89, seconds=59), "ok"), (timedelta(minutes=90), "warning"),
    (timedelta(hours=2) - timedelta(seconds=1), "warning"), (timedelta(hours=2), "breached"),
    (timedelta(hours=3), "breached"),
])
def test_sla_clock_turns_amber_at_75_percent_and_red_at_the_deadline(elapsed: timedelta, state: str) -> None:
    clock = an.sla_clock(_ticket(), NOW + elapsed)
    assert clock.stage == "respond"
    assert clock.state == state


def test_sla_clock_follows_the_resolve_deadline_after_acceptance_and_stops_when_done() -> None:
    accepted = _ticket(status="handling", responded_at=NOW + timedelta(minutes=5))
    clock = an.sla_clock(accepted, NOW + timedelta(hours=18))
    assert (clock.stage, clock.state) == ("resolve", "warning")
    assert clock.remaining == timedelta(hours=6)
    assert an.sla_clock(_ticket(status="feedback"), NOW + timedelta(days=9)).state == "done"
    reopened = _ticket(status="reopened", clock_start=NOW + timedelta(hours=10),
                       respond_by=NOW + timedelta(hours=12))
    assert an.sla_clock(reopened, NOW + timedelta(hours=11)).state == "ok"  # 50% of the fresh clock


def test_sla_clock_turns_amber_with_five_minutes_left_whatever_the_share_used() -> None:
    """A life-safety ticket with a short or freshly restarted clock: 1 min left is amber, never green."""
    short = _ticket(status="reopened", clock_start=NOW, respond_by=NOW + timedelta(minutes=2))
    assert an.sla_clock(short, NOW + timedelta(minutes=1)).state == "warning"  # 50% used, 1 min left
    long = _ticket(status="reopened", clock_start=NOW, respond_by=NOW + timedelta(minutes=40))
    assert an.sla_clock(long, NOW + timedelta(minutes=20)).state == "ok"  # 20 min left
    assert an.sla_clock(long, NOW + timedelta(minutes=36)).state == "warning"  # 4 min left
    assert an.sla_clock(long, NOW + timedelta(minutes=40)).state == "breached"


def test_format_remaining() -> None:
    assert an.format_remaining(timedelta(hours=1, minutes=5)) == "1:05"
    assert an.format_remaining(timedelta(minutes=-7)) == "-0:07"
    assert an.format_remaining(timedelta(days=2, hours=3)) == "2d 03:00"


# -- hotspots, care, colour classes ------------------------------------------------------------------------


def test_outliers_need_a_standout_and_a_minimum() -> None:
    quiet = [f"B{i}" for i in range(12)]
    assert an.outliers({"B1": 6}, quiet) == {"B1"}
    assert an.outliers({"B1": 2}, quiet) == set()  # below the minimum count
    assert an.outliers(dict.fromkeys(quiet, 5), quiet) == set()  # everyone alike: nobody stands out


def test_care_alert() -> None:
    unit = CareUnitView("B1-1402", "B1", 14, "red", NOW - timedelta(hours=2), False)
    assert not an.care_alert(unit, NOW)
    assert an.care_alert(unit, NOW + timedelta(hours=13))
    assert an.care_alert(CareUnitView("u", "B1", 1, "green", None, False), NOW)
    assert an.care_alert(CareUnitView("u", "B1", 1, "green", NOW, True), NOW)


def test_alarm_classes_paint_building_and_floor_and_skip_shelved(sample: Community) -> None:
    live = LiveState(sample)
    rollup = live.rollup()
    alarms = [_alarm(), _alarm("panel_fault@B5-FP", severity=Severity.MINOR, building="B5", floor=None,
                               device=None),
              _alarm("x@B6-1", building="B6", shelved_until=NOW + timedelta(hours=1))]
    classes = an.building_classes(rollup, alarms, sample, NOW)
    assert classes["B3"] == "critical"
    assert classes["B5"] == "minor"
    assert classes["B6"] == "normal"  # shelved alarms do not paint
    floors = an.floor_classes("B3", rollup, alarms, sample, NOW)
    assert floors[-1] == "critical"
    assert floors[1] == "normal"
    assert set(an.floor_classes("B5", rollup, alarms, sample, NOW).values()) == {"minor"}  # whole building
    assert an.device_levels(rollup, alarms, sample, NOW)["B3-B1-GAS"] is Level.CRITICAL


def test_sla_classes_per_building(sample: Community) -> None:
    tickets = [_ticket(building="B2"), _ticket(id="2", building="B4", respond_by=NOW + timedelta(minutes=10),
                                               created_at=NOW - timedelta(hours=1))]
    classes = an.building_sla_classes(tickets, sample, NOW)
    assert classes["B2"] == "normal"
    assert classes["B4"] == "minor"
    assert an.building_sla_classes(tickets, sample, NOW + timedelta(hours=3))["B2"] == "critical"


# -- strings -------------------------------------------------------------------------------------------


def _used_keys() -> set[str]:
    keys: set[str] = set()
    for path in (ROOT / "viz").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "t"
                    and len(node.args) >= 2):
                arg = node.args[1]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    keys.add(arg.value)
                elif isinstance(arg, ast.JoinedStr):  # f"severity.{...}": check the prefix exists
                    first = arg.values[0]
                    prefix = first.value if isinstance(first, ast.Constant) else ""
                    keys.add(f"{prefix}*")
    return keys


def test_every_string_used_is_in_the_table_in_both_languages() -> None:
    used = _used_keys()
    assert len(used) > 100
    for key in used:
        if key.endswith("*"):
            assert any(k.startswith(key[:-1]) for k in STRINGS), key
        else:
            assert key in STRINGS, key
    fields = string.Formatter()
    for key, (zh, en) in STRINGS.items():
        assert zh.strip() and en.strip(), key
        assert {f[1] for f in fields.parse(zh) if f[1]} == {f[1] for f in fields.parse(en) if f[1]}, key
    assert t("zh", "alarms.acked", key="k") == "已确认：k"
    assert t("en", "alarms.acked", key="k") == "Acknowledged: k"
    assert t("fr", "nav.kpi") == "绩效考核"  # unknown languages fall back to Chinese


# -- 3D figures ----------------------------------------------------------------------------------------


def _decode(spec: dict[str, str]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(spec["bdata"]), dtype={"f4": np.float32, "i4": np.int32}[spec["dtype"]])


def test_overview_is_a_few_meshes_with_a_building_per_vertex(sample: Community) -> None:
    scene = Scene(sample)
    classes = {b.id: "normal" for b in sample.buildings} | {"B3": "critical"}
    fig = scene.overview(classes, {"critical": "紧急"})
    meshes = [tr for tr in fig["data"] if tr["type"] == "mesh3d"]
    assert [m["name"] for m in meshes] == ["紧急", "normal", "ground"]
    red = meshes[0]
    assert red["color"] == geo.PALETTE["critical"]
    x = _decode(red["x"])
    assert len(red["customdata"]) == len(x)
    assert set(red["customdata"]) == {scene.index["B3"]}
    assert int(_decode(red["i"]).max()) < len(x)


def test_exploded_building_has_floor_classes_devices_and_cars(sample: Community) -> None:
    scene = Scene(sample)
    from viz.scene import Marker

    fig = scene.exploded("B3", {-1: "critical"}, {}, devices=[Marker("d", 1, 2, 3, "#fff", "d")],
                         cars=[Marker("c", 1, 2, 3, "#fff", "c", "square")], floor_names={-1: "B1"})
    names = [tr.get("name") for tr in fig["data"]]
    assert "critical" in names and "devices" in names and "cars" in names
    z_b1 = scene.car_z("B3", -1)
    z_1 = scene.car_z("B3", 1)
    z_15 = scene.car_z("B3", 1.5)
    assert z_b1 is not None and z_1 is not None and z_15 is not None
    assert z_b1 < z_1 < z_15
    with pytest.raises(KeyError):
        scene.exploded("NOPE", {}, {})


def test_photo_upload_is_checked_by_type_size_and_magic() -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 100
    ok = photo_from_upload("data:image/png;base64," + base64.b64encode(png).decode(), "a.png")
    assert ok is not None and ok.content == png and ok.content_type == "image/png"
    assert photo_from_upload("data:image/png;base64," + base64.b64encode(b"GIF89a").decode(), "a.png") is None
    assert photo_from_upload("data:text/html;base64,PGI+", "a.html") is None
    assert photo_from_upload("data:image/png;base64,!!!", "a.png") is None
    big = b"\xff\xd8\xff" + b"0" * MAX_PHOTO_BYTES
    assert photo_from_upload("data:image/jpeg;base64," + base64.b64encode(big).decode(), "b.jpg") is None


# -- the data source on the real database ------------------------------------------------------------------

DB_MARK = pytest.mark.integration


@pytest.fixture
def loaded(db_url: str, schema: str, sample: Community) -> Iterator[Storage]:
    st = Storage.connect(db_url, schema=schema)
    st.migrate()
    st.load_community(sample)
    yield st
    st.close()


@pytest.fixture
def source(loaded: Storage, db_url: str, schema: str, sample: Community) -> Iterator[StorageDashboardData]:
    seed_demo_users(db_url, sample, PASSWORD, schema=schema)
    auth = DatabaseSignIn(db_url, schema=schema)
    data = StorageDashboardData(sample, db_url, schema=schema, sign_in=auth, live_refresh_s=0.2)
    yield data
    data.close()
    auth.close()


def insert_alarm(st: Storage, community: str, key: str = "gas_level2@B3-B1-GAS", *, building: str = "B3",
                 floor: int = -1, device: str | None = "B3-B1-GAS", severity: str = "critical",
                 at: datetime | None = None) -> None:
    at = at or datetime.now(UTC)
    rule, _, subject = key.partition("@")
    st.conn.execute(
        "INSERT INTO alarms (key, community, rule, subject, subject_type, severity, status, dispatch, building, "
        "floor, device, raised_at, last_seen, count, detail) VALUES (%s, %s, %s, %s, 'device', %s, 'active_unack', "
        "'urgent', %s, %s, %s, %s, %s, 1, 'lel=55') ON CONFLICT (key) DO UPDATE SET status = 'active_unack', "
        "updated_at = now()", (key, community, rule, subject, severity, building, floor, device, at, at))
    st.conn.execute(
        "INSERT INTO alarm_events (at, community, key, kind, severity, status, by, detail, event) VALUES "
        "(%s, %s, %s, 'raised', %s, 'active_unack', NULL, 'lel=55', %s)",
        (at, community, key, severity, Jsonb({"building": building, "floor": floor, "rule": rule})))


OPERATOR = User("op", "值班员", Role.OPERATOR)
WORKER = User("w1-1", "马刚", Role.WORKER, ("G1",), "w1-1")


@DB_MARK
def test_alarm_lifecycle_through_the_data_source(source: StorageDashboardData, loaded: Storage,
                                                 sample: Community) -> None:
    v0 = source.version()
    assert source.active_alarms() == []
    insert_alarm(loaded, sample.id)
    source._version = None  # skip the 200 ms version cache
    assert source.version() != v0
    [a] = source.active_alarms()
    assert (a.key, a.severity, a.status, a.dispatch) == ("gas_level2@B3-B1-GAS", Severity.CRITICAL,
                                                         AlarmStatus.ACTIVE_UNACK, "urgent")
    assert a.rule_name.startswith("可燃气体") or a.rule_name == "gas_level2"
    with pytest.raises(ActionRefused) as refused:
        source.acknowledge(WORKER, a.key, "no")
    assert refused.value.code == "forbidden"
    source.acknowledge(OPERATOR, a.key, "现场确认")
    row = loaded.conn.execute("SELECT status, acked_by, ack_comment FROM alarms WHERE key = %s", (a.key,)).fetchone()
    assert row == ("active_ack", "op", "现场确认")
    with pytest.raises(ActionRefused) as again:
        source.acknowledge(OPERATOR, a.key, "twice")
    assert again.value.code == "already_acknowledged"
    with pytest.raises(ActionRefused) as unknown:
        source.acknowledge(OPERATOR, "forged@key", "x")
    assert unknown.value.code == "not_found"
    until = datetime.now(UTC) + timedelta(hours=1)
    source.shelve(OPERATOR, a.key, until)
    [a2] = source.active_alarms()
    assert a2.shelved(datetime.now(UTC))
    kinds = [r[0] for r in loaded.conn.execute("SELECT kind FROM alarm_events WHERE key = %s ORDER BY id",
                                               (a.key,)).fetchall()]
    assert kinds == ["raised", "acknowledged", "shelved"]
    assert a2.shelved_by == "op"
    source.unshelve(OPERATOR, a.key)
    [a3] = source.active_alarms()
    assert not a3.shelved(datetime.now(UTC))
    with pytest.raises(ActionRefused) as not_shelved:
        source.unshelve(OPERATOR, a.key)
    assert not_shelved.value.code == "not_shelved"
    with pytest.raises(ActionRefused) as forbidden:
        source.clear(WORKER, a.key, "no")
    assert forbidden.value.code == "forbidden"
    source.clear(OPERATOR, a.key, "现场复位")
    assert loaded.conn.execute("SELECT status, cleared_by FROM alarms WHERE key = %s", (a.key,)).fetchone() == (
        "cleared_ack", "op")
    with pytest.raises(ActionRefused) as cleared:
        source.clear(OPERATOR, a.key, "again")
    assert cleared.value.code == "not_active"


@DB_MARK
def test_an_alarm_shows_the_ticket_of_its_incident(source: StorageDashboardData, loaded: Storage, sample: Community,
                                                   settings: Any) -> None:
    from gateway.tickets.service import TicketService
    from twin.alarms import AlarmEvent, Dispatch, EventKind

    at = datetime.now(UTC)
    insert_alarm(loaded, sample.id, at=at)
    source._version = None
    assert [a.ticket for a in source.active_alarms()] == [None]
    ev = AlarmEvent(EventKind.RAISED, "gas_level2", "B3-B1-GAS", "device", Severity.CRITICAL, AlarmStatus.ACTIVE_UNACK,
                    at, at, 1, "B3", -1, "B3-B1-GAS", "lel=55", Dispatch.URGENT, received_at=at)
    t = TicketService(loaded, settings, sample).on_alarm_event(sample, ev)
    assert t is not None
    source._version = source._alarms = None  # no ticket desk here: its version would have changed the tag
    assert [(a.key, a.ticket) for a in source.active_alarms()] == [("gas_level2@B3-B1-GAS", str(t.id))]


@DB_MARK
def test_alarm_actions_go_to_the_alarm_service_when_it_runs(loaded: Storage, db_url: str, schema: str,
                                                            sample: Community) -> None:
    sent: list[tuple[str, bytes, int]] = []
    data = StorageDashboardData(sample, db_url, schema=schema, publish=lambda *m: sent.append(m), topic_root="gt",
                                confirm_timeout_s=0)
    try:
        insert_alarm(loaded, sample.id)
        data.acknowledge(OPERATOR, "gas_level2@B3-B1-GAS", "ok")
    finally:
        data.close()
    [(topic, payload, qos)] = sent
    assert topic == f"gt/v1/alarms/{sample.id}/commands" and qos == 1
    assert b'"action":"acknowledge"' in payload and b'"by":"op"' in payload
    # a shelve command carries ``until`` on the wire as ISO-8601 (the dashboard hands over a datetime)
    data = StorageDashboardData(sample, db_url, schema=schema, publish=lambda *m: sent.append(m), topic_root="gt",
                                confirm_timeout_s=0)
    until = datetime.now(UTC) + timedelta(hours=8)
    try:
        data.shelve(OPERATOR, "gas_level2@B3-B1-GAS", until)
        data.clear(OPERATOR, "gas_level2@B3-B1-GAS", "")
    finally:
        data.close()
    shelve, clear = (contract.AlarmCommand.model_validate_json(m[1]) for m in sent[1:])
    assert (shelve.action, shelve.until) == ("shelve", until)
    assert (clear.action, clear.comment) == ("clear", None)
    # the row is the alarm service's to change
    assert loaded.conn.execute("SELECT status FROM alarms").fetchone() == ("active_unack",)


@DB_MARK
def test_live_state_history_and_care_from_the_database(source: StorageDashboardData, loaded: Storage,
                                                       sample: Community) -> None:
    metrics = loaded.metric_ids()
    devices = dict(loaded.conn.execute("SELECT code, id FROM devices").fetchall())
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    rows = [(now - timedelta(minutes=m), devices["B3-B1-GAS"], metrics["lel"], float(m), 0) for m in range(120)]
    rows.append((now - timedelta(seconds=5), devices["B1-E1-M"], metrics["floor"], 7.0, 0))
    rows.append((now - timedelta(hours=1), devices["B1-1402-DOOR"], metrics["opened"], 1.0, 0))
    loaded.write_readings(rows)
    loaded.write_status([(devices["B2-B1-GAS"], "offline", "last will", now)])
    source.refresh_live()
    live = source.live()
    assert live.elevator_floors["B1-E1"] == 7.0
    assert live.rollup.devices["B2-B1-GAS"] is Level.OFFLINE
    assert live.rollup.buildings["B2"] >= Level.OFFLINE
    latest = source.device_latest("B3-B1-GAS")
    assert latest["lel"][0] == 0.0
    hour = source.device_history("B3-B1-GAS", "lel", now - timedelta(hours=1), now + timedelta(minutes=1),
                                 timedelta(minutes=1))
    assert len(hour) == 61
    assert hour[-1].avg == 0.0 and hour[0].avg == 60.0
    loaded.refresh_rollup(since=now - timedelta(hours=3), until=now - timedelta(minutes=30))
    day = source.device_history("B3-B1-GAS", "lel", now - timedelta(days=1), now + timedelta(minutes=1),
                                timedelta(minutes=15))
    assert sum(p.samples for p in day) == 120  # rollup up to 30 min ago + raw tail after it, nothing twice
    assert source.device_history("NOPE", "lel", now - timedelta(hours=1), now, timedelta(minutes=1)) == []
    care = {u.unit: u for u in source.care_overview()}
    assert care["B1-1402"].last_activity == now - timedelta(hours=1)
    assert care["B1-1402"].level == "red"


@DB_MARK
def test_sign_in_shares_the_api_users_and_expires(loaded: Storage, db_url: str, schema: str,
                                                  sample: Community) -> None:
    seed_demo_users(db_url, sample, PASSWORD, schema=schema)
    clock = [datetime.now(UTC)]
    auth = DatabaseSignIn(db_url, schema=schema, ttl=timedelta(hours=1), clock=lambda: clock[0])
    try:
        assert auth.sign_in("operator", "wrong-password") is None
        assert auth.sign_in("nobody", PASSWORD) is None
        s = auth.sign_in("w1-1", PASSWORD)
        assert s is not None and s.user.role is Role.WORKER and s.user.grids == ("G1",)
        assert s.user.worker_id == "w1-1"
        assert auth.user_for_token(s.token) == s.user
        assert auth.user_for_token("forged") is None
        clock[0] += timedelta(hours=2)
        assert auth.user_for_token(s.token) is None
        clock[0] -= timedelta(hours=2)
        auth.sign_out(s.token)
        assert auth.user_for_token(s.token) is None
    finally:
        auth.close()


# -- callbacks and pages through the Flask test client -----------------------------------------------------


@pytest.fixture
def client(source: StorageDashboardData) -> Any:
    app = app_mod.create_app(source)
    return app.server.test_client()


def _sign_in(client: Any, username: str) -> None:
    r = client.post("/auth/login", data={"username": username, "password": PASSWORD, "next": "/"})
    assert r.status_code == 302
    assert app_mod.SESSION_COOKIE in r.headers.get("Set-Cookie", "")


def _callback(client: Any, output: str, inputs: list[Any], state: list[dict[str, Any]] | None = None
              ) -> Any:
    outputs = [{"id": o.split(".")[0], "property": o.split(".")[1]} for o in output.strip(".").split("...")]
    body = {"output": output, "outputs": outputs if len(outputs) > 1 else outputs[0], "inputs": inputs,
            "state": state or [], "changedPropIds": [f"{i['id']}.{i['property']}" for i in inputs[:1]]}
    return client.post("/_dash-update-component", json=body)


ALARM_LIST = ("..alarm-list.children...alarm-count.children...f-building.options...f-category.options"
              "...alarm-count.className..")
ALARM_LIST_INPUTS = [{"id": "version", "property": "data", "value": "x"},
                     {"id": "alarms-bump", "property": "data", "value": None},
                     {"id": "f-severity", "property": "value", "value": None},
                     {"id": "f-category", "property": "value", "value": None},
                     {"id": "f-building", "property": "value", "value": None},
                     {"id": "alarm-selected-key", "property": "data", "value": None},
                     {"id": "alarm-limit", "property": "data", "value": 100}]


@DB_MARK
def test_pages_need_a_session_and_the_right_role(client: Any) -> None:
    r = client.get("/kpi")
    assert r.status_code == 302 and r.headers["Location"].startswith("/login?next=/kpi")
    _sign_in(client, "w1-1")
    assert client.get("/").headers["Location"] == "/worker"  # a worker's home is their tickets
    r = client.get("/kpi")
    assert r.status_code == 403 and "无权" in r.get_data(as_text=True)
    assert client.get("/worker").status_code == 200
    assert client.get("/media/tickets/1/snapshot.png").status_code == 404  # no ticket service: nothing to show
    client.get("/auth/logout")
    _sign_in(client, "operator")
    assert client.get("/kpi").status_code == 200
    assert client.get("/building/NOPE").status_code == 200  # the page itself says the building is unknown


@DB_MARK
def test_every_callback_checks_the_user(client: Any, loaded: Storage, sample: Community) -> None:
    insert_alarm(loaded, sample.id)
    assert _callback(client, ALARM_LIST, ALARM_LIST_INPUTS).status_code == 204  # no session: nothing
    _sign_in(client, "w1-1")
    assert _callback(client, ALARM_LIST, ALARM_LIST_INPUTS).status_code == 204  # a worker: nothing either
    r = _callback(client, "..scene.figure...scene-title.children...scene-buildings.data...scene-note.children..",
                  [{"id": "version", "property": "data", "value": "x"},
                   {"id": "url", "property": "pathname", "value": "/"},
                   {"id": "colour-mode", "property": "value", "value": "alarm"},
                   {"id": "f-severity", "property": "value", "value": []},
                   {"id": "f-category", "property": "value", "value": []},
                   {"id": "f-building", "property": "value", "value": []},
                   {"id": "alarm-selected-key", "property": "data", "value": None}])
    assert r.status_code == 204
    # a request with fewer inputs than the callback has is malformed: 400, not Dash's 500
    r = _callback(client, "..scene.figure...scene-title.children...scene-buildings.data...scene-note.children..",
                  [{"id": "version", "property": "data", "value": "x"}])
    assert r.status_code == 400
    client.get("/auth/logout")
    _sign_in(client, "operator")
    r = _callback(client, ALARM_LIST, ALARM_LIST_INPUTS)
    assert r.status_code == 200 and "gas_level2@B3-B1-GAS" in r.get_data(as_text=True)


@DB_MARK
def test_forged_and_stale_inputs_get_a_message(client: Any, loaded: Storage, sample: Community) -> None:
    _sign_in(client, "operator")
    out = "..action-msg.children...action-msg.className...ack-comment.value...alarms-bump.data.."
    buttons = [{"id": "ack-btn", "property": "n_clicks", "value": 1},
               {"id": "shelve-btn", "property": "n_clicks", "value": None},
               {"id": "clear-btn", "property": "n_clicks", "value": None},
               {"id": "dispatch-btn", "property": "n_clicks", "value": None},
               [{"id": {"type": "unshelve-btn", "key": "x"}, "property": "n_clicks", "value": 0}]]

    def ack(key: object, comment: object) -> str:
        state = [{"id": "alarm-selected-key", "property": "data", "value": key},
                 {"id": "ack-comment", "property": "value", "value": comment},
                 {"id": "shelve-for", "property": "value", "value": "1"}]
        r = _callback(client, out, buttons, state)
        assert r.status_code == 200
        text = str(r.get_json()["response"]["action-msg"]["children"])
        stamp, _, msg = text.partition(" ")  # every answer starts with the time it was given
        assert re.fullmatch(r"\d\d:\d\d:\d\d", stamp), text
        return msg

    assert ack("forged@nothing", "x") == t("zh", "refused.not_found") + "：forged@nothing"
    assert ack({"not": "a string"}, "x") == t("zh", "alarms.select_first")
    insert_alarm(loaded, sample.id)
    assert ack("gas_level2@B3-B1-GAS", "") == t("zh", "alarms.comment_needed")
    assert ack("gas_level2@B3-B1-GAS", "ok").startswith("已确认")
    assert ack("gas_level2@B3-B1-GAS", "again").startswith(t("zh", "refused.already_acknowledged"))  # stale
    r = client.post("/_dash-update-component", data="not json", content_type="application/json")
    assert r.status_code < 500 or "Traceback" not in r.get_data(as_text=True)


def test_the_data_source_satisfies_the_interface(source: StorageDashboardData) -> None:
    assert isinstance(source, DashboardData)


def test_no_viz_module_reads_the_database_or_the_broker() -> None:
    for path in (ROOT / "viz").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(import|from)\s+(psycopg|paho|gateway)", text, re.M), path
