"""One-click reports against the real PostgreSQL: the residents' public pages (report form, tracking, rating) with
their refusals (rate limit, oversized or wrong photo, missing fields, unknown building, forged token, a form from
elsewhere: a clear 4xx and nothing stored), staff reports and the supervisor's check (核查) through the REST API."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.api_env import ApiEnv, api_env
from twin.people import Role

pytestmark = pytest.mark.integration
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
MAX_PHOTO = 4096
USERS = {"op": (Role.OPERATOR, [], None), "ma": (Role.WORKER, ["G1"], "w1-1"),
         "sup": (Role.SUPERVISOR, ["G1"], "s-1"), "sup2": (Role.SUPERVISOR, ["G2"], "s-2")}


@pytest.fixture(scope="module")
def env() -> Iterator[ApiEnv]:
    with api_env(ApiEnv, "t_rep", USERS, tickets={"photo_max_bytes": MAX_PHOTO, "snapshots": False}) as e:
        yield e


def open_form(c: TestClient, path: str = "/r/sunshine/B1", **kw: Any) -> str:
    r = c.get(path, **kw)
    assert r.status_code == 200, r.text
    m = re.search(r'name="form_token" value="([^"]+)"', r.text)
    assert m is not None
    return m.group(1)


def post(c: TestClient, token: str, path: str = "/r/sunshine/B1", photo: tuple[str, bytes, str] | None = None,
         **fields: str) -> Any:
    data = {"form_token": token, "category": "fire_lane", "floor": "1", "unit": "3单元", "text": "电动车堵住消防通道",
            "phone": "13800001234", **fields}
    data = {k: v for k, v in data.items() if v is not None}
    files = {"photo": photo} if photo is not None else {"photo": ("", b"", "application/octet-stream")}
    return c.post(path, data=data, files=files, follow_redirects=False)


def test_a_resident_reports_follows_it_and_rates_it_after_the_supervisors_check(env: ApiEnv) -> None:
    c = env.resident()
    form = c.get("/r/sunshine/B1")
    assert form.status_code == 200 and "阳光社区 · 1号楼" in form.text and "消防通道堵塞" in form.text
    assert "巡查发现安全隐患" not in form.text  # staff-only categories are not offered
    assert "script" not in form.headers["content-security-policy"]
    en = c.get("/r/sunshine/B1?lang=en")
    assert "Blocked fire lane" in en.text and 'lang="en"' in en.text
    token = open_form(c)
    r = post(c, token, photo=("lane.png", PNG, "image/png"))
    assert r.status_code == 303, r.text
    track = r.headers["location"]
    assert re.fullmatch(r"/r/t/[A-Za-z0-9_\-]{32}", track)
    page = c.get(track)
    assert page.status_code == 200 and 'data-state="dispatched"' in page.text
    assert "已派给网格员 马*" in page.text and "马刚" not in page.text and "13800001234" not in page.text
    (tid, reporter, contact), = env.storage.conn.execute(
        "SELECT id, reporter, contact FROM tickets WHERE id = (SELECT max(ticket_id) FROM ticket_reports)").fetchall()
    assert reporter == "resident" and contact == "13800001234"
    assert env.storage.conn.execute("SELECT count(*) FROM ticket_photos WHERE ticket_id = %s AND kind = 'report'",
                                    (tid,)).fetchone() == (1,)
    stored = env.storage.conn.execute("SELECT track_hash FROM ticket_reports WHERE ticket_id = %s", (tid,)).fetchone()
    assert stored is not None and track.rsplit("/", 1)[1].encode() not in bytes(stored[0])  # only the hash

    api = TestClient(env.app)
    assert api.post(f"/api/v1/tickets/{tid}/accept", headers=env.auth("ma")).status_code == 200
    assert api.post(f"/api/v1/tickets/{tid}/resolve", headers=env.auth("ma"),
                    json={"note": "已清理通道"}).status_code == 200
    page = c.get(track)
    assert 'data-state="checking"' in page.text and "网格长核查后即可评价" in page.text and "已清理通道" in page.text
    assert 'id="pub-rate"' not in page.text
    rate_token = env.storage.conn.execute("SELECT rate_token FROM tickets WHERE id = %s", (tid,)).fetchone()
    assert rate_token is not None
    assert api.get(f"/api/v1/rate/{rate_token[0]}").json()["can_rate"] is False  # the operators' rating link too
    early = api.post(f"/api/v1/rate/{rate_token[0]}", json={"rating": 5})
    assert early.status_code == 409 and "核查" in early.json()["detail"]  # the rating link waits for the check too

    assert api.get("/api/v1/reports/checks", headers=env.auth("sup")).json()["tickets"][0]["id"] == tid
    assert api.get(f"/api/v1/tickets/{tid}/check", headers=env.auth("ma")).json() == {
        "id": tid, "state": "feedback", "check": "pending"}
    assert api.get(f"/api/v1/tickets/{tid}/check", headers=env.auth("sup2")).status_code == 403  # another grid
    assert api.get("/api/v1/reports/checks", headers=env.auth("sup2")).json()["tickets"] == []
    assert api.post(f"/api/v1/tickets/{tid}/verify", headers=env.auth("ma"),
                    json={"result": "pass"}).status_code == 403  # the worker does not check their own work
    assert api.post(f"/api/v1/tickets/{tid}/verify", headers=env.auth("sup"),
                    json={"result": "fail"}).status_code == 422  # a failure needs a reason
    back = api.post(f"/api/v1/tickets/{tid}/verify", headers=env.auth("sup"),
                    json={"result": "fail", "reason": "通道里还有一辆车"})
    assert back.status_code == 200 and back.json()["state"] == "handling" and back.json()["check"] == \
        "awaiting_resolution"
    assert "核查未通过" in c.get(track).text and "通道里还有一辆车" not in c.get(track).text  # an internal note
    api.post(f"/api/v1/tickets/{tid}/resolve", headers=env.auth("ma"), json={"note": "车已挪走"})
    ok = api.post(f"/api/v1/tickets/{tid}/verify", headers=env.auth("sup"), json={"result": "pass"})
    assert ok.status_code == 200 and ok.json()["check"] == "passed"
    assert api.post(f"/api/v1/tickets/{tid}/verify", headers=env.auth("sup"),
                    json={"result": "pass"}).status_code == 409  # nothing pending any more

    page = c.get(track + "?lang=en")
    assert "Checked by the supervisor" in page.text and 'id="pub-rate"' in page.text
    form_token = re.search(r'name="form_token" value="([^"]+)"', page.text)
    assert form_token is not None
    bad = c.post(track + "/rate", data={"form_token": form_token.group(1), "rating": "9"}, follow_redirects=False)
    assert bad.status_code == 422
    done = c.post(track + "/rate", data={"form_token": form_token.group(1), "rating": "4", "comment": "及时"},
                  follow_redirects=False)
    assert done.status_code == 303
    final = c.get(track)
    assert 'data-state="evaluated"' in final.text and "您的评价：4/5" in final.text
    again = c.post(track + "/rate", data={"form_token": form_token.group(1), "rating": "5"}, follow_redirects=False)
    assert again.status_code == 409


@pytest.mark.parametrize(("change", "status", "message"), [
    ({"category": None}, 422, "请选择问题类别"),
    ({"category": "hazard_inspection"}, 422, "请选择问题类别"),  # staff only
    ({"category": "<script>"}, 422, "请选择问题类别"),
    ({"text": ""}, 422, "请填写情况说明"),
    ({"text": "x" * 1001}, 422, "请填写情况说明"),
    ({"floor": "0"}, 422, "楼层无效"),
    ({"floor": "99"}, 422, "楼层无效"),
    ({"floor": "abc"}, 422, "楼层无效"),
    ({"unit": "x" * 40}, 422, "房号或位置不超过"),
    ({"phone": "call me"}, 422, "电话号码无效"),
    ({"photo": ("big.png", PNG + b"\x00" * MAX_PHOTO, "image/png")}, 413, "照片不能超过"),
    ({"photo": ("x.gif", b"GIF89a" + b"\x00" * 10, "image/gif")}, 415, "JPEG、PNG 或 WebP"),
    ({"photo": ("fake.png", b"not a png at all", "image/png")}, 415, "JPEG、PNG 或 WebP"),
])
def test_bad_input_gets_a_clear_4xx_and_nothing_is_stored(env: ApiEnv, change: dict[str, Any], status: int,
                                                          message: str) -> None:
    c = env.resident()
    token = open_form(c)
    before = (env.count("tickets"), env.count("ticket_reports"), env.count("ticket_photos"))
    photo = change.pop("photo", None)
    r = post(c, token, photo=photo, **change)
    assert r.status_code == status, r.text
    assert message in r.text and 'id="pub-form"' in r.text  # the form again, with the reason
    if "text" not in change:
        assert "电动车堵住消防通道" in r.text  # what the person typed is kept
    assert (env.count("tickets"), env.count("ticket_reports"), env.count("ticket_photos")) == before


def test_unknown_places_forged_tokens_and_forms_from_elsewhere_are_refused(env: ApiEnv) -> None:
    c = env.resident()
    before = env.count("tickets")
    for path in ("/r/sunshine/B99", "/r/nowhere/B1", "/r/sunshine/..%2F..", "/r/sunshine/B1/extra"):
        assert c.get(path).status_code == 404, path
    token = open_form(c)
    assert post(c, token, path="/r/sunshine/B99").status_code == 404
    for forged in ("A" * 32, "short", "A" * 31 + "!", "A" * 33, "%00" * 11):
        r = c.get(f"/r/t/{forged}")
        assert r.status_code == 404 and "链接已失效" in r.text, forged
        assert c.post(f"/r/t/{forged}/rate", data={"form_token": token, "rating": "5"}).status_code == 404
    assert post(c, "x" * 32).status_code == 403  # a form token that is not this browser's
    other = env.resident()
    assert post(other, token).status_code == 403  # no form cookie: a page from elsewhere
    evil = c.post("/r/sunshine/B1", data={"form_token": token, "category": "fire_lane", "text": "x"},
                  files={"photo": ("", b"", "application/octet-stream")},
                  headers={"Origin": "https://evil.example"}, follow_redirects=False)
    assert evil.status_code == 403
    json_body = c.post("/r/sunshine/B1", json={"form_token": token, "category": "fire_lane", "text": "x"})
    assert json_body.status_code == 415
    assert env.count("tickets") == before


def test_reports_are_rate_limited_per_address(env: ApiEnv) -> None:
    c = env.resident()
    token = open_form(c)
    codes = [post(c, token, text=f"第{i}次").status_code for i in range(6)]
    assert codes == [303] * 5 + [429]
    refused = post(c, token)
    assert refused.status_code == 429 and "Retry-After" in refused.headers and "提交过于频繁" in refused.text
    other = env.resident()  # another address is not affected
    assert post(other, open_form(other)).status_code == 303


def test_staff_report_through_the_api(env: ApiEnv) -> None:
    api = TestClient(env.app)
    cats = api.get("/api/v1/reports/categories", headers=env.auth("ma")).json()["categories"]
    assert {"id": "corridor_light", "zh": "楼道灯损坏", "en": "Broken corridor light", "category": "other",
            "priority": "general", "verify": False, "public": True, "collect": False} in cats
    r = api.post("/api/v1/reports", headers=env.auth("ma"),
                 json={"category": "hazard_inspection", "building": "B2", "floor": 3, "text": "楼道堆放纸箱"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["state"] == "dispatched" and body["check"] == "awaiting_resolution" and body["priority"] == "complex"
    assert api.post("/api/v1/reports", headers=env.auth("ma"),
                    json={"category": "nope", "building": "B2", "text": "x"}).status_code == 422
    assert api.post("/api/v1/reports", headers=env.auth("ma"),
                    json={"category": "noise", "building": "B2", "floor": 0, "text": "x"}).status_code == 422
    assert api.post("/api/v1/reports", json={"category": "noise", "building": "B2", "text": "x"}).status_code == 401
    keys = dict(env.storage.conn.execute(
        "SELECT r.category, t.keys FROM ticket_reports r JOIN tickets t ON t.id = r.ticket_id").fetchall())
    assert keys["hazard_inspection"] == []  # a report is a ticket of its own ...
    gas = api.post("/api/v1/reports", headers=env.auth("ma"),
                   json={"category": "gas_smell", "building": "B2", "floor": 3, "text": "楼道有燃气味"})
    assert gas.status_code == 201
    (gas_keys,), = env.storage.conn.execute("SELECT keys FROM tickets WHERE id = %s", (gas.json()["id"],)).fetchall()
    assert any(k.startswith("incident:gas:") for k in gas_keys)  # ... unless its category collects the place's alarms


def test_the_language_stays_through_the_form(env: ApiEnv) -> None:
    c = env.resident()
    page = c.get("/r/sunshine/B2?lang=en")
    token = open_form(c, "/r/sunshine/B2?lang=en")
    assert 'action="/r/sunshine/B2?lang=en"' in page.text
    r = post(c, "x" * 32, path="/r/sunshine/B2?lang=en")
    assert r.status_code == 403 and "The form has expired" in r.text
    r = post(c, token, path="/r/sunshine/B2?lang=en", text="")
    assert r.status_code == 422 and "Say what you see" in r.text
    r = post(c, token, path="/r/sunshine/B2?lang=en")
    assert r.status_code == 303 and r.headers["location"].endswith("?lang=en")
    assert "We received your report" in c.get(r.headers["location"]).text
